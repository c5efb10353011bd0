"""Memory fit and capacity: weights + KV cache against VRAM x utilization, per model.

Arithmetic follows vllm-facts.md "Memory arithmetic"; every input is visible in the
result so the plan (and the model-fits-gpu policy) can show the numbers behind a verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import defaults as D
from .catalog import Architecture, Gpu, gpus

if TYPE_CHECKING:
    from .config import ModelSpec

GIB = 1024**3
KIB = 1024

#: Bytes per parameter by `quantization` (4-bit formats carry ~5 % scales).
WEIGHT_BYTES_PER_PARAM = {
    "none": 2.0,  # fp16/bf16 checkpoints
    "fp8": 1.0,
    "awq": 0.5 * (1 + D.INT4_SCALE_OVERHEAD),
    "gptq": 0.5 * (1 + D.INT4_SCALE_OVERHEAD),
}
KV_BYTES_PER_ELEMENT = {"auto": 2, "fp8": 1}


def weight_bytes(arch: Architecture, quantization: str) -> float:
    return arch.params * WEIGHT_BYTES_PER_PARAM[quantization]


def kv_bytes_per_token(arch: Architecture, kv_cache_dtype: str) -> int:
    """2 (K and V) x layers x kv_heads x head_dim x bytes/element."""
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * KV_BYTES_PER_ELEMENT[kv_cache_dtype]


@dataclass(frozen=True)
class Fit:
    model: str
    gpu: str
    tensor_parallel: int
    gpu_memory_utilization: float
    vram_gib_total: float  # across the replica's GPUs
    budget_gib: float  # VRAM x utilization
    weights_gib: float
    overhead_gib: float
    kv_gib: float  # what is left for the KV cache (may be negative)
    kv_bytes_per_token: int
    kv_tokens: int  # KV capacity in tokens
    max_model_len: int
    max_concurrency_full_context: int  # sequences at maxModelLen that fit at once
    max_num_seqs: int
    fits: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(
    name: str,
    arch: Architecture,
    gpu: Gpu,
    *,
    tensor_parallel: int,
    quantization: str,
    kv_cache_dtype: str,
    max_model_len: int,
    max_num_seqs: int,
    gpu_memory_utilization: float,
    overhead_gib: float = D.RUNTIME_OVERHEAD_GIB,
) -> Fit:
    vram = gpu.vram_bytes * tensor_parallel
    budget = vram * gpu_memory_utilization
    weights = weight_bytes(arch, quantization)
    overhead = overhead_gib * GIB * tensor_parallel
    kv = budget - weights - overhead
    per_tok = kv_bytes_per_token(arch, kv_cache_dtype)
    kv_tokens = max(0, int(kv // per_tok))
    conc = kv_tokens // max_model_len
    if weights + overhead > budget:
        fits, reason = (
            False,
            (
                f"weights {weights / GIB:.1f} GiB + overhead {overhead / GIB:.1f} GiB exceed "
                f"{budget / GIB:.1f} GiB ({tensor_parallel}x {gpu.id} x {gpu_memory_utilization})"
            ),
        )
    elif conc < 1:
        fits, reason = (
            False,
            (
                f"KV cache {kv / GIB:.2f} GiB holds {kv_tokens} tokens, less than one sequence of "
                f"maxModelLen {max_model_len}"
            ),
        )
    else:
        fits, reason = True, (f"{kv / GIB:.1f} GiB KV = {kv_tokens} tokens = {conc} sequences of {max_model_len}")
    return Fit(
        model=name,
        gpu=gpu.id,
        tensor_parallel=tensor_parallel,
        gpu_memory_utilization=gpu_memory_utilization,
        vram_gib_total=round(vram / GIB, 2),
        budget_gib=round(budget / GIB, 2),
        weights_gib=round(weights / GIB, 2),
        overhead_gib=round(overhead / GIB, 2),
        kv_gib=round(kv / GIB, 2),
        kv_bytes_per_token=per_tok,
        kv_tokens=kv_tokens,
        max_model_len=max_model_len,
        max_concurrency_full_context=conc,
        max_num_seqs=max_num_seqs,
        fits=fits,
        reason=reason,
    )


def fit_for(spec: ModelSpec) -> Fit:
    """Fit of a `ModelSpec` (imported for the type checker only: this module stays free of config imports)."""
    return fit(
        spec.name,
        spec.model_info().architecture,
        gpus()[spec.gpu],
        tensor_parallel=spec.tensor_parallel,
        quantization=spec.quantization,
        kv_cache_dtype=spec.kv_cache_dtype,
        max_model_len=spec.max_model_len,
        max_num_seqs=spec.max_num_seqs,
        gpu_memory_utilization=spec.gpu_memory_utilization,
    )


def instances_needed(peak_rps: float, single_instance_rps: float, buffer_pct: float) -> int:
    """ceil(peak / single x (1 + buffer)) — seed 000 'Horizontal Scaling'."""
    # round before ceil: 60/12*1.2 is 6.000000000000001 in floating point
    return max(1, math.ceil(round(peak_rps / single_instance_rps * (1 + buffer_pct / 100), 9)))


def readiness_delay_seconds(params: float) -> int:
    """Readiness initialDelaySeconds scaled by model size, clamped to seed 003's 120-300 s."""
    raw = params / 1e9 * D.READINESS_DELAY_PER_B_PARAMS
    return int(min(D.READINESS_DELAY_MAX_SEC, max(D.READINESS_DELAY_MIN_SEC, round(raw))))
