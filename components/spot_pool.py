"""SpotOnDemandPool: a model's replicas as an on-demand floor plus spot capacity (seed 000/003).

docker: one VllmServer per placed replica; every spot replica gets a drain hook whose
`delete` runs on the front host *before* the replica is deleted (Pulumi deletes
dependents first), so removing a spot host from the config drains it, never the reverse.
kubernetes: on-demand and spot Deployments, one Service over both, a PDB on the floor,
and a KEDA ScaledObject scaling spot on queue depth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi
from pulumi_command import remote

from vllm_stack import defaults as D
from vllm_stack.config import ModelSpec, StackConfig
from vllm_stack.endpoints import Backend, ScrapeTarget
from vllm_stack.placement import K8S_CAPACITY, Replica
from vllm_stack.render import host_commands
from vllm_stack.render import k8s as k8s_render
from vllm_stack.render.systemd import vllm_bind_host

from . import artifacts, k8s_objects
from .gpu_node import GpuNode
from .vllm_server import VllmServer, VllmServerArgs



@dataclass(frozen=True)
class SpotOnDemandPoolArgs:
    cfg: StackConfig
    model: ModelSpec
    nodes: Mapping[str, GpuNode]                  # docker: by host name; kubernetes: {"cluster": node}
    replicas: tuple[Replica, ...] = ()            # docker placement
    front: remote.ConnectionArgs | None = None    # docker: where nginx (and the drain script) runs
    secret_name: str | None = None                # kubernetes
    prometheus_url: str = ""                      # kubernetes: KEDA's Prometheus trigger


@dataclass
class PoolSummary:
    on_demand: int = 0
    spot: int = 0
    spot_max: int = 0
    gpus: int = 0
    backends: list[Backend] = field(default_factory=list)


class SpotOnDemandPool(pulumi.ComponentResource):
    backends: list[Backend]
    scrape_targets: list[ScrapeTarget]
    servers: list[VllmServer]
    summary: PoolSummary

    def __init__(self, name: str, args: SpotOnDemandPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{D.COMPONENT_PREFIX}:SpotOnDemandPool", name, None, opts)
        self.backends, self.scrape_targets, self.servers = [], [], []
        if args.cfg.platform == "kubernetes":
            self._kubernetes(name, args)
        else:
            self._docker(name, args)
        m = args.model
        self.summary = PoolSummary(on_demand=m.pool.on_demand, spot=m.pool.spot, spot_max=m.pool.spot_ceiling,
                                   gpus=(m.pool.on_demand + m.pool.spot) * m.tensor_parallel, backends=self.backends)
        self.register_outputs({
            "backends": [{"endpoint": b.hostport, "capacity": b.capacity} for b in self.backends],
            "onDemandReplicas": m.pool.on_demand, "spotReplicas": m.pool.spot, "gpus": self.summary.gpus,
        })

    def _docker(self, name: str, args: SpotOnDemandPoolArgs) -> None:
        for r in args.replicas:
            assert r.host is not None             # docker placement names the host
            bind = vllm_bind_host(args.cfg, r)
            server = VllmServer(r.name, VllmServerArgs(cfg=args.cfg, model=args.model, node=args.nodes[r.host],
                                                       capacity=r.capacity, replica=r, bind=bind),
                                pulumi.ResourceOptions(parent=self))
            self.servers.append(server)
            self.backends += server.backends
            self.scrape_targets += server.scrape_targets
            if r.capacity == "spot" and args.front is not None:
                self._drain_hook(r, server, args)

    def _drain_hook(self, r: Replica, server: VllmServer, args: SpotOnDemandPoolArgs) -> None:
        backend = server.backends[0]
        drain = host_commands.drain_hook(args.model.name, backend.hostport, args.model.pool.drain_seconds)
        remote.Command(
            f"{r.name}-drain", connection=args.front, create="true", delete=drain,
            triggers=[backend.hostport],
            # depends on the server: on removal Pulumi deletes this hook (the drain) first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[server.workload]))

    def _kubernetes(self, name: str, args: SpotOnDemandPoolArgs) -> None:
        m, cfg = args.model, args.cfg
        node = args.nodes["cluster"]
        assert args.secret_name is not None   # kubernetes: the GpuNode's model Secret
        for capacity, count in (("onDemand", m.pool.on_demand), ("spot", m.pool.spot)):
            if capacity == "spot" and m.pool.spot_ceiling == 0:
                continue
            if capacity == "onDemand" and count == 0:
                continue
            server = VllmServer(f"{m.name}-{K8S_CAPACITY[capacity]}", VllmServerArgs(
                cfg=cfg, model=m, node=node, capacity=capacity, replicas=count, secret_name=args.secret_name),
                pulumi.ResourceOptions(parent=self))
            self.servers.append(server)
        objs = k8s_render.model_objects(cfg, m, secret_name=args.secret_name, prometheus_url=args.prometheus_url)
        workloads = [s.workload for s in self.servers]
        for obj in objs:
            if obj["kind"] == "Deployment":
                continue
            artifacts.record_k8s(obj)
            k8s_objects.create(obj, self, depends_on=workloads)
            if obj["kind"] == "Service":
                svc = f"{obj['metadata']['name']}.{cfg.kubernetes.namespace}.svc.cluster.local"
                port = obj["spec"]["ports"][0]["port"]
                # The one definition of the front's Kubernetes backends (render/k8s_front.py).
                self.backends = [b for b in k8s_render.front_backends(cfg) if b.model == m.name]
                self.scrape_targets = [ScrapeTarget("vllm", svc, port, (("model", m.name),))]
