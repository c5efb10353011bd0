"""Monitoring on Kubernetes: the stack's own Prometheus + Grafana, or prometheus-operator CRs.

`monitoring.prometheusOperator: false` renders a Prometheus Deployment (config + rules in a
ConfigMap, Kubernetes service discovery restricted to the stack's namespace) and Grafana.
`true` renders a `PrometheusRule` (the same rules) and one `ServiceMonitor` per model Service
plus one for the DCGM exporter; the cluster's operator-managed Prometheus does the rest.

Pod IPs change on every reschedule, so vLLM replicas cannot be static scrape targets:
`kubernetes_scrape_configs` discovers them through EndpointSlices of the model Services and
relabels pod labels into the labels the alert rules group by (`model`, `capacity` as
onDemand|spot, `host`), exactly as the docker platform's static labels do. The
ServiceMonitors carry the same relabelings, so both modes feed the same alerts.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import yaml

from .. import defaults as D
from ..placement import K8S_CAPACITY
from .k8s_common import (
    ALERTMANAGER,
    ALERTMANAGER_CONFIG,
    DCGM_EXPORTER,
    FRONT_METRICS,
    GRAFANA,
    GRAFANA_CONFIG,
    GRAFANA_DASHBOARDS,
    PROMETHEUS,
    PROMETHEUS_CONFIG,
    RULES,
    K8sRenderError,
    Obj,
    checksum,
    config_map,
    container_security,
    http_probe,
    labels,
    metadata,
    pod_security,
    selector,
)
from . import front_monitoring as FM
from .k8s_front import COMPONENT as FRONT_COMPONENT, METRICS_PORT_NAME as FRONT_METRICS_PORT_NAME
from .k8s_model import COMPONENT as VLLM_COMPONENT, PORT_NAME as VLLM_PORT_NAME
from .k8s_nodes import DCGM_PORT_NAME

if TYPE_CHECKING:
    from ..config import StackConfig

PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_CONFIG_FILE = "prometheus.yml"
RULES_FILE = D.RULES_FILE
#: What the caller passes as `rule_files=` to render_prometheus_yml for this platform.
PROMETHEUS_RULES_PATH = posixpath.join(PROMETHEUS_CONFIG_DIR, RULES_FILE)
PROMETHEUS_DATA_DIR = "/prometheus"
GRAFANA_DATA_DIR = "/var/lib/grafana"
#: Secret key (and file name) of the Grafana admin password, mounted at GRAFANA_ADMIN_PASSWORD_FILE.
GRAFANA_PASSWORD_KEY = posixpath.basename(D.GRAFANA_ADMIN_PASSWORD_FILE)
#: kube-prometheus-stack's Grafana sidecar imports ConfigMaps carrying this label.
GRAFANA_SIDECAR_LABEL = "grafana_dashboard"

_SD_POD_LABEL = "__meta_kubernetes_pod_label_"
_SD_SERVICE_LABEL = "__meta_kubernetes_service_label_"


def _sd_name(label: str) -> str:
    """Prometheus turns `vllm-stack/model` into `vllm_stack_model` in meta label names."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in label)


