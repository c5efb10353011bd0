"""What every check sees besides the resource: the environment and the pack's thresholds.

Each rule is one `Rule` declaration (checks.py): id, description, levels per environment,
thresholds (JSON-schema properties whose defaults come from `vllm_stack.defaults`), scope and
check. The CrossGuard pack turns a rule's thresholds into its `PolicyConfigSchema` and the
offline plan reads the same defaults, so a `--policy-pack-config` file and
`evaluate(..., pack_config=...)` take the same JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from vllm_stack import defaults as D

ENVIRONMENTS = ("dev", "prod")
#: When nothing says which environment a resource belongs to, judge it as production.
FALLBACK_ENVIRONMENT = "prod"
ADVISORY, MANDATORY, DISABLED = "advisory", "mandatory", "disabled"
LEVELS = (ADVISORY, MANDATORY, "remediate", DISABLED)


@dataclass(frozen=True)
class Threshold:
    """One configurable number (or choice) of a rule: a `PolicyConfigSchema` property whose default
    comes from `vllm_stack.defaults` (never re-typed here)."""

    key: str
    default: Any
    description: str
    minimum: float | None = 0
    maximum: float | None = None
    integer: bool = False
    enum: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        if isinstance(self.default, bool):
            return {"type": "boolean", "default": self.default, "description": self.description}
        if self.enum:
            return {"type": "string", "enum": list(self.enum), "default": self.default, "description": self.description}
        prop: dict[str, Any] = {
            "type": "integer" if self.integer else "number",
            "default": self.default,
            "description": self.description,
        }
        if self.minimum is not None:
            prop["minimum"] = self.minimum
        if self.maximum is not None:
            prop["maximum"] = self.maximum
        return prop


@dataclass(frozen=True)
class Rule:
    """One policy, declared once: everything the pack, the pack-config files, the offline plan and
    the docs say about a rule is derived from this object.

    `levels`: enforcement per environment (prod: everything blocks; dev: what only hurts
    availability or hygiene warns; what leaks a secret, exposes an unauthenticated port or cannot
    start at all still blocks). `check`: resource rules `(resource_type, props, ctx, report,
    secret_keys=None)`, stack rules `(resources, ctx, report)`. `advisory_findings`: the rule also
    reports findings that never block (`report(..., advisory=True)`); CrossGuard fixes one level per
    policy, so those are registered as `<id>-advisory`."""

    id: str
    description: str
    check: Callable[..., None]
    levels: Mapping[str, str]
    scope: str = "resource"  # "resource" | "stack"
    thresholds: tuple[Threshold, ...] = ()
    remediation: str = ""
    advisory_findings: bool = False
    reads: str = ""  # which resource shapes and fields the check reads (docs/policies.md)

    def __post_init__(self) -> None:
        if set(self.levels) != set(ENVIRONMENTS) or not set(self.levels.values()) <= set(LEVELS):
            raise ValueError(f"{self.id}: levels must give one of {LEVELS} for each of {ENVIRONMENTS}")
        if self.scope not in ("resource", "stack"):
            raise ValueError(f"{self.id}: scope must be resource or stack")

    def threshold(self, key: str) -> Threshold:
        return next(t for t in self.thresholds if t.key == key)

    def schema_properties(self) -> dict[str, dict[str, Any]]:
        """JSON-schema properties of this rule's config (PolicyConfigSchema(properties=...))."""
        return {"environment": dict(_ENV_PROPERTY), **{t.key: t.schema() for t in self.thresholds}}


_ENV_PROPERTY = {
    "type": "string",
    "enum": list(ENVIRONMENTS),
    "description": "Environment to judge the stack as; default: the resources' "
    f"`{D.LABEL_ENVIRONMENT}` label, then the stack config, then `{FALLBACK_ENVIRONMENT}`.",
}


def enforcement_for(rule: Rule, environment: str, pack_config: Mapping[str, Any] | None = None) -> str:
    """Level of `rule` in `environment`, after pack-config overrides (CrossGuard's rules:
    `{"all": level}`, `{id: level}` or `{id: {"enforcementLevel": level, ...}}`)."""
    policy_id = rule.id
    level = rule.levels[environment if environment in ENVIRONMENTS else FALLBACK_ENVIRONMENT]
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
        from .checks import RULES_BY_ID  # the registry imports this module

        return RULES_BY_ID[policy_id].threshold(key).default


def configured_environment(pack_config: Mapping[str, Any] | None, policy_id: str) -> str | None:
    own = (pack_config or {}).get(policy_id)
    env = own.get("environment") if isinstance(own, Mapping) else None
    return env if env in ENVIRONMENTS else None
