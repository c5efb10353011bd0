"""vLLM command line and environment for one model: the only place argv is assembled.

Every target (container args, systemd ExecStart wrapper, k8s container args) gets its
argv from `serve_argv`, so a flag fix lands everywhere at once. Secrets never enter argv:
vLLM reads VLLM_API_KEY / HF_TOKEN from its environment (vllm-facts.md "Secrets").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from .. import defaults as D
from .. import flags, quoting

if TYPE_CHECKING:
    from ..config import ModelSpec

#: Environment variable names the secrets travel in (0600 env file / k8s Secret only).
ENV_API_KEY = "VLLM_API_KEY"
ENV_HF_TOKEN = "HF_TOKEN"
SECRET_ENV = (ENV_API_KEY, ENV_HF_TOKEN)


class RenderError(ValueError):
    """A model spec the renderer refuses (message names the offending flag)."""


def serve_argv(
    spec: ModelSpec,
    *,
    host: str = "127.0.0.1",
    port: int = D.VLLM_PORT,
    download_dir: str | None = None,
    model_path: str | None = None,
) -> list[str]:
    """Arguments after `vllm serve` (the official image's entrypoint is `vllm serve`).

    `model_path`: the pre-fetched local directory vLLM loads instead of the Hub id
    (`render.weights.model_path`); `--served-model-name` stays the route name either way."""
    bad = flags.problems(spec.extra_args)
    if bad:
        raise RenderError(f"models[{spec.name}].extraArgs: " + "; ".join(m for _, m in bad))
    argv = [
        model_path or spec.model,
        "--served-model-name",
        spec.name,
        "--host",
        host,
        "--port",
        str(port),
        "--tensor-parallel-size",
        str(spec.tensor_parallel),
        "--gpu-memory-utilization",
        f"{spec.gpu_memory_utilization:g}",
        "--max-model-len",
        str(int(spec.max_model_len)),
        "--max-num-seqs",
        str(int(spec.max_num_seqs)),
        # vLLM 0.32 ABORTS in-flight requests on SIGTERM unless this is > 0 (EngineArgs default 0:
        # "0 = abort, >0 = wait"; v1/engine/core.py `_handle_shutdown`). Every runtime's stop sends
        # SIGTERM and allows drain + TERMINATION_GRACE_EXTRA_SEC before SIGKILL: vLLM drains that long.
        "--shutdown-timeout",
        str(spec.pool.drain_seconds),
    ]
    flag = quantization_flag(spec)
    if flag is not None:
        argv += ["--quantization", flag]
    if spec.kv_cache_dtype != "auto":
        argv += ["--kv-cache-dtype", spec.kv_cache_dtype]
    if download_dir:
        argv += ["--download-dir", download_dir]
    argv += list(spec.extra_args)
    final = flags.problems(argv[1:], managed_allowed=True)
    if final:  # defence in depth: the assembled argv itself must be clean
        raise RenderError("; ".join(m for _, m in final))
    return argv


def quantization_flag(spec: ModelSpec) -> str | None:
    """The `--quantization` value to render, or None to leave it to vLLM's detection.

    A pre-quantized checkpoint carries its `quantization_config`; vLLM picks the kernel itself (0.32:
    AWQ/GPTQ resolve to auto_awq/auto_gptq, which choose Marlin where the GPU supports it; older
    releases resolve `awq` checkpoints to awq_marlin only when the flag is absent or awq_marlin, and an
    explicit `--quantization awq` forces the slow kernel). Leaving the flag out is the choice vLLM
    makes in every release (AWQ/GPTQ exist only as checkpoints, so they are never rendered). A 16-bit
    checkpoint quantized online needs the flag (`fp8`); a pre-quantized FP8 catalog checkpoint does not
    (compressed-tensors FP8 even refuses `--quantization fp8`)."""
    if spec.quantization in ("none", "awq", "gptq"):
        return None
    if spec.architecture is None and spec.model_info().architecture.checkpoint is not None:
        return None
    return spec.quantization


@dataclass(frozen=True)
class VllmEnv:
    """Non-secret environment (safe in unit files, container env, ConfigMaps)."""

    values: Mapping[str, str]


def public_env(*, weights_dir: str, gated: bool) -> dict[str, str]:
    env = {
        "HF_HOME": weights_dir,
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    }
    if not gated:
        env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    return env


def _env_quote(value: str) -> str:
    if any(c in value for c in "\n\r\0"):
        raise RenderError("secret values may not contain newlines or NUL")
    return value


def render_secret_env_file(values: Mapping[str, str]) -> str:
    """The 0600 EnvironmentFile / docker --env-file: `KEY=value` lines, no quoting games.

    systemd and docker both read `KEY=value` verbatim; values with newlines are refused.
    """
    unknown = set(values) - set(SECRET_ENV)
    if unknown:
        raise RenderError(f"not a secret env var: {sorted(unknown)}")
    return "".join(f"{k}={_env_quote(values[k])}\n" for k in SECRET_ENV if values.get(k))


def shell_join(argv: Sequence[str]) -> str:
    return quoting.sh_join(argv)
