"""The one table of vLLM flags the stack manages, refuses or never emits.

The renderer, the config validation and the `no-invalid-vllm-flags` policy all read
this table; tests/real_vllm checks against vLLM's own parser that every refusal here is
also refused (or deprecated) upstream, so the table cannot silently rot.
"""
from __future__ import annotations

from typing import Iterable, Sequence

#: Flags the renderer sets from typed config. Repeating one in extraArgs would win silently
#: (argparse keeps the last value), so extraArgs may not carry them.
MANAGED = {
    "--served-model-name": "models[].name",
    "--tensor-parallel-size": "models[].tensorParallel",
    "--gpu-memory-utilization": "models[].gpuMemoryUtilization",
    "--max-model-len": "models[].maxModelLen",
    "--max-num-seqs": "models[].maxNumSeqs",
    "--quantization": "models[].quantization",
    "--kv-cache-dtype": "models[].kvCacheDtype",
    "--host": "the stack (vLLM binds 127.0.0.1 / the pod IP behind the front)",
    "--port": "the stack",
    "--model": "models[].model",
    "--download-dir": "the stack (weights directory)",
}
#: Short spellings vLLM accepts for managed flags.
ALIASES = {"-tp": "--tensor-parallel-size", "-q": "--quantization"}
#: Flags whose value is a credential: anything on argv is readable in /proc/<pid>/cmdline.
SECRET_FLAGS = {
    "--api-key": "set the apiKey secret; the stack passes VLLM_API_KEY through the 0600 env file / k8s Secret",
    "--hf-token": "set the hfToken secret; the stack passes HF_TOKEN through the 0600 env file / k8s Secret",
}
#: Flags removed or changed upstream (vllm-facts.md).
REMOVED = {
    "--speculative-model": "removed in vLLM; use --speculative-config '{\"model\": ..., \"num_speculative_tokens\": N}'",
    "--num-speculative-tokens": "removed in vLLM; part of --speculative-config",
    "--speculative-draft-tensor-parallel-size": "removed in vLLM; part of --speculative-config",
    "--disable-log-requests": "changed across vLLM versions; do not emit it",
}
#: `--dtype` values vLLM accepts; FP8 is `--quantization fp8` / `--kv-cache-dtype fp8`, never `--dtype fp8`.
DTYPE_CHOICES = ("auto", "half", "float16", "bfloat16", "float", "float32")


def normalize(flag: str) -> str:
    """`--max_model_len=1` → `--max-model-len` (vLLM's parser folds underscores too)."""
    name = flag.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return ALIASES.get(name, name)


def _value_after(args: Sequence[str], i: int) -> str | None:
    if "=" in args[i]:
        return args[i].split("=", 1)[1]
    return args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else None


def problems(args: Sequence[str], *, managed_allowed: bool = False) -> list[tuple[int, str]]:
    """(index, message) for every flag in `args` the stack refuses.

    managed_allowed=True checks a full rendered argv (managed flags legitimately present),
    but then refuses a managed flag given twice.
    """
    out: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        name = normalize(arg)
        if name in SECRET_FLAGS:
            out.append((i, f"{name} carries a secret on the command line; {SECRET_FLAGS[name]}"))
        elif name in REMOVED:
            out.append((i, f"{name}: {REMOVED[name]}"))
        elif name == "--dtype":
            value = _value_after(args, i)
            if value not in DTYPE_CHOICES:
                hint = " (FP8 is --quantization fp8 / --kv-cache-dtype fp8)" if value and "fp8" in value else ""
                out.append((i, f"--dtype {value} is not valid; allowed: {', '.join(DTYPE_CHOICES)}{hint}"))
        elif name in MANAGED:
            if not managed_allowed:
                out.append((i, f"{name} is managed by the stack (set {MANAGED[name]}); repeating it would "
                               "silently override the typed value"))
            elif name in seen:
                out.append((i, f"{name} given twice (argument {seen[name]} and {i}); the last one would win silently"))
        seen.setdefault(name, i)
    return out


def flag_values(args: Sequence[str], flag: str) -> list[str]:
    """Every value given for `flag` (any spelling) in an argv."""
    vals = []
    for i, arg in enumerate(args):
        if arg.startswith("-") and normalize(arg) == flag:
            v = _value_after(args, i)
            if v is not None:
                vals.append(v)
    return vals


def iter_flags(args: Iterable[str]) -> list[str]:
    return [normalize(a) for a in args if a.startswith("-")]
