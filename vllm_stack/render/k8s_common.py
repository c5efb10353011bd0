"""Shared pieces of the Kubernetes renderers: names, labels, metadata, hardening, Secrets.

Everything here returns plain dicts (the shape `kubectl apply` takes), is deterministic
and imports no Pulumi: the Pulumi components wrap these dicts, tests dump them to YAML.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import yaml

from .. import defaults as D

if TYPE_CHECKING:
    from ..config import StackConfig

Obj = dict[str, Any]

# --- object names (stable: renaming one replaces the object) --------------------------
#: Infrastructure objects carry the project prefix so a model name cannot shadow them.
PREFIX = D.PROJECT
WEIGHTS_PVC = f"{PREFIX}-weights"
DEVICE_PLUGIN = f"{PREFIX}-nvidia-device-plugin"
DCGM_EXPORTER = f"{PREFIX}-dcgm-exporter"
FRONT = f"{PREFIX}-front"
FRONT_CONFIG = f"{PREFIX}-front-config"
FRONT_METRICS = f"{PREFIX}-front-metrics"  # ClusterIP Service of the front pods' nginx exporter (never public)
PROMETHEUS = f"{PREFIX}-prometheus"
PROMETHEUS_CONFIG = f"{PREFIX}-prometheus-config"
GRAFANA = f"{PREFIX}-grafana"
GRAFANA_CONFIG = f"{PREFIX}-grafana-config"
GRAFANA_DASHBOARDS = f"{PREFIX}-grafana-dashboards"
RULES = f"{PREFIX}-rules"
ALERTMANAGER = f"{PREFIX}-alertmanager"
ALERTMANAGER_CONFIG = f"{PREFIX}-alertmanager-config"  # a Secret: receivers carry URLs and keys

#: `app.kubernetes.io/*` recommended labels (kubernetes.io/docs/concepts/overview/working-with-objects/common-labels).
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_INSTANCE = "app.kubernetes.io/instance"

#: Capacity label values on nodes and pods (config says onDemand/spot; label values are kebab-case).
CAPACITY_VALUES = ("on-demand", "spot")

#: The Secret keys the front and Grafana read (file names inside their secret mounts).
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class K8sRenderError(ValueError):
    """Config the Kubernetes renderers refuse (message names the key)."""


def service_name_ok(name: str) -> bool:
    """Service names are DNS-1035 labels: start with a letter, at most 63 characters."""
    return len(name) <= 63 and bool(_DNS1035.match(name))


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot name a model's Kubernetes objects, or None (the config loader and the
    renderer both ask this)."""
    if not service_name_ok(name):
        return f'"{name}" is not allowed on kubernetes; a Service name must start with a letter (DNS-1035)'
    if name == PREFIX or name.startswith(PREFIX + "-"):
        return (
            f'"{name}" is not allowed on kubernetes; names starting with {PREFIX}- are reserved for the '
            "stack's own objects"
        )
    return None


def labels(
    cfg: StackConfig, component: str, *, name: str | None = None, model: str | None = None, capacity: str | None = None
) -> dict[str, str]:
    """The label set every object carries (part-of, environment) plus the optional ones."""
    out = {
        D.LABEL_PART_OF: D.PROJECT,
        D.LABEL_ENVIRONMENT: cfg.environment,
        LABEL_NAME: name or component,
        LABEL_COMPONENT: component,
    }
    if model is not None:
        out[D.LABEL_MODEL] = model
        out[LABEL_INSTANCE] = model
    if capacity is not None:
        out[D.LABEL_CAPACITY] = capacity
    return out


def selector(component: str, **extra: str) -> dict[str, str]:
    """Minimal, immutable-safe selector: part-of + component (+ model/capacity)."""
    out = {D.LABEL_PART_OF: D.PROJECT, LABEL_COMPONENT: component}
    keys = {"model": D.LABEL_MODEL, "capacity": D.LABEL_CAPACITY, "name": LABEL_NAME}
    for k, v in extra.items():
        out[keys[k]] = v
    return out


def metadata(
    cfg: StackConfig,
    name: str,
    lbls: Mapping[str, str],
    *,
    namespaced: bool = True,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name}
    if namespaced:
        meta["namespace"] = cfg.kubernetes.namespace
    meta["labels"] = dict(lbls)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def prometheus_service_url(cfg: StackConfig) -> str:
    """The Prometheus that KEDA and Grafana query: the stack's own in-cluster Service, or
    `monitoring.prometheusUrl` with prometheusOperator (the config refuses spot replicas
    without it, so this never guesses an operator's URL)."""
    if cfg.monitoring.prometheus_operator and cfg.monitoring.prometheus_url:
        return cfg.monitoring.prometheus_url
    return f"http://{PROMETHEUS}.{cfg.kubernetes.namespace}.svc:{D.PROMETHEUS_PORT}"


