"""MonitoringStack: Prometheus (scrape vLLM + DCGM, alert rules) and Grafana (dashboard).

docker: containers on the monitoring host (host network, so scraping the bind addresses
works), config files pushed over SSH; kubernetes: Deployments/ConfigMaps, or
PrometheusRule/ServiceMonitor when the prometheus-operator is present.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from vllm_stack import defaults as D
from vllm_stack.config import StackConfig
from vllm_stack.endpoints import ScrapeTarget
from vllm_stack.quoting import http_url
from vllm_stack.render import alerts as alerts_render
from vllm_stack.render import grafana as grafana_render
from vllm_stack.render import k8s as k8s_render
from vllm_stack.render import prometheus as prom_render

from . import artifacts, k8s_objects
from .gpu_node import GpuNode
from .remote_file import remote_file
from .stack_inputs import StackSecrets

PLACEHOLDER = "secret-placeholder"  # token-safe stand-in in recorded artifacts
MONITORING_DIR = "/etc/vllm-monitoring"
RULES_FILE = "vllm-alerts.yml"
GRAFANA_SECRET = "vllm-grafana-admin"
GRAFANA_PASSWORD_FILE = posixpath.basename(D.GRAFANA_ADMIN_PASSWORD_FILE)


@dataclass(frozen=True)
class MonitoringStackArgs:
    cfg: StackConfig
    targets: tuple[ScrapeTarget, ...]
    secrets: StackSecrets
    node: GpuNode | None = None        # docker: the monitoring host
    depends_on: tuple[pulumi.Resource, ...] = ()


class MonitoringStack(pulumi.ComponentResource):
    prometheus_url: str
    grafana_url: str | None

    def __init__(self, name: str, args: MonitoringStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{D.COMPONENT_PREFIX}:MonitoringStack", name, None, opts)
        cfg = args.cfg
        rules = alerts_render.render_alert_rules(cfg)
        if cfg.platform == "kubernetes":   # pods are discovered (kubernetes_sd), not listed
            prom = k8s_render.render_prometheus_yml_k8s(cfg)
            grafana_files = (grafana_render.render_grafana(cfg, prometheus_url=k8s_render.prometheus_service_url(cfg))
                             if cfg.monitoring.grafana.enabled else {})
        else:
            prom = prom_render.render_prometheus_yml(cfg, list(args.targets),
                                                     rule_files=[f"{MONITORING_DIR}/{RULES_FILE}"])
            grafana_files = (grafana_render.render_grafana(cfg, prometheus_url=prom_render.LOCAL_URL)
                             if cfg.monitoring.grafana.enabled else {})
        artifacts.record("monitoring/prometheus.yml", prom)
        artifacts.record(f"monitoring/{RULES_FILE}", rules)
        for rel, text in grafana_files.items():
            artifacts.record(f"monitoring/grafana/{rel}", text)
        if cfg.platform == "kubernetes":
            self._kubernetes(args, prom, rules, grafana_files)
        else:
            self._docker(name, args, prom, rules, grafana_files)
        self.register_outputs({"prometheusUrl": self.prometheus_url, "grafanaUrl": self.grafana_url})

    def _docker(self, name: str, args: MonitoringStackArgs, prom: str, rules: str, grafana_files) -> None:
        cfg, node = args.cfg, args.node
        # docker: the monitoring host, reached over SSH
        assert node is not None and node.connection is not None and cfg.monitoring_host is not None
        host = cfg.monitoring_host.address
        # Prometheus listens on the monitoring host's loopback only (reach it with an SSH tunnel).
        self.prometheus_url = prom_render.LOCAL_URL
        self.grafana_url = http_url(host, D.GRAFANA_PORT) if grafana_files else None
        conn = node.connection
        deps = list(node.ready) + list(args.depends_on)
        files = [remote_file(f"{name}-prometheus-yml", conn, f"{MONITORING_DIR}/prometheus.yml", prom, parent=self,
                             depends_on=deps),
                 remote_file(f"{name}-rules", conn, f"{MONITORING_DIR}/{RULES_FILE}", rules, parent=self,
                             depends_on=deps)]
        dopts = pulumi.ResourceOptions(parent=self, provider=node.docker_provider, depends_on=files)
        prom_image = docker.RemoteImage(f"{name}-prometheus-image", name=D.PROMETHEUS_IMAGE, keep_locally=True,
                                        opts=pulumi.ResourceOptions(parent=self, provider=node.docker_provider))
        docker.Container(
            f"{name}-prometheus", name="vllm-prometheus", image=prom_image.repo_digest, network_mode="host",
            command=[f"--config.file={MONITORING_DIR}/prometheus.yml", "--storage.tsdb.path=/prometheus",
                     f"--web.listen-address={prom_render.LOCAL_LISTEN}"],
            volumes=[docker.ContainerVolumeArgs(host_path=MONITORING_DIR, container_path=MONITORING_DIR, read_only=True)],
            restart="always", opts=dopts)
        if not grafana_files:
            return
        for rel, text in grafana_files.items():
            files.append(remote_file(f"{name}-grafana-{rel.replace('/', '-').replace('.', '-')}", conn,
                                     f"{MONITORING_DIR}/grafana/{rel}", text, parent=self, depends_on=deps))
        artifacts.record(f"monitoring/grafana/{GRAFANA_PASSWORD_FILE}", PLACEHOLDER, D.SECRET_FILE_MODE, secret=True)
        # Grafana's container user (472) reads the password file; it stays 0600, owned by that uid.
        files.append(remote_file(f"{name}-grafana-password", conn, f"{MONITORING_DIR}/secrets/{GRAFANA_PASSWORD_FILE}",
                                 args.secrets.grafana_admin_password, mode=D.SECRET_FILE_MODE, owner="472",
                                 group="root", secret=True, parent=self, depends_on=deps))
        env = grafana_render.grafana_ini_overrides(cfg)
        graf_image = docker.RemoteImage(f"{name}-grafana-image", name=D.GRAFANA_IMAGE, keep_locally=True,
                                        opts=pulumi.ResourceOptions(parent=self, provider=node.docker_provider))
        docker.Container(
            f"{name}-grafana", name="vllm-grafana", image=graf_image.repo_digest, network_mode="host",
            envs=[f"{k}={v}" for k, v in sorted(env.items())],
            volumes=[docker.ContainerVolumeArgs(host_path=f"{MONITORING_DIR}/grafana",
                                                container_path="/etc/grafana/provisioning", read_only=True),
                     docker.ContainerVolumeArgs(host_path=f"{MONITORING_DIR}/secrets",
                                                container_path="/run/secrets", read_only=True)],
            restart="always", opts=pulumi.ResourceOptions(parent=self, provider=node.docker_provider,
                                                          depends_on=files))

    def _kubernetes(self, args: MonitoringStackArgs, prom: str, rules: str, grafana_files) -> None:
        cfg = args.cfg
        ns = cfg.kubernetes.namespace
        self.prometheus_url = k8s_render.prometheus_service_url(cfg)
        self.grafana_url = (f"http://{k8s_render.GRAFANA_SERVICE}.{ns}.svc.cluster.local:{D.GRAFANA_PORT}"
                            if grafana_files and not cfg.monitoring.prometheus_operator else None)
        deps = list(args.depends_on)
        if grafana_files:
            sec = k8s_render.secret_object(cfg, GRAFANA_SECRET, {k8s_render.GRAFANA_PASSWORD_KEY: PLACEHOLDER})
            artifacts.record_k8s(sec)
            deps.append(k8s_objects.create(sec, self, overrides={
                "stringData": {k8s_render.GRAFANA_PASSWORD_KEY: args.secrets.grafana_admin_password}}))
        for obj in k8s_render.monitoring_objects(cfg, prom, rules, grafana_files, grafana_secret=GRAFANA_SECRET):
            artifacts.record_k8s(obj)
            k8s_objects.create(obj, self, depends_on=deps)
