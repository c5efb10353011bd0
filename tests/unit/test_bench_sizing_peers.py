"""The pure parts of bench/sizing_peers.py: the reference arithmetic and the config facts fed to the peers."""

from __future__ import annotations

import pytest

from bench import sizing_peers as B
from vllm_stack.catalog import gpus, lookup_model
from vllm_stack.sizing import GIB


def test_reference_is_vllm_accounting_with_published_overheads_by_hand():
    a, g = lookup_model("meta-llama/Llama-3.1-8B-Instruct").architecture, gpus()["L40S"]
    ref = B.reference(a, g, 1, "none", 8192, 0.9)
    weights = 14.9888  # vLLM's "Model loading took 14.9888 GiB"
    activation = max(1.26 * 2048 / 8192, 256 * 128256 * 4 * 5 / GIB)  # L40S batches 2048 tokens
    kv = 44.39 * 0.9 - weights - activation - 0.16 - 0.21
    assert ref["kvGiBPerGpu"] == pytest.approx(kv, abs=0.01) and ref["fits"] is True


def test_hf_config_carries_the_catalog_shape():
    a = lookup_model("Qwen/Qwen2.5-7B-Instruct").architecture
    c = B.hf_config(a)
    assert c["model_type"] == "qwen2" and c["architectures"] == ["Qwen2ForCausalLM"]
    assert (c["hidden_size"], c["intermediate_size"], c["num_key_value_heads"], c["vocab_size"]) == (
        3584,
        18944,
        4,
        152064,
    )
    assert B.hf_config(lookup_model("Qwen/Qwen3-32B").architecture)["model_type"] == "qwen3"
    assert len(B.CASES) == 7 and len({c[0] for c in B.CASES}) == 7
