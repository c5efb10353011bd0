"""Sizing against vLLM's own accounting: published vLLM log lines, the notes' figures, the quantization
rules vLLM applies (vllm/config/model.py `_verify_quantization`), per-GPU vs replica figures.

Tolerances are stated per assertion: weights to the 4 decimals vLLM logs; budget/overhead figures
that come from estimates within the bound given next to them.
"""

from __future__ import annotations

import dataclasses

import pytest

from vllm_stack import defaults as D
from vllm_stack.catalog import gpus, lookup_model, models
from vllm_stack.loader import ConfigError, parse_config
from vllm_stack.render.vllm_args import serve_argv
from vllm_stack.sizing import (
    GIB,
    default_batched_tokens,
    fit,
    fit_for,
    kv_bytes_per_token,
    linear_bytes_per_param,
    weights,
)

H100, L40S = "H100-SXM5-80GB", "L40S"


def arch(model_id: str):
    return lookup_model(model_id).architecture


def spec(**kw):
    base = {"name": "m", "model": "meta-llama/Llama-3.1-70B-Instruct", "gpu": H100}
    return parse_config({"environment": "prod", "platform": "kubernetes", "models": [{**base, **kw}]}).models[0]


def fit_of(model_id: str, gpu: str, *, quantization="none", tp=1, util=0.9, mml=8192, seqs=256, kv="auto"):
    return fit(
        model_id,
        arch(model_id),
        gpus()[gpu],
        tensor_parallel=tp,
        quantization=quantization,
        kv_cache_dtype=kv,
        max_model_len=mml,
        max_num_seqs=seqs,
        gpu_memory_utilization=util,
    )


# --- weights: published vLLM log lines --------------------------------------------------------------


def test_llama_31_8b_bf16_model_loading_took_14_9888_gib():
    """vLLM log (shared/notes/sizing.md): Llama-3.1-8B-Instruct bf16 "Model loading took 14.9888 GiB"."""
    w = weights(arch("meta-llama/Llama-3.1-8B-Instruct"), "none", 1)
    assert round(w.total / GIB, 4) == 14.9888
    # the rotary cos/sin cache (131072 positions x 128 x bf16) is part of it: 32 MiB
    assert w.rotary_cache == 131072 * 128 * 2


def test_meta_llama_3_8b_tp1_and_tp2_as_vllm_pr_10511_logs():
    """vllm PR #10511 (H100): Meta-Llama-3-8B "model weights take 14.96GiB" at TP 1 and "7.48GiB" at TP 2
    (Llama 3 has 8192 positions: the same shape as 3.1 with a 2 MiB rotary cache)."""
    a = dataclasses.replace(arch("meta-llama/Llama-3.1-8B"), max_positions=8192)
    assert round(weights(a, "none", 1).total / GIB, 2) == 14.96
    assert round(weights(a, "none", 2).total / GIB, 2) == 7.48
    # the same log: activation peak 1.26 GiB at both TP sizes; our estimate within 0.5 GiB
    f1 = fit("x", a, gpus()[H100], tensor_parallel=1, quantization="none", kv_cache_dtype="auto",
             max_model_len=8192, max_num_seqs=256, gpu_memory_utilization=0.9)  # fmt: skip
    assert abs(f1.activation_gib_per_gpu - 1.26) <= 0.5
    # "the current vLLM instance can use 71.29GiB" = 79.22 x 0.9; our catalog's 79.18 (notes) is within 0.05
    assert abs(f1.budget_gib_per_gpu - 71.29) <= 0.05


def test_70b_fp8_keeps_embedding_and_lm_head_16_bit():
    """Notes: 68.45e9 Linear params x 1 B + 2.10e9 x 2 B = 67.7 GiB (all-params x 1 B would be 65.7)."""
    w = weights(arch("meta-llama/Llama-3.1-70B-Instruct"), "fp8", 1)
    assert round(w.linear / 1e9, 2) == 68.45  # 1 byte each
    assert round((w.embedding + w.lm_head) / 2 / 1e9, 2) == 2.10
    assert round(w.total / GIB, 1) == 67.7
    assert fit_of("meta-llama/Llama-3.1-70B-Instruct", H100, quantization="fp8").weights_gib == 67.7


def test_awq_int4_bytes_include_group_scales_and_zeros():
    a = arch("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4")
    # 4-bit weight + an fp16 scale and a 4-bit zero per 128 inputs = 0.5195 B (notes: "about 0.52")
    assert linear_bytes_per_param(a, "awq") == pytest.approx(0.5 + 2 / 128 + 0.5 / 128)
    w = weights(a, "none", 1)  # the checkpoint's format wins over the flag: vLLM reads it from config.json
    assert round(w.linear / GIB, 2) == round(68.451e9 * 0.51953 / GIB, 2) == 33.12
    # the old plan (every parameter at 0.525 B) was 2.5 GiB short of this (issue 16: "AWQ 70B: -2.5 GiB")
    assert w.total / GIB - 70.55e9 * 0.525 / GIB == pytest.approx(2.5, abs=0.15)