def _target_relabelings(job: str, *, vllm: bool) -> list[dict[str, Any]]:
    """Relabelings in prometheus-operator spelling (camelCase keys)."""
    out: list[dict[str, Any]] = [{"action": "replace", "targetLabel": "job", "replacement": job}]
    if vllm:
        out.append(
            {
                "action": "replace",
                "sourceLabels": [_SD_POD_LABEL + _sd_name(D.LABEL_MODEL)],
                "targetLabel": D.SCRAPE_LABEL_MODEL,
            }
        )
        for config_value, k8s_value in sorted(K8S_CAPACITY.items()):
            out.append(
                {
                    "action": "replace",
                    "sourceLabels": [_SD_POD_LABEL + _sd_name(D.LABEL_CAPACITY)],
                    "regex": k8s_value,
                    "targetLabel": D.SCRAPE_LABEL_CAPACITY,
                    "replacement": config_value,
                }
            )
    out.append(
        {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": D.SCRAPE_LABEL_HOST}
    )
    return out


def _snake(relabel: Mapping[str, Any]) -> dict[str, Any]:
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {keys.get(k, k): v for k, v in relabel.items()}


def kubernetes_scrape_configs(cfg: StackConfig) -> list[dict[str, Any]]:
    """`scrape_configs` for prometheus.yml on Kubernetes (jobs `vllm` and `dcgm`).

    Use as `prometheus_config(cfg, [], rule_files=[PROMETHEUS_RULES_PATH])` with its
    `scrape_configs` replaced by this list (see `render_prometheus_yml_k8s`).
    """
    ns = cfg.kubernetes.namespace
    jobs: tuple[tuple[str, str, str, bool], ...] = (
        (D.JOB_VLLM, VLLM_COMPONENT, VLLM_PORT_NAME, True),
        (D.JOB_DCGM, "dcgm-exporter", DCGM_PORT_NAME, False),
    )
    if any(m.routing.enabled for m in cfg.models):  # the routers' Services (render/router.py), port `metrics`
        from ..deployment import ROUTER_COMPONENT, ROUTER_METRICS_PORT_NAME

        jobs += ((D.JOB_ROUTER, ROUTER_COMPONENT, ROUTER_METRICS_PORT_NAME, False),)
    # the front pods' nginx exporter sidecars, through the front-metrics Service (k8s_front.py)
    jobs += ((D.JOB_NGINX, FRONT_COMPONENT, FRONT_METRICS_PORT_NAME, False),)
    out = []
    for job, component, port_name, vllm in jobs:
        keep = [
            {
                "action": "keep",
                "source_labels": [
                    _SD_SERVICE_LABEL + _sd_name(D.LABEL_PART_OF),
                    _SD_SERVICE_LABEL + _sd_name("app.kubernetes.io/component"),
                ],
                "regex": f"{D.PROJECT};{component}",
            },
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"], "regex": port_name},
        ]
        out.append(
            {
                "job_name": job,
                "metrics_path": D.METRICS_PATH,
                "kubernetes_sd_configs": [{"role": "endpointslice", "namespaces": {"names": [ns]}}],
                "relabel_configs": keep + [_snake(r) for r in _target_relabelings(job, vllm=vllm)],
            }
        )
    from ..deployment import build

    for target in build(cfg).probe_targets():  # the blackbox sidecar in the Prometheus pod probes the front's Service
        out.append(FM.probe_scrape_config(target))
    return out


def render_prometheus_yml_k8s(cfg: StackConfig) -> str:
    """prometheus.yml for the in-cluster Prometheus: the shared renderer, k8s discovery."""
    from .prometheus import prometheus_config

    doc = prometheus_config(cfg, [], rule_files=[PROMETHEUS_RULES_PATH])
    doc["scrape_configs"] = kubernetes_scrape_configs(cfg)
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


# --- own Prometheus -------------------------------------------------------------------


def _prometheus_rbac(cfg: StackConfig) -> list[Obj]:
    lbls = labels(cfg, "prometheus", name=PROMETHEUS)
    verbs = ["get", "list", "watch"]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(cfg, PROMETHEUS, lbls)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(cfg, PROMETHEUS, lbls),
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": verbs},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": verbs},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(cfg, PROMETHEUS, lbls),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": PROMETHEUS},
            "subjects": [{"kind": "ServiceAccount", "name": PROMETHEUS, "namespace": cfg.kubernetes.namespace}],
        },
    ]


def _blackbox_sidecar(name: str) -> Obj:
    """The blackbox exporter in the Prometheus pod, on the pod's loopback (only Prometheus asks it)."""
    return {
        "name": name,
        "image": D.BLACKBOX_IMAGE,
        "args": FM.blackbox_argv(posixpath.join(PROMETHEUS_CONFIG_DIR, D.BLACKBOX_CONFIG_FILE)),
        "securityContext": container_security(read_only_root=True, run_as_non_root=True),  # the pod's uid 65534
        "volumeMounts": [{"name": "config", "mountPath": PROMETHEUS_CONFIG_DIR, "readOnly": True}],
    }


