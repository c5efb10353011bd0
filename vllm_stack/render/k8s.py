"""Kubernetes objects of the stack as plain dicts (apiVersion, kind, metadata, spec).

Pure and deterministic: no Pulumi import, no I/O, the same config gives the same objects
in the same order. The Pulumi components wrap each dict in a resource; tests dump them
to YAML and check them with kubernetes-validate and the KEDA / prometheus-operator CRD
schemas. Split by concern:

* `k8s_nodes`      — Namespace, NVIDIA device plugin, DCGM exporter, weights PVC, and the
                     node conventions (labels and taints) the cluster must follow;
* `k8s_model`      — per model: Deployments per capacity class, Service, PDB, KEDA ScaledObject;
* `k8s_front`      — nginx front (ConfigMap, Deployment, Service, PDB);
* `k8s_monitoring` — own Prometheus/Grafana or PrometheusRule/ServiceMonitors;
* `k8s_common`     — names, labels, hardening, Secrets, YAML output.

Typical assembly (the order is also a valid apply order):

    objs = gpu_node_objects(cfg)
    objs += [secret_object(cfg, "vllm-stack-vllm", {ENV_API_KEY: key, ENV_HF_TOKEN: token}),
             tls_secret_object(cfg, "vllm-stack-tls", cert, key_pem),
             secret_object(cfg, "vllm-stack-api-keys", {API_KEYS_FILE: render_api_keys_map(keys)}),
             secret_object(cfg, "vllm-stack-grafana", {GRAFANA_PASSWORD_KEY: password})]
    for m in cfg.models:
        objs += model_objects(cfg, m, secret_name="vllm-stack-vllm")
    objs += front_objects(cfg, render_front_files(cfg), keys_secret="vllm-stack-api-keys",
                          tls_secret="vllm-stack-tls")
    objs += monitoring_objects(cfg, render_prometheus_yml_k8s(cfg), render_alert_rules(cfg),
                               render_grafana(cfg, prometheus_url=prometheus_service_url(cfg)),
                               grafana_secret="vllm-stack-grafana")
"""

from __future__ import annotations

from .k8s_common import GRAFANA as GRAFANA_SERVICE  # noqa: F401
from .k8s_common import (
    K8sRenderError,
    dump_yaml,
    prometheus_service_url,
    secret_object,  # noqa: F401
    tls_secret_object,
)
from .k8s_front import (
    API_KEYS_FILE,
    UPSTREAM_AUTH_FILE,
    front_backends,
    front_listen,  # noqa: F401
    front_objects,
    front_paths,
    render_front_files,
)
from .k8s_model import model_objects, queue_query, vllm_container  # noqa: F401
from .k8s_monitoring import (
    GRAFANA_PASSWORD_KEY,
    PROMETHEUS_RULES_PATH,
    alertmanager_secret,
    kubernetes_scrape_configs,  # noqa: F401
    monitoring_objects,
    render_prometheus_yml_k8s,
)
from .k8s_nodes import gpu_node_objects, weights_access_mode  # noqa: F401

__all__ = [
    "API_KEYS_FILE",
    "GRAFANA_PASSWORD_KEY",
    "GRAFANA_SERVICE",
    "K8sRenderError",
    "PROMETHEUS_RULES_PATH",
    "UPSTREAM_AUTH_FILE",
    "alertmanager_secret",
    "dump_yaml",
    "front_backends",
    "front_listen",
    "front_objects",
    "front_paths",
    "gpu_node_objects",
    "kubernetes_scrape_configs",
    "model_objects",
    "monitoring_objects",
    "prometheus_service_url",
    "queue_query",
    "render_front_files",
    "render_prometheus_yml_k8s",
    "secret_object",
    "vllm_container",
    "tls_secret_object",
    "weights_access_mode",
]
