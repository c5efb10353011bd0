"""Components for GPU hosts reached over SSH (docker or systemd runtime).

Each takes plain, already-rendered values (from `vllm_stack.stack` or your own program) and
Inputs for what only exists at deploy time (addresses of new machines, secrets); each creates
its resources with `parent=self` and exposes `pulumi.Output` attributes. A component that
needs a host's docker engine gets it the Pulumi way: `ResourceOptions(providers=[node.docker_provider])`.
"""

from typing import NotRequired, TypedDict

import pulumi
import pulumi_docker as docker
from pulumi_command import remote

from vllm_stack import defaults as D
from vllm_stack.render import host_commands
from vllm_stack.deployment import CONTAINER_SECRET_ENV
from vllm_stack.render.systemd import secret_env_path
from vllm_stack.render.vllm_args import ENV_API_KEY, ENV_HF_TOKEN, render_secret_env_file

from vllm_stack.endpoints import Backend

from .args import DrainArgs, FileArgs, HostContainerArgs, PoolArgs, SshArgs, VolumeArgs, WeightsFetchArgs, connection
from .base import Component
from .remote_file import content_hash, remote_file
from .shared import Front, FrontArgs, Monitoring, MonitoringArgs, Pool
from .tls import front_certificate, front_key_files


def _volumes(volumes: list[VolumeArgs]) -> list[docker.ContainerVolumeArgs]:
    return [
        docker.ContainerVolumeArgs(
            host_path=v["host_path"], container_path=v["container_path"], read_only=v.get("read_only")
        )
        for v in volumes
    ]


def _push(
    owner: Component,
    name: str,
    conn: remote.ConnectionArgs,
    f: FileArgs,
    depends_on: list[pulumi.Resource] | None = None,
) -> remote.Command:
    return remote_file(
        f"{name}-{f['id']}",
        conn,
        f["path"],
        f["content"],
        mode=f.get("mode", 0o644),
        parent=owner,
        depends_on=depends_on or [],
    )


def _installed_unit(owner: Component, name: str, ssh: SshArgs, install: str, unit_name: str, unit: FileArgs) -> None:
    """Run `install` (re-run when it changes), push the unit file, enable and (re)start the unit."""
    conn = connection(ssh)
    installed = remote.Command(
        f"{name}-install",
        connection=conn,
        create=install,
        update=install,
        triggers=[content_hash(install)],
        opts=owner.child(),
    )
    pushed = _push(owner, name, conn, unit, [installed])
    start = host_commands.start_unit(unit_name)
    remote.Command(
        f"{name}-service",
        connection=conn,
        create=start,
        update=start,
        delete=host_commands.stop_unit(unit_name),
        triggers=[content_hash(unit["content"])],
        opts=owner.child(depends_on=[pushed]),
    )


def _pinned_container(owner: Component, name: str, spec: HostContainerArgs, depends_on: list[pulumi.Resource]) -> None:
    """A long-running container from a pinned image (pulled as a RemoteImage), on the host network."""
    image = docker.RemoteImage(f"{name}-image", name=spec["image"], keep_locally=True, opts=owner.child())
    docker.Container(
        name,
        name=spec["name"],
        image=image.repo_digest,
        network_mode="host",
        command=spec.get("command"),
        envs=[f"{k}={v}" for k, v in sorted(spec.get("env", {}).items())] or None,
        volumes=_volumes(spec.get("volumes", [])),
        restart="always",
        opts=owner.child(depends_on=list(depends_on)),
    )


# --- GPU host ------------------------------------------------------------------------------


class SshGpuNodeArgs(TypedDict):
    ssh: SshArgs
    bootstrap: str
    """The bootstrap script (`render_bootstrap_script`), run as root by `sudo bash -s`."""
    models: list[str]
    """Models with a replica on this host: each gets a 0600 env file with the API key and HF token."""
    api_key: pulumi.Input[str]
    """The key vLLM checks (secret)."""
    hf_token: NotRequired[pulumi.Input[str]]
    """Hugging Face token for gated models (secret)."""
    docker_host: str
    """`ssh://user@host:port` for the docker provider (reaches the engine with the deployer's ssh-agent)."""
    gpu: str
    gpu_count: int
    weights: NotRequired[list[WeightsFetchArgs]]
    """Per model on this host: the weights pre-fetch, run after the bootstrap and the model's env
    file; the servers placed on the host (which depend on this node) start after it."""


