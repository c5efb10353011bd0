"""The one typed model of a deployment: every name, path, port, URL, label and secret reference
the stack creates, computed once from the config.

Components, renderers, the runbook commands, the policies and the docs read these values;
nobody spells a container, unit, Deployment, Service or Secret name a second time
(`tests/unit/test_deployment_model.py` forbids the literals elsewhere). Pure: no Pulumi, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import defaults as D
from .config import StackConfig
from .endpoints import Backend, ScrapeTarget
from .placement import K8S_CAPACITY, Replica, place
from .config import HostSpec
from .quoting import host_port, http_url, ssh_url
from .render import front_monitoring as FM
from .render import alertmanager as AM
from .render import k8s_common as KC
from .render import k8s_model
from .render.prometheus import LOCAL_URL as PROMETHEUS_LOCAL_URL
from .render.host_scripts import dcgm_bind
from .render.systemd import secret_env_path, unit_name, vllm_bind_host, wrapper_path
from .render.vllm_args import ENV_API_KEY, ENV_HF_TOKEN
from .render.weights import WeightsFetch, fetch_of

# --- fixed names (one definition each) -------------------------------------------------
#: Stand-in for a secret value in recorded artifacts: token-safe, so validating renderers accept it.
SECRET_PLACEHOLDER = "secret-placeholder"
#: Kubernetes Secrets the stack creates (values only ever from Pulumi secrets).
MODEL_SECRET = "vllm-model-secrets"  # VLLM_API_KEY / HF_TOKEN for every model pod (envFrom)
FRONT_KEYS_SECRET = "vllm-front-api-keys"  # the front's key map and upstream key include
FRONT_TLS_SECRET = "vllm-front-tls"
GRAFANA_SECRET = "vllm-grafana-admin"
#: Containers on SSH hosts (docker runtime of the monitoring host, and vLLM replicas).
PROMETHEUS_CONTAINER = "vllm-prometheus"
GRAFANA_CONTAINER = "vllm-grafana"
ALERTMANAGER_CONTAINER = "vllm-alertmanager"
NGINX_EXPORTER_NAME = "vllm-nginx-exporter"  # container (docker runtime) / unit `<name>.service` (systemd)
BLACKBOX_CONTAINER = "vllm-blackbox-exporter"  # beside Prometheus on the monitoring host
#: Sidecar containers on Kubernetes (the front pods / the Prometheus pod).
NGINX_EXPORTER_SIDECAR = "nginx-exporter"
BLACKBOX_SIDECAR = "blackbox-exporter"
VLLM_CONTAINER_PREFIX = "vllm-"
#: Files on SSH hosts.
MONITORING_DIR = "/etc/vllm-monitoring"
RULES_FILE = D.RULES_FILE
ALERTMANAGER_DIR = f"{MONITORING_DIR}/alertmanager"  # 0600 alertmanager.yml, owned by the image's user
UPSTREAM_AUTH_PATH = "/etc/nginx/vllm/upstream-auth.conf"
CONTAINER_SECRET_ENV = "/run/secrets/vllm.env"  # the model's 0600 env file inside its container
CERT_VALIDITY_HOURS = 24 * 90


@dataclass(frozen=True)
class SecretRef:
    """Where one secret config key ends up (never its value)."""

    key: str  # stack config key, e.g. apiKey
    env: str | None = None  # process environment variable it becomes
    k8s_secret: str | None = None  # Kubernetes Secret holding it


@dataclass(frozen=True)
class Server:
    """One vLLM replica (SSH hosts) or one capacity class's Deployment (Kubernetes)."""

    name: str  # Pulumi resource name: replica name / <model>-<capacity>
    model: str
    capacity: str  # onDemand | spot
    labels: tuple[tuple[str, str], ...]
    replica: Replica | None = None  # SSH hosts
    bind: str = D.LOOPBACK
    container: str | None = None  # docker runtime
    unit: str | None = None  # systemd runtime
    wrapper: str | None = None
    secret_env: str | None = None
    deployment: str | None = None  # kubernetes

    @property
    def backend(self) -> Backend:
        assert self.replica is not None, "Kubernetes servers are reached through their model's Service"
        return Backend(self.model, self.bind, self.replica.port, self.capacity)

    @property
    def scrape_target(self) -> ScrapeTarget:
        assert self.replica is not None
        return ScrapeTarget(
            D.JOB_VLLM,
            self.bind,
            self.replica.port,
            (
                (D.SCRAPE_LABEL_MODEL, self.model),
                (D.SCRAPE_LABEL_CAPACITY, self.capacity),
                (D.SCRAPE_LABEL_HOST, self.replica.host or ""),
            ),
        )


