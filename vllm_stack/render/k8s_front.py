"""The nginx front on Kubernetes: ConfigMap (no secrets), Deployment, Service, PDB.

The front is the only public entry point: a Service of type `front.serviceType` on 443
(and 80, which only redirects to https) in front of nginx pods that proxy to each model's
ClusterIP Service. Render its files with

    render_front_files(cfg)   # = nginx.render_front(cfg, front_backends(cfg), paths=front_paths(),
                              #     listen=front_listen(cfg), user=D.NGINX_IMAGE_USER)

and hand them to `front_objects`. Paths inside the pod:

    /etc/nginx/vllm-stack/conf/nginx.conf, conf/upstreams/<model>.conf   ConfigMap (public)
    /etc/nginx/vllm-stack/tls/tls.crt, tls.key                           TLS Secret, 0400
    /etc/nginx/vllm-stack/keys/api-keys.map [, upstream-auth.conf]       keys Secret, 0400

The nginx master runs as root (it binds 80/443 and reads the 0400 secrets before forking
workers as `nginx`), with every capability dropped except the four it needs, no privilege
escalation, a read-only root filesystem and emptyDirs for pid and temp files.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping

from .. import defaults as D
from ..endpoints import Backend
from .k8s_common import (
    FRONT,
    FRONT_CONFIG,
    FRONT_METRICS,
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
    tcp_probe,
)

if TYPE_CHECKING:
    from ..config import StackConfig
    from .nginx import FrontListen, NginxPaths

FRONT_DIR = "/etc/nginx/vllm-stack"
CONF_DIR = f"{FRONT_DIR}/conf"
TLS_DIR = f"{FRONT_DIR}/tls"
KEYS_DIR = f"{FRONT_DIR}/keys"
RUN_DIR = "/run/nginx"
TEMP_DIR = "/var/cache/nginx"
#: Keys of the keys Secret (file names in KEYS_DIR).
API_KEYS_FILE = "api-keys.map"
UPSTREAM_AUTH_FILE = "upstream-auth.conf"
NGINX_CONF = "nginx.conf"
COMPONENT = "front"
METRICS_PORT_NAME = "metrics"  # the nginx exporter sidecar's port (front-metrics Service, never the public one)
UPSTREAMS = "upstreams"
#: What the nginx master needs once every other capability is dropped.
NGINX_CAPABILITIES = ("CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID")
_SECRET_LOOKING = re.compile(r"-----BEGIN |\"~\^Bearer |proxy_set_header\s+Authorization", re.I)


def front_paths(*, upstream_auth: bool = False) -> NginxPaths:
    """`NginxPaths` matching the mounts of `front_objects`."""
    from .nginx import NginxPaths

    return NginxPaths(
        prefix="/etc/nginx",
        conf=f"{CONF_DIR}/{NGINX_CONF}",
        pid=f"{RUN_DIR}/nginx.pid",
        temp_dir=TEMP_DIR,
        cert=f"{TLS_DIR}/tls.crt",
        key=f"{TLS_DIR}/tls.key",
        api_keys=f"{KEYS_DIR}/{API_KEYS_FILE}",
        upstream_dir=f"{CONF_DIR}/{UPSTREAMS}",
        upstream_auth=f"{KEYS_DIR}/{UPSTREAM_AUTH_FILE}" if upstream_auth else None,
    )


def front_listen(cfg: StackConfig) -> FrontListen:
    from .nginx import FrontListen

    return FrontListen(bind="", http_port=D.HTTP_PORT, https_port=D.HTTPS_PORT)


def front_backends(cfg: StackConfig) -> list[Backend]:
    """One backend per model: its router's Service (`routing.enabled`: the router reaches the pods
    themselves by pod discovery), else its ClusterIP Service (kube-proxy spreads connections over
    ready pods; endpoint removal on preStop is what drains a replica)."""
    from ..deployment import build  # the router's Service name and port (deployment imports no front code)

    routers = {r.model: r for r in build(cfg).routers}
    ns = cfg.kubernetes.namespace
    return [
        routers[m.name].backend
        if m.name in routers
        else Backend(model=m.name, address=f"{m.name}.{ns}.svc", port=D.VLLM_PORT)
        for m in cfg.models
    ]


def render_front_files(cfg: StackConfig, *, upstream_auth: bool = False) -> dict[str, str]:
    """nginx.render_front with this platform's backends, paths, ports and the image's user."""
    from .nginx import render_front

    return render_front(
        cfg,
        front_backends(cfg),
        paths=front_paths(upstream_auth=upstream_auth),
        listen=front_listen(cfg),
        user=D.NGINX_IMAGE_USER,
    )


def _config_items(nginx_files: Mapping[str, str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    if NGINX_CONF not in nginx_files:
        raise K8sRenderError("nginx_files lacks nginx.conf (pass render_front(...) output)")
    data: dict[str, str] = {}
    items: list[dict[str, str]] = []
    for path in sorted(nginx_files):
        text = nginx_files[path]
        if path != NGINX_CONF and not re.fullmatch(rf"{UPSTREAMS}/[a-z0-9-]+\.conf", path):
            raise K8sRenderError(
                f"nginx file {path!r} does not belong in the front ConfigMap: only nginx.conf and "
                f"{UPSTREAMS}/<model>.conf are public; keys, certificates and auth includes are "
                f"secret material for the keys/TLS Secrets"
            )
        if _SECRET_LOOKING.search(text):
            raise K8sRenderError(
                f"nginx file {path!r} contains secret material (key, certificate or API key "
                f"pattern); it belongs in a Secret, never a ConfigMap"
            )
        key = path.replace("/", "_")
        data[key] = text
        items.append({"key": key, "path": path})
    if FRONT_DIR not in nginx_files[NGINX_CONF]:
        raise K8sRenderError(
            f"nginx.conf was not rendered with front_paths() (no {FRONT_DIR} in it): the files "
            f"it includes would not be where the pod mounts them"
        )
    return data, items


def front_objects(
    cfg: StackConfig, nginx_files: Mapping[str, str], *, keys_secret: str, tls_secret: str | None
) -> list[Obj]:
    """ConfigMap, nginx Deployment (2 replicas in prod, 1 in dev), Service, PDB (prod).

    `keys_secret`: Secret with API_KEYS_FILE (render_api_keys_map) and, when front_paths
    was called with upstream_auth=True, UPSTREAM_AUTH_FILE. `tls_secret`: a kubernetes.io/tls
    Secret; None only when front.tls is `none`.
    """
    tls = cfg.front.tls != "none"
    if tls and not tls_secret:
        raise K8sRenderError(f"front.tls is {cfg.front.tls!r}: pass tls_secret (a kubernetes.io/tls Secret)")
    data, items = _config_items(nginx_files)
    cm = config_map(cfg, FRONT_CONFIG, "front", data)
    lbls = labels(cfg, "front", name=FRONT)
    sel = selector("front")
    replicas = D.FRONT_REPLICAS_PROD if cfg.environment == "prod" else D.FRONT_REPLICAS_DEV

    ports = [{"name": "http", "containerPort": D.HTTP_PORT, "protocol": "TCP"}]
    if tls:
        ports.insert(0, {"name": "https", "containerPort": D.HTTPS_PORT, "protocol": "TCP"})
    mounts = [
        {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
        {"name": "api-keys", "mountPath": KEYS_DIR, "readOnly": True},
        {"name": "run", "mountPath": RUN_DIR},
        {"name": "temp", "mountPath": TEMP_DIR},
    ]
    volumes: list[Obj] = [
        {"name": "config", "configMap": {"name": FRONT_CONFIG, "items": items}},
        {"name": "api-keys", "secret": {"secretName": keys_secret, "defaultMode": D.SECRET_VOLUME_MODE}},
        {"name": "run", "emptyDir": {}},
        {"name": "temp", "emptyDir": {}},
    ]
    if tls:
        mounts.insert(1, {"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.insert(1, {"name": "tls", "secret": {"secretName": tls_secret, "defaultMode": D.SECRET_VOLUME_MODE}})
    # /health is answered by nginx itself (no key, never proxied); over TLS when TLS is on.
    ready = http_probe(D.HEALTH_PATH, "https", scheme="HTTPS") if tls else http_probe(D.HEALTH_PATH, "http")
    from ..deployment import build
    from .front_monitoring import exporter_argv

    observer = build(cfg).front_exporter
    assert observer is not None and observer.sidecar is not None

    # reads stub_status on the pod's loopback (nginx.conf's status listener); serves the pod's :9113
    exporter = {
        "name": observer.sidecar,
        "image": D.NGINX_EXPORTER_IMAGE,
        "args": exporter_argv(observer.listen),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": D.NGINX_EXPORTER_PORT, "protocol": "TCP"}],
        # no probes: an observer must never take a front pod out of its Service
        "securityContext": {
            **container_security(read_only_root=True, run_as_non_root=True),
            "runAsUser": D.NGINX_EXPORTER_UID,
            "runAsGroup": D.NGINX_EXPORTER_UID,
        },
    }
    container = {
        "name": "nginx",
        "image": D.NGINX_IMAGE,
        "args": ["nginx", "-c", f"{CONF_DIR}/{NGINX_CONF}", "-g", "daemon off;"],
        "ports": ports,
        "readinessProbe": ready,
        "livenessProbe": tcp_probe("https" if tls else "http", failure_threshold=D.LIVENESS_FAILURE_THRESHOLD),
        "securityContext": container_security(add=NGINX_CAPABILITIES, read_only_root=True),
        "volumeMounts": mounts,
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cfg, FRONT, lbls),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": sel},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": lbls, "annotations": {"vllm-stack/config-checksum": checksum(data)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": dict(sel)},
                        }
                    ],
                    "containers": [container, exporter],
                    "volumes": volumes,
                },
            },
        },
    }
    svc_ports = [{"name": "http", "port": D.HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]
    if tls:
        svc_ports.insert(0, {"name": "https", "port": D.HTTPS_PORT, "targetPort": "https", "protocol": "TCP"})
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, FRONT, lbls),
        "spec": {"type": cfg.front.service_type, "selector": dict(sel), "ports": svc_ports},
    }
    metrics_svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, FRONT_METRICS, labels(cfg, COMPONENT, name=FRONT_METRICS)),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(sel),
            "ports": [
                {
                    "name": METRICS_PORT_NAME,
                    "port": D.NGINX_EXPORTER_PORT,
                    "targetPort": METRICS_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
    objs = [cm, deploy, svc, metrics_svc]
    if replicas > 1:
        objs.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": metadata(cfg, FRONT, lbls),
                "spec": {
                    "minAvailable": 1,
                    "unhealthyPodEvictionPolicy": "AlwaysAllow",
                    "selector": {"matchLabels": dict(sel)},
                },
            }
        )
    return objs


__all__ = [
    "API_KEYS_FILE",
    "UPSTREAM_AUTH_FILE",
    "front_backends",
    "front_listen",
    "front_objects",
    "front_paths",
    "render_front_files",
]
