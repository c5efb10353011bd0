"""Cross-field checks pydantic field types cannot express (catalog look-ups, placement).

Each problem is (key path, message) so the loader reports the key the user typed.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from . import flags
from .catalog import lookup_model, models as catalog_models
from .placement import PlacementError, place
from .render.weights import NAME_PREFIX as WEIGHTS_NAME_PREFIX

if TYPE_CHECKING:
    from .config import StackConfig


def _address_key(address: str) -> str:
    """One spelling per machine: `10.0.0.1` / `::FFFF:10.0.0.1` / `GPU-1.example.` compare equal."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.lower().rstrip(".")
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


def allowed_quantizations(model_id: str) -> tuple[str, ...]:
    """`quantization` values vLLM can load for a catalog checkpoint (vllm/config/model.py
    `_verify_quantization`): a pre-quantized checkpoint loads with its own method only (any other
    `--quantization` is a start-up error: "does not match the quantization method specified"); a
    16-bit checkpoint loads as is or quantized online to FP8; AWQ/GPTQ need a checkpoint that carries
    them ("Cannot find the config file for awq")."""
    info = lookup_model(model_id)
    ck = info.architecture.checkpoint if info is not None else None
    return (ck.method,) if ck is not None else ("none", "fp8")


def _quantization_problems(p: str, model_id: str, quantization: str) -> list[tuple[str, str]]:
    allowed = allowed_quantizations(model_id)
    if quantization in allowed:
        return []
    info = lookup_model(model_id)
    ck = info.architecture.checkpoint if info is not None else None
    if ck is None:
        quantized = sorted(
            {
                i.id
                for i in catalog_models().values()
                if i.architecture.checkpoint is not None and i.architecture.checkpoint.method == quantization
            }
        )
        why = f"{model_id} is a 16-bit checkpoint, not {quantization.upper()} (vLLM fails at start); " + (
            f"use a pre-quantized checkpoint such as {', '.join(quantized)}, or " if quantized else ""
        )
    else:
        why = f"{model_id} is a pre-quantized {ck.method.upper()} checkpoint (vLLM loads it as such); "
    return [(f"{p}.quantization", f"{quantization} is not allowed; {why}allowed: {', '.join(allowed)}")]


def validate_semantics(cfg: StackConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for i, m in enumerate(cfg.models):
        p = f"models[{i}]"
        if m.architecture is None and lookup_model(m.model) is None:
            known = sorted({info.id for info in catalog_models().values()})
            problems.append(
                (
                    f"{p}.model",
                    f'"{m.model}" is not in the model catalog; add `architecture` '
                    f"(params, layers, kvHeads, headDim, attentionHeads, maxPositions) or use one "
                    f"of: {', '.join(known)}",
                )
            )
            continue
        arch = m.model_info().architecture
        if m.architecture is None:
            problems += _quantization_problems(p, m.model, m.quantization)
        if m.max_model_len > arch.max_positions:
            problems.append(
                (
                    f"{p}.maxModelLen",
                    f"{m.max_model_len} is not allowed; {m.model} supports at most {arch.max_positions} positions",
                )
            )
        if arch.attention_heads % m.tensor_parallel:
            divisors = [d for d in range(1, 9) if arch.attention_heads % d == 0]
            problems.append(
                (
                    f"{p}.tensorParallel",
                    f"{m.tensor_parallel} is not allowed; it must divide the "
                    f"{arch.attention_heads} attention heads of {m.model}; allowed: "
                    f"{', '.join(map(str, divisors))}",
                )
            )
        if m.pool.replicas < 1:
            problems.append(
                (
                    f"{p}.pool",
                    "0 replicas is not allowed; set onDemand and/or spot so at least one replica serves the model",
                )
            )
        reserved = WEIGHTS_NAME_PREFIX.removeprefix("vllm-")
        if m.name.startswith(reserved):
            problems.append(
                (
                    f"{p}.name",
                    f'"{m.name}" is not allowed; names starting with `{reserved}` are reserved: the weights '
                    f"pre-fetch of a model is `{WEIGHTS_NAME_PREFIX}<name>`, a model's vLLM units/containers "
                    "are `vllm-<name>`, and the two would collide",
                )
            )
        for j, msg in flags.problems(m.extra_args):
            problems.append((f"{p}.extraArgs[{j}]", msg))
        if cfg.platform == "kubernetes":
            problems += _kubernetes_name_problems(p, m.name)
            if m.pool.spot_ceiling and cfg.monitoring.prometheus_operator and cfg.monitoring.prometheus_url is None:
                problems.append(
                    (
                        "monitoring.prometheusUrl",
                        "required key is missing; with prometheusOperator the "
                        f"stack runs no Prometheus, and KEDA needs one to scale the spot replicas of {m.name}",
                    )
                )
    defaults = [i for i, m in enumerate(cfg.models) if m.default]
    if len(defaults) > 1:
        problems.append(
            (
                f"models[{defaults[1]}].default",
                f"true is not allowed; models[{defaults[0]}] is already "
                "the default model (at most one `default: true`)",
            )
        )
    if cfg.platform == "docker":
        if not cfg.hosts:
            problems.append(("hosts", "the docker platform needs at least one host"))
        names = [h.name for h in cfg.hosts]
        for n in sorted({n for n in names if names.count(n) > 1}):
            problems.append(("hosts", f'host name "{n}" is used twice'))
        seen: dict[str, int] = {}
        for i, h in enumerate(cfg.hosts):
            key = _address_key(h.address)
            if key in seen:
                problems.append(
                    (
                        f"hosts[{i}].address",
                        f'"{h.address}" is not allowed; hosts[{seen[key]}] has the '
                        "same address (one machine listed twice would double-book its GPUs)",
                    )
                )
            seen.setdefault(key, i)
        for key, val in (("front.host", cfg.front.host), ("monitoring.host", cfg.monitoring.host)):
            if val is not None and val not in names:
                problems.append((key, f'"{val}" is not allowed; allowed: {", ".join(names) or "(no hosts)"}'))
        if not problems:
            try:
                place(cfg)
            except PlacementError as exc:
                problems.append((exc.path, exc.message))
    return problems


def _kubernetes_name_problems(path: str, name: str) -> list[tuple[str, str]]:
    """Names the Kubernetes objects of a model must satisfy (render/k8s_common.model_name_problem)."""
    from .render.k8s_common import model_name_problem

    problem = model_name_problem(name)
    return [] if problem is None else [(f"{path}.name", problem)]