def _prometheus(cfg: StackConfig, prometheus_yml: str, rules_yml: str) -> list[Obj]:
    from ..deployment import build

    probe = build(cfg).tls_probe
    data = {PROMETHEUS_CONFIG_FILE: prometheus_yml, RULES_FILE: rules_yml}
    if probe is not None:
        data[D.BLACKBOX_CONFIG_FILE] = FM.render_blackbox_yml(cfg)
    cm = config_map(cfg, PROMETHEUS_CONFIG, "prometheus", data)
    lbls = labels(cfg, "prometheus", name=PROMETHEUS)
    sel = selector("prometheus")
    container = {
        "name": "prometheus",
        "image": D.PROMETHEUS_IMAGE,
        "args": [
            f"--config.file={posixpath.join(PROMETHEUS_CONFIG_DIR, PROMETHEUS_CONFIG_FILE)}",
            f"--storage.tsdb.path={PROMETHEUS_DATA_DIR}",
            f"--storage.tsdb.retention.time={D.PROMETHEUS_RETENTION}",
            f"--web.listen-address=:{D.PROMETHEUS_PORT}",
        ],
        "ports": [{"name": "http", "containerPort": D.PROMETHEUS_PORT, "protocol": "TCP"}],
        "readinessProbe": http_probe("/-/ready", "http"),
        "livenessProbe": http_probe("/-/healthy", "http", failure_threshold=D.LIVENESS_FAILURE_THRESHOLD),
        "securityContext": container_security(read_only_root=True, run_as_non_root=True),
        "volumeMounts": [
            {"name": "config", "mountPath": PROMETHEUS_CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": PROMETHEUS_DATA_DIR},
        ],
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cfg, PROMETHEUS, lbls),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": sel},
            "strategy": {"type": "Recreate"},  # one TSDB writer at a time
            "template": {
                "metadata": {"labels": lbls, "annotations": {"vllm-stack/config-checksum": checksum(data)}},
                "spec": {
                    "serviceAccountName": PROMETHEUS,
                    "securityContext": pod_security(D.PROMETHEUS_UID, D.PROMETHEUS_UID),
                    "containers": [container, *([_blackbox_sidecar(probe.sidecar)] if probe and probe.sidecar else [])],
                    "volumes": [
                        {"name": "config", "configMap": {"name": PROMETHEUS_CONFIG}},
                        {"name": "data", "emptyDir": {"sizeLimit": D.PROMETHEUS_STORAGE_SIZE}},
                    ],
                },
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, PROMETHEUS, lbls),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(sel),
            "ports": [{"name": "http", "port": D.PROMETHEUS_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [cm, *_prometheus_rbac(cfg), deploy, svc]


# --- Grafana --------------------------------------------------------------------------


def _grafana_items(grafana_files: Mapping[str, str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """ConfigMap data (keys may not hold '/') and the volume items that put each file back
    at its path relative to GRAFANA_PROVISIONING_DIR."""
    data: dict[str, str] = {}
    items: list[dict[str, str]] = []
    base = D.GRAFANA_PROVISIONING_DIR.rstrip("/") + "/"
    for path in sorted(grafana_files):
        rel = path[len(base) :] if path.startswith(base) else path.lstrip("/")
        if rel.startswith("..") or "/../" in rel or not rel:
            raise K8sRenderError(f"grafana file {path!r} is outside {D.GRAFANA_PROVISIONING_DIR}")
        key = rel.replace("/", "_")
        if key in data:
            raise K8sRenderError(f"grafana files {path!r} and another map to the same ConfigMap key {key!r}")
        data[key] = grafana_files[path]
        items.append({"key": key, "path": rel})
    return data, items


def _grafana(cfg: StackConfig, grafana_files: Mapping[str, str], grafana_secret: str) -> list[Obj]:
    data, items = _grafana_items(grafana_files)
    cm = config_map(cfg, GRAFANA_CONFIG, "grafana", data)
    lbls = labels(cfg, "grafana", name=GRAFANA)
    sel = selector("grafana")
    secret_dir = posixpath.dirname(D.GRAFANA_ADMIN_PASSWORD_FILE)
    from .grafana import grafana_ini_overrides  # the same GF_* settings as the docker platform

    env = {**grafana_ini_overrides(cfg), "GF_PATHS_DATA": GRAFANA_DATA_DIR}
    # anonymous access off and the password from a file are the point: refuse a drifted helper
    if (
        env.get("GF_AUTH_ANONYMOUS_ENABLED") != "false"
        or env.get("GF_SECURITY_ADMIN_PASSWORD__FILE") != D.GRAFANA_ADMIN_PASSWORD_FILE
    ):
        raise K8sRenderError(
            "grafana_ini_overrides must disable anonymous access and read the admin "
            "password from GRAFANA_ADMIN_PASSWORD_FILE"
        )
    container = {
        "name": "grafana",
        "image": D.GRAFANA_IMAGE,
        "env": [{"name": k, "value": env[k]} for k in sorted(env)],
        "ports": [{"name": "http", "containerPort": D.GRAFANA_PORT, "protocol": "TCP"}],
        "readinessProbe": http_probe("/api/health", "http"),
        "livenessProbe": http_probe("/api/health", "http", failure_threshold=D.LIVENESS_FAILURE_THRESHOLD),
        "securityContext": container_security(run_as_non_root=True),
        "volumeMounts": [
            {"name": "provisioning", "mountPath": D.GRAFANA_PROVISIONING_DIR, "readOnly": True},
            {"name": "admin-password", "mountPath": secret_dir, "readOnly": True},
            {"name": "data", "mountPath": GRAFANA_DATA_DIR},
        ],
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cfg, GRAFANA, lbls),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": sel},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": lbls, "annotations": {"vllm-stack/config-checksum": checksum(data)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(D.GRAFANA_UID, D.GRAFANA_UID),
                    "containers": [container],
                    "volumes": [
                        {"name": "provisioning", "configMap": {"name": GRAFANA_CONFIG, "items": items}},
                        {
                            "name": "admin-password",
                            "secret": {
                                "secretName": grafana_secret,
                                "defaultMode": D.SECRET_VOLUME_MODE,
                                "items": [{"key": GRAFANA_PASSWORD_KEY, "path": GRAFANA_PASSWORD_KEY}],
                            },
                        },
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, GRAFANA, lbls),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(sel),
            "ports": [{"name": "http", "port": D.GRAFANA_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [cm, deploy, svc]


# --- Alertmanager -----------------------------------------------------------------------

ALERTMANAGER_CONFIG_DIR = "/etc/alertmanager"


def alertmanager_secret(cfg: StackConfig, alertmanager_yml: str) -> Obj:
    """The Secret holding alertmanager.yml (receivers carry URLs and keys); the component swaps
    in the text rendered from the Pulumi secrets, the plan records the placeholder rendering."""
    from .k8s_common import secret_object

    return secret_object(
        cfg, ALERTMANAGER_CONFIG, {D.ALERTMANAGER_CONFIG_FILE: alertmanager_yml}, component="alertmanager"
    )


def _alertmanager(cfg: StackConfig, alertmanager_yml: str) -> list[Obj]:
    from .alertmanager import command

    lbls = labels(cfg, "alertmanager", name=ALERTMANAGER)
    sel = selector("alertmanager")
    container = {
        "name": "alertmanager",
        "image": D.ALERTMANAGER_IMAGE,
        "args": command(
            posixpath.join(ALERTMANAGER_CONFIG_DIR, D.ALERTMANAGER_CONFIG_FILE),
            D.ALERTMANAGER_DATA_DIR,
            f":{D.ALERTMANAGER_PORT}",
        ),
        "ports": [{"name": "http", "containerPort": D.ALERTMANAGER_PORT, "protocol": "TCP"}],
        "readinessProbe": http_probe("/-/ready", "http"),
        "livenessProbe": http_probe("/-/healthy", "http", failure_threshold=D.LIVENESS_FAILURE_THRESHOLD),
        "securityContext": container_security(read_only_root=True, run_as_non_root=True),
        "volumeMounts": [
            {"name": "config", "mountPath": ALERTMANAGER_CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": D.ALERTMANAGER_DATA_DIR},
        ],
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cfg, ALERTMANAGER, lbls),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": sel},
            "strategy": {"type": "Recreate"},  # one notification log at a time (no HA gossip)
            "template": {
                "metadata": {
                    "labels": lbls,
                    # a change of the rendered file (placeholders for secrets) rolls the pod
                    "annotations": {"vllm-stack/config-checksum": checksum(alertmanager_yml)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(D.ALERTMANAGER_UID, D.ALERTMANAGER_UID),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "config",
                            "secret": {"secretName": ALERTMANAGER_CONFIG, "defaultMode": D.SECRET_VOLUME_MODE},
                        },
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, ALERTMANAGER, lbls),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(sel),
            "ports": [{"name": "http", "port": D.ALERTMANAGER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [deploy, svc]


# --- prometheus-operator ---------------------------------------------------------------


def prometheus_rule(cfg: StackConfig, rules_yml: str) -> Obj:
    doc = yaml.safe_load(rules_yml) or {}
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(groups, list) or not groups:
        raise K8sRenderError("rules_yml has no `groups:` list")
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(cfg, RULES, labels(cfg, "prometheus")),
        "spec": {"groups": groups},
    }


def _service_monitor(
    cfg: StackConfig, name: str, component: str, port: str, job: str, *, vllm: bool, model: str | None = None
) -> Obj:
    sel = selector(component, **({"model": model} if model else {}))
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(cfg, name, labels(cfg, component, model=model)),
        "spec": {
            "selector": {"matchLabels": sel},
            "namespaceSelector": {"matchNames": [cfg.kubernetes.namespace]},
            "endpoints": [
                {
                    "port": port,
                    "path": D.METRICS_PATH,
                    "interval": f"{cfg.monitoring.scrape_interval_seconds}s",
                    "relabelings": _target_relabelings(job, vllm=vllm),
                }
            ],
        },
    }


def service_monitors(cfg: StackConfig) -> list[Obj]:
    out = [
        _service_monitor(cfg, m.name, VLLM_COMPONENT, VLLM_PORT_NAME, D.JOB_VLLM, vllm=True, model=m.name)
        for m in cfg.models
    ]
    out.append(_service_monitor(cfg, DCGM_EXPORTER, "dcgm-exporter", DCGM_PORT_NAME, D.JOB_DCGM, vllm=False))
    out.append(_service_monitor(cfg, FRONT_METRICS, FRONT_COMPONENT, FRONT_METRICS_PORT_NAME, D.JOB_NGINX, vllm=False))
    return out


def monitoring_objects(
    cfg: StackConfig,
    prometheus_yml: str,
    rules_yml: str,
    grafana_files: Mapping[str, str],
    *,
    grafana_secret: str,
    alertmanager_yml: str | None = None,
) -> list[Obj]:
    """Prometheus (+ Grafana when enabled), or PrometheusRule + ServiceMonitors under the operator.

    `prometheus_yml`: use `render_prometheus_yml_k8s(cfg)` (Kubernetes discovery);
    `rules_yml`: render_alert_rules(cfg); `grafana_files`: render_grafana(cfg), paths under
    GRAFANA_PROVISIONING_DIR (or relative to it); `grafana_secret`: Secret holding the admin
    password under key GRAFANA_PASSWORD_KEY. Under the operator, the dashboards ship as a
    ConfigMap labelled `grafana_dashboard: "1"` for the cluster Grafana's sidecar.
    `alertmanager_yml` (placeholder rendering, for the pod checksum): the Alertmanager
    Deployment and Service when the stack deploys one (its Secret: `alertmanager_secret`).
    """
    if cfg.monitoring.prometheus_operator:
        objs = [prometheus_rule(cfg, rules_yml), *service_monitors(cfg)]
        if cfg.monitoring.grafana.enabled:
            dashboards = {posixpath.basename(p): t for p, t in grafana_files.items() if p.endswith(".json")}
            objs.append(
                config_map(cfg, GRAFANA_DASHBOARDS, "grafana", dashboards, extra_labels={GRAFANA_SIDECAR_LABEL: "1"})
            )
        return objs
    objs = _prometheus(cfg, prometheus_yml, rules_yml)
    if cfg.monitoring.grafana.enabled:
        objs += _grafana(cfg, grafana_files, grafana_secret)
    if alertmanager_yml is not None:
        objs += _alertmanager(cfg, alertmanager_yml)
    return objs


__all__: Sequence[str] = (
    "GRAFANA_PASSWORD_KEY",
    "alertmanager_secret",
    "PROMETHEUS_RULES_PATH",
    "kubernetes_scrape_configs",
    "monitoring_objects",
    "render_prometheus_yml_k8s",
)
