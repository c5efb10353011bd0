"""What every check sees besides the resource: the environment and the pack's thresholds.

One table (`ENFORCEMENT`) says how hard each rule bites per environment; one table
(`THRESHOLDS`) holds each rule's configurable numbers as JSON-schema properties whose
defaults come from `vllm_stack.defaults` (never re-typed here). The CrossGuard pack turns
`THRESHOLDS` into `PolicyConfigSchema`s and the offline plan reads the same defaults, so a
`--policy-pack-config` file and `evaluate(..., pack_config=...)` take the same JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from vllm_stack import defaults as D
from vllm_stack.catalog import FP8_MIN_COMPUTE_CAPABILITY

ENVIRONMENTS = ("dev", "prod")
#: When nothing says which environment a resource belongs to, judge it as production.
FALLBACK_ENVIRONMENT = "prod"
ADVISORY, MANDATORY, DISABLED = "advisory", "mandatory", "disabled"
LEVELS = (ADVISORY, MANDATORY, "remediate", DISABLED)

#: The rule ids, in report order.
POLICY_IDS = (
    "gpu-memory-utilization-ceiling",
    "model-fits-gpu",
    "fp8-requires-fp8-gpu",
    "no-secrets-in-argv",
    "secrets-only-in-secret-stores",
    "vllm-not-exposed",
    "tls-required-in-prod",
    "tls-min-version",
    "api-key-required",
    "on-demand-floor",
    "gpu-limits-and-probes",
    "pinned-images",
    "grafana-no-default-password",
    "no-invalid-vllm-flags",
)

#: Enforcement per environment — the ONE table (pack registration, pack config files, offline plan).
#: prod: everything blocks. dev: what only hurts availability or hygiene warns; what leaks a
#: secret, exposes an unauthenticated port or cannot start at all still blocks.
ENFORCEMENT: dict[str, dict[str, str]] = {
    "gpu-memory-utilization-ceiling": {"dev": MANDATORY, "prod": MANDATORY},  # dev judged at the hard ceiling
    "model-fits-gpu": {"dev": ADVISORY, "prod": MANDATORY},  # estimate; dev is where you try
    "fp8-requires-fp8-gpu": {"dev": MANDATORY, "prod": MANDATORY},  # weight-only FP8 findings are advisory
    "no-secrets-in-argv": {"dev": MANDATORY, "prod": MANDATORY},
    "secrets-only-in-secret-stores": {"dev": MANDATORY, "prod": MANDATORY},
    "vllm-not-exposed": {"dev": ADVISORY, "prod": MANDATORY},
    "tls-required-in-prod": {"dev": ADVISORY, "prod": MANDATORY},  # only fires in prod
    "tls-min-version": {"dev": MANDATORY, "prod": MANDATORY},
    "api-key-required": {"dev": MANDATORY, "prod": MANDATORY},
    "on-demand-floor": {"dev": ADVISORY, "prod": MANDATORY},  # floor only in prod; drain everywhere
    "gpu-limits-and-probes": {"dev": ADVISORY, "prod": MANDATORY},  # PDB only in prod
    "pinned-images": {"dev": ADVISORY, "prod": MANDATORY},
    "grafana-no-default-password": {"dev": MANDATORY, "prod": MANDATORY},
    "no-invalid-vllm-flags": {"dev": MANDATORY, "prod": MANDATORY},
}

_ENV_PROPERTY = {
    "type": "string",
    "enum": list(ENVIRONMENTS),
    "description": "Environment to judge the stack as; default: the resources' "
    f"`{D.LABEL_ENVIRONMENT}` label, then the stack config, then `{FALLBACK_ENVIRONMENT}`.",
}


def _num(
    default: float, description: str, *, minimum: float | None = 0, maximum: float | None = None, integer: bool = False
) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "integer" if integer else "number", "default": default, "description": description}
    if minimum is not None:
        prop["minimum"] = minimum
    if maximum is not None:
        prop["maximum"] = maximum
    return prop


#: Configurable thresholds per rule (JSON-schema properties; `environment` is added to every rule).
THRESHOLDS: dict[str, dict[str, dict[str, Any]]] = {
    "gpu-memory-utilization-ceiling": {
        "prodCeiling": _num(
            D.GPU_MEMORY_UTILIZATION_PROD_CEILING,
            "Highest --gpu-memory-utilization allowed in prod (seed 004).",
            maximum=1,
        ),
        "hardCeiling": _num(
            D.GPU_MEMORY_UTILIZATION_HARD_CEILING, "Highest --gpu-memory-utilization allowed anywhere.", maximum=1
        ),
    },
    "model-fits-gpu": {
        "overheadGiB": _num(D.RUNTIME_OVERHEAD_GIB, "Activation/CUDA-graph budget per GPU before KV cache, GiB."),
        "defaultUtilization": _num(
            D.VLLM_UPSTREAM_GPU_MEMORY_UTILIZATION,
            "Utilization assumed when an argv omits --gpu-memory-utilization.",
            maximum=1,
        ),
    },
    "fp8-requires-fp8-gpu": {
        "minComputeCapability": _num(FP8_MIN_COMPUTE_CAPABILITY, "Lowest CUDA compute capability with FP8 compute."),
    },
    "tls-min-version": {
        "minVersion": {
            "type": "string",
            "enum": ["TLSv1.2", "TLSv1.3"],
            "default": D.TLS_MIN_VERSION,
            "description": "Oldest protocol `ssl_protocols` may list.",
        },
    },
    "on-demand-floor": {
        "minOnDemand": _num(1, "On-demand replicas every model keeps in prod (seed 000).", integer=True),
        "drainSecondsMin": _num(
            D.DRAIN_SECONDS_MIN, "Shortest drain (preStop sleep / drain hook), seconds.", integer=True
        ),
        "drainSecondsMax": _num(D.DRAIN_SECONDS_MAX, "Longest drain, seconds.", integer=True),
    },
    "gpu-limits-and-probes": {
        "readinessDelayMinSeconds": _num(
            D.READINESS_DELAY_MIN_SEC, "Lowest readinessProbe.initialDelaySeconds of a vLLM container.", integer=True
        ),
    },
}


def schema_properties(policy_id: str) -> dict[str, dict[str, Any]]:
    """JSON-schema properties of one rule's config (PolicyConfigSchema(properties=...))."""
    return {"environment": dict(_ENV_PROPERTY), **{k: dict(v) for k, v in THRESHOLDS.get(policy_id, {}).items()}}