def test_catalog_shapes_reproduce_the_model_card_params():
    for info in {m.id: m for m in models().values()}.values():
        a = info.architecture
        assert a.has_shapes, info.id
        assert weights(a, "none", 1).params_total == pytest.approx(a.params, rel=0.01), info.id


def test_tp_splits_linear_embedding_lm_head_but_replicates_norms_and_rotary():
    a = arch("meta-llama/Llama-3.1-70B")
    one, two = weights(a, "none", 1), weights(a, "none", 2)
    assert two.linear == one.linear / 2 and two.embedding == one.embedding / 2 and two.lm_head == one.lm_head / 2
    assert two.norms_and_biases == one.norms_and_biases and two.rotary_cache == one.rotary_cache


# --- budget and overhead ----------------------------------------------------------------------------


def test_budget_uses_the_cuda_visible_total():
    assert gpus()[H100].cuda_total_gib == 79.18 and gpus()[L40S].cuda_total_gib == 44.39
    for g in gpus().values():
        assert g.cuda_total_bytes < g.vram_bytes and g.cuda_total_source, g.id
    f = fit_of("meta-llama/Llama-3.1-8B", L40S)
    assert f.budget_gib_per_gpu == round(44.39 * 0.9, 2)
    assert f.board_gib_per_gpu == round(46068 / 1024, 2)


@pytest.mark.parametrize(
    "gpu, tokens",
    [
        (H100, 8192),
        ("H100-PCIe-80GB", 8192),
        ("H200-141GB", 8192),
        ("A100-SXM4-80GB", 2048),
        (L40S, 2048),
        ("L4", 2048),
    ],
)
def test_default_batched_tokens_by_gpu_class(gpu, tokens):
    """vllm/engine/arg_utils.py get_batch_defaults (OPENAI_API_SERVER): 8192 on >= 70 GiB non-A100, else 2048."""
    assert default_batched_tokens(gpus()[gpu]) == tokens


def test_overhead_matches_the_issue_measurements():
    """Issue 16: the fixed 4 GiB was ~3 GiB too high for 7-8B on an L40S, ~1.2 GiB for 70B FP8 on an H100."""
    small = fit_of("meta-llama/Llama-3.1-8B", L40S)
    assert small.overhead_gib_per_gpu == pytest.approx(4.0 - 3.0, abs=0.25)
    big = fit_of("meta-llama/Llama-3.1-70B", H100, quantization="fp8", util=0.92)
    assert big.overhead_gib_per_gpu == pytest.approx(4.0 - 1.2, abs=0.5)
    # the activation peak scales with the GPU class's batched tokens: 8192 on the H100 vs 2048 on the L40S
    assert big.max_num_batched_tokens == 8192 and small.max_num_batched_tokens == 2048
    assert big.activation_gib_per_gpu == round(8192 * (2 * 8192 + 3 * 28672) * 2 / GIB, 2)


def test_nccl_memory_only_at_tensor_parallel_above_1():
    one = fit_of("Qwen/Qwen3-32B", H100, tp=1)
    two = fit_of("Qwen/Qwen3-32B", H100, tp=2)
    assert one.non_torch_gib_per_gpu == D.NON_TORCH_GIB
    assert two.non_torch_gib_per_gpu == round(D.NON_TORCH_GIB + D.NCCL_GIB, 2)


def test_extra_reserve_is_on_top_of_the_estimate():
    a, g = arch("meta-llama/Llama-3.1-8B"), gpus()[L40S]
    kw = dict(tensor_parallel=1, quantization="none", kv_cache_dtype="auto", max_model_len=8192, max_num_seqs=256,
              gpu_memory_utilization=0.9)  # fmt: skip
    base, reserved = fit("x", a, g, **kw), fit("x", a, g, overhead_gib=2.0, **kw)
    assert reserved.overhead_gib_per_gpu == pytest.approx(base.overhead_gib_per_gpu + 2.0, abs=0.01)
    assert reserved.kv_gib_per_gpu == pytest.approx(base.kv_gib_per_gpu - 2.0, abs=0.01)


def test_per_gpu_and_replica_figures_are_consistent_at_tp4():
    f = fit_of("Qwen/Qwen2.5-72B", H100, tp=4, util=0.92, mml=32768)
    assert f.budget_gib == pytest.approx(4 * f.budget_gib_per_gpu, abs=0.03)
    assert f.weights_gib == pytest.approx(4 * f.weights_gib_per_gpu, abs=0.03)
    assert f.kv_gib == pytest.approx(4 * f.kv_gib_per_gpu, abs=0.03)
    # each GPU holds 2 of the 8 KV heads of every token: tokens = per-GPU KV / (bytes per token / 4)
    per_tok_gpu = kv_bytes_per_token(arch("Qwen/Qwen2.5-72B"), "auto") // 4
    assert f.kv_tokens == pytest.approx(f.kv_gib_per_gpu * GIB / per_tok_gpu, rel=1e-3)


