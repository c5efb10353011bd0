"""Cross-field checks pydantic field types cannot express (catalog look-ups, placement).

Each problem is (key path, message) so the loader reports the key the user typed.
"""
from __future__ import annotations

from . import flags
from .catalog import lookup_model, models as catalog_models
from .placement import PlacementError, place


def validate_semantics(cfg) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for i, m in enumerate(cfg.models):
        p = f"models[{i}]"
        if m.architecture is None and lookup_model(m.model) is None:
            known = sorted({info.id for info in catalog_models().values()})
            problems.append((f"{p}.model", f"\"{m.model}\" is not in the model catalog; add `architecture` "
                                           f"(params, layers, kvHeads, headDim, attentionHeads, maxPositions) or use one "
                                           f"of: {', '.join(known)}"))
            continue
        arch = m.model_info().architecture
        if m.max_model_len > arch.max_positions:
            problems.append((f"{p}.maxModelLen", f"{m.max_model_len} is not allowed; {m.model} supports at most "
                                                 f"{arch.max_positions} positions"))
        if arch.attention_heads % m.tensor_parallel:
            divisors = [d for d in range(1, 9) if arch.attention_heads % d == 0]
            problems.append((f"{p}.tensorParallel", f"{m.tensor_parallel} is not allowed; it must divide the "
                                                    f"{arch.attention_heads} attention heads of {m.model}; allowed: "
                                                    f"{', '.join(map(str, divisors))}"))
        if m.pool.replicas < 1:
            problems.append((f"{p}.pool", "0 replicas is not allowed; set onDemand and/or spot so at least one "
                                          "replica serves the model"))
        for j, msg in flags.problems(m.extra_args):
            problems.append((f"{p}.extraArgs[{j}]", msg))
    if cfg.platform == "docker":
        if not cfg.hosts:
            problems.append(("hosts", "the docker platform needs at least one host"))
        names = [h.name for h in cfg.hosts]
        for n in sorted({n for n in names if names.count(n) > 1}):
            problems.append(("hosts", f"host name \"{n}\" is used twice"))
        for key, val in (("front.host", cfg.front.host), ("monitoring.host", cfg.monitoring.host)):
            if val is not None and val not in names:
                problems.append((key, f"\"{val}\" is not allowed; allowed: {', '.join(names) or '(no hosts)'}"))
        if not problems:
            try:
                place(cfg)
            except PlacementError as exc:
                problems.append((exc.path, exc.message))
    return problems
