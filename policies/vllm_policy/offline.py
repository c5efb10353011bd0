"""Evaluate every registered policy over recorded resources (used by `vllm_stack plan`).

The same check functions as the CrossGuard pack, fed `RecordedResource`s from the mock
engine. Differences from the CLI, on purpose:
* the environment comes from the stack config (`environment=`), unless the pack config sets
  `environment` for a policy;
* secret-ness of inputs is known (`secret_keys`), so checks that need it are stricter here;
* a rule's advisory findings (fp8 weight-only) keep the rule's id with level `advisory`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .checks import RULES, Res
from .context import ADVISORY, DISABLED, PolicyContext, configured_environment, enforcement_for

_LEVEL_ORDER = {"mandatory": 0, "advisory": 1}


def _res(r: Any) -> Res:
    return Res(
        type=r.type,
        props=dict(r.inputs),
        urn=r.urn,
        name=r.name,
        secret_keys=frozenset(r.secret_keys),
        parent=r.parent or "",
    )


def evaluate(resources: Iterable[Any], *, environment: str, pack_config: Mapping[str, Any] | None = None) -> list[dict]:
    """Violation dicts `{policy, enforcement, message, urn}`, sorted (mandatory first, then policy, urn, message)."""
    pack_config = pack_config or {}
    everything = [_res(r) for r in resources]
    # Resource rules see components too (their registered inputs, as CrossGuard does); stack rules
    # see custom resources only (under the CLI a component's stack-time props are its outputs).
    custom = [_res(r) for r in resources if getattr(r, "custom", True)]
    out: list[dict] = []
    for rule in RULES:
        env = configured_environment(pack_config, rule.id) or environment
        level = enforcement_for(rule, env, pack_config)
        if level == DISABLED:
            continue
        ctx = PolicyContext(env, pack_config)

        def add(message: str, urn: str | None, advisory: bool, _rule=rule, _level=level) -> None:
            out.append(
                {
                    "policy": _rule.id,
                    "enforcement": ADVISORY if advisory else _level,
                    "message": message,
                    "urn": urn or "",
                }
            )

        if rule.scope == "stack":
            rule.check(custom, ctx, lambda message, urn=None, *, advisory=False: add(message, urn, advisory))
        else:
            for r in everything:
                rule.check(
                    r.type,
                    r.props,
                    ctx,
                    lambda message, *, advisory=False, _urn=r.urn: add(message, _urn, advisory),
                    secret_keys=r.secret_keys,
                )
    unique = {(v["policy"], v["enforcement"], v["urn"], v["message"]): v for v in out}
    return sorted(
        unique.values(), key=lambda v: (_LEVEL_ORDER.get(v["enforcement"], 2), v["policy"], v["urn"], v["message"])
    )