#: Routing tier names (one definition each).
ROUTER_PREFIX = "vllm-router-"  # unit / container / Kubernetes object name: vllm-router-<model>
ROUTER_COMPONENT = "router"  # app.kubernetes.io/component of the router's objects
ROUTER_PORT_NAME = "http"
ROUTER_METRICS_PORT_NAME = "metrics"


@dataclass(frozen=True)
class Router:
    """The routing tier of one model (`models[].routing.enabled`)."""

    name: str  # unit (`<name>.service`), container, Kubernetes Deployment/Service/ServiceAccount/Role
    model: str
    policy: str  # vllm-router --policy
    bind: str  # where it listens (front host loopback; 0.0.0.0 in its pod)
    address: str  # where nginx reaches it (front host loopback; its Service's DNS name)
    port: int
    metrics_port: int
    url: str  # what nginx's upstream for the model points at (host:port in `backend`)
    admin_url: str  # worker set: POST /remove_worker?url=..., GET /list_workers (front host / in cluster)
    workers: tuple[str, ...]  # static worker URLs (SSH hosts); () on Kubernetes (pod discovery)
    selector: tuple[tuple[str, str], ...]  # Kubernetes: pod labels discovered (model's vLLM pods)
    unit: str | None = None  # systemd runtime
    container: str | None = None  # docker runtime
    host: str | None = None  # SSH hosts: the front host's name

    @property
    def backend(self) -> Backend:
        """The nginx upstream server of a routed model: the router, never the replicas."""
        return Backend(self.model, self.address, self.port)

    def worker_url(self, hostport: str) -> str:
        return f"http://{hostport}"

    @property
    def scrape_target(self) -> ScrapeTarget:
        return ScrapeTarget(
            D.JOB_ROUTER,
            self.address,
            self.metrics_port,
            ((D.SCRAPE_LABEL_MODEL, self.model),),
        )


@dataclass(frozen=True)
class FrontExporter:
    """The nginx exporter beside the front (reads stub_status on loopback)."""

    listen: str  # --web.listen-address
    scrape_target: ScrapeTarget
    host: str | None = None  # SSH hosts: the front host
    container: str | None = None  # docker runtime
    unit: str | None = None  # systemd runtime
    sidecar: str | None = None  # kubernetes: container name in each front pod


@dataclass(frozen=True)
class TlsProbe:
    """The blackbox exporter's probe of the front's certificate (front.tls is not `none`)."""

    target: str  # the HTTPS URL probed
    blackbox: str  # host:port where Prometheus reaches the blackbox exporter
    container: str | None = None  # SSH hosts: on the monitoring host
    sidecar: str | None = None  # kubernetes: in the Prometheus pod


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    ssh_url: str  # the docker provider's host
    dcgm_target: ScrapeTarget