def enforcement_for(policy_id: str, environment: str, pack_config: Mapping[str, Any] | None = None) -> str:
    """Level of `policy_id` in `environment`, after pack-config overrides (CrossGuard's rules:
    `{"all": level}`, `{id: level}` or `{id: {"enforcementLevel": level, ...}}`)."""
    level = ENFORCEMENT[policy_id][environment if environment in ENVIRONMENTS else FALLBACK_ENVIRONMENT]
    cfg = pack_config or {}
    if isinstance(cfg.get("all"), str):
        level = cfg["all"]
    own = cfg.get(policy_id)
    if isinstance(own, str):
        level = own
    elif isinstance(own, Mapping) and isinstance(own.get("enforcementLevel"), str):
        level = own["enforcementLevel"]
    return MANDATORY if level == "remediate" else level


@dataclass(frozen=True)
class PolicyContext:
    """`environment`: dev | prod. `config`: pack config, policy id → {key: value} (CrossGuard shape)."""

    environment: str
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prod(self) -> bool:
        return self.environment != "dev"

    def threshold(self, policy_id: str, key: str) -> Any:
        own = self.config.get(policy_id)
        if isinstance(own, Mapping) and own.get(key) is not None:
            return own[key]
        return THRESHOLDS[policy_id][key]["default"]


def configured_environment(pack_config: Mapping[str, Any] | None, policy_id: str) -> str | None:
    own = (pack_config or {}).get(policy_id)
    env = own.get("environment") if isinstance(own, Mapping) else None
    return env if env in ENVIRONMENTS else None