def checksum(*parts: Mapping[str, str] | str) -> str:
    """sha256 of config contents, put on pod templates so a config change rolls the pods."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True).encode())
    return h.hexdigest()


# --- hardening ------------------------------------------------------------------------


def pod_security(run_as_user: int | None = None, fs_group: int | None = None) -> Obj:
    ctx: Obj = {"seccompProfile": {"type": "RuntimeDefault"}}
    if run_as_user is not None:
        ctx.update(runAsNonRoot=True, runAsUser=run_as_user, runAsGroup=run_as_user)
    if fs_group is not None:
        ctx["fsGroup"] = fs_group
    return ctx


def container_security(*, add: Iterable[str] = (), read_only_root: bool = False, run_as_non_root: bool = False) -> Obj:
    caps: Obj = {"drop": ["ALL"]}
    if add:
        caps["add"] = sorted(add)
    ctx: Obj = {"allowPrivilegeEscalation": False, "capabilities": caps}
    if read_only_root:
        ctx["readOnlyRootFilesystem"] = True
    if run_as_non_root:
        ctx["runAsNonRoot"] = True
    return ctx


def http_probe(
    path: str, port: str | int, *, scheme: str = "HTTP", initial_delay: int = 0, failure_threshold: int | None = None
) -> Obj:
    """httpGet probe every PROBE_PERIOD_SEC; failureThreshold None keeps Kubernetes' default (3)."""
    probe: Obj = {"httpGet": {"path": path, "port": port, "scheme": scheme}}
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    probe.update(periodSeconds=D.PROBE_PERIOD_SEC, timeoutSeconds=D.K8S_PROBE_TIMEOUT_SEC)
    if failure_threshold is not None:
        probe["failureThreshold"] = failure_threshold
    return probe


def tcp_probe(port: str | int, *, failure_threshold: int | None = None) -> Obj:
    probe: Obj = {
        "tcpSocket": {"port": port},
        "periodSeconds": D.PROBE_PERIOD_SEC,
        "timeoutSeconds": D.K8S_PROBE_TIMEOUT_SEC,
    }
    if failure_threshold is not None:
        probe["failureThreshold"] = failure_threshold
    return probe


def config_map(
    cfg: StackConfig,
    name: str,
    component: str,
    data: Mapping[str, str],
    *,
    extra_labels: Mapping[str, str] | None = None,
) -> Obj:
    for key in data:
        if not _SECRET_KEY.match(key):
            raise K8sRenderError(f"ConfigMap {name}: key {key!r} is not a valid file name")
    lbls = {**labels(cfg, component), **(extra_labels or {})}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cfg, name, lbls),
        "data": {k: data[k] for k in sorted(data)},
    }


# --- Secrets --------------------------------------------------------------------------


def secret_object(cfg: StackConfig, name: str, string_data: Mapping[str, str], *, component: str = "secrets") -> Obj:
    """Opaque Secret. The deployer passes real values (Pulumi secrets); plans pass placeholders.

    Values travel in `stringData` (the API server base64-encodes them into `data`).
    """
    for key in string_data:
        if not _SECRET_KEY.match(key):
            raise K8sRenderError(f"Secret {name}: key {key!r} is not a valid Secret key")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(cfg, name, labels(cfg, component)),
        "stringData": {k: string_data[k] for k in sorted(string_data)},
    }


def tls_secret_object(
    cfg: StackConfig, name: str, certificate_pem: str, private_key_pem: str, *, component: str = "front"
) -> Obj:
    """kubernetes.io/tls Secret (keys tls.crt / tls.key) the front mounts read-only."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata(cfg, name, labels(cfg, component)),
        "stringData": {TLS_CERT_KEY: certificate_pem, TLS_KEY_KEY: private_key_pem},
    }


# --- output ---------------------------------------------------------------------------


class _NoAliasDumper(yaml.SafeDumper):
    """Shared sub-dicts (a selector reused in a spread constraint) print in full, not as &id001."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(objects: Iterable[Obj]) -> str:
    """Multi-document YAML, keys in render order (deterministic, no anchors)."""
    return "".join(
        "---\n" + yaml.dump(o, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=1_000_000)
        for o in objects
    )
