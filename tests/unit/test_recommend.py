"""`vllm_stack.recommend` and `python -m vllm_stack recommend`: the roofline model against the field
guides' measured figures, the ranking, the winner's snippet (a valid stack entry) and bad input.

Field-guide figures (seed 000 "Phase 2 Cost Snapshot" and its capacity paragraph; seed 001):
* 7B on an L40S: 2,500-4,000 tok/s, "roughly 80-120 concurrent requests";
* 70B FP8 on an H100: 400-700 tok/s ("15-30 concurrent requests per H100"; seed 001: ~400 tok/s).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from vllm_stack import sizing
from vllm_stack.catalog import gpus, lookup_model
from vllm_stack.loader import parse_config
from vllm_stack.recommend import Request, rank, roofline_of, snippet

H100, L40S = "H100-SXM5-80GB", "L40S"
PROMPT, OUTPUT = 512, 256  # a typical chat turn
CTX = PROMPT + OUTPUT / 2  # mean context of a decoding sequence


@pytest.mark.parametrize("model", ["mistralai/Mistral-7B-v0.3", "Qwen/Qwen2.5-7B"])
@pytest.mark.parametrize("users", [100, 120])
def test_7b_on_l40s_matches_the_field_guide(model, users):
    r = roofline_of(lookup_model(model).architecture, gpus()[L40S], "none", 1)
    assert 2500 <= r.tokens_per_second(users, CTX) <= 4000


@pytest.mark.parametrize("prompt", [512, 1024])
def test_70b_fp8_on_h100_matches_the_field_guide(prompt):
    """At the concurrency its KV cache holds (fp8 KV, utilization 0.92, as tests/unit/test_sizing_cost.py's
    70B FP8 case): 13-22 sequences, inside the guide's 15-30 users, and 400-700 tok/s."""
    m = "meta-llama/Llama-3.1-70B-Instruct"
    a, g = lookup_model(m).architecture, gpus()[H100]
    f = sizing.fit(m, a, g, tensor_parallel=1, quantization="fp8", kv_cache_dtype="fp8", max_model_len=8192,
                   max_num_seqs=256, gpu_memory_utilization=0.92)  # fmt: skip
    batch = f.kv_tokens // (prompt + OUTPUT)
    assert 10 <= batch <= 30
    tps = roofline_of(a, g, "fp8", 1, "fp8").tokens_per_second(batch, prompt + OUTPUT / 2)
    assert 400 <= tps <= 700


def test_decode_is_memory_bound_and_prefill_compute_bound():
    a, g = lookup_model("meta-llama/Llama-3.1-8B").architecture, gpus()[H100]
    r = roofline_of(a, g, "none", 1)
    w = sizing.weights(a, "none", 1).total
    # batch 1: one pass over the weights at 3350 GB/s x 0.75, plus the 2 ms step overhead
    assert r.step_s(1, 0) == pytest.approx(w / (3350e9 * 0.75) + 0.002, rel=1e-9)
    # prefill of 1000 tokens: 2 x 8.03e9 x 1000 FLOPs at 989 TFLOPS x 0.5
    assert r.prefill_s(1000) == pytest.approx(2 * 8.03e9 * 1000 / (989e12 * 0.5), rel=0.01)
    # FP8 W8A8 uses the FP8 tensor cores: prefill twice as fast
    assert roofline_of(a, g, "fp8", 1).prefill_s(1000) == pytest.approx(r.prefill_s(1000) / 2, rel=0.01)


def req(**kw):
    base = dict(
        model="meta-llama/Llama-3.1-70B-Instruct", peak_rps=2.0, prompt_tokens=PROMPT, output_tokens=OUTPUT,
        ttft_p95_ms=3000.0, itl_p95_ms=100.0, max_model_len=8192, gpus=tuple(gpus()),
    )  # fmt: skip
    return Request(**{**base, **kw})


