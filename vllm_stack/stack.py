"""The vllm-stack Pulumi program: config → deployment model → rendered artifacts → components.

This is one consumer of the components (`vllm_stack.components`); the stack's `__main__.py`
calls `main()`. Everything platform-specific is chosen here, once: the components themselves
never branch on the platform. Every rendered file is recorded for the offline plan from the
same value the component receives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_random as random
from pulumi.runtime import config as runtime_config

from . import defaults as D
from .capacity import stack_projection
from .components import artifacts
from .components.args import (
    BackendArgs,
    DrainArgs,
    FileArgs,
    HostContainerArgs,
    PoolArgs,
    SshArgs,
    VolumeArgs,
    WeightsFetchArgs,
)
from .components.host import (
    DockerNginxExporter,
    DockerNginxExporterArgs,
    SystemdNginxExporter,
    SystemdNginxExporterArgs,
    DockerVllmRouter,
    DockerVllmRouterArgs,
    SystemdVllmRouter,
    SystemdVllmRouterArgs,
    DockerVllmServer,
    DockerVllmServerArgs,
    HostMonitoringStack,
    HostMonitoringStackArgs,
    HostNginxFront,
    HostNginxFrontArgs,
    HostSpotOnDemandPool,
    HostSpotOnDemandPoolArgs,
    SshGpuNode,
    SshGpuNodeArgs,
    SystemdVllmServer,
    SystemdVllmServerArgs,
)
from .components.kubernetes import (
    KubernetesVllmRouter,
    KubernetesVllmRouterArgs,
    KubernetesGpuNode,
    KubernetesGpuNodeArgs,
    KubernetesMonitoringStack,
    KubernetesMonitoringStackArgs,
    KubernetesNginxFront,
    KubernetesNginxFrontArgs,
    KubernetesSpotOnDemandPool,
    KubernetesSpotOnDemandPoolArgs,
    KubernetesVllmServerArgs,
)
from .config import HostSpec, ModelSpec, StackConfig
from .deployment import (
    ALERTMANAGER_CONTAINER,
    ALERTMANAGER_DIR,
    FRONT_KEYS_SECRET,
    FRONT_TLS_SECRET,
    GRAFANA_CONTAINER,
    GRAFANA_SECRET,
    MODEL_SECRET,
    MONITORING_DIR,
    NGINX_EXPORTER_NAME,
    PROMETHEUS_CONTAINER,
    RULES_FILE,
    SECRET_PLACEHOLDER,
    UPSTREAM_AUTH_PATH,
    Deployment,
    Server,
    build,
)
from .endpoints import Backend
from .loader import parse_config, split_namespaced
from .quoting import http_url
from .startup import budget as startup_budget
from .render import alertmanager as am_render
from .render import drain as drain_render
from .render import front_monitoring as front_mon
from .render import grafana as grafana_render
from .render import host_commands, host_scripts
from .render import k8s as k8s_render
from .render import nginx as nginx_render
from .render import prometheus as prom_render
from .render import router as router_render
from .render import routing_monitoring
from .render import runbooks as runbooks_render
from .render import systemd as systemd_render
from .render import weights as weights_render
from .render.k8s_common import WEIGHTS_PVC
from .render.prometheus import LOCAL_LISTEN
from .render.vllm_args import ENV_API_KEY, ENV_HF_TOKEN, public_env, render_secret_env_file, serve_argv, shell_join

GRAFANA_SECRETS_DIR, GRAFANA_PASSWORD_NAME = D.GRAFANA_ADMIN_PASSWORD_FILE.rsplit("/", 1)


def load_config() -> StackConfig:
    """The typed config from Pulumi's config (the same loader and errors as the offline plan)."""
    raw = runtime_config.CONFIG.get()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
        except json.JSONDecodeError:
            values[key] = value
    # The CLI sends top-level values as strings and objects as JSON: every non-string key of the
    # config lives inside an object, so the strict models see JSON's own numbers and booleans.
    plain, secrets = split_namespaced(
        values, "pulumi config", is_secret=lambda k, v: runtime_config.is_config_secret(f"{D.PROJECT}:{k}")
    )
    return parse_config(plain, secrets, "pulumi config")


