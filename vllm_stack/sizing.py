"""Memory fit and capacity, the way vLLM accounts for GPU memory, per GPU and per replica.

vLLM's KV budget per GPU (vllm/v1/worker/gpu_worker.py `determine_available_memory`):

    CUDA-visible total x gpu_memory_utilization
      - weights ("Model loading took X GiB": parameters + buffers of this GPU's shard)
      - activation peak of the profile run (max_num_batched_tokens forward, dummy sampler)
      - non-torch memory (NCCL / custom all-reduce buffers at tensor parallel > 1)
      - the CUDA-graph estimate (profiled and subtracted by default since v0.21)

Weights are counted per module class: Linear layers at the quantization's real bytes (4-bit
AWQ/GPTQ with their group scales and zeros, FP8 with its scales), the input embedding and lm_head
(unless tied) at 16 bits, norms, biases and the rotary cos/sin cache at the model dtype; Linear
layers, embedding and lm_head are split over the tensor-parallel GPUs, norms and the rotary cache
are replicated. Every constant is in `defaults.py` with its source; shared/notes/sizing.md has the
facts. Every input is visible in the result so the plan (and the model-fits-gpu policy) can show
the numbers behind a verdict. `Fit` keeps the replica totals it always had (`*_gib`) and adds the
per-GPU figures (`*_gib_per_gpu`).
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


def _int4_bytes(bits: int = 4, group: int = 128) -> float:
    """Bytes per Linear weight of AWQ/GPTQ: packed `bits` + an fp16 scale and a packed zero per group."""
    return bits / 8 + D.SCALE_BYTES_FP16 / group + bits / 8 / group


#: Bytes per Linear-layer parameter by `--quantization` value (vLLM keeps embeddings, lm_head and norms
#: 16-bit: vllm/model_executor/layers/quantization/fp8.py and auto_awq.py `get_quant_method` quantize
#: LinearBase only). The keys are every spelling the sizing model understands (the model-fits-gpu policy
#: skips any other); a pre-quantized checkpoint's own format wins over the flag (see `weight_format`).
WEIGHT_BYTES_PER_PARAM: dict[str, float] = {
    "none": float(D.BYTES_16BIT),  # fp16/bf16 checkpoints
    "fp8": 1.0,
    "awq": _int4_bytes(),
    "awq_marlin": _int4_bytes(),
    "auto_awq": _int4_bytes(),
    "gptq": _int4_bytes(),
    "gptq_marlin": _int4_bytes(),
    "auto_gptq": _int4_bytes(),
}
#: The stack's method for each spelling vLLM accepts.
METHOD_OF = {
    "none": "none",
    "fp8": "fp8",
    "awq": "awq",
    "awq_marlin": "awq",
    "auto_awq": "awq",
    "gptq": "gptq",
    "gptq_marlin": "gptq",
    "auto_gptq": "gptq",
}
KV_BYTES_PER_ELEMENT = {"auto": 2, "fp8": 1}


def weight_format(arch: Architecture, quantization: str) -> str:
    """What the Linear layers really hold: a pre-quantized checkpoint's own method, else the flag's."""
    if arch.checkpoint is not None:
        return arch.checkpoint.method
    return METHOD_OF[quantization.lower()]


def linear_bytes_per_param(arch: Architecture, method: str) -> float:
    ck = arch.checkpoint
    if method in ("awq", "gptq") and ck is not None and ck.group_size:
        return _int4_bytes(ck.bits, ck.group_size)
    return WEIGHT_BYTES_PER_PARAM[method]


@dataclass(frozen=True)
class Weights:
    """Bytes of one GPU's shard, by module class (and the replica's parameter count)."""

    linear: float
    embedding: float
    lm_head: float
    norms_and_biases: float
    rotary_cache: float
    params_total: float  # parameters of the whole model (all modules, unsharded)

    @property
    def total(self) -> float:
        return self.linear + self.embedding + self.lm_head + self.norms_and_biases + self.rotary_cache

    def as_gib(self) -> dict[str, float]:
        return {
            "linear": round(self.linear / GIB, 3),
            "embedding": round(self.embedding / GIB, 3),
            "lmHead": round(self.lm_head / GIB, 3),
            "normsAndBiases": round(self.norms_and_biases / GIB, 4),
            "rotaryCache": round(self.rotary_cache / GIB, 4),
        }


def _padded_vocab(vocab: int) -> int:
    return -(-vocab // D.VOCAB_PADDING) * D.VOCAB_PADDING


def weights(arch: Architecture, quantization: str, tensor_parallel: int = 1) -> Weights:
    """One GPU's weights at `tensor_parallel` (vLLM's "Model loading took X GiB" of that rank)."""
    tp = tensor_parallel
    method = weight_format(arch, quantization)
    per_linear = linear_bytes_per_param(arch, method)
    b16 = D.BYTES_16BIT
    rotary = arch.max_positions * arch.head_dim * b16  # cos_sin_cache buffer, one per model (get_rope cache)
    if not arch.has_shapes:  # inline architecture without module shapes: every parameter a Linear one
        return Weights(arch.params * per_linear / tp, 0.0, 0.0, 0.0, rotary, arch.params)
    h, inter, vocab = arch.hidden_size or 0, arch.intermediate_size or 0, _padded_vocab(arch.vocab_size or 0)
    q = arch.attention_heads * arch.head_dim
    kv = arch.kv_heads * arch.head_dim
    kv_gpu = max(1, arch.kv_heads // tp) * arch.head_dim  # KV heads are replicated when tp > kv_heads
    attn_full = h * (q + 2 * kv) + q * h
    attn_gpu = h * (q // tp + 2 * kv_gpu) + (q // tp) * h
    mlp_full = arch.experts * 3 * h * inter
    linear_full = arch.layers * (attn_full + mlp_full)
    linear_gpu = arch.layers * (attn_gpu + mlp_full / tp)
    router = arch.layers * h * arch.experts if arch.experts > 1 else 0  # ReplicatedLinear gate, kept 16-bit
    bias_full = arch.layers * (q + 2 * kv) if arch.qkv_bias else 0
    bias_gpu = arch.layers * (q // tp + 2 * kv_gpu) if arch.qkv_bias else 0
    norms = arch.layers * (2 * h + (2 * arch.head_dim if arch.qk_norm else 0)) + h
    scales = 0.0
    if method == "fp8" and arch.checkpoint is not None:  # per-channel float32 scales (one per output row)
        scales = arch.layers * ((q // tp + 2 * kv_gpu + h) + 2 * arch.experts * inter / tp + arch.experts * h)
        scales *= D.SCALE_BYTES_FP32
    embed = vocab * h
    lm_head = 0 if arch.tied_embeddings else vocab * h
    return Weights(
        linear=linear_gpu * per_linear + scales,
        embedding=embed / tp * b16,
        lm_head=lm_head / tp * b16,
        norms_and_biases=(norms + router + bias_gpu) * b16,
        rotary_cache=rotary,
        params_total=linear_full + embed + lm_head + norms + router + bias_full,
    )


def weight_bytes(arch: Architecture, quantization: str) -> float:
    """The whole model's weights (all tensor-parallel shards together, norms counted once)."""
    return weights(arch, quantization, 1).total


