"""vllm-stack: compose the components from the typed stack config. No rendering here.

GpuNode → SpotOnDemandPool (VllmServer per replica) → NginxFront → MonitoringStack.
"""
import pulumi

from components.gpu_node import GpuNode, GpuNodeArgs
from components.monitoring import MonitoringStack, MonitoringStackArgs
from components.nginx_front import NginxFront, NginxFrontArgs
from components.spot_pool import SpotOnDemandPool, SpotOnDemandPoolArgs
from components.stack_inputs import load_config, load_secrets
from vllm_stack.capacity import stack_projection
from vllm_stack.placement import place
from vllm_stack.render.k8s import prometheus_service_url

cfg = load_config()
secrets = load_secrets(cfg)
placement = place(cfg)

if cfg.platform == "kubernetes":
    cluster = GpuNode("gpu-nodes", GpuNodeArgs(cfg=cfg, secrets=secrets))
    nodes = {"cluster": cluster}
    pools = [SpotOnDemandPool(m.name, SpotOnDemandPoolArgs(
        cfg=cfg, model=m, nodes=nodes, secret_name=cluster.secret_name, prometheus_url=prometheus_service_url(cfg)))
        for m in cfg.models]
    front_conn, mon_node = None, None
else:
    nodes = {}
    for h in cfg.hosts:
        on_host = tuple(m for m in cfg.models if any(r.host == h.name for r in placement[m.name]))
        nodes[h.name] = GpuNode(h.name, GpuNodeArgs(cfg=cfg, secrets=secrets, host=h, models=on_host))
    front_host, monitoring_host = cfg.front_host, cfg.monitoring_host
    assert front_host is not None and monitoring_host is not None   # docker: the config requires hosts
    front_node = nodes[front_host.name]
    mon_node = nodes[monitoring_host.name]
    pools = [SpotOnDemandPool(m.name, SpotOnDemandPoolArgs(
        cfg=cfg, model=m, nodes=nodes, replicas=tuple(placement[m.name]), front=front_node.connection))
        for m in cfg.models]
    front_conn = front_node.connection

backends = tuple(b for p in pools for b in p.backends)
targets = tuple(t for p in pools for t in p.scrape_targets) + tuple(n.dcgm_target for n in nodes.values() if n.dcgm_target)
workloads = tuple(s.workload for p in pools for s in p.servers)

front = NginxFront("front", NginxFrontArgs(cfg=cfg, backends=backends, secrets=secrets, connection=front_conn,
                                           depends_on=workloads))
monitoring = MonitoringStack("monitoring", MonitoringStackArgs(cfg=cfg, targets=targets, secrets=secrets,
                                                               node=mon_node, depends_on=workloads))

projection = stack_projection(cfg)
pulumi.export("endpoint", front.url)
pulumi.export("routes", front.routes)
pulumi.export("grafanaUrl", monitoring.grafana_url)
pulumi.export("prometheusUrl", monitoring.prometheus_url)
pulumi.export("apiKey", secrets.api_key)
pulumi.export("monthlyCostUsd", projection["total"]["blendMonthly"])