@dataclass(frozen=True)
class StackSecrets:
    """Secrets as Pulumi secret Outputs: read with require_secret, or generated (pulumi-random)."""

    api_key: pulumi.Output[str]
    extra_api_keys: pulumi.Output[str] | None
    hf_token: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str]
    ssh_private_key: pulumi.Output[str] | None
    tls_certificate: pulumi.Output[str] | None
    tls_private_key: pulumi.Output[str] | None


def load_secrets(cfg: StackConfig) -> StackSecrets:
    c = pulumi.Config(D.PROJECT)

    def opt(key: str) -> pulumi.Output[str] | None:
        return c.require_secret(key) if key in cfg.secrets else None

    api_key = opt("apiKey") or random.RandomPassword("api-key", length=48, special=False).result
    grafana = (
        opt("grafanaAdminPassword") or random.RandomPassword("grafana-admin-password", length=32, special=False).result
    )
    return StackSecrets(
        api_key=pulumi.Output.secret(api_key),
        extra_api_keys=opt("apiKeys"),
        hf_token=opt("hfToken"),
        grafana_admin_password=pulumi.Output.secret(grafana),
        ssh_private_key=opt("sshPrivateKey"),
        tls_certificate=opt("tlsCertificate"),
        tls_private_key=opt("tlsPrivateKey"),
    )


def _backend(b: Backend) -> BackendArgs:
    return BackendArgs(model=b.model, address=b.address, port=b.port, capacity=b.capacity)


def _record_file(artifact: str, f: FileArgs) -> FileArgs:
    artifacts.record(artifact, f["content"], f.get("mode", 0o644))
    return f


def _set_tls(args: HostNginxFrontArgs | KubernetesNginxFrontArgs, s: StackSecrets) -> None:
    """The front's optional secret inputs: provided certificate and key, extra client keys."""
    if s.tls_certificate is not None:
        args["tls_certificate"] = s.tls_certificate
    if s.tls_private_key is not None:
        args["tls_private_key"] = s.tls_private_key
    if s.extra_api_keys is not None:
        args["extra_api_keys"] = s.extra_api_keys


def _record_front_secrets() -> None:
    artifacts.record(
        "front/api-keys.map", nginx_render.render_api_keys_map([SECRET_PLACEHOLDER]), D.SECRET_FILE_MODE, secret=True
    )
    artifacts.record(
        "front/upstream-auth.conf",
        nginx_render.render_upstream_auth(SECRET_PLACEHOLDER),
        D.SECRET_FILE_MODE,
        secret=True,
    )


def _monitoring_files(cfg: StackConfig, model: Deployment, prom: str) -> tuple[str, dict[str, str]]:
    """The alert rules and Grafana's provisioning (the same on both platforms), recorded with `prom`."""
    rules = routing_monitoring.render_rules_file(cfg)
    grafana_files = (
        grafana_render.render_grafana(cfg, prometheus_url=model.prometheus_url)
        if cfg.monitoring.grafana.enabled
        else {}
    )
    artifacts.record("monitoring/prometheus.yml", prom)
    artifacts.record(f"monitoring/{RULES_FILE}", rules)
    for rel, text in grafana_files.items():
        artifacts.record(f"monitoring/grafana/{rel}", text)
    return rules, grafana_files


def _alertmanager_config(cfg: StackConfig) -> tuple[str, pulumi.Input[str]]:
    """alertmanager.yml twice: rendered with placeholders (recorded; checksum), and from the
    receivers' Pulumi secrets (deployed). An unset secret keeps its `.invalid` placeholder, so
    delivery fails visibly in Alertmanager's log; the plan warns about it (needed_secrets)."""
    placeholders = am_render.placeholder_secrets(cfg, SECRET_PLACEHOLDER)
    recorded = am_render.render_alertmanager_yml(cfg, placeholders)
    artifacts.record(f"monitoring/{D.ALERTMANAGER_CONFIG_FILE}", recorded, D.SECRET_FILE_MODE, secret=True)
    c = pulumi.Config(D.PROJECT)
    values: dict[str, pulumi.Input[str]] = {}
    for key, placeholder in placeholders.items():
        if key in cfg.secrets:
            values[key] = c.require_secret(key)
        else:
            pulumi.log.warn(f"secret `{key}` is not set: its alert receiver gets a placeholder and delivers nothing")
            values[key] = placeholder
    if not values:
        return recorded, recorded
    deployed = pulumi.Output.all(**values).apply(lambda v: am_render.render_alertmanager_yml(cfg, dict(v)))
    return recorded, pulumi.Output.secret(deployed)


