"""The vLLM command line: exact argv for the seed examples, every refusal, no secret ever."""

from __future__ import annotations

import pytest

from vllm_stack import flags
from vllm_stack.loader import parse_config
from vllm_stack.render.vllm_args import RenderError, render_secret_env_file, serve_argv


def spec(**kw):
    base = {"name": "llama-70b", "model": "meta-llama/Llama-3.1-70B-Instruct", "gpu": "H100-SXM5-80GB"}
    return parse_config({"environment": "prod", "platform": "kubernetes", "models": [{**base, **kw}]}).models[0]


def test_70b_fp8_on_h100():
    argv = serve_argv(
        spec(quantization="fp8", kvCacheDtype="fp8", maxModelLen=4096, maxNumSeqs=64, gpuMemoryUtilization=0.92)
    )
    assert argv == [
        "meta-llama/Llama-3.1-70B-Instruct",
        "--served-model-name",
        "llama-70b",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--tensor-parallel-size",
        "1",
        "--gpu-memory-utilization",
        "0.92",
        "--max-model-len",
        "4096",
        "--max-num-seqs",
        "64",
        "--shutdown-timeout",  # pool.drainSeconds: vLLM 0.32 aborts in-flight requests on SIGTERM without it
        "20",
        "--quantization",
        "fp8",
        "--kv-cache-dtype",
        "fp8",
    ]
    assert "--dtype" not in argv


def test_70b_fp16_tp2():
    argv = serve_argv(spec(tensorParallel=2, maxModelLen=16384, maxNumSeqs=64, gpuMemoryUtilization=0.92))
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert "--quantization" not in argv and "--kv-cache-dtype" not in argv
    assert argv[argv.index("--max-model-len") + 1] == "16384"


def test_7b_on_l40s_with_extra_args_last():
    s = spec(
        name="llama-8b",
        model="meta-llama/Llama-3.1-8B-Instruct",
        gpu="L40S",
        maxModelLen=8192,
        maxNumSeqs=256,
        gpuMemoryUtilization=0.9,
        extraArgs=["--performance-mode", "interactivity"],
    )
    argv = serve_argv(s, host="0.0.0.0", port=8001)
    assert argv[:7] == [
        "meta-llama/Llama-3.1-8B-Instruct",
        "--served-model-name",
        "llama-8b",
        "--host",
        "0.0.0.0",
        "--port",
        "8001",
    ]
    assert argv[-2:] == ["--performance-mode", "interactivity"]
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--dtype", "fp8"], "--dtype fp8 is not valid"),
        (["--dtype=fp8"], "--dtype fp8 is not valid"),
        (["--speculative-model", "x"], "--speculative-config"),
        (["--disable-log-requests"], "do not emit"),
        (["--api-key", "k"], "secret on the command line"),
        (["--hf-token=t"], "secret on the command line"),
        (["--gpu-memory-utilization", "0.99"], "managed by the stack"),
        (["--max_model_len", "16k"], "managed by the stack"),
        (["-tp", "2"], "managed by the stack"),
    ],
)
def test_refusals_have_one_table(args, fragment):
    problems = flags.problems(args)
    assert problems and fragment in problems[0][1]
    with pytest.raises(RenderError, match=fragment.split()[0].lstrip("-") if fragment.startswith("-") else fragment):
        serve_argv(spec().model_copy(update={"extra_args": tuple(args)}))


def test_duplicate_managed_flag_in_full_argv_is_caught():
    argv = ["m", "--max-model-len", "8192", "--max-model-len", "16384"]
    assert "given twice" in flags.problems(argv[1:], managed_allowed=True)[0][1]


def test_dtype_valid_values_pass():
    assert flags.problems(["--dtype", "bfloat16"]) == []


def test_secret_env_file_is_key_value_only_and_refuses_newlines():
    text = render_secret_env_file({"VLLM_API_KEY": "sk-abc", "HF_TOKEN": "hf_xyz"})
    assert text == "VLLM_API_KEY=sk-abc\nHF_TOKEN=hf_xyz\n"
    with pytest.raises(RenderError):
        render_secret_env_file({"VLLM_API_KEY": "a\nb"})
    with pytest.raises(RenderError):
        render_secret_env_file({"PATH": "/bin"})


def test_argv_never_contains_secret_names_or_values():
    argv = serve_argv(spec(quantization="fp8"))
    joined = " ".join(argv)
    for bad in ("--api-key", "--hf-token", "VLLM_API_KEY", "HF_TOKEN"):
        assert bad not in joined


def test_shutdown_timeout_is_the_pools_drain():
    """vLLM 0.32 aborts in-flight requests on SIGTERM when --shutdown-timeout is 0 (its default); the
    rendered value is the drain every runtime allows before SIGKILL."""
    argv = serve_argv(spec(pool={"onDemand": 1, "drainSeconds": 45}))
    assert argv[argv.index("--shutdown-timeout") + 1] == "45"
    assert argv.count("--shutdown-timeout") == 1
