"""The cheapest deployment that fits and meets a latency SLA at a peak load (`python -m vllm_stack recommend`).

Pure: catalog figures in, ranked candidates out. A candidate is a checkpoint of the model family
(the 16-bit model, its pre-quantized AWQ/GPTQ/FP8 checkpoints) x a quantization that checkpoint can
load x a GPU x tensor parallel; its replica count follows from the load. Each is sized with
`vllm_stack.sizing.fit` (KV cache like vLLM's accounting) and timed with a roofline model:

* decode is memory-bound: one engine step reads this GPU's weights once and the KV cache of every
  running sequence: step = (weights + batch x context x KV bytes/token) / (bandwidth x MBU), or the
  compute time of 2 x active params x batch FLOPs if larger, plus a fixed step overhead; ITL = step;
* prefill is compute-bound: 2 x active params x prompt tokens / (FLOPS x MFU), FP8 FLOPS for W8A8;
* a replica runs the largest batch whose ITL p95 meets the SLA (and whose sequences fit the KV
  cache and max_num_seqs); its request rate is what is left after prefills:
  rps = tokens/s / (output + prefill seconds x tokens/s);
* replicas = ceil(peak rps x (1 + headroom) / rps per replica); on-demand floor, the rest spot where
  the GPU has a spot price.

Every figure comes from the GPU catalog (bandwidth, FLOPS, prices: data/gpus.yaml with sources) or
`defaults.py` (efficiencies, marked as estimates).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from . import defaults as D
from . import sizing
from .catalog import Architecture, Gpu, ModelInfo, gpus, lookup_model, models
from .semantics import allowed_quantizations

GB = 1e9


@dataclass(frozen=True)
class Request:
    model: str
    peak_rps: float
    prompt_tokens: int
    output_tokens: int
    ttft_p95_ms: float
    itl_p95_ms: float
    max_model_len: int
    gpus: tuple[str, ...]
    on_demand_floor: int = D.RECOMMEND_ON_DEMAND_FLOOR
    headroom_pct: float = D.LOAD_BUFFER_PCT_DEFAULT
    max_num_seqs: int = D.VLLM_MAX_NUM_SEQS
    gpu_memory_utilization: float = D.VLLM_GPU_MEMORY_UTILIZATION


@dataclass(frozen=True)
class Perf:
    batch: int  # concurrent sequences one replica runs
    itl_ms: float  # mean inter-token latency at that batch
    itl_p95_ms: float
    ttft_p95_ms: float
    prefill_ms: float
    tokens_per_second: float  # output tokens/s of one replica at that batch (decode only)
    rps_per_replica: float  # requests/s one replica sustains, prefills included


@dataclass(frozen=True)
class Candidate:
    checkpoint: str
    quantization: str
    gpu: str
    tensor_parallel: int
    fits: bool
    meets_sla: bool
    why_not: str
    kv_gib_per_gpu: float
    kv_tokens: int
    perf: Perf | None
    replicas: int
    on_demand: int
    spot: int
    monthly: float  # $/month of all replicas
    per_million_tokens: float | None  # $ per 1M output tokens at peak

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _active_params(arch: Architecture, params: float) -> float:
    """Parameters one token goes through (MoE: only experts_per_token of the experts)."""
    if arch.experts <= 1 or not arch.has_shapes:
        return params
    per_expert = arch.layers * 3 * (arch.hidden_size or 0) * (arch.intermediate_size or 0)
    return params - (arch.experts - arch.experts_per_token) * per_expert


def _flops(gpu: Gpu, method: str) -> float:
    """Dense tensor FLOPS of one GPU for this weight format (W8A8 FP8 uses the FP8 tensor cores)."""
    if method == "fp8" and gpu.fp8_tflops:
        return gpu.fp8_tflops * 1e12
    return gpu.bf16_tflops * 1e12


@dataclass(frozen=True)
class Roofline:
    """One replica's step-time model (per GPU; all GPUs of the replica step together)."""

    weights_bytes: float  # this GPU's weights, read once per decode step
    kv_bytes_per_token: int  # this GPU's share of one token's KV cache
    bandwidth: float  # effective bytes/s
    flops: float  # effective FLOPS
    active_params: float  # this GPU's share of the parameters one token goes through

    def step_s(self, batch: int, context: float) -> float:
        """One decode step of `batch` sequences at mean `context` tokens: memory- or compute-bound."""
        memory = (self.weights_bytes + batch * context * self.kv_bytes_per_token) / self.bandwidth
        compute = 2 * self.active_params * batch / self.flops
        return max(memory, compute) + D.DECODE_STEP_OVERHEAD_MS / 1000

    def prefill_s(self, prompt_tokens: int) -> float:
        return 2 * self.active_params * prompt_tokens / self.flops

    def tokens_per_second(self, batch: int, context: float) -> float:
        return batch / self.step_s(batch, context)