def _pool(m: ModelSpec, backends: list[Backend]) -> PoolArgs:
    return PoolArgs(
        model=m.name,
        on_demand=m.pool.on_demand,
        spot=m.pool.spot,
        spot_max=m.pool.spot_ceiling,
        gpus=m.gpus,
        backends=[_backend(b) for b in backends],
    )


# --- SSH hosts ----------------------------------------------------------------------------------


def _ssh(h: HostSpec, s: StackSecrets) -> SshArgs:
    ssh = SshArgs(host=h.address, user=h.user, port=h.port)
    if s.ssh_private_key is not None:
        ssh["private_key"] = s.ssh_private_key
    return ssh


def _host_platform(cfg: StackConfig, model: Deployment, s: StackSecrets) -> tuple[str, str | None]:
    specs = {m.name: m for m in cfg.models}
    nodes: dict[str, SshGpuNode] = {}
    for h, site in zip(cfg.hosts, model.hosts):
        script = host_scripts.render_bootstrap_script(cfg, h.name)
        artifacts.record(f"hosts/{h.name}/bootstrap.sh", script, D.ROOT_EXECUTABLE_MODE)
        artifacts.record(
            f"hosts/{h.name}/{D.SECRET_WRITER_NAME}", host_scripts.render_secret_writer_script(), D.EXECUTABLE_MODE
        )
        on_host = [
            m.name for m in cfg.models if any(x.replica and x.replica.host == h.name for x in model.servers_of(m.name))
        ]
        for name in on_host:
            artifacts.record(
                f"hosts/{h.name}/etc/vllm/{name}.env",
                render_secret_env_file(
                    {ENV_API_KEY: SECRET_PLACEHOLDER, ENV_HF_TOKEN: SECRET_PLACEHOLDER if s.hf_token else ""}
                ),
                D.SECRET_FILE_MODE,
                secret=True,
            )
        node_args = SshGpuNodeArgs(
            ssh=_ssh(h, s),
            bootstrap=script,
            models=on_host,
            api_key=s.api_key,
            docker_host=site.ssh_url,
            gpu=h.gpu,
            gpu_count=h.gpu_count,
        )
        if s.hf_token is not None:
            node_args["hf_token"] = s.hf_token
        fetches = [_host_weights(cfg, model, specs[name], h) for name in on_host]
        node_args["weights"] = [f for f in fetches if f is not None]
        nodes[h.name] = SshGpuNode(h.name, node_args)
    assert model.front_host is not None and model.monitoring_host is not None  # SSH hosts: always placed
    front_host, mon_host = cfg.host(model.front_host), cfg.host(model.monitoring_host)
    workloads: list[pulumi.Resource] = []
    for m in cfg.models:
        servers = model.servers_of(m.name)
        pool = HostSpotOnDemandPool(m.name, HostSpotOnDemandPoolArgs(**_pool(m, [x.backend for x in servers])))
        for x in servers:
            workloads.append(_host_server(cfg, model, specs[x.model], x, nodes, front_host, pool, s).workload)
    routers = _host_routers(cfg, model, s, front_host, nodes[front_host.name], workloads)
    front = _host_front(cfg, model, s, front_host, workloads + routers)
    _host_front_exporter(model, s, front_host, nodes[front_host.name], front)
    return _host_monitoring(cfg, model, s, mon_host, nodes[mon_host.name], workloads)


