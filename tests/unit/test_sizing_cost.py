"""The seed arithmetic, reproduced exactly (seed 000 and vllm-facts.md)."""

from __future__ import annotations

import pytest

from vllm_stack import defaults as D
from vllm_stack.catalog import gpus, lookup_model
from vllm_stack.cost import model_cost, monthly, per_million_tokens, price_for
from vllm_stack.loader import parse_config
from vllm_stack.sizing import GIB, KIB, fit, instances_needed, kv_bytes_per_token, readiness_delay_seconds


def spec(**kw):
    base = {"name": "m", "model": "meta-llama/Llama-3.1-70B-Instruct", "gpu": "H100-SXM5-80GB"}
    return parse_config({"environment": "prod", "platform": "kubernetes", "models": [{**base, **kw}]}).models[0]


@pytest.mark.parametrize(
    "model, kib",
    [
        ("meta-llama/Llama-3.1-8B", 128),
        ("meta-llama/Llama-3.1-70B", 320),
        ("mistralai/Mistral-7B-v0.3", 128),
        ("mistralai/Mixtral-8x7B-v0.1", 128),
        ("Qwen/Qwen2.5-7B", 56),
        ("Qwen/Qwen3-32B", 256),
    ],
)
def test_kv_bytes_per_token_match_vllm_facts(model, kib):
    assert kv_bytes_per_token(lookup_model(model).architecture, "auto") == kib * KIB
    assert kv_bytes_per_token(lookup_model(model).architecture, "fp8") == kib * KIB // 2


def test_catalog_has_required_ids_and_aliases():
    for gid in [
        "H100-SXM5-80GB",
        "H100-PCIe-80GB",
        "H200-141GB",
        "A100-SXM4-40GB",
        "A100-SXM4-80GB",
        "L40S",
        "L4",
        "A10G",
        "RTX-4090",
    ]:
        assert gid in gpus()
    assert lookup_model("meta-llama/Llama-3.1-70B-Instruct").id == "meta-llama/Llama-3.1-70B"
    assert gpus()["H100-SXM5-80GB"].supports_fp8 and not gpus()["A100-SXM4-80GB"].supports_fp8
    assert gpus()["L40S"].supports_fp8 and not gpus()["A10G"].supports_fp8


def test_70b_fp16_does_not_fit_one_80gb_gpu():
    f = fit_of(spec(quantization="none", maxModelLen=4096))
    assert not f.fits and f.weights_gib > 80 * 0.92


def test_70b_fp8_fits_one_h100():
    f = fit_of(spec(quantization="fp8", kvCacheDtype="fp8", maxModelLen=8192, gpuMemoryUtilization=0.92))
    assert f.fits and f.max_concurrency_full_context >= 2
    # vLLM quantizes Linear layers only: 68.45e9 x 1 B + embedding and lm_head 2.10e9 x 2 B + norms/rotary
    # (shared/notes/sizing.md: 67.7 GiB real, not 70.55e9 x 1 B = 65.7 GiB).
    assert f.weights_gib == pytest.approx((68.45e9 + 2 * 2.10e9) / GIB, abs=0.05) == 67.7


def test_70b_fp16_tp2_fits_two_h100():
    f = fit_of(spec(quantization="none", tensorParallel=2, maxModelLen=16384, gpuMemoryUtilization=0.92))
    # vLLM multiplies utilization by the CUDA-visible total (79.18 GiB), not the nvidia-smi size.
    assert f.fits and f.vram_gib_total == pytest.approx(2 * 79.18, abs=0.01)
    assert f.cuda_total_gib_per_gpu == 79.18 and f.board_gib_per_gpu == round(81559 / 1024, 2)


def test_8b_fp16_on_l40s_room_for_many_8k_sequences():
    s = spec(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L40S", maxModelLen=8192, gpuMemoryUtilization=0.9)
    f = fit_of(s)
    assert f.fits
    # 44.39 GiB x 0.9 - 14.99 GiB weights - 1.05 GiB overhead = 23.92 GiB KV = 196k tokens = 23 full 8k
    # sequences (the old fixed 4 GiB overhead on the nvidia-smi size gave 21).
    assert (f.budget_gib, f.weights_gib, f.overhead_gib, f.kv_gib) == (39.95, 14.99, 1.05, 23.92)
    assert f.max_concurrency_full_context == 23
    # The "≥ 50 sequences of 8k" needs 50 x 8192 x 128 KiB = 50 GiB of KV: more than the whole card.
    assert 50 * 8192 * f.kv_bytes_per_token > gpus()["L40S"].vram_bytes
    # With fp8 KV the same card holds 47 full-length sequences, and >= 50 at 7k average context.
    f8 = fit_of(
        spec(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L40S", kvCacheDtype="fp8", gpuMemoryUtilization=0.9)
    )
    assert f8.max_concurrency_full_context == 47
    assert f8.kv_tokens // 7000 >= 50


def fit_of(s):
    return fit(
        s.name,
        s.model_info().architecture,
        gpus()[s.gpu],
        tensor_parallel=s.tensor_parallel,
        quantization=s.quantization,
        kv_cache_dtype=s.kv_cache_dtype,
        max_model_len=s.max_model_len,
        max_num_seqs=s.max_num_seqs,
        gpu_memory_utilization=s.gpu_memory_utilization,
    )


def test_seed_cost_arithmetic():
    assert monthly(2.50) == 1800.00  # 1x H100 on-demand
    assert monthly(2 * 1.03) == 1483.20  # 2x spot H100
    assert monthly(2 * 2.50) == 3600.00  # vs 2x on-demand
    assert round(per_million_tokens(0.72, 3000), 4) == 0.0667  # 7B on L40S at 3,000 tok/s
    assert D.HOURS_PER_MONTH == 720


def test_pool_blend_cost_two_spot_h100():
    s = spec(quantization="fp8", pool={"onDemand": 0, "spot": 2})
    c = model_cost(s)
    assert c.blend_monthly == 1483.20 and c.on_demand_monthly == 3600.00 and c.saving_monthly == 2116.80


def test_price_override_wins():
    from vllm_stack.config import PriceSpec

    p = price_for("L40S", {"L40S": PriceSpec(on_demand_per_hour=1.80)})
    assert p.on_demand_per_hour == 1.80 and p.source == "stack config `prices`"


def test_instances_needed_seed_example():
    assert instances_needed(60, 12, 0) == 5
    assert instances_needed(60, 12, 20) == 6
    assert instances_needed(60, 12, 30) == 7


def test_readiness_delay_scales_and_clamps():
    assert readiness_delay_seconds(8e9) == D.READINESS_DELAY_MIN_SEC
    assert readiness_delay_seconds(70.55e9) > readiness_delay_seconds(32e9)
    assert readiness_delay_seconds(400e9) == D.READINESS_DELAY_MAX_SEC