@dataclass(frozen=True)
class Deployment:
    platform: str
    environment: str
    runtime: str  # docker | systemd (SSH hosts); kubernetes
    namespace: str | None
    hosts: tuple[Host, ...]
    servers: tuple[Server, ...]
    front_url: str
    routes: tuple[tuple[str, str], ...]  # route name -> URL ("default" last)
    front_host: str | None
    monitoring_host: str | None
    prometheus_url: str  # where Grafana (and KEDA) query Prometheus
    grafana_url: str | None
    secrets: tuple[SecretRef, ...]
    routers: tuple[Router, ...] = ()
    alertmanager_target: str | None = None  # host:port Prometheus notifies (None: alerting off)
    own_prometheus: bool = True  # False: the prometheus-operator's Prometheus (kubernetes)
    alertmanager_url: str | None = None  # the stack's own Alertmanager (UI, API), where Prometheus reaches it
    front_exporter: FrontExporter | None = None
    tls_probe: TlsProbe | None = None  # None: plain-HTTP front, or nobody to run the probe (prometheus-operator)
    #: One pre-fetch per Hub model (a model given as a local path has none): its local directory,
    #: marker, unit / container / Job name and script path (render/weights.py).
    weights: tuple[WeightsFetch, ...] = ()

    def weights_of(self, model: str) -> WeightsFetch | None:
        return next((w for w in self.weights if w.model == model), None)

    def router_of(self, model: str) -> Router | None:
        return next((r for r in self.routers if r.model == model), None)

    def front_backends(self) -> tuple[Backend, ...]:
        """What nginx's upstreams hold on SSH hosts: the replicas, or the router of a routed model."""
        out: list[Backend] = []
        for s in self.servers:
            if s.replica is None:
                continue
            r = self.router_of(s.model)
            if r is None:
                out.append(s.backend)
            elif r.backend not in out:
                out.append(r.backend)
        return tuple(out)

    def servers_of(self, model: str) -> tuple[Server, ...]:
        return tuple(s for s in self.servers if s.model == model)

    def backends(self) -> tuple[Backend, ...]:
        return tuple(s.backend for s in self.servers if s.replica is not None)

    def scrape_targets(self) -> tuple[ScrapeTarget, ...]:
        """SSH hosts: every replica, every host's DCGM exporter, and every router (on the front host's
        loopback: reachable when Prometheus runs on the front host, the default `monitoring.host`)."""
        return (
            tuple(s.scrape_target for s in self.servers if s.replica is not None)
            + tuple(h.dcgm_target for h in self.hosts)
            + tuple(r.scrape_target for r in self.routers if r.workers)
            + ((self.front_exporter.scrape_target,) if self.front_exporter and self.front_exporter.host else ())
        )

    def probe_targets(self) -> tuple[str, ...]:
        """The URLs the blackbox exporter probes (the front's certificate)."""
        return (self.tls_probe.target,) if self.tls_probe else ()


def reach_address(cfg: StackConfig, h: HostSpec) -> str:
    """Where the monitoring host reaches an exporter on host `h` (`dcgm_bind`: loopback on the
    monitoring host itself, else the host's IP, or its DNS name when it has no literal IP)."""
    bind = dcgm_bind(cfg, h)
    return h.address if bind == "0.0.0.0" else bind


def _host_front_observers(cfg: StackConfig, front: HostSpec) -> tuple[FrontExporter, TlsProbe | None]:
    bind = dcgm_bind(cfg, front)
    listen = host_port(bind, D.NGINX_EXPORTER_PORT)
    systemd = cfg.host_runtime == "systemd"
    exporter = FrontExporter(
        listen=listen,
        scrape_target=ScrapeTarget(
            D.JOB_NGINX, reach_address(cfg, front), D.NGINX_EXPORTER_PORT, ((D.SCRAPE_LABEL_HOST, front.name),)
        ),
        host=front.name,
        container=None if systemd else NGINX_EXPORTER_NAME,
        unit=f"{NGINX_EXPORTER_NAME}.service" if systemd else None,
    )
    probe = None
    if FM.probes_front(cfg):
        probe = TlsProbe(
            target=FM.probe_target(reach_address(cfg, front)), blackbox=FM.BLACKBOX_LISTEN, container=BLACKBOX_CONTAINER
        )
    return exporter, probe


def _k8s_front_observers(cfg: StackConfig) -> tuple[FrontExporter, TlsProbe | None]:
    ns = cfg.kubernetes.namespace
    exporter = FrontExporter(
        listen=f":{D.NGINX_EXPORTER_PORT}",  # the pod's address: Prometheus scrapes the front-metrics Service
        scrape_target=ScrapeTarget(D.JOB_NGINX, f"{KC.FRONT_METRICS}.{ns}.svc", D.NGINX_EXPORTER_PORT),
        sidecar=NGINX_EXPORTER_SIDECAR,
    )
    probe = None
    if FM.probes_front(cfg) and not cfg.monitoring.prometheus_operator:
        probe = TlsProbe(
            target=FM.probe_target(f"{KC.FRONT}.{ns}.svc"), blackbox=FM.BLACKBOX_LISTEN, sidecar=BLACKBOX_SIDECAR
        )
    return exporter, probe


def container_name(replica: Replica) -> str:
    return f"{VLLM_CONTAINER_PREFIX}{replica.name}"


