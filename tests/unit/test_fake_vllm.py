"""The fake vLLM server behaves like vLLM's OpenAI server where the stack depends on it.

Every server runs as a subprocess on 127.0.0.1:free_port() via tests.support.procs.Proc.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.fakes.fake_vllm import FakeConfig, FakeVllm
from tests.fakes.harness import REPO_ROOT, FakeHandle, metric_value, parse_samples, running_fake, start_fake

pytestmark = pytest.mark.timeout(10)

KEY = "test-key-3f9c1d"  # fake secret; must never show up in the fake's log
MODEL = "tiny"


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> FakeHandle:
    h = start_fake(
        tmp_path_factory.mktemp("fake_vllm"),
        "--ttft-ms",
        "20",
        "--itl-ms",
        "5",
        api_key=KEY,
        model=MODEL,
        name="fake_vllm_shared",
    )
    yield h
    h.stop()


def _chat_body(content: str = "hello there", max_tokens: int = 5, **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}


def _post(fake: FakeHandle, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    # plain HTTP on loopback: verify=False skips loading the CA bundle per call (~0.2 s each on a busy
    # 2-core machine, which pushed the 48-request heavy-tail test past its 10 s timeout)
    h = fake.auth_headers() if headers is None else headers
    return httpx.post(fake.url(path), json=body, headers=h, timeout=5, verify=False)


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


# ----------------------------------------------------------------------------- OpenAI API surface


def test_models_list(fake):
    r = httpx.get(fake.url("/v1/models"), headers=fake.auth_headers(), timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL]
    assert body["data"][0]["object"] == "model"
    assert body["data"][0]["owned_by"] == "vllm"


def test_chat_non_streaming(fake):
    before = fake.stats()
    r = _post(fake, "/v1/chat/completions", _chat_body(max_tokens=5))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == MODEL
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 5
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    after = fake.stats()
    assert after["by_path"].get("/v1/chat/completions", 0) == before["by_path"].get("/v1/chat/completions", 0) + 1
    assert after["completed"] == before["completed"] + 1


def test_completions_non_streaming_and_default_max_tokens(fake):
    r = _post(fake, "/v1/completions", {"model": MODEL, "prompt": "Once upon a time"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["usage"]["completion_tokens"] == 16  # default max_tokens
    assert len(body["choices"][0]["text"].split()) == 16


def test_streaming_chat_with_openai_client(fake):
    client = openai.OpenAI(base_url=fake.url("/v1"), api_key=KEY, max_retries=0, timeout=5)
    prompt = "stream me something"
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 6
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    # Same prompt without streaming gives the same text: streaming is just a different framing.
    full = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=6)
    assert "".join(pieces) == full.choices[0].message.content


@pytest.mark.parametrize(
    "path,body,obj",
    [
        ("/v1/chat/completions", _chat_body(max_tokens=4, stream=True), "chat.completion.chunk"),
        ("/v1/completions", {"model": MODEL, "prompt": "abc", "max_tokens": 4, "stream": True}, "text_completion"),
    ],
)
def test_streaming_raw_sse_framing_ends_with_done(fake, path, body, obj):
    with httpx.stream("POST", fake.url(path), json=body, headers=fake.auth_headers(), timeout=5) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert all(ln.startswith("data: ") for ln in lines), lines
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert all(e["object"] == obj for e in events)
    texts = [
        (e["choices"][0]["delta"].get("content") if obj.startswith("chat") else e["choices"][0]["text"])
        for e in events
        if e["choices"]
    ]
    assert len([t for t in texts if t]) == 4


def test_auth_401_without_or_with_wrong_key_and_open_health_metrics(fake):
    before = fake.stats()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = _post(fake, "/v1/chat/completions", _chat_body(), headers=headers)
        assert r.status_code == 401
        assert r.json() == {"error": "Unauthorized"}
    assert httpx.get(fake.url("/v1/models"), timeout=5).status_code == 401
    assert httpx.get(fake.url("/health"), timeout=5).status_code == 200
    assert httpx.get(fake.url("/metrics"), timeout=5).status_code == 200
    after = fake.stats()
    assert after["unauthorized"] == before["unauthorized"] + 4
    assert after["completed"] == before["completed"]  # nothing was generated for the rejected requests
    log = fake.log()
    assert "POST /v1/chat/completions status=401 auth=no" in log
    assert "POST /v1/chat/completions status=401 auth=yes" in log
    assert KEY not in log and "wrong" not in log


def test_unknown_model_404_vllm_error_shape(fake):
    r = _post(fake, "/v1/chat/completions", {**_chat_body(), "model": "no-such-model"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "NotFoundError"
    assert err["code"] == 404
    assert "no-such-model" in err["message"]
    assert set(err) == {"message", "type", "param", "code"}


def test_bad_max_tokens_is_400(fake):
    r = _post(fake, "/v1/chat/completions", _chat_body(max_tokens=0))
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "BadRequestError"
    r = _post(fake, "/v1/chat/completions", _chat_body(max_tokens=10_000))  # > --max-model-len 4096
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "max_tokens"


# ----------------------------------------------------------------------------- metrics

REQUIRED = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:prompt_tokens_total": "counter",
    "vllm:generation_tokens_total": "counter",
    "vllm:num_preemptions_total": "counter",
    "vllm:request_success_total": "counter",
}
COLON_LINT = "metric names should not contain ':'"


def _promtool_check(text: str) -> tuple[int, list[str]]:
    exe = shutil.which("promtool")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (Debian package 'prometheus')")
        pytest.skip("promtool not installed")
    p = subprocess.run([exe, "check", "metrics"], input=text.encode(), capture_output=True, timeout=8)
    out = (p.stdout + p.stderr).decode(errors="replace")
    return p.returncode, [ln for ln in out.splitlines() if ln.strip()]


def test_metrics_names_values_and_promtool(fake):
    text0 = fake.metrics_text()
    labels = {"model_name": MODEL, "engine": "0"}
    gen0 = metric_value(text0, "vllm:generation_tokens_total", **labels)
    len0 = metric_value(text0, "vllm:request_success_total", finished_reason="length", **labels)
    ttft0 = metric_value(text0, "vllm:time_to_first_token_seconds_count", **labels)
    itl0 = metric_value(text0, "vllm:inter_token_latency_seconds_count", **labels)
    assert _post(fake, "/v1/chat/completions", _chat_body(max_tokens=7)).status_code == 200

    r = httpx.get(fake.url("/metrics"), timeout=5)
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for name, typ in REQUIRED.items():
        assert f"# TYPE {name} {typ}\n" in text, name
        assert f"# HELP {name} " in text, name
    samples = parse_samples(text)
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
    ):
        assert any(n == name and ls == labels for n, ls, _ in samples), name
    for h in (
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
    ):
        buckets = [(ls["le"], v) for n, ls, v in samples if n == f"{h}_bucket"]
        assert buckets[-1][0] == "+Inf"
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{h} buckets not cumulative"
        assert counts[-1] == metric_value(text, f"{h}_count", **labels)
        metric_value(text, f"{h}_sum", **labels)
    for reason in ("stop", "length"):
        metric_value(text, "vllm:request_success_total", finished_reason=reason, **labels)

    assert metric_value(text, "vllm:generation_tokens_total", **labels) == gen0 + 7
    assert metric_value(text, "vllm:request_success_total", finished_reason="length", **labels) == len0 + 1
    assert metric_value(text, "vllm:time_to_first_token_seconds_count", **labels) == ttft0 + 1
    assert metric_value(text, "vllm:inter_token_latency_seconds_count", **labels) == itl0 + 6
    assert metric_value(text, "vllm:num_requests_running", **labels) == 0

    rc, lines = _promtool_check(text)
    # promtool 2.42 exits 3 for lint findings; vLLM's "vllm:" names always draw the colon warning,
    # which is acceptable. Anything else (parse error = exit 1, other lint findings) fails.
    other = [ln for ln in lines if COLON_LINT not in ln]
    assert rc in (0, 3) and not other, f"promtool rc={rc}:\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- scheduling and state


def test_waiting_counter_rises_beyond_max_num_seqs(tmp_path):
    with running_fake(tmp_path, "--max-num-seqs", "2", "--ttft-ms", "400", "--itl-ms", "20") as f:
        labels = {"model_name": MODEL, "engine": "0"}
        with ThreadPoolExecutor(5) as ex:
            futs = [
                ex.submit(
                    httpx.post,
                    f.url("/v1/chat/completions"),
                    json=_chat_body(f"q{i}", max_tokens=5),
                    timeout=8,
                    verify=False,
                )
                for i in range(5)
            ]
            seen = None
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                text = f.metrics_text()
                seen = (
                    metric_value(text, "vllm:num_requests_running", **labels),
                    metric_value(text, "vllm:num_requests_waiting", **labels),
                    metric_value(text, "vllm:kv_cache_usage_perc", **labels),
                )
                if seen[:2] == (2, 3):
                    break
                time.sleep(0.03)
            assert seen == (2, 3, 1.0)
            st = f.stats()
            assert (st["running"], st["waiting"], st["in_flight"]) == (2, 3, 5)
            results = [fu.result() for fu in futs]
        assert [r.status_code for r in results] == [200] * 5
        text = f.metrics_text()
        assert metric_value(text, "vllm:num_requests_waiting", **labels) == 0
        assert metric_value(text, "vllm:num_requests_running", **labels) == 0
        assert metric_value(text, "vllm:request_queue_time_seconds_count", **labels) == 5
        # three requests waited for a full earlier request (>= 0.4 s TTFT + 4 x 20 ms) each
        assert metric_value(text, "vllm:request_queue_time_seconds_sum", **labels) >= 3 * 0.45


def test_state_overrides_show_in_metrics_and_health(tmp_path):
    with running_fake(tmp_path, "--ttft-ms", "1", "--itl-ms", "1", api_key=KEY) as f:
        labels = {"model_name": MODEL, "engine": "0"}
        assert f.metric("vllm:num_requests_waiting", **labels) == 0
        f.set_state(waiting_override=25, kv_usage_override=0.95)
        text = f.metrics_text()
        assert metric_value(text, "vllm:num_requests_waiting", **labels) == 25
        assert metric_value(text, "vllm:kv_cache_usage_perc", **labels) == 0.95
        assert f.stats()["waiting"] == 0  # real queue untouched; only the report is overridden

        f.set_state(dead=True)
        r = httpx.get(f.url("/health"), timeout=5)
        assert r.status_code == 503
        assert _post(f, "/v1/chat/completions", _chat_body()).status_code == 500

        f.set_state(dead=False, waiting_override=None, kv_usage_override=None)
        r = httpx.get(f.url("/health"), timeout=5)
        assert (r.status_code, r.content) == (200, b"")
        text = f.metrics_text()
        assert metric_value(text, "vllm:num_requests_waiting", **labels) == 0
        assert metric_value(text, "vllm:kv_cache_usage_perc", **labels) == 0.0
        assert httpx.post(f.url("/_fake/state"), json={"bogus": 1}, timeout=5).status_code == 400

        # stats prove whether a request reached this backend
        httpx.post(f.url("/_fake/reset"), timeout=5)
        assert f.stats()["requests_total"] == 0
        assert _post(f, "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 2}).status_code == 200
        st = f.stats()
        assert st["requests_total"] == 1 and st["by_path"] == {"/v1/completions": 1} and st["with_auth"] == 1


def test_client_disconnect_aborts_request(tmp_path):
    with running_fake(tmp_path, "--ttft-ms", "10", "--itl-ms", "50") as f:
        with httpx.stream(
            "POST", f.url("/v1/chat/completions"), json=_chat_body(max_tokens=100, stream=True), timeout=5
        ) as r:
            for line in r.iter_lines():
                if "content" in line:
                    break
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and f.stats()["in_flight"]:
            time.sleep(0.05)
        st = f.stats()
        assert st["in_flight"] == 0 and st["aborted"] == 1 and st["completed"] == 0
        assert f.metric("vllm:request_success_total", finished_reason="abort") == 1
        assert f.metric("vllm:generation_tokens_total") < 100


def test_heavy_tail_is_seeded_and_mixed(tmp_path):
    args = ("--heavy-tail", "--tail-median-tokens", "20", "--ttft-ms", "0", "--itl-ms", "0")

    def lengths(seed: str) -> list[tuple[int, str]]:
        with running_fake(tmp_path, *args, "--seed", seed) as f:
            out = []
            for i in range(15):
                body = _post(f, "/v1/chat/completions", _chat_body(f"p{i}", max_tokens=300)).json()
                out.append((body["usage"]["completion_tokens"], body["choices"][0]["finish_reason"]))
            forced = _post(f, "/v1/chat/completions", _chat_body(max_tokens=33, ignore_eos=True)).json()
            assert forced["usage"]["completion_tokens"] == 33
            return out

    a, b, c = lengths("7"), lengths("7"), lengths("8")
    assert a == b
    assert a != c
    ns = [n for n, _ in a]
    assert len(set(ns)) >= 5
    assert max(ns) >= 4 * min(ns)
    assert all(reason == ("length" if n == 300 else "stop") for n, reason in a)


# ----------------------------------------------------------------------------- lifecycle


def test_starts_fast(tmp_path):
    t0 = time.monotonic()
    with running_fake(tmp_path):
        elapsed = time.monotonic() - t0
    assert elapsed < 0.5, f"fake took {elapsed:.2f}s to listen"


def test_load_seconds_refuses_connections_then_serves(tmp_path):
    t0 = time.monotonic()
    f = start_fake(tmp_path, "--load-seconds", "1.5", wait=False)
    try:
        refusals = 0
        while True:
            assert time.monotonic() - t0 < 6, "never started listening"
            assert f.proc.popen.poll() is None, f.proc.tail()
            try:
                with socket.create_connection(("127.0.0.1", f.port), timeout=0.5):
                    break
            except ConnectionRefusedError:
                refusals += 1
                time.sleep(0.05)
        up_after = time.monotonic() - t0
        assert refusals >= 10
        assert up_after >= 1.5, f"listening after {up_after:.2f}s despite --load-seconds 1.5"
        r = httpx.get(f.url("/health"), timeout=5)
        assert (r.status_code, r.content) == (200, b"")
    finally:
        f.stop()


def _stream_in_thread(f: FakeHandle, max_tokens: int, first_chunk: threading.Event, out: dict) -> threading.Thread:
    def run() -> None:
        lines: list[str] = []
        try:
            with httpx.stream(
                "POST", f.url("/v1/chat/completions"), timeout=10, json=_chat_body(max_tokens=max_tokens, stream=True)
            ) as r:
                for line in r.iter_lines():
                    if line:
                        lines.append(line)
                        first_chunk.set()
        except httpx.HTTPError as e:
            out["error"] = repr(e)
        out["lines"] = lines
        first_chunk.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_sigterm_lets_inflight_stream_finish(tmp_path):
    f = start_fake(tmp_path, "--ttft-ms", "20", "--itl-ms", "100", "--grace-seconds", "8")
    try:
        first, out = threading.Event(), {}
        t = _stream_in_thread(f, 15, first, out)
        assert first.wait(5)
        t_term = time.monotonic()
        f.proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        while not _refused(f.port):
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.02)
        assert t.is_alive(), "stream ended before we could check it survived SIGTERM"
        t.join(8)
        assert "error" not in out, out
        lines = out["lines"]
        assert lines[-1] == "data: [DONE]"
        assert sum(1 for ln in lines if '"content":" ' in ln) == 15
        assert f.proc.popen.wait(5) == 0
        assert time.monotonic() - t_term >= 1.0  # it waited for the ~1.4 s of remaining tokens
        assert "shutdown complete" in f.proc.tail()
    finally:
        f.stop()


def test_sigterm_grace_expiry_cuts_long_stream_and_exits_zero(tmp_path):
    f = start_fake(tmp_path, "--ttft-ms", "10", "--itl-ms", "100", "--grace-seconds", "0.5")
    try:
        first, out = threading.Event(), {}
        t = _stream_in_thread(f, 60, first, out)  # would need ~6 s
        assert first.wait(5)
        t_term = time.monotonic()
        f.proc.signal(signal.SIGTERM)
        assert f.proc.popen.wait(4) == 0
        assert time.monotonic() - t_term < 2.5
        t.join(5)
        assert "data: [DONE]" not in out.get("lines", [])
    finally:
        f.stop()


def test_only_loopback_and_no_api_key_flag():
    base = [sys.executable, "-m", "tests.fakes.fake_vllm", "--port", "1"]
    p = subprocess.run(base + ["--host", "0.0.0.0"], capture_output=True, timeout=8, cwd=REPO_ROOT)
    assert p.returncode == 2 and b"loopback" in p.stderr
    # The key is read from VLLM_API_KEY only; there is deliberately no --api-key flag.
    p = subprocess.run(base + ["--api-key", "x"], capture_output=True, timeout=8, cwd=REPO_ROOT)
    assert p.returncode == 2 and b"unrecognized arguments" in p.stderr


def test_in_process_use_and_keep_alive():
    """FakeVllm is importable and runs inside the test's event loop (port 0 = any free port)."""

    async def go() -> tuple[list[int], dict]:
        async with FakeVllm(
            FakeConfig(port=0, served_model_names=[MODEL], ttft_ms=1, itl_ms=1, log_requests=False)
        ) as fv:
            assert fv.port > 0
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{fv.port}", timeout=5) as c:
                codes = []
                for i in range(3):  # one pooled keep-alive connection serves all three
                    r = await c.post("/v1/chat/completions", json=_chat_body(f"k{i}", max_tokens=2))
                    codes.append(r.status_code)
                return codes, fv.stats_snapshot()

    codes, st = asyncio.run(go())
    assert codes == [200, 200, 200]
    assert st["completed"] == 3 and st["open_connections"] == 1


def test_large_body_with_expect_continue(fake):
    big = "word " * 2000  # > 1 KiB: clients like curl send "Expect: 100-continue"
    body = json.dumps(_chat_body(big, max_tokens=2)).encode()
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert s.recv(64).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(payload)["usage"]["prompt_tokens"] > 2000