def kv_bytes_per_token(arch: Architecture, kv_cache_dtype: str) -> int:
    """2 (K and V) x layers x kv_heads x head_dim x bytes/element (the replica, all GPUs)."""
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * KV_BYTES_PER_ELEMENT[kv_cache_dtype]


def kv_bytes_per_token_per_gpu(arch: Architecture, kv_cache_dtype: str, tensor_parallel: int) -> int:
    heads = max(1, arch.kv_heads // tensor_parallel)
    return 2 * arch.layers * heads * arch.head_dim * KV_BYTES_PER_ELEMENT[kv_cache_dtype]


def default_batched_tokens(gpu: Gpu) -> int:
    """`vllm serve`'s default max_num_batched_tokens for this device (arg_utils get_batch_defaults)."""
    total = gpu.cuda_total_bytes
    if total >= D.BATCHED_TOKENS_LARGE_GIB * GIB:
        return D.BATCHED_TOKENS_LARGE
    if total >= D.BATCHED_TOKENS_H100_GIB * GIB and "a100" not in gpu.id.lower():
        return D.BATCHED_TOKENS_H100
    return D.BATCHED_TOKENS_SMALL


def _shape(arch: Architecture) -> tuple[int, int, int]:
    """hidden, intermediate, vocab; estimated from params and heads for a shapeless inline architecture."""
    if arch.has_shapes:
        return arch.hidden_size or 0, arch.intermediate_size or 0, arch.vocab_size or 0
    h = arch.attention_heads * arch.head_dim
    per_layer = arch.params / arch.layers
    attn = h * (h + 2 * arch.kv_heads * arch.head_dim) + h * h
    return h, max(h, int((per_layer - attn) / (3 * h))), 0


def activation_peak_bytes(arch: Architecture, tensor_parallel: int, batched_tokens: int, max_num_seqs: int) -> float:
    """Peak of the profile run on one GPU: the MLP of one layer at `batched_tokens` (residual + input
    + gate_up + act out, MoE: x experts per token) or the dummy sampler's logits, whichever is larger."""
    h, inter, vocab = _shape(arch)
    forward = batched_tokens * (2 * h + 3 * inter * arch.experts_per_token / tensor_parallel) * D.BYTES_16BIT
    sampler = max_num_seqs * vocab * D.SAMPLER_LOGITS_BYTES * D.SAMPLER_LOGITS_COPIES
    return max(forward, sampler)


def cudagraph_bytes(arch: Architecture, max_num_seqs: int) -> float:
    h, _, _ = _shape(arch)
    capture = min(D.CUDAGRAPH_CAPTURE_PER_SEQ * max_num_seqs, D.CUDAGRAPH_MAX_CAPTURE_SIZE)
    return D.CUDAGRAPH_BASE_GIB * GIB + arch.layers * h * capture * D.BYTES_16BIT


def non_torch_bytes(tensor_parallel: int) -> float:
    return (D.NON_TORCH_GIB + (D.NCCL_GIB if tensor_parallel > 1 else 0.0)) * GIB


@dataclass(frozen=True)
class Fit:
    model: str
    gpu: str
    tensor_parallel: int
    gpu_memory_utilization: float
    # replica totals (all tensor-parallel GPUs)
    vram_gib_total: float  # CUDA-visible total across the replica's GPUs (what vLLM sees)
    budget_gib: float  # CUDA-visible total x utilization
    weights_gib: float
    overhead_gib: float  # activation peak + non-torch + CUDA graphs (+ any extra reserve), all GPUs
    kv_gib: float  # what is left for the KV cache (may be negative)
    kv_bytes_per_token: int
    kv_tokens: int  # KV capacity in tokens
    max_model_len: int
    max_concurrency_full_context: int  # sequences at maxModelLen that fit at once
    max_num_seqs: int
    fits: bool
    reason: str
    # per GPU (what each of the tensor-parallel GPUs holds; vLLM logs these)
    board_gib_per_gpu: float = 0.0  # nvidia-smi size
    cuda_total_gib_per_gpu: float = 0.0
    budget_gib_per_gpu: float = 0.0
    weights_gib_per_gpu: float = 0.0
    activation_gib_per_gpu: float = 0.0
    non_torch_gib_per_gpu: float = 0.0
    cudagraph_gib_per_gpu: float = 0.0
    extra_reserve_gib_per_gpu: float = 0.0
    overhead_gib_per_gpu: float = 0.0
    kv_gib_per_gpu: float = 0.0
    max_num_batched_tokens: int = 0
    weight_format: str = "none"
    weights_breakdown_gib_per_gpu: dict[str, float] | None = None

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
    max_num_batched_tokens: int | None = None,
) -> Fit:
    """`overhead_gib`: extra reserve per GPU on top of the vLLM-like overhead estimate (0 by default)."""
    tp = tensor_parallel
    cuda_total = gpu.cuda_total_bytes
    budget = cuda_total * gpu_memory_utilization
    w = weights(arch, quantization, tp)
    tokens = max_num_batched_tokens or default_batched_tokens(gpu)
    act = activation_peak_bytes(arch, tp, tokens, max_num_seqs)
    nt = non_torch_bytes(tp)
    cg = cudagraph_bytes(arch, max_num_seqs)
    extra = overhead_gib * GIB
    overhead = act + nt + cg + extra
    kv = budget - w.total - overhead  # per GPU
    per_tok_gpu = kv_bytes_per_token_per_gpu(arch, kv_cache_dtype, tp)
    per_tok = kv_bytes_per_token(arch, kv_cache_dtype)
    kv_tokens = max(0, int(kv // per_tok_gpu))  # every GPU holds its heads of the same tokens
    conc = kv_tokens // max_model_len
    method = weight_format(arch, quantization)
    where = f"{tp}x {gpu.id} x {gpu_memory_utilization}"
    if w.total + overhead > budget:
        fits, reason = (
            False,
            f"per GPU: weights {w.total / GIB:.2f} GiB + overhead {overhead / GIB:.2f} GiB exceed "
            f"{budget / GIB:.2f} GiB ({where})",
        )
    elif conc < 1:
        fits, reason = (
            False,
            f"KV cache {kv * tp / GIB:.2f} GiB ({kv / GIB:.2f} GiB per GPU) holds {kv_tokens} tokens, less than "
            f"one sequence of maxModelLen {max_model_len}",
        )
    else:
        fits, reason = True, (f"{kv * tp / GIB:.1f} GiB KV = {kv_tokens} tokens = {conc} sequences of {max_model_len}")
    return Fit(
        model=name,
        gpu=gpu.id,
        tensor_parallel=tp,
        gpu_memory_utilization=gpu_memory_utilization,
        vram_gib_total=round(cuda_total * tp / GIB, 2),
        budget_gib=round(budget * tp / GIB, 2),
        weights_gib=round(w.total * tp / GIB, 2),
        overhead_gib=round(overhead * tp / GIB, 2),
        kv_gib=round(kv * tp / GIB, 2),
        kv_bytes_per_token=per_tok,
        kv_tokens=kv_tokens,
        max_model_len=max_model_len,
        max_concurrency_full_context=conc,
        max_num_seqs=max_num_seqs,
        fits=fits,
        reason=reason,
        board_gib_per_gpu=round(gpu.vram_bytes / GIB, 2),
        cuda_total_gib_per_gpu=round(cuda_total / GIB, 2),
        budget_gib_per_gpu=round(budget / GIB, 2),
        weights_gib_per_gpu=round(w.total / GIB, 2),
        activation_gib_per_gpu=round(act / GIB, 2),
        non_torch_gib_per_gpu=round(nt / GIB, 2),
        cudagraph_gib_per_gpu=round(cg / GIB, 2),
        extra_reserve_gib_per_gpu=round(extra / GIB, 2),
        overhead_gib_per_gpu=round(overhead / GIB, 2),
        kv_gib_per_gpu=round(kv / GIB, 2),
        max_num_batched_tokens=tokens,
        weight_format=method if arch.checkpoint is None else f"{method} (checkpoint)",
        weights_breakdown_gib_per_gpu=w.as_gib(),
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