def server_labels(cfg: StackConfig, model: str, gpu: str, capacity: str) -> tuple[tuple[str, str], ...]:
    """The labels every vLLM workload carries (container labels, pod labels; read by the policies)."""
    return tuple(
        sorted(
            {
                D.LABEL_MODEL: model,
                D.LABEL_CAPACITY: K8S_CAPACITY[capacity],
                D.LABEL_ENVIRONMENT: cfg.environment,
                D.LABEL_PART_OF: D.PROJECT,
                D.LABEL_GPU: gpu,
            }.items()
        )
    )


def _host_servers(cfg: StackConfig) -> list[Server]:
    placement = place(cfg)
    out: list[Server] = []
    for m in cfg.models:
        for r in placement[m.name]:
            systemd = cfg.host_runtime == "systemd"
            out.append(
                Server(
                    name=r.name,
                    model=m.name,
                    capacity=r.capacity,
                    replica=r,
                    bind=vllm_bind_host(cfg, r),
                    labels=server_labels(cfg, m.name, m.gpu, r.capacity),
                    secret_env=secret_env_path(m.name),
                    container=None if systemd else container_name(r),
                    unit=unit_name(m, r) if systemd else None,
                    wrapper=wrapper_path(m, r) if systemd else None,
                )
            )
    return out


def _k8s_servers(cfg: StackConfig) -> list[Server]:
    out: list[Server] = []
    for m in cfg.models:
        for capacity, _ in k8s_model.capacity_classes(m):
            out.append(
                Server(
                    name=f"{m.name}-{K8S_CAPACITY[capacity]}",
                    model=m.name,
                    capacity=capacity,
                    labels=server_labels(cfg, m.name, m.gpu, capacity),
                    deployment=k8s_model.deployment_name(m, K8S_CAPACITY[capacity]),
                )
            )
    return out


def _routers(cfg: StackConfig, servers: list[Server]) -> tuple[Router, ...]:
    k8s = cfg.platform == "kubernetes"
    out = []
    for i, m in enumerate(cfg.models):
        if not m.routing.enabled:
            continue
        name = f"{ROUTER_PREFIX}{m.name}"
        port, metrics = D.ROUTER_PORT_BASE + i, D.ROUTER_METRICS_PORT_BASE + i
        if k8s:
            host_dns = f"{name}.{cfg.kubernetes.namespace}.svc"
            out.append(
                Router(
                    name=name,
                    model=m.name,
                    policy=D.ROUTER_POLICIES[m.routing.policy],
                    bind="0.0.0.0",
                    address=host_dns,
                    port=port,
                    metrics_port=metrics,
                    url=http_url(host_dns, port),
                    admin_url=http_url(host_dns, port),
                    workers=(),
                    selector=((D.LABEL_MODEL, m.name), (KC.LABEL_COMPONENT, k8s_model.COMPONENT)),
                )
            )
            continue
        workers = tuple(f"http://{s.backend.hostport}" for s in servers if s.model == m.name and s.replica is not None)
        front = cfg.front_host
        out.append(
            Router(
                name=name,
                model=m.name,
                policy=D.ROUTER_POLICIES[m.routing.policy],
                bind=D.LOOPBACK,
                address=D.LOOPBACK,
                port=port,
                metrics_port=metrics,
                url=http_url(D.LOOPBACK, port),
                admin_url=http_url(D.LOOPBACK, port),
                workers=workers,
                selector=(),
                unit=f"{name}.service" if cfg.host_runtime == "systemd" else None,
                container=name if cfg.host_runtime == "docker" else None,
                host=front.name if front else None,
            )
        )
    return tuple(out)


def _secret_refs(cfg: StackConfig) -> tuple[SecretRef, ...]:
    k8s = cfg.platform == "kubernetes"
    refs = [
        SecretRef("apiKey", ENV_API_KEY, MODEL_SECRET if k8s else None),
        SecretRef("apiKeys", None, FRONT_KEYS_SECRET if k8s else None),
        SecretRef("grafanaAdminPassword", None, GRAFANA_SECRET if k8s else None),
    ]
    if "hfToken" in cfg.secrets:
        refs.append(SecretRef("hfToken", ENV_HF_TOKEN, MODEL_SECRET if k8s else None))
    for key in ("sshPrivateKey", "tlsCertificate", "tlsPrivateKey"):
        if key in cfg.secrets:
            refs.append(SecretRef(key, None, FRONT_TLS_SECRET if k8s and key.startswith("tls") else None))
    for key in AM.needed_secrets(cfg):  # rendered into alertmanager.yml, itself a secret
        refs.append(SecretRef(key, None, KC.ALERTMANAGER_CONFIG if k8s else None))
    return tuple(refs)