def _host_weights(cfg: StackConfig, model: Deployment, m: ModelSpec, h: HostSpec) -> WeightsFetchArgs | None:
    """The model's pre-fetch on one host: the script (+ its oneshot unit on the systemd runtime)
    and the command that runs it before the model's replicas start."""
    w = model.weights_of(m.name)
    if w is None:
        return None
    systemd = cfg.host_runtime == "systemd"
    script = weights_render.render_fetch_script(w, hf_bin=D.HF_BIN if systemd else D.HF_BIN_IMAGE)
    files = [
        _record_file(
            f"hosts/{h.name}/bin/{w.script.rsplit('/', 1)[-1]}",
            FileArgs(id="script", path=w.script, content=script, mode=0o755),
        )
    ]
    if systemd:
        files.append(
            _record_file(
                f"hosts/{h.name}/systemd/{w.unit}",
                FileArgs(id="unit", path=w.unit_path, content=systemd_render.render_weights_unit(m)),
            )
        )
        command = host_commands.fetch_weights_unit(w.unit)
    else:
        command = host_commands.fetch_weights_container(
            name=w.name,
            image=m.image,
            script=w.script,
            weights_dir=D.VLLM_WEIGHTS_DIR,
            env_file=systemd_render.secret_env_path(m.name),
            env=public_env(weights_dir=D.VLLM_WEIGHTS_DIR, gated=m.model_info().gated),
        )
    artifacts.record(f"hosts/{h.name}/weights/{m.name}.command", command + "\n")
    return WeightsFetchArgs(model=m.name, files=files, command=command, timeout=startup_budget(m).fetch_timeout)


def _host_server(
    cfg: StackConfig,
    model: Deployment,
    m: ModelSpec,
    x: Server,
    nodes: dict[str, SshGpuNode],
    front_host: HostSpec,
    pool: HostSpotOnDemandPool,
    s: StackSecrets,
) -> DockerVllmServer | SystemdVllmServer:
    r = x.replica
    assert r is not None and r.host is not None  # SSH hosts: every replica is placed
    node = nodes[r.host]
    router = model.router_of(x.model)
    hook = (
        host_commands.drain_hook(x.model, x.backend.hostport, m.pool.drain_seconds)
        if router is None
        else host_commands.router_drain_hook(
            router.admin_url, router.worker_url(x.backend.hostport), m.pool.drain_seconds
        )
    )
    drain = (
        DrainArgs(ssh=_ssh(front_host, s), command=hook, seconds=m.pool.drain_seconds) if x.capacity == "spot" else None
    )
    opts = pulumi.ResourceOptions(parent=pool, depends_on=[node])
    if x.unit is not None and x.wrapper is not None:
        unit = _record_file(
            f"hosts/{r.host}/systemd/{x.unit}",
            FileArgs(
                id="unit", path=systemd_render.unit_path(m, r), content=systemd_render.render_systemd_unit(cfg, m, r)
            ),
        )
        wrapper = _record_file(
            f"hosts/{r.host}/bin/{x.wrapper.rsplit('/', 1)[-1]}",
            FileArgs(id="wrapper", path=x.wrapper, content=systemd_render.render_start_wrapper(cfg, m, r), mode=0o755),
        )
        unit_args = SystemdVllmServerArgs(
            model=x.model,
            capacity=x.capacity,
            argv=systemd_render.wrapper_argv(cfg, m, r),
            gpu=m.gpu,
            address=x.bind,
            port=r.port,
            ssh=_ssh(cfg.host(r.host), s),
            unit_name=x.unit,
            unit=unit,
            wrapper=wrapper,
        )
        if drain is not None:
            unit_args["drain"] = drain
        return SystemdVllmServer(x.name, unit_args, opts)
    argv = serve_argv(m, host="0.0.0.0", port=D.VLLM_PORT, model_path=weights_render.model_path(m))
    artifacts.record(f"hosts/{r.host}/containers/{x.name}.argv", shell_join(argv) + "\n")
    assert x.container is not None and x.secret_env is not None
    container_args = DockerVllmServerArgs(
        model=x.model,
        capacity=x.capacity,
        address=x.bind,
        port=r.port,
        container_name=x.container,
        image=m.image,
        argv=argv,
        gpu=m.gpu,
        env=public_env(weights_dir=D.VLLM_WEIGHTS_DIR, gated=m.model_info().gated),
        gpus=f"device={','.join(map(str, r.gpu_indices))}",
        secret_env_file=x.secret_env,
        weights_dir=D.VLLM_WEIGHTS_DIR,
        labels=dict(x.labels),
        stop_timeout=m.pool.drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC,
        startup_budget_seconds=startup_budget(m).startup_seconds,
        health_wait_seconds=startup_budget(m).rollout_seconds,
    )
    if drain is not None:
        container_args["drain"] = drain
    return DockerVllmServer(
        x.name,
        container_args,
        pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[node.docker_provider])),
    )


