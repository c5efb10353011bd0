"""Names other objects refer to across components on Kubernetes (one definition each)."""
from __future__ import annotations

from . import defaults as D

MODEL_SECRET = "vllm-model-secrets"
PROMETHEUS_SERVICE = "vllm-prometheus"
DCGM_SERVICE = "dcgm-exporter"


def prometheus_url(cfg) -> str:
    return f"http://{PROMETHEUS_SERVICE}.{cfg.kubernetes.namespace}.svc.cluster.local:{D.PROMETHEUS_PORT}"


def dcgm_service_host(cfg) -> str:
    return f"{DCGM_SERVICE}.{cfg.kubernetes.namespace}.svc.cluster.local"


def service_host(cfg, model_name: str) -> str:
    return f"{model_name}.{cfg.kubernetes.namespace}.svc.cluster.local"