class SshGpuNode(Component):
    """An existing GPU host prepared for vLLM: driver/toolkit check, `vllm` user, weights dir,
    0600 secret env files written from stdin, the weights pre-fetched once per model, DCGM
    exporter; plus its docker provider."""

    _previous_type = "GpuNode"
    gpu: pulumi.Output[str]
    gpu_count: pulumi.Output[int]
    weights_path: pulumi.Output[str]
    docker_host: pulumi.Output[str]

    def __init__(self, name: str, args: SshGpuNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        conn = connection(args["ssh"])
        script = args["bootstrap"]
        # The bootstrap installs the secret writer itself (byte for byte), so reruns are no-ops.
        bootstrap = remote.Command(
            f"{name}-bootstrap",
            connection=conn,
            create="sudo bash -s",
            update="sudo bash -s",
            stdin=script,
            triggers=[content_hash(script)],
            opts=self.child(),
        )
        hf = args.get("hf_token")
        env_files: dict[str, remote.Command] = {}
        for model in args["models"]:
            env = pulumi.Output.all(args["api_key"], hf if hf is not None else "").apply(
                lambda kv: render_secret_env_file({ENV_API_KEY: kv[0], ENV_HF_TOKEN: kv[1] or ""})
            )
            secret_env: pulumi.Output[str] = pulumi.Output.secret(env)
            env_files[model] = remote.Command(
                f"{name}-{model}-env",
                connection=conn,
                create=host_commands.write_secrets(model),
                update=host_commands.write_secrets(model),
                delete=host_commands.remove_file(secret_env_path(model)),
                stdin=secret_env,
                logging=remote.Logging.NONE,
                opts=self.child(depends_on=[bootstrap]),
            )
        for w in args.get("weights", []):
            files = [_push(self, f"{name}-{w['model']}-weights", conn, f, [bootstrap]) for f in w["files"]]
            env_file = env_files.get(w["model"])
            remote.Command(
                f"{name}-{w['model']}-weights",
                connection=conn,
                create=w["command"],
                update=w["command"],
                triggers=[content_hash(w["command"] + "".join(f["content"] for f in w["files"]))],
                opts=self.child(
                    depends_on=files + ([env_file] if env_file is not None else []),
                    custom_timeouts=pulumi.CustomTimeouts(create=w["timeout"], update=w["timeout"]),
                ),
            )
        self.docker_provider = docker.Provider(
            f"{name}-docker",
            host=args["docker_host"],
            ssh_opts=["-o", "StrictHostKeyChecking=accept-new"],
            opts=self.child(),
        )
        self.publish(
            gpu=args["gpu"],
            gpu_count=args["gpu_count"],
            weights_path=D.VLLM_WEIGHTS_DIR,
            docker_host=args["docker_host"],
        )


# --- vLLM servers ----------------------------------------------------------------------------


class _ServerArgs(TypedDict):
    model: str
    """Served model name (the front's route)."""
    capacity: str
    """onDemand | spot"""
    argv: list[str]
    """`vllm serve` arguments (`serve_argv`) this replica runs; the policy pack's vLLM rules judge them."""
    gpu: str
    """GPU catalog id (`l40s`, `h100-80gb`, ...) of the GPUs it runs on (the fit and FP8 rules read it)."""
    address: str
    """Where the front and Prometheus reach this replica (its bind address)."""
    port: int
    drain: NotRequired[DrainArgs]
    """Spot replicas: the hook that takes the replica out of the front before it is deleted."""


class _Server(Component):
    _previous_type = "VllmServer"
    endpoint: pulumi.Output[str]
    """host:port of this replica."""
    model: pulumi.Output[str]
    capacity: pulumi.Output[str]

    def _finish(self, name: str, args: _ServerArgs, workload: pulumi.Resource) -> None:
        self.workload = workload
        endpoint = Backend(args["model"], args["address"], args["port"], args["capacity"]).hostport
        drain = args.get("drain")
        if drain is not None:
            # Depends on the workload: on removal Pulumi deletes this hook (the drain) first.
            remote.Command(
                f"{name}-drain",
                connection=connection(drain["ssh"]),
                create="true",
                delete=drain["command"],
                triggers=[endpoint],
                opts=self.child(
                    depends_on=[workload],
                    aliases=([pulumi.Alias(parent=self.opts_parent)] if self.opts_parent is not None else None),
                ),
            )
        self.publish(endpoint=endpoint, model=args["model"], capacity=args["capacity"])


class DockerVllmServerArgs(_ServerArgs):
    container_name: str
    image: str
    env: dict[str, str]
    """Public environment (secrets come from the mounted 0600 env file)."""
    gpus: str
    """docker `--gpus` value, e.g. `device=0,1`."""
    secret_env_file: str
    """The model's 0600 env file on the host (written by SshGpuNode)."""
    weights_dir: str
    labels: dict[str, str]
    stop_timeout: int
    """Seconds docker waits after SIGTERM (drain + margin)."""
    startup_budget_seconds: int
    """The model's startup budget: the health check's start period (a loading replica is not unhealthy)."""
    health_wait_seconds: int
    """How long `pulumi up` waits for the container to be healthy (startup budget + image pull)."""


class DockerVllmServer(_Server):
    """One vLLM replica as the official image on a host's docker engine, secrets out of `docker inspect`."""

    def __init__(self, name: str, args: DockerVllmServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        image = docker.RemoteImage(f"{name}-image", name=args["image"], keep_locally=True, opts=self.child())
        container = docker.Container(
            name,
            name=args["container_name"],
            image=image.repo_digest,
            entrypoints=[
                "/bin/sh",
                "-c",
                f'set -a; . {CONTAINER_SECRET_ENV}; set +a; exec vllm serve "$@"',
                "vllm-serve",
            ],
            command=args["argv"],
            envs=[f"{k}={v}" for k, v in sorted(args["env"].items())],
            gpus=args["gpus"],
            ipc_mode="host",
            ports=[docker.ContainerPortArgs(internal=D.VLLM_PORT, external=args["port"], ip=args["address"])],
            volumes=[
                docker.ContainerVolumeArgs(host_path=args["weights_dir"], container_path=args["weights_dir"]),
                docker.ContainerVolumeArgs(
                    host_path=args["secret_env_file"], container_path=CONTAINER_SECRET_ENV, read_only=True
                ),
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=[
                    "CMD",
                    "python3",
                    "-c",
                    "import urllib.request; urllib.request.urlopen("
                    f"'http://127.0.0.1:{D.VLLM_PORT}{D.HEALTH_PATH}', timeout=5)",
                ],
                interval=f"{D.PROBE_PERIOD_SEC}s",
                timeout="5s",
                retries=3,
                start_period=f"{max(D.DOCKER_HEALTH_START_PERIOD_SEC, args['startup_budget_seconds'])}s",
            ),
            wait=True,
            wait_timeout=args["health_wait_seconds"],
            restart="always",
            stop_signal="SIGTERM",
            stop_timeout=args["stop_timeout"],
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(args["labels"].items())],
            opts=self.child(),
        )
        self._finish(name, args, container)


class SystemdVllmServerArgs(_ServerArgs):
    ssh: SshArgs
    unit_name: str
    unit: FileArgs
    """The unit file (`render_systemd_unit`)."""
    wrapper: FileArgs
    """The readiness wrapper its ExecStart runs (`render_start_wrapper`, which embeds `argv`)."""


class SystemdVllmServer(_Server):
    """One vLLM replica as a systemd unit (Type=notify; READY only when /health answers)."""

    def __init__(self, name: str, args: SystemdVllmServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        conn = connection(args["ssh"])
        unit, wrapper = args["unit"], args["wrapper"]
        files = [_push(self, name, conn, wrapper), _push(self, name, conn, unit)]
        start = host_commands.start_unit(args["unit_name"])
        service = remote.Command(
            f"{name}-service",
            connection=conn,
            create=start,
            update=start,
            delete=host_commands.stop_unit(args["unit_name"]),
            triggers=[content_hash(unit["content"] + wrapper["content"])],
            opts=self.child(depends_on=files),
        )
        self._finish(name, args, service)


class HostSpotOnDemandPoolArgs(PoolArgs):
    """Only the shared pool inputs: on SSH hosts the servers are created by the caller under the pool."""


class HostSpotOnDemandPool(Pool):
    """A model's replicas on SSH hosts: an on-demand floor plus spot replicas.

    The servers are this component's children (`ResourceOptions(parent=pool)`), created by the
    caller because each needs its own host's docker provider; spot servers carry a drain hook."""

    endpoints: pulumi.Output[list[str]]
    """host:port of every replica (Kubernetes: the model's Service)."""

    def __init__(self, name: str, args: HostSpotOnDemandPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        self.publish_pool(args)


# --- front -------------------------------------------------------------------------------------


class HostNginxFrontArgs(FrontArgs):
    ssh: SshArgs
    files: list[FileArgs]
    """nginx.conf, the upstream files and the drain script."""
    api_keys_path: str
    upstream_auth_path: str
    cert_path: str
    key_path: str
    api_key: pulumi.Input[str]
    """The key vLLM checks; clients may use it too (secret)."""
    extra_api_keys: NotRequired[pulumi.Input[str]]
    """More client keys, comma separated (secret)."""


class HostNginxFront(Front):
    """nginx (Debian package, systemd) on the front host: TLS, API-key gate, per-model routes."""

    def __init__(self, name: str, args: HostNginxFrontArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        conn = connection(args["ssh"])
        install = remote.Command(
            f"{name}-install",
            connection=conn,
            create="command -v nginx >/dev/null || (sudo apt-get update && sudo apt-get install -y nginx)",
            opts=self.child(),
        )
        pushed = [_push(self, name, conn, f, [install]) for f in args["files"]]
        keys_map, upstream_auth = front_key_files(args["api_key"], args.get("extra_api_keys"))
        pushed.append(
            remote_file(
                f"{name}-api-keys",
                conn,
                args["api_keys_path"],
                keys_map,
                mode=D.SECRET_FILE_MODE,
                secret=True,
                parent=self,
                depends_on=[install],
            )
        )
        pushed.append(
            remote_file(
                f"{name}-upstream-auth",
                conn,
                args["upstream_auth_path"],
                upstream_auth,
                mode=D.SECRET_FILE_MODE,
                secret=True,
                parent=self,
                depends_on=[install],
            )
        )
        tls = front_certificate(self, name, args)
        if tls is not None:
            pushed.append(
                remote_file(f"{name}-tls-cert", conn, args["cert_path"], tls[0], parent=self, depends_on=[install])
            )
            pushed.append(
                remote_file(
                    f"{name}-tls-key",
                    conn,
                    args["key_path"],
                    tls[1],
                    mode=D.SECRET_FILE_MODE,
                    secret=True,
                    parent=self,
                    depends_on=[install],
                )
            )
        reload_cmd = "sudo nginx -t && sudo systemctl enable nginx && sudo systemctl reload-or-restart nginx"
        remote.Command(
            f"{name}-reload",
            connection=conn,
            create=reload_cmd,
            update=reload_cmd,
            triggers=[content_hash("".join(f["content"] for f in args["files"]))],
            opts=self.child(depends_on=pushed),
        )
        self.publish_front(args)


# --- monitoring ---------------------------------------------------------------------------------


class HostMonitoringStackArgs(MonitoringArgs):
    ssh: SshArgs
    files: list[FileArgs]
    """prometheus.yml and the alert rules."""
    grafana_files: NotRequired[list[FileArgs]]
    """Grafana provisioning (datasource, dashboards)."""
    prometheus: HostContainerArgs
    grafana: NotRequired[HostContainerArgs]
    grafana_password_path: NotRequired[str]
    """Where Grafana's container reads its admin password (0600, uid 472)."""
    alertmanager: NotRequired[HostContainerArgs]
    alertmanager_config_path: NotRequired[str]
    """Where Alertmanager's container reads alertmanager.yml (0600, the image's user)."""
    alertmanager_config: NotRequired[pulumi.Input[str]]
    """alertmanager.yml rendered with the receivers' URLs and keys (secret)."""
    blackbox: NotRequired[HostContainerArgs]
    """The blackbox exporter probing the front's certificate (its blackbox.yml is one of `files`)."""


class HostMonitoringStack(Monitoring):
    """Prometheus (and Grafana) as containers on the monitoring host's network; config pushed over SSH."""

    def __init__(self, name: str, args: HostMonitoringStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        conn = connection(args["ssh"])
        files: list[pulumi.Resource] = [_push(self, name, conn, f) for f in args["files"]]
        self._container(name, args["prometheus"], "prometheus", files)
        blackbox = args.get("blackbox")
        if blackbox is not None:
            self._container(name, blackbox, "blackbox", files)
        alertmanager, am_config = args.get("alertmanager"), args.get("alertmanager_config")
        if alertmanager is not None and am_config is not None and "alertmanager_config_path" in args:
            am_file = remote_file(
                f"{name}-alertmanager-config",
                conn,
                args["alertmanager_config_path"],
                am_config,
                mode=D.SECRET_FILE_MODE,
                owner=str(D.ALERTMANAGER_UID),
                group="root",
                secret=True,
                parent=self,
            )
            self._container(name, alertmanager, "alertmanager", [am_file])
        files += [_push(self, name, conn, f) for f in args.get("grafana_files", [])]
        grafana = args.get("grafana")
        password = args.get("grafana_admin_password")
        if grafana is not None and password is not None and "grafana_password_path" in args:
            # Grafana's container user (472) reads the password file; it stays 0600, owned by that uid.
            files.append(
                remote_file(
                    f"{name}-grafana-password",
                    conn,
                    args["grafana_password_path"],
                    password,
                    mode=D.SECRET_FILE_MODE,
                    owner=str(D.GRAFANA_UID),
                    group="root",
                    secret=True,
                    parent=self,
                )
            )
            self._container(name, grafana, "grafana", files)
        self.publish_urls(args)

    def _container(self, name: str, spec: HostContainerArgs, role: str, files: list[pulumi.Resource]) -> None:
        _pinned_container(self, f"{name}-{role}", spec, files)


# --- routing tier --------------------------------------------------------------------------


class _RouterArgs(TypedDict):
    model: str
    ssh: SshArgs
    """The front host (the router listens on its loopback; nginx is its only client)."""
    url: str
    """Where nginx reaches the router (`http://127.0.0.1:<port>`)."""


class SystemdVllmRouterArgs(_RouterArgs):
    install: str
    """The pinned install command (`host_commands.install_router`)."""
    unit_name: str
    unit: FileArgs
    """`render_router_unit(...)`."""


class SystemdVllmRouter(Component):
    """vllm-router for one model on the front host: a pinned pip venv and a sandboxed systemd unit."""

    url: pulumi.Output[str]
    unit_name: pulumi.Output[str]

    def __init__(self, name: str, args: SystemdVllmRouterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        _installed_unit(self, name, args["ssh"], args["install"], args["unit_name"], args["unit"])
        self.publish(url=args["url"], unit_name=args["unit_name"])


class DockerVllmRouterArgs(_RouterArgs):
    container: HostContainerArgs
    """Name, pinned image (`router.image`) and the `router_argv(...)` command; host network."""


class DockerVllmRouter(Component):
    """vllm-router for one model as a container on the front host's docker engine (host network,
    bound to loopback by its own `--host`). Pass the front host's docker provider in `opts.providers`."""

    url: pulumi.Output[str]
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: DockerVllmRouterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        spec = args["container"]
        docker.Container(
            f"{name}-container",
            name=spec["name"],
            image=spec["image"],
            command=spec.get("command"),
            network_mode="host",
            restart="always",
            opts=self.child(),
        )
        self.publish(url=args["url"], container_name=spec["name"])


# --- the front's exporter -------------------------------------------------------------------


class _NginxExporterArgs(TypedDict):
    ssh: SshArgs
    """The front host (the exporter reads nginx's stub_status on its loopback)."""
    metrics_url: str
    """Where Prometheus scrapes the exporter."""


class SystemdNginxExporterArgs(_NginxExporterArgs):
    install: str
    """`host_commands.install_nginx_exporter()`: Debian's package, its own unit disabled."""
    unit_name: str
    unit: FileArgs
    """`front_monitoring.render_exporter_unit(...)`."""


class SystemdNginxExporter(Component):
    """nginx-prometheus-exporter on a systemd front host: Debian's binary under a sandboxed unit."""

    metrics_url: pulumi.Output[str]
    unit_name: pulumi.Output[str]

    def __init__(self, name: str, args: SystemdNginxExporterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        _installed_unit(self, name, args["ssh"], args["install"], args["unit_name"], args["unit"])
        self.publish(metrics_url=args["metrics_url"], unit_name=args["unit_name"])


class DockerNginxExporterArgs(_NginxExporterArgs):
    container: HostContainerArgs
    """Name, pinned image (`D.NGINX_EXPORTER_IMAGE`) and `front_monitoring.exporter_argv(...)`; host network."""


class DockerNginxExporter(Component):
    """nginx-prometheus-exporter as a container on the front host's docker engine (host network).
    Pass the front host's docker provider in `opts.providers`."""

    metrics_url: pulumi.Output[str]
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: DockerNginxExporterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        _pinned_container(self, f"{name}-container", args["container"], [])
        self.publish(metrics_url=args["metrics_url"], container_name=args["container"]["name"])