def _host_routers(
    cfg: StackConfig,
    model: Deployment,
    s: StackSecrets,
    host: HostSpec,
    node: SshGpuNode,
    workloads: list[pulumi.Resource],
) -> list[pulumi.Resource]:
    """One router per routed model on the front host (after the replicas, before nginx)."""
    out: list[pulumi.Resource] = []
    for r in model.routers:
        opts = pulumi.ResourceOptions(depends_on=workloads)
        if r.unit is not None:
            unit = _record_file(
                f"hosts/{host.name}/systemd/{r.unit}",
                FileArgs(
                    id="unit", path=f"{D.SYSTEMD_UNIT_DIR}/{r.unit}", content=router_render.render_router_unit(cfg, r)
                ),
            )
            install = host_commands.install_router(D.ROUTER_INSTALL_DIR, cfg.router.version)
            out.append(
                SystemdVllmRouter(
                    r.name,
                    SystemdVllmRouterArgs(
                        model=r.model, ssh=_ssh(host, s), url=r.url, install=install, unit_name=r.unit, unit=unit
                    ),
                    opts,
                )
            )
            continue
        assert r.container is not None and cfg.router.image is not None  # the config requires an image here
        argv = router_render.router_argv(cfg, r)
        artifacts.record(f"hosts/{host.name}/containers/{r.name}.argv", shell_join(argv) + "\n")
        out.append(
            DockerVllmRouter(
                r.name,
                DockerVllmRouterArgs(
                    model=r.model,
                    ssh=_ssh(host, s),
                    url=r.url,
                    container=HostContainerArgs(name=r.container, image=cfg.router.image, command=argv),
                ),
                pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[node.docker_provider])),
            )
        )
    return out


def _host_front(
    cfg: StackConfig, model: Deployment, s: StackSecrets, host: HostSpec, workloads: list[pulumi.Resource]
) -> HostNginxFront:
    paths = nginx_render.NginxPaths(upstream_auth=UPSTREAM_AUTH_PATH)
    rendered = nginx_render.render_front(cfg, list(model.front_backends()), paths=paths)
    files = [
        _record_file(
            f"front/{rel}",
            FileArgs(id=rel.replace("/", "-").replace(".", "-"), path=_front_path(paths, rel), content=text),
        )
        for rel, text in rendered.items()
    ]
    files.append(
        _record_file(
            "front/vllm-drain",
            FileArgs(
                id="drain-script",
                path=host_commands.DRAIN_SCRIPT_PATH,
                content=drain_render.render_drain_script(paths),
                mode=0o755,
            ),
        )
    )
    _record_front_secrets()
    assert paths.upstream_auth is not None
    front = HostNginxFrontArgs(
        ssh=_ssh(host, s),
        url=model.front_url,
        routes=dict(model.routes),
        files=files,
        api_keys_path=paths.api_keys,
        upstream_auth_path=paths.upstream_auth,
        cert_path=paths.cert,
        key_path=paths.key,
        api_key=s.api_key,
        domain=cfg.front.domain,
        tls=cfg.front.tls,
    )
    _set_tls(front, s)
    return HostNginxFront("front", front, pulumi.ResourceOptions(depends_on=workloads))


def _host_front_exporter(
    model: Deployment, s: StackSecrets, host: HostSpec, node: SshGpuNode, front: HostNginxFront
) -> None:
    """The nginx exporter beside the front (after nginx, which serves its stub_status)."""
    ex = model.front_exporter
    assert ex is not None
    metrics_url = http_url(ex.scrape_target.address, ex.scrape_target.port, D.METRICS_PATH)
    opts = pulumi.ResourceOptions(depends_on=[front])
    if ex.unit is not None:
        unit = _record_file(
            f"hosts/{host.name}/systemd/{ex.unit}",
            FileArgs(
                id="unit",
                path=f"{D.SYSTEMD_UNIT_DIR}/{ex.unit}",
                content=front_mon.render_exporter_unit(ex.unit, ex.listen),
            ),
        )
        SystemdNginxExporter(
            NGINX_EXPORTER_NAME,
            SystemdNginxExporterArgs(
                ssh=_ssh(host, s),
                metrics_url=metrics_url,
                install=host_commands.install_nginx_exporter(),
                unit_name=ex.unit,
                unit=unit,
            ),
            opts,
        )
        return
    assert ex.container is not None
    argv = front_mon.exporter_argv(ex.listen)
    artifacts.record(f"hosts/{host.name}/containers/{ex.container}.argv", shell_join(argv) + "\n")
    DockerNginxExporter(
        NGINX_EXPORTER_NAME,
        DockerNginxExporterArgs(
            ssh=_ssh(host, s),
            metrics_url=metrics_url,
            container=HostContainerArgs(name=ex.container, image=D.NGINX_EXPORTER_IMAGE, command=argv),
        ),
        pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[node.docker_provider])),
    )


