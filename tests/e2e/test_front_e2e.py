"""The rendered nginx front for real: TLS, routes, key gate, limits, errors, failover, logs.

One front (module scope) over fake vLLM backends on 127.0.0.1:
  alpha: two backends (on-demand + spot), beta: one backend and the default model (`/v1/`),
  gamma: every backend down (one refuses connections, one is marked `down`).
The front holds three client keys and presents its own backend key to the fakes
(`upstream_auth`), so any accepted client key works. Clients are the official `openai`
package (max_retries=0: a failure at the front must show) and httpx, verifying the test CA.
A second, function-scoped front is used to SIGKILL a backend.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.e2e.conftest import Front, start_front
from vllm_stack import defaults as D

pytestmark = pytest.mark.timeout(60)

ITL_MS = 30  # fake per-token delay: streams are visibly incremental
TTFT_MS = 20
STREAM_TOKENS = 30  # ~0.9 s stream
BODY_LIMIT = "64k"
BODY_OVER_LIMIT = 100 * 1024
ALL_DOWN_MAX_SECONDS = 3.0


@pytest.fixture(scope="module")
def front(pki):
    fr = start_front(
        pki,
        {
            "alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}],
            "beta": [{"capacity": "onDemand"}],
            "gamma": [{"dead": True}, {"dead": True, "state": "down"}],
        },
        default="beta",
        front={"clientMaxBodySize": BODY_LIMIT},
        fake_args=("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)),
    )
    yield fr
    fr.stop()
    shutil.rmtree(fr.root, ignore_errors=True)


def oai(fr: Front, route: str, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{fr.https}{route}",
        api_key=key or fr.keys[0],
        max_retries=0,
        http_client=httpx.Client(verify=fr.ssl_context(), timeout=30),
    )


def model_total(fr: Front, model: str) -> int:
    return sum(f.stats()["requests_total"] for f in fr.fakes[model])


def all_totals(fr: Front) -> int:
    return sum(fr.totals().values())


def raw_status(fr: Front, target: str, key: str | None = None) -> tuple[int, str]:
    """One request with the target sent byte-for-byte (httpx would normalize `/../` itself)."""
    ctx = ssl.create_default_context(cafile=str(fr.pki.ca))
    with socket.create_connection(("127.0.0.1", fr.listen.https_port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            auth = f"Authorization: Bearer {key or fr.keys[0]}\r\n"
            t.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := t.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


# --------------------------------------------------------------------------- happy paths


def test_health_is_answered_by_the_front_without_a_key(front):
    before = all_totals(front)
    with front.client() as c:
        r = c.get(f"{front.https}{D.HEALTH_PATH}")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert all_totals(front) == before


def test_non_streaming_chat_through_the_front(front):
    before = {m: model_total(front, m) for m in ("alpha", "beta")}
    resp = oai(front, "/alpha/v1").chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )
    assert resp.model == "alpha"
    assert resp.choices[0].message.content.strip()
    assert resp.usage.completion_tokens == 5
    assert model_total(front, "alpha") == before["alpha"] + 1
    assert model_total(front, "beta") == before["beta"]


def test_streaming_chat_arrives_incrementally(front):
    stream = oai(front, "/alpha/v1").chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": "count"}], max_tokens=STREAM_TOKENS, stream=True
    )
    t0 = time.monotonic()
    stamps, text = [], ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.monotonic() - t0)
            text += chunk.choices[0].delta.content
    assert len(stamps) == STREAM_TOKENS and text.strip()
    expected_span = (STREAM_TOKENS - 1) * ITL_MS / 1000
    # buffered by the proxy, every chunk would land at once at the end
    assert stamps[-1] - stamps[0] >= 0.6 * expected_span, stamps
    assert stamps[0] < stamps[-1] / 2, stamps


def test_each_model_route_reaches_its_own_backends_with_any_accepted_key(front):
    n = 6
    before = {f.port: f.stats()["requests_total"] for fs in front.fakes.values() for f in fs}
    for key in front.keys[:2]:
        for route in ("alpha", "beta"):
            client = oai(front, f"/{route}/v1", key=key)
            with ThreadPoolExecutor(n) as pool:
                list(
                    pool.map(
                        lambda _: client.chat.completions.create(
                            model=route, messages=[{"role": "user", "content": "x"}], max_tokens=3
                        ),
                        range(n),
                    )
                )
    after = {f.port: f.stats()["requests_total"] for fs in front.fakes.values() for f in fs}
    delta = {p: after[p] - before[p] for p in after}
    alpha = [f.port for f in front.fakes["alpha"]]
    beta = [f.port for f in front.fakes["beta"]]
    assert sum(delta[p] for p in alpha) == 2 * n
    assert sum(delta[p] for p in beta) == 2 * n
    assert all(delta[p] > 0 for p in alpha), delta  # least_conn spreads concurrent requests over both
    # the fakes only know the backend key: the front swapped the client's key for it
    assert all(f.stats()["unauthorized"] == 0 for fs in front.fakes.values() for f in fs)


def test_plain_v1_goes_to_the_default_model(front):
    before = {m: model_total(front, m) for m in ("alpha", "beta")}
    client = oai(front, "/v1")
    assert [m.id for m in client.models.list()] == ["beta"]
    resp = client.chat.completions.create(model="beta", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert resp.model == "beta"
    assert model_total(front, "beta") == before["beta"] + 2
    assert model_total(front, "alpha") == before["alpha"]


def test_request_id_is_passed_through_or_generated(front):
    with front.client() as c:
        body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
        r = c.post(
            f"{front.https}/alpha/v1/chat/completions",
            json=body,
            headers={**front.auth(), "X-Request-ID": "client-id.42"},
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == "client-id.42"
        r = c.post(
            f"{front.https}/alpha/v1/chat/completions",
            json=body,
            headers={**front.auth(), "X-Request-ID": 'bad id"with junk'},
        )
        assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


# --------------------------------------------------------------------------- refusals at the front


def test_missing_or_wrong_key_is_401_at_the_front(front):
    before = all_totals(front)
    body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    bad = [
        {},
        {"Authorization": "Bearer sk-not-a-key-000000000000"},
        {"Authorization": f"Bearer {front.keys[0].swapcase()}"},
        {"Authorization": f"Bearer {front.keys[0]}x"},
        {"Authorization": f"bearer {front.keys[0]}"},
        {"Authorization": f"Basic {front.keys[0]}"},
        {"Authorization": f"Bearer {front.backend_key}"},
    ]  # the backend key is not a client key
    with front.client() as c:
        for headers in bad:
            for route in ("/alpha/v1/chat/completions", "/v1/chat/completions"):
                r = c.post(f"{front.https}{route}", json=body, headers=headers)
                assert r.status_code == 401, (headers, r.text)
                assert r.json() == {"error": "Unauthorized"}
                assert r.headers["content-type"].startswith("application/json")
    with pytest.raises(openai.AuthenticationError):
        oai(front, "/alpha/v1", key="sk-wrong-key-0000000000000").chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
    assert all_totals(front) == before


def test_http_port_redirects_to_https(front):
    with httpx.Client(follow_redirects=False, timeout=10) as c:
        r = c.get(f"{front.http}/alpha/v1/models?x=1")
    assert r.status_code == 301
    assert r.headers["location"] == f"{front.https}/alpha/v1/models?x=1"


def test_body_over_the_limit_is_413(front):
    before = all_totals(front)
    body = json.dumps({"model": "alpha", "messages": [{"role": "user", "content": "a" * BODY_OVER_LIMIT}]})
    with front.client() as c:
        r = c.post(
            f"{front.https}/alpha/v1/chat/completions",
            content=body,
            headers={**front.auth(), "Content-Type": "application/json"},
        )
    assert r.status_code == 413
    assert r.json() == {"error": "request body too large"}
    assert all_totals(front) == before


def test_model_with_every_backend_down_answers_json_quickly(front):
    body = {"model": "gamma", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    with front.client() as c:
        for _ in range(3):
            t0 = time.monotonic()
            r = c.post(f"{front.https}/gamma/v1/chat/completions", json=body, headers=front.auth())
            assert time.monotonic() - t0 < ALL_DOWN_MAX_SECONDS
            assert r.status_code in (502, 503), r.text
            assert r.json() == {"error": "no healthy backend for model"}


def test_unknown_routes_and_traversal_never_reach_a_backend(front):
    before = all_totals(front)
    with front.client() as c:
        for path in ("/", "/nope", "/alpha", "/alpha/v2/models", "/metrics", "/delta/v1/models", "/V1/models"):
            r = c.get(f"{front.https}{path}", headers=front.auth())
            assert r.status_code == 404, (path, r.status_code)
            assert r.json() == {"error": "not found"}
    # sent byte-for-byte: nginx normalizes (and percent-decodes) the path before choosing a location
    for target in (
        "/v1/../x",
        "/v1/../metrics",
        "/alpha/v1/../../metrics",
        "/alpha/v1/%2e%2e/%2e%2e/metrics",
        "/alpha/v1/..%2f..%2fmetrics",
        "/beta/v1/../chat/completions",
        "/alpha/v1/..",
    ):
        status, body = raw_status(front, target)
        assert status == 404, (target, status, body)
        assert json.loads(body) == {"error": "not found"}
    assert all_totals(front) == before


def test_rate_limit_per_key_answers_429_json(front):
    key = front.keys[2]  # used by no other test: its bucket starts full
    n = 2 * (D.RATE_LIMIT_BURST + 1) + 10
    body = {"model": "gamma", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    with front.client(limits=httpx.Limits(max_connections=n)) as c:
        with ThreadPoolExecutor(16) as pool:
            rs = list(
                pool.map(
                    lambda _: c.post(f"{front.https}/gamma/v1/chat/completions", json=body, headers=front.auth(key)),
                    range(n),
                )
            )
    codes = [r.status_code for r in rs]
    assert codes.count(429) >= n - (D.RATE_LIMIT_BURST + 1) - D.RATE_LIMIT_PER_KEY_RPS, codes
    assert set(codes) <= {429, 502, 503}
    assert next(r for r in rs if r.status_code == 429).json() == {"error": "rate limit exceeded"}
    # another key is not affected
    with front.client() as c:
        assert c.post(
            f"{front.https}/gamma/v1/chat/completions", json=body, headers=front.auth(front.keys[1])
        ).status_code in (502, 503)


def test_keys_never_appear_in_nginx_logs(front):
    # make sure every kind of request has been logged at least once
    with front.client() as c:
        body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
        for key in front.keys + ["sk-not-a-key-000000000000"]:
            c.post(f"{front.https}/alpha/v1/chat/completions", json=body, headers=front.auth(key))
            c.post(f"{front.https}/gamma/v1/chat/completions", json=body, headers=front.auth(key))
    time.sleep(0.2)
    logs = front.logs()
    assert "/alpha/v1/chat/completions" in logs and "/gamma/v1/chat/completions" in logs
    for secret in [*front.keys, front.backend_key, "sk-not-a-key-000000000000"]:
        assert secret not in logs
    assert "Bearer" not in logs and "authorization" not in logs.lower()


# --------------------------------------------------------------------------- a backend dies


def test_sigkilled_backend_is_skipped_and_requests_are_retried(front_factory):
    fr = front_factory(
        {"alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}]}, fake_args=("--ttft-ms", "20", "--itl-ms", "25")
    )
    survivor, victim = fr.fakes["alpha"]
    body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 12}
    url = f"{fr.https}/alpha/v1/chat/completions"
    with fr.client(limits=httpx.Limits(max_connections=32)) as c:

        def call(_=None) -> int:
            return c.post(url, json=body, headers=fr.auth()).status_code

        with ThreadPoolExecutor(8) as pool:  # warm: both backends serve, keep-alive connections exist
            assert list(pool.map(call, range(8))) == [200] * 8
        assert victim.stats()["requests_total"] > 0

        # in-flight non-streaming requests when the backend dies: retried on the other backend
        with ThreadPoolExecutor(8) as pool:
            inflight = [pool.submit(call) for _ in range(8)]
            time.sleep(0.15)
            victim.proc.signal(signal.SIGKILL)
            victim.proc.popen.wait(timeout=5)
            after_kill = [pool.submit(call) for _ in range(24)]
            in_codes = [f.result() for f in inflight]
            after_codes = [f.result() for f in after_kill]
        assert after_codes == [200] * len(after_codes)  # zero failures for requests started after the kill
        assert in_codes == [200] * len(in_codes)  # not yet streaming: nginx retried them
        base = survivor.stats()["requests_total"]
        assert [call() for _ in range(4)] == [200] * 4  # still within fail_timeout: all on the survivor
        assert survivor.stats()["requests_total"] == base + 4
    fr.fakes["alpha"] = [survivor]
    # the front stopped routing to it: only a handful of failed attempts (max_fails per worker window)
    failed = [
        line
        for line in fr.error_log().splitlines()
        if f"127.0.0.1:{victim.port}" in line and ("failed" in line or "prematurely" in line or "reset" in line)
    ]
    assert 0 < len(failed) <= 8 + 2 * D.UPSTREAM_MAX_FAILS, failed