# --- quantization: what the checkpoint can load, and the flag vLLM would pick --------------------------


def test_awq_on_a_16bit_checkpoint_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as e:
        spec(quantization="awq")
    msg = str(e.value)
    assert msg.startswith("models[0].quantization: awq is not allowed;")
    assert "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4" in msg and "allowed: none, fp8" in msg
    assert "\n" not in msg


def test_pre_quantized_checkpoint_takes_its_own_method_only():
    with pytest.raises(ConfigError, match=r"models\[0\]\.quantization: fp8 is not allowed; .*AWQ.*allowed: awq"):
        spec(model="hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", quantization="fp8")
    with pytest.raises(ConfigError, match=r"allowed: awq$"):
        spec(model="hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4")  # `none` would mis-size it
    ok = spec(model="hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", quantization="awq")
    assert fit_for(ok).weight_format == "awq (checkpoint)"


def test_rendered_flag_is_the_one_vllm_would_pick():
    """AWQ/GPTQ/pre-quantized FP8: no flag (vLLM reads the checkpoint's quantization_config and picks the
    Marlin-capable kernel; an explicit `awq` forced the slow kernel in earlier releases); online FP8:
    `--quantization fp8`."""
    awq = serve_argv(spec(model="hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", quantization="awq"))
    assert "--quantization" not in awq
    fp8_ckpt = serve_argv(spec(model="neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8", quantization="fp8"))
    assert "--quantization" not in fp8_ckpt  # compressed-tensors refuses `--quantization fp8`
    online = serve_argv(spec(quantization="fp8"))
    assert online[online.index("--quantization") + 1] == "fp8"
    assert "--quantization" not in serve_argv(spec())


def test_model_fits_policy_sizes_a_flagless_awq_checkpoint_as_awq():
    """The policy reads `--quantization` from argv (absent for an AWQ checkpoint): `fit` still sizes the
    checkpoint's real format, not 16-bit."""
    f = fit_of("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", H100, quantization="none")
    assert f.fits and f.weights_gib == pytest.approx(37.07, abs=0.01)


def test_tied_embeddings_count_the_shared_matrix_once():
    """The tied shape of test_weights_real.py, by hand: Llama, hidden 256, 4 layers, vocab 2048, tied."""
    from vllm_stack.catalog import Architecture

    a = Architecture(
        params=1.0, layers=4, attention_heads=4, kv_heads=4, head_dim=64, max_positions=8192, hidden_size=256,
        intermediate_size=768, vocab_size=2048, tied_embeddings=True,
    )  # fmt: skip
    w = weights(a, "none", 1)
    per_layer = 4 * 256 * 256 + 3 * 256 * 768 + 2 * 256
    assert w.params_total == 2048 * 256 + 4 * per_layer + 256  # one embedding matrix, no lm_head
    assert w.lm_head == 0 and w.embedding == 2048 * 256 * 2
    assert weights(dataclasses.replace(a, tied_embeddings=False), "none", 1).lm_head == 2048 * 256 * 2


def test_int4_group_size_comes_from_the_checkpoint():
    from vllm_stack.catalog import Checkpoint

    a = dataclasses.replace(arch("Qwen/Qwen2.5-7B"), checkpoint=Checkpoint(method="gptq", bits=4, group_size=32))
    assert linear_bytes_per_param(a, "gptq") == pytest.approx(0.5 + 2 / 32 + 0.5 / 32)


def test_inline_architecture_with_shapes_is_sized_by_module_class():
    shape = {
        "params": 8.03e9, "layers": 32, "attentionHeads": 32, "kvHeads": 8, "headDim": 128, "maxPositions": 131072,
        "hiddenSize": 4096, "intermediateSize": 14336, "vocabSize": 128256,
    }  # fmt: skip
    with_shapes = spec(model="/models/llama-8b", gpu="L40S", architecture=shape)
    assert fit_for(with_shapes).weights_gib_per_gpu == 14.99  # as the catalog's Llama-3.1-8B
    bare = {k: v for k, v in shape.items() if k not in ("hiddenSize", "intermediateSize", "vocabSize")}
    fp8 = spec(model="/models/llama-8b", gpu="L40S", quantization="fp8", architecture=bare)
    assert fit_for(fp8).weights_breakdown_gib_per_gpu["embedding"] == 0.0  # no shapes: all parameters Linear
