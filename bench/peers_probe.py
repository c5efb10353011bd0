"""KV GiB per GPU and fit verdicts of the peers, offline. Runs INSIDE the peers' venv
(scripts/sizing_peers_venv.sh):  "$PEERS/bin/python" bench/peers_probe.py CASES_JSON

Both peers read the model from the Hugging Face Hub, which is unreachable here; they get the same
facts from local data instead:
* llm-d-planner (planner.capacity_planner): `get_safetensors_metadata_from_hf` is replaced by the
  case's parameter count by dtype (what the Hub's safetensors metadata would say) and the model
  config is built locally by transformers (`AutoConfig.for_model`) from the case's config.json keys;
  then its own `allocatable_kv_cache_memory` (the replica's KV GiB; it takes the GPU memory in GiB)
  and `kv_cache_req` for one sequence of max_model_len. It has no quantization input.
* vllm-wizard (vllm_wizard.planning): `load_model_metadata` reads the case's config.json from a
  temporary directory (its local-path mode, no Hub); then the steps of its `run_plan`: weights,
  overhead, `compute_feasibility` for one sequence of max_model_len.
Prints one JSON line per case: {"id", "planner": {"kvGiBPerGpu", "fits"}, "wizard": {...}}.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

GIB = 1024**3


def planner_case(c: dict) -> dict:
    # imported by name: the peers exist only in their own venv (mypy checks bench/ without them)
    cp: Any = importlib.import_module("planner.capacity_planner")
    AutoConfig = importlib.import_module("transformers").AutoConfig

    cp.get_safetensors_metadata_from_hf = lambda name, token=None: SimpleNamespace(parameter_count=c["paramsByDtype"])
    cfg = dict(c["config"])
    cfg_obj = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    kv_total = cp.allocatable_kv_cache_memory(
        c["model"], cfg_obj, c["boardGiB"], c["util"], tp=c["tp"], max_model_len=c["maxModelLen"]
    )
    one_seq = cp.kv_cache_req(c["model"], cfg_obj, c["maxModelLen"], 1)
    return {"kvGiBPerGpu": round(kv_total / c["tp"], 2), "fits": bool(kv_total > 0 and kv_total >= one_seq)}


def wizard_case(c: dict) -> dict:
    load_model_metadata = importlib.import_module("vllm_wizard.models.metadata").load_model_metadata
    mem = importlib.import_module("vllm_wizard.planning.memory")
    inputs = importlib.import_module("vllm_wizard.schemas.inputs")
    DType, KVCacheDType, Quantization = inputs.DType, inputs.KVCacheDType, inputs.Quantization
    compute_feasibility, compute_kv_cache_memory = mem.compute_feasibility, mem.compute_kv_cache_memory
    compute_overhead, compute_weights_memory = mem.compute_overhead, mem.compute_weights_memory

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(c["config"]))
        meta = load_model_metadata(tmp)
    tp = c["tp"]
    quant = Quantization(c["quantization"]) if c["quantization"] != "none" else Quantization.NONE
    weights = compute_weights_memory(meta.num_params / 1e9, DType.AUTO, quant) // tp
    vram = int(c["boardGiB"] * GIB) * tp  # run_plan: effective VRAM = per-GPU VRAM x TP
    kv_one = compute_kv_cache_memory(meta, c["maxModelLen"], 1, KVCacheDType.AUTO, DType.AUTO)
    overhead = compute_overhead(vram, tp)
    rep = compute_feasibility(weights, kv_one, overhead, vram, c["util"], context_len=c["maxModelLen"])
    kv_avail = vram * c["util"] - weights - overhead
    return {"kvGiBPerGpu": round(kv_avail / GIB / tp, 2), "fits": bool(rep.fits)}


def main() -> None:
    for c in json.loads(Path(sys.argv[1]).read_text()):
        out: dict = {"id": c["id"]}
        for name, fn in (("planner", planner_case), ("wizard", wizard_case)):
            try:
                out[name] = fn(c)
            except Exception as exc:  # noqa: BLE001 - a peer that cannot size a case is a result
                out[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        print("PEERS " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
