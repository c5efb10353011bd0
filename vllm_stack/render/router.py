"""The routing tier (vllm-router, the vLLM project's Rust router) of a routed model: its command
line, its systemd unit on the front host, and its Kubernetes objects.

Pure: values come from the deployment model (`deployment.Router`); nothing here names a port,
a unit or a Service. The router sits behind nginx (TLS, API keys, rate limits and per-model
routes stay at the edge) and in front of the model's replicas:

* SSH hosts: it runs on the front host, bound to loopback, with the replicas as static
  `--worker-urls`; a spot replica's drain hook removes it from the worker set
  (`POST /remove_worker?url=...`) before the replica gets SIGTERM (`host_commands.router_drain_hook`).
* Kubernetes: it discovers the model's vLLM pods itself (`--service-discovery`, RBAC get/list/watch
  pods in the namespace only), so requests reach pods, never one ClusterIP; a NetworkPolicy admits
  only the front (and Prometheus on the metrics port). A terminating pod leaves the worker set when
  the pod is deleted, before its preStop sleep ends and vLLM gets SIGTERM.

The router's admin endpoints (`/add_worker`, `/remove_worker`) have no authentication of their
own: that is why it never listens past loopback on a host, and why the NetworkPolicy exists.
The client's `Authorization` header (or the front's backend key) is passed through to vLLM.
"""

from __future__ import annotations

from typing import Any

from .. import defaults as D
from ..config import StackConfig
from ..deployment import ROUTER_COMPONENT, ROUTER_METRICS_PORT_NAME, ROUTER_PORT_NAME, Router
from . import k8s_common as KC
from .vllm_args import RenderError

Obj = dict[str, Any]


def router_bin(install_dir: str = D.ROUTER_INSTALL_DIR) -> str:
    """The CLI inside the front host's venv (systemd runtime)."""
    return f"{install_dir}/bin/vllm-router"


def router_argv(cfg: StackConfig, r: Router) -> list[str]:
    """Arguments after the program name (`vllm-router`, or the image's entrypoint)."""
    if r.policy not in D.ROUTER_POLICIES.values():
        raise RenderError(f"router {r.name}: policy {r.policy!r} is not one of {sorted(D.ROUTER_POLICIES.values())}")
    argv = [
        "--host",
        r.bind,
        "--port",
        str(r.port),
        "--policy",
        r.policy,
        "--prometheus-host",
        r.bind,
        "--prometheus-port",
        str(r.metrics_port),
        "--health-check-endpoint",
        D.HEALTH_PATH,
        "--health-check-interval-secs",
        str(D.ROUTER_HEALTH_INTERVAL_SEC),
        "--health-failure-threshold",
        str(D.ROUTER_HEALTH_FAILURES),
        "--retry-max-retries",
        str(D.ROUTER_RETRIES),
        "--cb-failure-threshold",
        str(D.ROUTER_CB_FAILURES),
        "--request-timeout-secs",
        str(cfg.front.read_timeout_seconds),
        "--request-id-headers",
        "x-request-id",
    ]
    if r.workers:
        argv += ["--worker-urls", *r.workers]
    else:
        if not r.selector:
            raise RenderError(f"router {r.name}: neither worker URLs nor a pod selector")
        argv += ["--service-discovery", "--selector", *(f"{k}={v}" for k, v in r.selector)]
        argv += ["--service-discovery-namespace", cfg.kubernetes.namespace]
        argv += ["--service-discovery-port", str(D.VLLM_PORT)]
    for word in argv:
        if not word or any(c in word for c in " \t\n'\"\\;$`"):
            raise RenderError(f"router {r.name}: argument {word!r} is not a plain word")
    return argv