def test_ranking_is_by_monthly_cost_among_fitting_configs_that_meet_the_sla():
    ranked = rank(req())
    ok = [c for c in ranked if c.meets_sla]
    assert ok and ranked[: len(ok)] == ok
    assert [c.monthly for c in ok] == sorted(c.monthly for c in ok)
    for c in ok:
        assert c.fits and c.perf is not None
        assert c.perf.itl_p95_ms <= 100 and c.perf.ttft_p95_ms <= 3000
        assert c.replicas * c.perf.rps_per_replica >= 2.0 * 1.25  # the peak plus 25 % head-room
        g = gpus()[c.gpu]
        hourly = c.tensor_parallel * (c.on_demand * g.on_demand_per_hour + c.spot * (g.spot_per_hour or 0))
        assert c.monthly == pytest.approx(hourly * 720, abs=0.01)
    # 16-bit 70B on one 80 GB GPU never fits; FP8 never lands on a GPU without FP8 (fp8-requires-fp8-gpu)
    assert not any(c.fits for c in ranked if c.checkpoint == "meta-llama/Llama-3.1-70B" and c.quantization == "none"
                   and c.tensor_parallel == 1)  # fmt: skip
    assert not any(c.gpu.startswith("A100") for c in ranked if c.quantization == "fp8")


def test_on_demand_floor_and_spot():
    ok = [c for c in rank(req(peak_rps=20.0, gpus=("A100-SXM4-80GB",))) if c.meets_sla]
    best = ok[0]
    assert best.replicas > 1 and best.on_demand == 1 and best.spot == best.replicas - 1
    # L40S has no spot price: every replica on-demand
    l40s = [c for c in rank(req(peak_rps=20.0, gpus=(L40S,))) if c.meets_sla][0]
    assert l40s.spot == 0 and l40s.on_demand == l40s.replicas


def test_winner_snippet_is_a_valid_stack_entry_that_fits():
    r = req()
    best = rank(r)[0]
    text = snippet(r, best, "llama-70b")
    doc = yaml.safe_load(text)
    (entry,) = doc["config"]["vllm-stack:models"]
    assert (entry["model"], entry["gpu"], entry["tensorParallel"], entry["quantization"]) == (
        best.checkpoint, best.gpu, best.tensor_parallel, best.quantization
    )  # fmt: skip
    spec = parse_config({"environment": "prod", "platform": "kubernetes", "models": [entry]}).models[0]
    assert sizing.fit_for(spec).fits
    assert spec.pool.on_demand == best.on_demand and spec.pool.spot == best.spot


def test_a_tighter_sla_costs_more_or_fails():
    loose, tight = rank(req())[0], rank(req(itl_p95_ms=40.0))[0]
    assert not tight.meets_sla or tight.monthly >= loose.monthly
    assert not rank(req(itl_p95_ms=1.0))[0].meets_sla


# --- the command line ----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vllm_stack", "recommend", *args], capture_output=True, text=True, timeout=120
    )


BASE = ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--ttft-p95-ms", "2000", "--itl-p95-ms", "100"]


def test_cli_prints_the_ranking_and_the_winner_snippet():
    r = cli(*BASE, "--rps", "10", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ranking"][0]["meets_sla"] and doc["snippet"].startswith("config:\n  vllm-stack:models:\n")
    t = cli(*BASE, "--tokens-per-second", "2560", "--output-tokens", "256", "--json")  # = 10 rps
    assert json.loads(t.stdout)["ranking"][0] == doc["ranking"][0]


@pytest.mark.parametrize(
    "args, option",
    [
        (["--rps", "-1"], "--rps"),
        (["--rps", "nan"], "--rps"),
        (["--rps", "1", "--prompt-tokens", "1.5"], "--prompt-tokens"),
        (["--rps", "1", "--max-model-len", "999999999"], "--max-model-len"),
        (["--rps", "1", "--gpus", "H100,V100"], "--gpus"),
        (["--rps", "1", "--top", "0"], "--top"),
    ],
)
def test_cli_bad_input_is_exit_2_one_line_naming_the_option(args, option):
    r = cli(*BASE, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith(f"error: {option}: ") and r.stderr.count("\n") == 1, r.stderr


def test_cli_unknown_model_names_the_option():
    r = cli("--model", "acme/nope", "--rps", "1", "--ttft-p95-ms", "1", "--itl-p95-ms", "1")
    assert r.returncode == 2 and r.stderr.startswith("error: --model: 'acme/nope' is not in the model catalog")


def test_cli_nothing_meets_the_sla_is_exit_1():
    r = cli("--model", "meta-llama/Llama-3.1-8B-Instruct", "--rps", "1", "--ttft-p95-ms", "2000", "--itl-p95-ms", "1")
    assert r.returncode == 1 and "no configuration" in r.stderr and r.stderr.count("\n") == 1