def _front_path(paths: nginx_render.NginxPaths, rel: str) -> str:
    """Where a file `render_front` returned lives on the front host (`nginx.conf`, `upstreams/<model>.conf`)."""
    if rel == "nginx.conf":
        return paths.conf
    if rel.startswith("upstreams/") and rel.endswith(".conf"):
        return paths.upstream_file(rel.removeprefix("upstreams/").removesuffix(".conf"))
    raise ValueError(f"render_front returned {rel!r}, which has no place on the front host")


def _host_monitoring(
    cfg: StackConfig,
    model: Deployment,
    s: StackSecrets,
    host: HostSpec,
    node: SshGpuNode,
    workloads: list[pulumi.Resource],
) -> tuple[str, str | None]:
    prom = prom_render.render_prometheus_yml(
        cfg, list(model.scrape_targets()), rule_files=[f"{MONITORING_DIR}/{RULES_FILE}"], probes=model.probe_targets()
    )
    rules, grafana_files = _monitoring_files(cfg, model, prom)
    args = HostMonitoringStackArgs(
        ssh=_ssh(host, s),
        prometheus_url=model.prometheus_url,
        files=[
            FileArgs(id="prometheus-yml", path=f"{MONITORING_DIR}/prometheus.yml", content=prom),
            FileArgs(id="rules", path=f"{MONITORING_DIR}/{RULES_FILE}", content=rules),
        ],
        prometheus=HostContainerArgs(
            name=PROMETHEUS_CONTAINER,
            image=D.PROMETHEUS_IMAGE,
            command=[
                f"--config.file={MONITORING_DIR}/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--web.listen-address={LOCAL_LISTEN}",
            ],
            volumes=[VolumeArgs(host_path=MONITORING_DIR, container_path=MONITORING_DIR, read_only=True)],
        ),
    )
    if model.tls_probe is not None and model.tls_probe.container is not None:
        blackbox_yml = front_mon.render_blackbox_yml(cfg)
        artifacts.record(f"monitoring/{D.BLACKBOX_CONFIG_FILE}", blackbox_yml)
        blackbox_path = f"{MONITORING_DIR}/{D.BLACKBOX_CONFIG_FILE}"
        args["files"].append(FileArgs(id="blackbox-yml", path=blackbox_path, content=blackbox_yml))
        args["blackbox"] = HostContainerArgs(
            name=model.tls_probe.container,
            image=D.BLACKBOX_IMAGE,
            command=front_mon.blackbox_argv(blackbox_path),
            volumes=[VolumeArgs(host_path=blackbox_path, container_path=blackbox_path, read_only=True)],
        )
    if grafana_files:
        artifacts.record(
            f"monitoring/grafana/{GRAFANA_PASSWORD_NAME}", SECRET_PLACEHOLDER, D.SECRET_FILE_MODE, secret=True
        )
        args["grafana_files"] = [
            FileArgs(
                id=f"grafana-{rel.replace('/', '-').replace('.', '-')}",
                path=f"{MONITORING_DIR}/grafana/{rel}",
                content=text,
            )
            for rel, text in grafana_files.items()
        ]
        args["grafana"] = HostContainerArgs(
            name=GRAFANA_CONTAINER,
            image=D.GRAFANA_IMAGE,
            env=grafana_render.grafana_ini_overrides(cfg),
            volumes=[
                VolumeArgs(
                    host_path=f"{MONITORING_DIR}/grafana", container_path=D.GRAFANA_PROVISIONING_DIR, read_only=True
                ),
                VolumeArgs(host_path=f"{MONITORING_DIR}/secrets", container_path=GRAFANA_SECRETS_DIR, read_only=True),
            ],
        )
        args["grafana_password_path"] = f"{MONITORING_DIR}/secrets/{GRAFANA_PASSWORD_NAME}"
        args["grafana_admin_password"] = s.grafana_admin_password
        if model.grafana_url is not None:
            args["grafana_url"] = model.grafana_url
    if am_render.deployed(cfg):
        _, am_config = _alertmanager_config(cfg)
        am_path = f"{ALERTMANAGER_DIR}/{D.ALERTMANAGER_CONFIG_FILE}"
        args["alertmanager"] = HostContainerArgs(
            name=ALERTMANAGER_CONTAINER,
            image=D.ALERTMANAGER_IMAGE,
            command=am_render.command(am_path, D.ALERTMANAGER_DATA_DIR, am_render.LOCAL_LISTEN),
            # the file, not its directory: `install -D` under umask 077 leaves the directory 0700 root,
            # which the image's user could not traverse
            volumes=[VolumeArgs(host_path=am_path, container_path=am_path, read_only=True)],
        )
        args["alertmanager_config_path"] = am_path
        args["alertmanager_config"] = am_config
    HostMonitoringStack(
        "monitoring", args, pulumi.ResourceOptions(depends_on=[node, *workloads], providers=[node.docker_provider])
    )
    return model.prometheus_url, model.grafana_url