def roofline_of(arch: Architecture, gpu: Gpu, quantization: str, tp: int, kv_cache_dtype: str = "auto") -> Roofline:
    method = sizing.weight_format(arch, quantization)
    w = sizing.weights(arch, quantization, tp)
    eff = D.TP_EFFICIENCY if tp > 1 else 1.0
    return Roofline(
        weights_bytes=w.total,
        kv_bytes_per_token=sizing.kv_bytes_per_token_per_gpu(arch, kv_cache_dtype, tp),
        bandwidth=gpu.mem_bandwidth_gbs * GB * D.ROOFLINE_MBU * eff,
        flops=_flops(gpu, method) * D.ROOFLINE_MFU * eff,
        active_params=_active_params(arch, w.params_total) / tp,
    )


def roofline(
    arch: Architecture, gpu: Gpu, quantization: str, tp: int, fit: sizing.Fit, req: Request, kv_cache_dtype: str
) -> Perf | None:
    """Largest batch meeting the ITL SLA, its latencies and the replica's request rate (None: none does)."""
    model = roofline_of(arch, gpu, quantization, tp, kv_cache_dtype)
    ctx = req.prompt_tokens + req.output_tokens / 2  # mean context of a decoding sequence
    max_batch = min(req.max_num_seqs, fit.kv_tokens // max(1, req.prompt_tokens + req.output_tokens))
    prefill_s = model.prefill_s(req.prompt_tokens)
    best: Perf | None = None
    for b in range(1, max_batch + 1):
        itl = model.step_s(b, ctx)
        if itl * D.ITL_P95_FACTOR * 1000 > req.itl_p95_ms:
            break  # step time grows with the batch
        tps = b / itl
        rps = tps / (req.output_tokens + prefill_s * tps)
        ttft = (prefill_s + itl) * D.TTFT_P95_FACTOR * 1000
        best = Perf(
            batch=b,
            itl_ms=round(itl * 1000, 2),
            itl_p95_ms=round(itl * D.ITL_P95_FACTOR * 1000, 2),
            ttft_p95_ms=round(ttft, 1),
            prefill_ms=round(prefill_s * 1000, 1),
            tokens_per_second=round(tps, 1),
            rps_per_replica=round(rps, 4),
        )
    return best


def family(model_id: str) -> list[ModelInfo]:
    """The model and every catalog checkpoint quantized from the same base (base first)."""
    info = lookup_model(model_id)
    if info is None:
        raise KeyError(model_id)
    base = info.quantized_from or info.id
    unique = {m.id: m for m in models().values()}
    return sorted(
        (m for m in unique.values() if m.id == base or m.quantized_from == base), key=lambda m: (m.id != base, m.id)
    )


def candidates(req: Request) -> list[Candidate]:
    out: list[Candidate] = []
    for info in family(req.model):
        arch = info.architecture
        for quant in allowed_quantizations(info.id):
            for gid in req.gpus:
                gpu = gpus()[gid]
                method = sizing.weight_format(arch, quant)
                if method == "fp8" and not gpu.supports_fp8:
                    continue  # fp8-requires-fp8-gpu: W8A8 needs compute capability >= 8.9
                for tp in D.RECOMMEND_TP_SIZES:
                    if arch.attention_heads % tp:
                        continue
                    out.append(_candidate(req, info, quant, gpu, tp))
    return out


def _candidate(req: Request, info: ModelInfo, quant: str, gpu: Gpu, tp: int) -> Candidate:
    arch, kv_dtype = info.architecture, "auto"
    f = sizing.fit(
        info.id,
        arch,
        gpu,
        tensor_parallel=tp,
        quantization=quant,
        kv_cache_dtype=kv_dtype,
        max_model_len=req.max_model_len,
        max_num_seqs=req.max_num_seqs,
        gpu_memory_utilization=req.gpu_memory_utilization,
    )

    def out(
        fits: bool,
        meets: bool,
        why: str,
        perf: Perf | None = None,
        replicas: int = 0,
        on_demand: int = 0,
        spot: int = 0,
        monthly: float = math.inf,
        per_million: float | None = None,
    ) -> Candidate:
        return Candidate(
            checkpoint=info.id,
            quantization=quant,
            gpu=gpu.id,
            tensor_parallel=tp,
            fits=fits,
            meets_sla=meets,
            why_not=why,
            kv_gib_per_gpu=f.kv_gib_per_gpu,
            kv_tokens=f.kv_tokens,
            perf=perf,
            replicas=replicas,
            on_demand=on_demand,
            spot=spot,
            monthly=monthly,
            per_million_tokens=per_million,
        )

    if not f.fits:
        return out(False, False, f.reason)
    perf = roofline(arch, gpu, quant, tp, f, req, kv_dtype)
    if perf is None:
        why = f"ITL p95 above {req.itl_p95_ms:g} ms even at batch 1, or no sequence of {req.prompt_tokens}+"
        return out(True, False, why + f"{req.output_tokens} tokens fits the KV cache")
    if perf.ttft_p95_ms > req.ttft_p95_ms:
        return out(True, False, f"TTFT p95 {perf.ttft_p95_ms:g} ms above {req.ttft_p95_ms:g} ms", perf)
    replicas = max(1, math.ceil(round(req.peak_rps * (1 + req.headroom_pct / 100) / perf.rps_per_replica, 9)))
    if replicas > D.RECOMMEND_MAX_REPLICAS:
        return out(True, False, f"needs {replicas} replicas (more than {D.RECOMMEND_MAX_REPLICAS})", perf)
    on_demand = replicas if gpu.spot_per_hour is None else min(replicas, max(req.on_demand_floor, 0))
    spot = replicas - on_demand
    hourly = tp * (on_demand * gpu.on_demand_per_hour + spot * (gpu.spot_per_hour or gpu.on_demand_per_hour))
    tokens_per_hour = req.peak_rps * req.output_tokens * 3600
    return out(
        True,
        True,
        "",
        perf,
        replicas,
        on_demand,
        spot,
        round(hourly * D.HOURS_PER_MONTH, 2),
        round(hourly / tokens_per_hour * 1e6, 4),
    )


def rank(req: Request) -> list[Candidate]:
    """Candidates that fit and meet the SLA by $/month (then fewer GPUs, then more head-room), then the rest."""
    cs = candidates(req)
    ok = sorted(
        (c for c in cs if c.meets_sla),
        key=lambda c: (c.monthly, c.replicas * c.tensor_parallel, -(c.perf.rps_per_replica if c.perf else 0)),
    )
    return ok + [c for c in cs if not c.meets_sla]


def snippet(req: Request, c: Candidate, name: str) -> str:
    """The winner as a `vllm-stack:models` entry of a stack file (data + the YAML dumper)."""
    assert c.perf is not None
    entry = {
        "name": name,
        "model": c.checkpoint,
        "gpu": c.gpu,
        "tensorParallel": c.tensor_parallel,
        "quantization": c.quantization,
        "kvCacheDtype": "auto",
        "maxModelLen": req.max_model_len,
        "maxNumSeqs": req.max_num_seqs,
        "gpuMemoryUtilization": req.gpu_memory_utilization,
        "pool": {"onDemand": c.on_demand, "spot": c.spot},
        "load": {
            "peakRps": req.peak_rps,
            "singleInstanceRps": c.perf.rps_per_replica,
            "bufferPct": req.headroom_pct,
            "tokensPerSecond": c.perf.tokens_per_second,
        },
    }
    return yaml.safe_dump({"config": {f"{D.PROJECT}:models": [entry]}}, sort_keys=False)


def request_dict(req: Request) -> dict[str, Any]:
    return asdict(req)