def render_router_unit(cfg: StackConfig, r: Router, *, install_dir: str = D.ROUTER_INSTALL_DIR) -> str:
    """`vllm-router-<model>.service` on the front host: the pinned venv's CLI, no secret, sandboxed."""
    from .systemd import HELPER_HARDENING, dynamic_user_unit, unit_escape  # the unit helpers the vLLM units use

    return dynamic_user_unit(
        comment=f"vllm-router=={D.ROUTER_VERSION} (pip, {install_dir}); no secret in this file.",
        unit=[
            ("Description", unit_escape(f"vllm-router {D.ROUTER_VERSION} for model {r.model} ({r.policy})")),
            ("Wants", "network-online.target"),
            ("After", "network-online.target"),
        ],
        argv=[router_bin(install_dir), *router_argv(cfg, r)],
        identifier=r.name,
        hardening=list(HELPER_HARDENING),
    )


def _labels(cfg: StackConfig, r: Router) -> dict[str, str]:
    return KC.labels(cfg, ROUTER_COMPONENT, name=r.name, model=r.model)


def router_objects(cfg: StackConfig, r: Router, image: str) -> list[Obj]:
    """ServiceAccount, Role (pods get/list/watch, this namespace only), RoleBinding, Deployment,
    Service (ClusterIP) and a NetworkPolicy admitting only the front and Prometheus."""
    if not image:
        raise RenderError(f"router {r.name}: router.image is required on kubernetes")
    lbls = _labels(cfg, r)
    sel = KC.selector(ROUTER_COMPONENT, model=r.model)
    meta = KC.metadata(cfg, r.name, lbls)
    container: Obj = {
        "name": ROUTER_COMPONENT,
        "image": image,
        "args": router_argv(cfg, r),
        "ports": [
            {"name": ROUTER_PORT_NAME, "containerPort": r.port, "protocol": "TCP"},
            {"name": ROUTER_METRICS_PORT_NAME, "containerPort": r.metrics_port, "protocol": "TCP"},
        ],
        "readinessProbe": KC.tcp_probe(ROUTER_PORT_NAME),
        "livenessProbe": KC.tcp_probe(ROUTER_PORT_NAME, failure_threshold=D.LIVENESS_FAILURE_THRESHOLD),
        "resources": {"requests": {"cpu": D.ROUTER_CPU_REQUEST, "memory": D.ROUTER_MEMORY_REQUEST}},
        "securityContext": KC.container_security(read_only_root=True, run_as_non_root=True),
    }
    front_sel = KC.selector("front")  # the front's pods (k8s_front)
    # The stack's own Prometheus; an operator-managed one lives elsewhere: the metrics port is then open
    # to any pod (the metrics carry no secret; the routing port stays front-only).
    metrics_from: Obj = (
        {}
        if cfg.monitoring.prometheus_operator
        else {"from": [{"podSelector": {"matchLabels": KC.selector("prometheus")}}]}
    )
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": True},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": r.name},
            "subjects": [{"kind": "ServiceAccount", "name": r.name, "namespace": cfg.kubernetes.namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": D.ROUTER_REPLICAS,
                "selector": {"matchLabels": sel},
                "template": {
                    "metadata": {"labels": lbls},
                    "spec": {
                        "serviceAccountName": r.name,
                        "securityContext": KC.pod_security(run_as_user=D.ROUTER_UID),
                        "containers": [container],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": sel,
                "ports": [
                    {"name": ROUTER_PORT_NAME, "port": r.port, "targetPort": ROUTER_PORT_NAME, "protocol": "TCP"},
                    {
                        "name": ROUTER_METRICS_PORT_NAME,
                        "port": r.metrics_port,
                        "targetPort": ROUTER_METRICS_PORT_NAME,
                        "protocol": "TCP",
                    },
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta,
            "spec": {
                "podSelector": {"matchLabels": sel},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": front_sel}}],
                        "ports": [{"port": ROUTER_PORT_NAME, "protocol": "TCP"}],
                    },
                    {**metrics_from, "ports": [{"port": ROUTER_METRICS_PORT_NAME, "protocol": "TCP"}]},
                ],
            },
        },
    ]


__all__ = ["render_router_unit", "router_argv", "router_bin", "router_objects"]
