"""KV cache per GPU and fit verdicts: ours, llm-d's capacity planner, vllm-wizard, and a reference
computed from vLLM's own accounting, on the same seven cases (`python -m bench.run_all --only sizing_peers`).

The peers run in their own pinned venv (scripts/sizing_peers_venv.sh) through bench/peers_probe.py,
fed local config facts instead of the Hugging Face Hub (unreachable here).

Reference ("vLLM accounting"): vllm/v1/worker/gpu_worker.py `determine_available_memory` with
* the CUDA-visible total x utilization (vLLM logs: H100 79.18 GiB, L40S 44.39 GiB; others from the
  GPU catalog's cudaTotalGiB),
* the weights vLLM holds (module-class count, equal to what vLLM 0.32 builds to 0.01 %:
  tests/real_vllm/test_weights_real.py; 14.9888 GiB for Llama-3.1-8B as vLLM logs),
* published overhead figures instead of our scaling model: activation peak 1.26 GiB at 8192 batched
  tokens (vllm PR #10511, H100, TP 1 and 2), scaled by the GPU class's batched-token default
  (vllm arg_utils get_batch_defaults) with the 256-sequence sampler pass as its floor; non-torch
  0.16 GiB (vllm PR #12126) + 1.79 GiB at TP > 1 (PR #10511); CUDA graphs 0.21 GiB (PR #11349);
* fits = the KV cache holds one sequence of max_model_len (vLLM refuses to start otherwise).
It is not a GPU measurement: no GPU here. Target (issue 16): ours within 0.5 GiB of it on every
case and closer than both peers on average.

Where the reference is weakest (and why the 70B FP8 case misses): its overhead figures come from
other models. The activation figure is Llama-3-8B's (vLLM V0, Dec 2024), applied unchanged to a 70B
whose MLP is twice as wide; the CUDA-graph figure is Llama-3.2-1B's from early V1 (piecewise graphs
only). vLLM >= 0.19 captures FULL_AND_PIECEWISE graphs up to 512 tokens by default and logs
"Estimated CUDA graph memory: 0.64 GiB" (Qwen3.5-4B, v0.22) and "0.78 GiB" (Qwen3.5-9B, v0.19),
3-4x the reference's 0.21 GiB for small models. Our model reserves 1.56 GiB activation + 0.78 GiB
graphs for the 70B (the reference: 1.26 + 0.21), so ours is 0.87 GiB lower there; which side is
nearer a real H100 is not decidable without a 70B log line, and we did not tune either side to
close the gap.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import INFO, MISS, PASS, BenchResult
from vllm_stack import sizing
from vllm_stack.catalog import Architecture, Gpu, gpus, lookup_model

NAME = "sizing_peers"
ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("peers_probe.py")
SCRIPT = ROOT / "scripts" / "sizing_peers_venv.sh"
GIB = 1024**3
TARGET_GIB = 0.5

# id, model, gpu, tp, quantization, maxModelLen, utilization
CASES = [
    ("8b-l40s", "meta-llama/Llama-3.1-8B-Instruct", "L40S", 1, "none", 8192, 0.90),
    ("8b-l4-32k", "meta-llama/Llama-3.1-8B-Instruct", "L4", 1, "none", 32768, 0.90),
    ("70b-fp8-h100", "meta-llama/Llama-3.1-70B-Instruct", "H100-SXM5-80GB", 1, "fp8", 8192, 0.92),
    ("70b-bf16-2xh100", "meta-llama/Llama-3.1-70B-Instruct", "H100-SXM5-80GB", 2, "none", 16384, 0.92),
    ("qwen7b-a10g-32k", "Qwen/Qwen2.5-7B-Instruct", "A10G", 1, "none", 32768, 0.90),
    ("mistral7b-l4-16k", "mistralai/Mistral-7B-Instruct-v0.3", "L4", 1, "none", 16384, 0.90),
    ("qwen3-32b-a100-40k", "Qwen/Qwen3-32B", "A100-SXM4-80GB", 1, "none", 40960, 0.90),
]
REF_ACTIVATION_GIB, REF_ACTIVATION_TOKENS = 1.26, 8192  # vllm PR #10511
REF_NON_TORCH_GIB, REF_NCCL_GIB, REF_CUDAGRAPH_GIB = 0.16, 1.79, 0.21  # PRs #12126, #10511, #11349


def hf_config(a: Architecture) -> dict[str, Any]:
    """The config.json keys both peers read, for a catalog shape."""
    model_type = "qwen3" if a.qk_norm else "qwen2" if a.qkv_bias else "llama"
    return {
        "architectures": [
            {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[model_type]
        ],
        "model_type": model_type,
        "hidden_size": a.hidden_size,
        "intermediate_size": a.intermediate_size,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.attention_heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "vocab_size": a.vocab_size,
        "max_position_embeddings": a.max_positions,
        "tie_word_embeddings": a.tied_embeddings,
        "torch_dtype": "bfloat16",
    }


def reference(a: Architecture, g: Gpu, tp: int, quant: str, mml: int, util: float) -> dict[str, Any]:
    w = sizing.weights(a, quant, tp).total
    tokens = sizing.default_batched_tokens(g)
    sampler = 256 * (a.vocab_size or 0) * 4 * 5
    activation = max(REF_ACTIVATION_GIB * GIB * tokens / REF_ACTIVATION_TOKENS, sampler)
    other = (REF_NON_TORCH_GIB + (REF_NCCL_GIB if tp > 1 else 0) + REF_CUDAGRAPH_GIB) * GIB
    kv = g.cuda_total_bytes * util - w - activation - other
    one_seq = mml * sizing.kv_bytes_per_token_per_gpu(a, "auto", tp)
    return {"kvGiBPerGpu": round(kv / GIB, 2), "fits": kv >= one_seq}


def ours(model: str, a: Architecture, g: Gpu, tp: int, quant: str, mml: int, util: float) -> dict[str, Any]:
    f = sizing.fit(model, a, g, tensor_parallel=tp, quantization=quant, kv_cache_dtype="auto", max_model_len=mml,
                   max_num_seqs=256, gpu_memory_utilization=util)  # fmt: skip
    return {"kvGiBPerGpu": f.kv_gib_per_gpu, "fits": f.fits}


def peers(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    venv = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1800, check=True)
    py = Path(venv.stdout.strip().splitlines()[-1]) / "bin" / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cases, fh)
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        r = subprocess.run([str(py), str(PROBE), fh.name], capture_output=True, text=True, timeout=600, env=env)
    finally:
        os.unlink(fh.name)
    if r.returncode != 0:
        raise RuntimeError(f"peers_probe.py exit {r.returncode}: {r.stderr[-2000:]}")
    rows = [json.loads(x.split(" ", 1)[1]) for x in r.stdout.splitlines() if x.startswith("PEERS ")]
    return {row["id"]: row for row in rows}


def run() -> BenchResult:
    probe_cases, rows = [], []
    for cid, model, gid, tp, quant, mml, util in CASES:
        info = lookup_model(model)
        assert info is not None, model
        a, g = info.architecture, gpus()[gid]
        params = sizing.weights(a, "none", 1).params_total
        probe_cases.append({"id": cid, "model": model, "config": hf_config(a), "paramsByDtype": {"BF16": int(params)},
                            "boardGiB": round(g.vram_bytes / GIB, 2), "util": util, "tp": tp, "maxModelLen": mml,
                            "quantization": quant})  # fmt: skip
        rows.append((cid, model, g, tp, quant, mml, util, reference(a, g, tp, quant, mml, util),
                     ours(model, a, g, tp, quant, mml, util)))  # fmt: skip
    peer = peers(probe_cases)
    head = "| case | ref KV GiB/GPU | ours | llm-d planner | vllm-wizard | ref fits | ours | planner | wizard | ours within 0.5 |"
    lines = [head, "|" + "---|" * 10]
    errs: dict[str, list[float]] = {"ours": [], "planner": [], "wizard": []}
    right = {"ours": 0, "planner": 0, "wizard": 0}
    data_rows = []
    for cid, model, g, tp, quant, mml, util, ref, our in rows:
        p, w = peer[cid].get("planner", {}), peer[cid].get("wizard", {})
        for name, got in (("ours", our), ("planner", p), ("wizard", w)):
            if "kvGiBPerGpu" in got:
                errs[name].append(abs(got["kvGiBPerGpu"] - ref["kvGiBPerGpu"]))
                right[name] += got["fits"] == ref["fits"]

        def kv(x: dict[str, Any]) -> str:
            return f"{x['kvGiBPerGpu']:.2f}" if "kvGiBPerGpu" in x else "error"

        def fit(x: dict[str, Any]) -> str:
            return ("yes" if x["fits"] else "no") if "fits" in x else "-"

        within = abs(our["kvGiBPerGpu"] - ref["kvGiBPerGpu"]) <= TARGET_GIB
        lines.append(
            f"| {cid} ({tp}x {g.id}, {quant}, {mml}, {util:g}) | {ref['kvGiBPerGpu']:.2f} | {kv(our)} | {kv(p)} | "
            f"{kv(w)} | {fit(ref)} | {fit(our)} | {fit(p)} | {fit(w)} | {PASS if within else MISS} |"
        )
        data_rows.append({"case": cid, "model": model, "gpu": g.id, "tp": tp, "quantization": quant,
                          "maxModelLen": mml, "util": util, "reference": ref, "ours": our, "planner": p,
                          "wizard": w})  # fmt: skip
    mean = {k: round(sum(v) / len(v), 2) if v else None for k, v in errs.items()}
    lines.append(
        f"| mean abs KV error vs ref | - | {mean['ours']} | {mean['planner']} | {mean['wizard']} | - | "
        f"{right['ours']}/{len(rows)} | {right['planner']}/{len(rows)} | {right['wizard']}/{len(rows)} | "
        f"{INFO} |"
    )
    closer = mean["ours"] is not None and all(
        mean[k] is None or mean["ours"] < (mean[k] or 0) for k in ("planner", "wizard")
    )
    return BenchResult(
        name=NAME,
        title="Sizing: KV GiB per GPU and fit verdicts vs llm-d-planner 0.3.3, vllm-wizard 0.2.0 and vLLM's accounting",
        table="\n".join(lines),
        data={"rows": data_rows, "meanAbsErrorGiB": mean, "rightVerdicts": right, "oursCloserThanPeers": closer},
        notes=[
            "reference: vLLM's determine_available_memory with the weights vLLM holds and published overhead "
            "figures (bench/sizing_peers.py docstring); not a GPU measurement",
            "peers fed local config facts (bench/peers_probe.py); llm-d-planner has no quantization input, so "
            "it sizes the FP8 case as BF16",
            f"ours closer than both peers on average: {'yes' if closer else 'NO'}",
            "70B FP8 miss: the reference uses Llama-3-8B's activation and Llama-3.2-1B's CUDA-graph figures; "
            "ours reserves 0.87 GiB more; which is nearer a real H100 is unknown without a 70B log (module docstring)",
        ],
    )