def _alertmanager_url(cfg: StackConfig) -> str | None:
    if not AM.deployed(cfg):
        return None
    if cfg.platform == "kubernetes":
        return http_url(AM.service_host(cfg), D.ALERTMANAGER_PORT)
    return http_url(D.LOOPBACK, D.ALERTMANAGER_PORT)


def _weights(cfg: StackConfig) -> tuple[WeightsFetch, ...]:
    return tuple(w for w in (fetch_of(m) for m in cfg.models) if w is not None)


def build(cfg: StackConfig) -> Deployment:
    """The deployment model of a validated config (placement errors raise PlacementError)."""
    scheme = "http" if cfg.front.tls == "none" else "https"
    front_url = f"{scheme}://{cfg.front.domain}"
    routes = tuple((m.name, f"{front_url}/{m.name}/v1") for m in cfg.models) + (("default", f"{front_url}/v1"),)
    grafana = cfg.monitoring.grafana.enabled
    if cfg.platform == "kubernetes":
        ns = cfg.kubernetes.namespace
        k8s_observers = _k8s_front_observers(cfg)
        return Deployment(
            platform=cfg.platform,
            environment=cfg.environment,
            runtime="kubernetes",
            namespace=ns,
            hosts=(),
            servers=tuple(_k8s_servers(cfg)),
            front_url=front_url,
            routes=routes,
            front_host=None,
            monitoring_host=None,
            prometheus_url=KC.prometheus_service_url(cfg),
            grafana_url=(
                http_url(f"{KC.GRAFANA}.{ns}.svc.cluster.local", D.GRAFANA_PORT)
                if grafana and not cfg.monitoring.prometheus_operator
                else None
            ),
            secrets=_secret_refs(cfg),
            routers=_routers(cfg, []),
            alertmanager_target=AM.target(cfg),
            alertmanager_url=_alertmanager_url(cfg),
            own_prometheus=not cfg.monitoring.prometheus_operator,
            front_exporter=k8s_observers[0],
            tls_probe=k8s_observers[1],
            weights=_weights(cfg),
        )
    hosts = []
    for h in cfg.hosts:
        hosts.append(
            Host(
                h.name,
                h.address,
                ssh_url(h.user, h.address, h.port),
                ScrapeTarget(
                    D.JOB_DCGM,
                    reach_address(cfg, h),
                    D.DCGM_EXPORTER_PORT,
                    ((D.SCRAPE_LABEL_HOST, h.name),),
                ),
            )
        )
    servers = _host_servers(cfg)
    front_host, mon_host = cfg.front_host, cfg.monitoring_host
    assert front_host is not None and mon_host is not None  # SSH platform: the config requires hosts
    exporter, probe = _host_front_observers(cfg, front_host)
    return Deployment(
        platform=cfg.platform,
        environment=cfg.environment,
        runtime=cfg.host_runtime,
        namespace=None,
        hosts=tuple(hosts),
        servers=tuple(servers),
        front_url=front_url,
        routes=routes,
        front_host=front_host.name,
        monitoring_host=mon_host.name,
        # Prometheus listens on the monitoring host's loopback; Grafana shares that host's network.
        prometheus_url=PROMETHEUS_LOCAL_URL,
        # Grafana listens on the monitoring host's loopback only (plain HTTP): an SSH tunnel reaches it.
        grafana_url=http_url(D.LOOPBACK, D.GRAFANA_PORT) if grafana else None,
        secrets=_secret_refs(cfg),
        routers=_routers(cfg, servers),
        # Alertmanager listens on the monitoring host's loopback beside Prometheus.
        alertmanager_target=AM.target(cfg),
        alertmanager_url=_alertmanager_url(cfg),
        front_exporter=exporter,
        tls_probe=probe,
        weights=_weights(cfg),
    )