# --- Kubernetes ----------------------------------------------------------------------------------


def _record_k8s(obj: dict[str, Any]) -> dict[str, Any]:
    artifacts.record_k8s(obj)
    return obj


def _kubernetes_platform(cfg: StackConfig, model: Deployment, s: StackSecrets) -> tuple[str, str | None]:
    # The model Secret holds exactly the secret references the model assigns to it.
    placeholders = {r.env: SECRET_PLACEHOLDER for r in model.secrets if r.k8s_secret == MODEL_SECRET and r.env}
    node_args = KubernetesGpuNodeArgs(
        namespace=cfg.kubernetes.namespace,
        objects=[_record_k8s(o) for o in k8s_render.gpu_node_objects(cfg)],
        model_secret=_record_k8s(k8s_render.secret_object(cfg, MODEL_SECRET, placeholders)),
        api_key=s.api_key,
        weights_claim=WEIGHTS_PVC,
    )
    if s.hf_token is not None:
        node_args["hf_token"] = s.hf_token
    cluster = KubernetesGpuNode("gpu-nodes", node_args)
    pools = []
    backends = k8s_render.front_backends(cfg)
    for m in cfg.models:
        objs = k8s_render.model_objects(cfg, m, secret_name=MODEL_SECRET, prometheus_url=model.prometheus_url)
        servers = []
        for x in model.servers_of(m.name):
            dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == x.deployment)
            # A spot Deployment exists only when KEDA may scale it (capacity_classes).
            servers.append(
                KubernetesVllmServerArgs(
                    model=m.name,
                    capacity=x.capacity,
                    argv=k8s_render.vllm_container(dep)["args"],
                    gpu=m.gpu,
                    deployment=_record_k8s(dep),
                    autoscaled=x.capacity == "spot",
                    rollout_timeout=startup_budget(m).rollout_timeout,
                    startup_budget_seconds=startup_budget(m).startup_seconds,
                )
            )
        # mypy cannot tell that a ** of PoolArgs leaves the pool's optional weights keys unset
        pool_args = KubernetesSpotOnDemandPoolArgs(
            **_pool(m, [b for b in backends if b.model == m.name]),  # type: ignore[typeddict-item]
            servers=servers,
            objects=[_record_k8s(o) for o in objs if o["kind"] not in ("Deployment", "Job")],
        )
        job = next((o for o in objs if o["kind"] == "Job"), None)
        if job is not None:
            pool_args["weights_job"] = _record_k8s(job)
            pool_args["weights_timeout"] = startup_budget(m).fetch_timeout
        pools.append(KubernetesSpotOnDemandPool(m.name, pool_args, pulumi.ResourceOptions(depends_on=[cluster])))
    workloads: list[pulumi.Resource] = [w.workload for p in pools for w in p.servers]
    for r in model.routers:
        assert cfg.router.image is not None  # the config requires an image on kubernetes
        workloads.append(
            KubernetesVllmRouter(
                r.name,
                KubernetesVllmRouterArgs(
                    model=r.model,
                    objects=[_record_k8s(o) for o in router_render.router_objects(cfg, r, cfg.router.image)],
                    url=r.url,
                ),
                pulumi.ResourceOptions(depends_on=[cluster]),
            )
        )
    files = k8s_render.render_front_files(cfg, upstream_auth=True)
    for rel, text in files.items():
        artifacts.record(f"front/{rel}", text)
    _record_front_secrets()
    tls = cfg.front.tls != "none"
    front = KubernetesNginxFrontArgs(
        url=model.front_url,
        routes=dict(model.routes),
        domain=cfg.front.domain,
        tls=cfg.front.tls,
        objects=[
            _record_k8s(o)
            for o in k8s_render.front_objects(
                cfg, files, keys_secret=FRONT_KEYS_SECRET, tls_secret=FRONT_TLS_SECRET if tls else None
            )
        ],
        keys_secret=_record_k8s(
            k8s_render.secret_object(
                cfg,
                FRONT_KEYS_SECRET,
                {k8s_render.API_KEYS_FILE: SECRET_PLACEHOLDER, k8s_render.UPSTREAM_AUTH_FILE: SECRET_PLACEHOLDER},
            )
        ),
        api_key=s.api_key,
    )
    if tls:
        front["tls_secret"] = _record_k8s(
            k8s_render.tls_secret_object(cfg, FRONT_TLS_SECRET, SECRET_PLACEHOLDER, SECRET_PLACEHOLDER)
        )
    _set_tls(front, s)
    KubernetesNginxFront("front", front, pulumi.ResourceOptions(depends_on=workloads))
    prom = k8s_render.render_prometheus_yml_k8s(cfg)
    rules, grafana_files = _monitoring_files(cfg, model, prom)
    if model.tls_probe is not None:  # the same text k8s_monitoring puts in the Prometheus ConfigMap
        artifacts.record(f"monitoring/{D.BLACKBOX_CONFIG_FILE}", front_mon.render_blackbox_yml(cfg))
    mon = KubernetesMonitoringStackArgs(objects=[], prometheus_url=model.prometheus_url)
    if grafana_files:
        mon["grafana_secret"] = _record_k8s(
            k8s_render.secret_object(cfg, GRAFANA_SECRET, {k8s_render.GRAFANA_PASSWORD_KEY: SECRET_PLACEHOLDER})
        )
        mon["grafana_admin_password"] = s.grafana_admin_password
    if model.grafana_url is not None:
        mon["grafana_url"] = model.grafana_url
    am_recorded: str | None = None
    if am_render.deployed(cfg):
        am_recorded, am_config = _alertmanager_config(cfg)
        mon["alertmanager_secret"] = _record_k8s(k8s_render.alertmanager_secret(cfg, am_recorded))
        mon["alertmanager_config"] = am_config
    mon["objects"] = [
        _record_k8s(o)
        for o in k8s_render.monitoring_objects(
            cfg, prom, rules, grafana_files, grafana_secret=GRAFANA_SECRET, alertmanager_yml=am_recorded
        )
    ]
    KubernetesMonitoringStack("monitoring", mon, pulumi.ResourceOptions(depends_on=workloads))
    return model.prometheus_url, model.grafana_url


def main() -> None:
    cfg = load_config()
    secrets = load_secrets(cfg)
    model = build(cfg)
    # the runbooks' commands with this stack's unit, container and Deployment names
    artifacts.record(
        "monitoring/runbook-commands.md",
        runbooks_render.render_runbook_commands(model, cfg.monitoring.runbook_base_url),
    )
    if cfg.platform == "kubernetes":
        prometheus_url, grafana_url = _kubernetes_platform(cfg, model, secrets)
    else:
        prometheus_url, grafana_url = _host_platform(cfg, model, secrets)
    projection = stack_projection(cfg)
    pulumi.export("endpoint", model.front_url)
    pulumi.export("routes", dict(model.routes))
    pulumi.export("grafanaUrl", grafana_url)
    pulumi.export("prometheusUrl", prometheus_url)
    pulumi.export("apiKey", secrets.api_key)
    pulumi.export("monthlyCostUsd", projection["total"]["blendMonthly"])
