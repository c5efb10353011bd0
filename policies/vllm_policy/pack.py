"""CrossGuard wrappers around the plain checks in `checks.py`.

`build_policies()` returns one `ResourceValidationPolicy` / `StackValidationPolicy` per declared
`Rule` (`checks.RULES`; plus `<id>-advisory` companions for rules with advisory findings, see
below), each with a `PolicyConfigSchema` (`environment` + the rule's declared thresholds).

Enforcement. CrossGuard fixes a policy's level when the pack starts, before it knows which
stack it judges, so:
* every policy is registered at its declared **prod** level (forgetting the config file fails
  safe: strict);
* `policies/config/<env>.json` (generated from the same table by `pack_config(env)`, checked by
  tests/policy) sets each policy's `enforcementLevel` and `environment` for that environment:
  `pulumi preview --policy-pack policies --policy-pack-config policies/config/dev.json`.

Environment inside a check: the policy config's `environment`, else the resource's
`vllm-stack/environment` label, else the stack config `vllm-stack:environment` when the CLI
exposes it to the pack, else prod.

Mixed levels: `fp8-requires-fp8-gpu` blocks FP8 KV cache on pre-Ada GPUs but only warns about
weight-only FP8 (Marlin). A CrossGuard policy has one level, so the warning half is registered
as `fp8-requires-fp8-gpu-advisory` (always advisory); the offline plan reports both under
`fp8-requires-fp8-gpu` with their own levels.

Never construct `PolicyPack` here: it starts a gRPC server and blocks (policies/__main__.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from vllm_stack import defaults as D

from . import shapes as S
from .checks import RULES, Res
from .context import ADVISORY, ENVIRONMENTS, FALLBACK_ENVIRONMENT, PolicyContext, Rule

PACK_NAME = "vllm-stack-policies"
ADVISORY_SUFFIX = "-advisory"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY


def _level(name: str) -> EnforcementLevel:
    return EnforcementLevel(name)


def _stack_config_environment() -> str | None:
    """`vllm-stack:environment` from the stack config, when the CLI passes it to the pack."""
    try:
        from pulumi.runtime.config import get_config

        value = get_config(f"{D.PROJECT}:environment")
    except Exception:  # noqa: BLE001 - no runtime/config: not an error, just unknown
        return None
    return value if value in ENVIRONMENTS else None


def resolve_environment(config: Mapping[str, Any] | None, label_envs: list[str | None]) -> str:
    env = (config or {}).get("environment")
    if env in ENVIRONMENTS:
        return env
    labelled = {e for e in label_envs if e in ENVIRONMENTS}
    if labelled:
        return "prod" if "prod" in labelled else labelled.pop()
    return _stack_config_environment() or FALLBACK_ENVIRONMENT


def _resource_validator(rule: Rule, want_advisory: bool):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        config = dict(args.get_config() or {})
        labels = S.resource_labels(args.resource_type, args.props)
        ctx = PolicyContext(resolve_environment(config, [labels.get(D.LABEL_ENVIRONMENT)]), {rule.id: config})

        def report(message: str, *, advisory: bool = False) -> None:
            if advisory == want_advisory:
                report_violation(message, None)

        rule.check(args.resource_type, args.props, ctx, report, secret_keys=None)

    validate.__name__ = f"{rule.id.replace('-', '_')}_validator"
    return validate


def _stack_validator(rule: Rule):
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        config = dict(args.get_config() or {})
        resources = [
            Res(r.resource_type, r.props, r.urn, r.name, None, r.parent.urn if r.parent else "") for r in args.resources
        ]
        envs = [S.resource_labels(r.type, r.props).get(D.LABEL_ENVIRONMENT) for r in resources]
        ctx = PolicyContext(resolve_environment(config, envs), {rule.id: config})

        def report(message: str, urn: str | None = None, *, advisory: bool = False) -> None:
            if not advisory:
                report_violation(message, urn)

        rule.check(resources, ctx, report)

    validate.__name__ = f"{rule.id.replace('-', '_')}_validator"
    return validate


def _policy(rule: Rule, *, advisory_half: bool = False):
    name = rule.id + (ADVISORY_SUFFIX if advisory_half else "")
    level = _level(ADVISORY if advisory_half else rule.levels["prod"])
    description = rule.description if not advisory_half else f"(advisory findings of {rule.id}) {rule.description}"
    schema = PolicyConfigSchema(properties=rule.schema_properties())
    if rule.scope == "stack":
        return StackValidationPolicy(
            name=name,
            description=description,
            enforcement_level=level,
            config_schema=schema,
            validate=_stack_validator(rule),
            remediation_steps=rule.remediation or None,
        )
    return ResourceValidationPolicy(
        name=name,
        description=description,
        enforcement_level=level,
        config_schema=schema,
        validate=_resource_validator(rule, advisory_half),
        remediation_steps=rule.remediation or None,
    )


def build_policies() -> list:
    out = []
    for rule in RULES:
        out.append(_policy(rule))
        if rule.advisory_findings:
            out.append(_policy(rule, advisory_half=True))
    return out


def pack_config(environment: str) -> dict[str, dict[str, Any]]:
    """The `--policy-pack-config` JSON for one environment (from each rule's declared levels)."""
    out: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        out[rule.id] = {"enforcementLevel": rule.levels[environment], "environment": environment}
        if rule.advisory_findings:
            out[rule.id + ADVISORY_SUFFIX] = {"enforcementLevel": ADVISORY, "environment": environment}
    return out


def render_pack_config(environment: str) -> str:
    return json.dumps(pack_config(environment), indent=2, sort_keys=True) + "\n"


DOCS = Path(__file__).resolve().parents[2] / "docs" / "policies.md"
RULES_START, RULES_END = (
    "<!-- rules table: generated by `python -m vllm_policy.pack` -->",
    "<!-- end of rules table -->",
)
_LEVEL_LETTER = {ADVISORY: "A", "mandatory": "M", "remediate": "M", "disabled": "–"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_rules_table() -> str:
    """docs/policies.md's table of rules, from the declarations (nothing in it is typed twice)."""

    def level(rule: Rule, env: str) -> str:
        letter = _LEVEL_LETTER[rule.levels[env]]
        return f"{letter} / A" if rule.advisory_findings and letter != "A" else letter

    rows = [
        "| id | checks | reads | dev | prod | config keys |",
        "|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        keys = ", ".join(
            f"`{t.key}` ({t.default:g})" if not t.enum else f"`{t.key}` ({t.default})" for t in rule.thresholds
        )
        rows.append(
            f"| `{rule.id}` | {_cell(rule.description)} | {_cell(rule.reads)} | {level(rule, 'dev')} | "
            f"{level(rule, 'prod')} | {keys or '–'} |"
        )
    return "\n".join(rows) + "\n"


def write_docs(path: Path = DOCS) -> Path:
    text = path.read_text()
    if RULES_START not in text or RULES_END not in text:
        raise SystemExit(f"{path} lacks the rules table markers")
    head, rest = text.split(RULES_START, 1)
    tail = rest.split(RULES_END, 1)[1]
    path.write_text(head + RULES_START + "\n" + render_rules_table() + RULES_END + tail)
    return path


def write_pack_configs(directory: Path = CONFIG_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for env in ENVIRONMENTS:
        path = directory / f"{env}.json"
        path.write_text(render_pack_config(env))
        written.append(path)
    return written


if __name__ == "__main__":  # PYTHONPATH=policies .venv/bin/python -m vllm_policy.pack
    for p in [*write_pack_configs(), write_docs()]:
        print(p)
