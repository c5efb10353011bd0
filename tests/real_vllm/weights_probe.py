"""What vLLM itself holds as model weights for one model shape (dummy weights), as JSON on stdout.

Runs INSIDE the vLLM venv:  "$VENV/bin/python" tests/real_vllm/weights_probe.py TOKENIZER_DIR SHAPE_JSON

Writes a config.json for the shape next to a copy of the tiny model's tokenizer, starts the real
engine (`vllm.LLM`, `load_format="dummy"`, bf16, eager, in-process) and sums the bytes of every
parameter and buffer of the model vLLM built and loaded, measured just before
`process_weights_after_loading` (vllm/model_executor/model_loader/base_loader.py). That is what the
GPU model runner reports as "Model loading took X GiB" (its DeviceMemoryProfiler measures these
allocations; on GPU, 16-bit Linear layers are kept as loaded). It is measured before that step
because the CPU backend then repacks every Linear weight into an opaque oneDNN handle
(vllm/model_executor/layers/utils.py `dispatch_cpu_unquantized_gemm`) that no tensor exposes, and
the CPU runner logs no loading figure.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    tok_dir, shape = Path(sys.argv[1]), json.loads(sys.argv[2])
    import torch
    from vllm.model_executor.model_loader import base_loader

    measured: list[dict[str, int]] = []
    original = base_loader.process_weights_after_loading

    def measuring(model: torch.nn.Module, *args: object, **kwargs: object) -> object:
        seen: dict[int, int] = {}
        for t in list(model.parameters()) + list(model.buffers()):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()  # tied tensors once
        measured.append(
            {
                "bytes": sum(seen.values()),
                "params": sum(p.numel() for p in model.parameters()),
                "bufferBytes": sum(b.numel() * b.element_size() for b in model.buffers()),
            }
        )
        return original(model, *args, **kwargs)

    base_loader.process_weights_after_loading = measuring
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "m"
        shutil.copytree(tok_dir, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(shape)
        (d / "config.json").write_text(json.dumps(cfg))
        from vllm import LLM

        LLM(model=str(d), load_format="dummy", dtype="bfloat16", max_model_len=256, max_num_seqs=4, enforce_eager=True)
        print("WEIGHTS_PROBE " + json.dumps(measured[-1]), flush=True)


if __name__ == "__main__":
    main()
