"""VllmServer: one vLLM deployment unit.

docker platform: one replica on one host, as the official image (`pulumi_docker.Container`)
or as a systemd unit with a readiness wrapper (`hostRuntime: systemd`).
kubernetes platform: the Deployment of one capacity class (on-demand or spot).
The argv always comes from `vllm_stack.render.vllm_args.serve_argv`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from pulumi_command import remote

from vllm_stack import defaults as D
from vllm_stack.config import ModelSpec, StackConfig
from vllm_stack.endpoints import Backend, ScrapeTarget
from vllm_stack.placement import K8S_CAPACITY, Replica
from vllm_stack.render import host_commands
from vllm_stack.render import k8s as k8s_render
from vllm_stack.render import systemd as systemd_render
from vllm_stack.render.vllm_args import public_env, serve_argv, shell_join

from . import artifacts, k8s_objects
from .gpu_node import GpuNode
from .remote_file import content_hash, remote_file

CONTAINER_SECRET_ENV = "/run/secrets/vllm.env"
#: The container keeps secrets out of `docker inspect`: the 0600 env file is mounted and
#: sourced by the entrypoint shell, so they live only in the vLLM process environment.
CONTAINER_ENTRYPOINT = ["/bin/sh", "-c", f'set -a; . {CONTAINER_SECRET_ENV}; set +a; exec vllm serve "$@"',
                        "vllm-serve"]
HEALTHCHECK_CMD = ["CMD", "python3", "-c",
                   f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{D.VLLM_PORT}{D.HEALTH_PATH}', timeout=5)"]


@dataclass(frozen=True)
class VllmServerArgs:
    cfg: StackConfig
    model: ModelSpec
    node: GpuNode
    capacity: str                     # onDemand | spot
    replica: Replica | None = None    # docker platform: host, GPUs, port
    replicas: int = 0                 # kubernetes: Deployment replicas
    secret_name: str | None = None    # kubernetes: Secret with VLLM_API_KEY / HF_TOKEN
    bind: str = "127.0.0.1"           # docker: address the port is published on


class VllmServer(pulumi.ComponentResource):
    backends: list[Backend]
    scrape_targets: list[ScrapeTarget]
    workload: pulumi.Resource          # set by the platform's branch below

    def __init__(self, name: str, args: VllmServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{D.COMPONENT_PREFIX}:VllmServer", name, None, opts)
        self.backends, self.scrape_targets = [], []
        if args.cfg.platform == "kubernetes":
            self._kubernetes(name, args)
        elif args.cfg.host_runtime == "systemd":
            self._systemd(name, args)
        else:
            self._container(name, args)
        self.register_outputs({"endpoints": [b.hostport for b in self.backends]})

    # --- docker platform -------------------------------------------------------------
    def _labels(self, args: VllmServerArgs) -> dict[str, str]:
        return {D.LABEL_MODEL: args.model.name, D.LABEL_CAPACITY: K8S_CAPACITY[args.capacity],
                D.LABEL_ENVIRONMENT: args.cfg.environment, D.LABEL_PART_OF: D.PROJECT, D.LABEL_GPU: args.model.gpu}

    def _endpoint(self, args: VllmServerArgs) -> None:
        r = args.replica
        assert r is not None                  # docker platform: always placed
        self.backends = [Backend(args.model.name, args.bind, r.port, args.capacity)]
        self.scrape_targets = [ScrapeTarget("vllm", args.bind, r.port, (
            ("model", args.model.name), ("capacity", args.capacity), ("host", r.host or "")))]

    def _container(self, name: str, args: VllmServerArgs) -> None:
        r, m, node = args.replica, args.model, args.node
        assert r is not None                  # docker platform: always placed
        argv = serve_argv(m, host="0.0.0.0", port=D.VLLM_PORT, download_dir=node.weights_path)
        env = public_env(weights_dir=node.weights_path, gated=m.model_info().gated)
        prov = pulumi.ResourceOptions(parent=self, provider=node.docker_provider)
        image = docker.RemoteImage(f"{name}-image", name=m.image, keep_locally=True, opts=prov)
        artifacts.record(f"hosts/{r.host}/containers/{name}.argv", shell_join(argv) + "\n")
        self.workload = docker.Container(
            name,
            name=f"vllm-{r.name}",
            image=image.repo_digest,
            entrypoints=CONTAINER_ENTRYPOINT,
            command=argv,
            envs=[f"{k}={v}" for k, v in sorted(env.items())],
            gpus=f"device={','.join(map(str, r.gpu_indices))}",
            ipc_mode="host",
            ports=[docker.ContainerPortArgs(internal=D.VLLM_PORT, external=r.port, ip=args.bind)],
            volumes=[docker.ContainerVolumeArgs(host_path=node.weights_path, container_path=node.weights_path),
                     docker.ContainerVolumeArgs(host_path=f"{D.VLLM_ETC_DIR}/{m.name}.env",
                                                container_path=CONTAINER_SECRET_ENV, read_only=True)],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=HEALTHCHECK_CMD, interval=f"{D.PROBE_PERIOD_SEC}s", timeout="5s", retries=3,
                start_period=f"{D.DOCKER_HEALTH_START_PERIOD_SEC}s"),
            restart="always",
            stop_signal="SIGTERM",
            stop_timeout=m.pool.drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC,
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(self._labels(args).items())],
            opts=pulumi.ResourceOptions(parent=self, provider=node.docker_provider, depends_on=node.ready),
        )
        self._endpoint(args)

    def _systemd(self, name: str, args: VllmServerArgs) -> None:
        r, m, node = args.replica, args.model, args.node
        assert r is not None and node.connection is not None   # docker platform: placed, over SSH
        unit_name = systemd_render.unit_name(m, r)
        unit = systemd_render.render_systemd_unit(args.cfg, m, r)
        wrapper = systemd_render.render_start_wrapper(args.cfg, m, r)
        wrapper_path = systemd_render.wrapper_path(m, r)
        artifacts.record(f"hosts/{r.host}/systemd/{unit_name}", unit)
        artifacts.record(f"hosts/{r.host}/bin/{wrapper_path.rsplit('/', 1)[-1]}", wrapper, 0o755)
        files = [
            remote_file(f"{name}-wrapper", node.connection, wrapper_path, wrapper, mode=0o755, parent=self,
                        depends_on=node.ready),
            remote_file(f"{name}-unit", node.connection, f"/etc/systemd/system/{unit_name}", unit, parent=self,
                        depends_on=node.ready),
        ]
        start = host_commands.start_unit(unit_name)
        self.workload = remote.Command(
            f"{name}-service", connection=node.connection, create=start, update=start,
            delete=host_commands.stop_unit(unit_name),
            triggers=[content_hash(unit + wrapper)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=files))
        self._endpoint(args)

    # --- kubernetes --------------------------------------------------------------------
    def _kubernetes(self, name: str, args: VllmServerArgs) -> None:
        klass = K8S_CAPACITY[args.capacity]
        assert args.secret_name is not None   # kubernetes: the GpuNode's model Secret
        objs = k8s_render.model_objects(args.cfg, args.model, secret_name=args.secret_name)
        dep = next(o for o in objs if o["kind"] == "Deployment"
                   and o["metadata"]["labels"].get(D.LABEL_CAPACITY) == klass)
        artifacts.record_k8s(dep)
        # KEDA owns the spot replica count once deployed: `pulumi up` must not reset it.
        scaled = args.capacity == "spot" and args.model.pool.spot_ceiling > 0
        self.workload = k8s_objects.create(dep, self, depends_on=args.node.ready,
                                           ignore_changes=["spec.replicas"] if scaled else None)
