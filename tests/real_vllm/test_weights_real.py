"""Weights as the REAL vLLM holds them, against `vllm_stack.sizing.weights`, for several model shapes.

Each shape is built by vLLM 0.32.0 (CPU venv) with dummy weights (`weights_probe.py`: bytes of every
parameter and buffer of the loaded model, tied tensors once, what the GPU runner logs as "Model
loading took X GiB"). Shapes cover what the sizing model distinguishes: vocabulary padding to 64,
untied vs tied embeddings, GQA, attention bias (Qwen2), q/k norms (Qwen3), the rotary cos/sin cache.

Tolerance: 0.01 % of the bytes (vLLM also holds a few scalar buffers, e.g. 48 B of attention scales)
and the parameter count exact.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.real_vllm import harness
from vllm_stack.catalog import Architecture
from vllm_stack.sizing import weights

pytestmark = pytest.mark.real_vllm

PROBE = harness.HERE / "weights_probe.py"
TIMEOUT_S = 240

#: (id, config.json overrides, the same shape as a catalog Architecture)
SHAPES = [
    (
        "llama-gqa-untied-padded-vocab",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 512,
            "intermediate_size": 1376,
            "num_hidden_layers": 3,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "vocab_size": 1000,  # padded to 1024 rows by vLLM
            "max_position_embeddings": 4096,
            "tie_word_embeddings": False,
        },
        dict(
            layers=3,
            attention_heads=8,
            kv_heads=2,
            head_dim=64,
            max_positions=4096,
            hidden_size=512,
            intermediate_size=1376,
            vocab_size=1000,
            tied_embeddings=False,
        ),
    ),
    (
        "llama-tied",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 256,
            "intermediate_size": 768,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "head_dim": 64,
            "vocab_size": 2048,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": True,
        },
        dict(
            layers=4,
            attention_heads=4,
            kv_heads=4,
            head_dim=64,
            max_positions=8192,
            hidden_size=256,
            intermediate_size=768,
            vocab_size=2048,
            tied_embeddings=True,
        ),
    ),
    (
        "qwen2-qkv-bias",
        {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 384,
            "intermediate_size": 1024,
            "num_hidden_layers": 2,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "vocab_size": 1536,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": False,
            "use_sliding_window": False,
        },
        dict(
            layers=2,
            attention_heads=6,
            kv_heads=2,
            head_dim=64,
            max_positions=2048,
            hidden_size=384,
            intermediate_size=1024,
            vocab_size=1536,
            tied_embeddings=False,
            qkv_bias=True,
        ),
    ),
]


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, int]]:
    venv, tok = harness.vllm_venv(), harness.tiny_model_dir()
    env = {**os.environ, **harness.VLLM_BASE_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    out: dict[str, dict[str, int]] = {}
    for sid, cfg, _ in SHAPES:
        r = subprocess.run(
            [str(venv / "bin" / "python"), str(PROBE), str(tok), json.dumps(cfg)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=env,
        )
        line = next((x for x in r.stdout.splitlines() if x.startswith("WEIGHTS_PROBE ")), None)
        assert r.returncode == 0 and line, f"{sid}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
        out[sid] = json.loads(line.split(" ", 1)[1])
    return out


@pytest.mark.parametrize("sid, cfg, arch_kw", SHAPES, ids=[s[0] for s in SHAPES])
def test_weights_match_what_vllm_holds(measured, sid, cfg, arch_kw):
    arch = Architecture(params=1.0, **arch_kw)
    ours = weights(arch, "none", 1)
    real = measured[sid]
    assert ours.params_total == real["params"], (sid, ours, real)
    assert ours.rotary_cache == pytest.approx(real["bufferBytes"], abs=64)  # the cos/sin cache (+ scalar scales)
    assert ours.total == pytest.approx(real["bytes"], rel=1e-4), (sid, ours.total, real)
