"""The rendered nginx front (TLS, key map, upstream auth, per-model routes) in front of REAL vLLM.

Backends: S1 (`alpha`, started by the rendered systemd wrapper) and S2 (`beta`, which also
answers to `alpha`: one server with two --served-model-name values). The front is rendered by
`render_front` for `real_cfg()` with alpha -> S1 and beta -> S2, TLS from a test CA, the key map
holding the stack's `apiKey` (= both servers' VLLM_API_KEY) and one extra client key, and the
upstream-auth include presenting `apiKey` to vLLM, as the docker platform deploys it.

Which server saw a request is read from vLLM's own access log (uvicorn prints the path with its
query string): every request here carries a unique `?probe=` marker.
"""

from __future__ import annotations

import json
import shutil
import time

import httpx
import openai
import pytest

from tests.real_vllm.conftest import ALPHA, BETA, access_log, metric_sum, random_token, real_cfg, slow, start_real_front
from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]

STREAM_TOKENS = 100
STEP_DELAY_MS = 5  # test hook: vLLM generates this stream at 5 ms/token (~0.5-0.8 s)
LOG_WAIT_S = 5.0


@pytest.fixture(scope="module")
def front(real_pki, alpha_server, beta_server, backend_key, client_key):
    cfg = real_cfg()
    backends = [Backend(ALPHA, "127.0.0.1", alpha_server.port), Backend(BETA, "127.0.0.1", beta_server.port)]
    fr = start_real_front(real_pki, cfg, backends, keys=[backend_key, client_key], backend_key=backend_key)
    yield fr
    fr.stop()
    shutil.rmtree(fr.root, ignore_errors=True)


def oai(fr, route: str, key: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{fr.https}{route}",
        api_key=key,
        max_retries=0,
        http_client=httpx.Client(verify=fr.ssl_context(), timeout=60),
        **kw,
    )


def wait_in_log(server, marker: str, timeout: float = LOG_WAIT_S) -> str:
    """The access-log line of `marker` in the server's own log (polls: the log is written asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        hits = [ln for ln in server.log().splitlines() if marker in ln]
        if hits or time.monotonic() > deadline:
            return "\n".join(hits)
        time.sleep(0.05)


def request_totals(*servers) -> list[float]:
    return [
        metric_sum(s.metrics(), "vllm:request_success_total") + metric_sum(s.metrics(), "vllm:prompt_tokens_total")
        for s in servers
    ]


def test_chat_and_completions_with_the_openai_client(front, client_key, backend_key):
    for key in (client_key, backend_key):  # the extra client key works only because the front injects apiKey
        c = oai(front, f"/{ALPHA}/v1", key)
        chat = c.chat.completions.create(
            model=ALPHA,
            messages=[{"role": "user", "content": "Say this is a test"}],
            max_tokens=12,
            extra_body={"ignore_eos": True},
        )
        assert chat.model == ALPHA and chat.choices[0].message.role == "assistant"
        assert isinstance(chat.choices[0].message.content, str)
        assert chat.usage.completion_tokens == 12 and chat.usage.prompt_tokens > 0
        comp = c.completions.create(
            model=ALPHA, prompt="The quick brown fox", max_tokens=9, extra_body={"ignore_eos": True}
        )
        assert comp.model == ALPHA and comp.choices[0].finish_reason == "length"
        assert comp.usage.completion_tokens == 9
    # the X-Request-ID the front adds comes back
    r = oai(front, f"/{ALPHA}/v1", client_key).models.with_raw_response.list()
    assert r.headers.get("x-request-id")


def test_streaming_is_incremental_through_the_front_and_done_comes_last(front, client_key):
    body = {
        "model": ALPHA,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
        "max_tokens": STREAM_TOKENS,
        "stream": True,
        "ignore_eos": True,
        **slow(STEP_DELAY_MS),
    }
    events: list[tuple[float, str]] = []
    reads: list[float] = []
    buf = b""
    with httpx.Client(verify=front.ssl_context(), timeout=60) as c:
        t0 = time.perf_counter()
        with c.stream(
            "POST",
            f"{front.https}/{ALPHA}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {client_key}"},
        ) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            for chunk in r.iter_raw():
                now = time.perf_counter() - t0
                reads.append(now)
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    for line in event.decode().splitlines():
                        if line.startswith("data:"):
                            events.append((now, line[5:].strip()))
    assert buf.strip() == b""
    data = [d for _, d in events]
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1, data[-3:]
    chunks = [json.loads(d) for d in data[:-1]]
    content = [
        (t, ch) for (t, _), ch in zip(events, chunks) if ch["choices"] and ch["choices"][0]["delta"].get("content")
    ]
    assert len(content) >= STREAM_TOKENS // 2, len(content)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" or any(
        c["choices"] and c["choices"][0].get("finish_reason") == "length" for c in chunks
    )
    # incremental: vLLM produced a token every STEP_DELAY_MS; the content arrived over many separate
    # reads spread across the generation, not in one buffered burst at the end
    t_first, t_last = content[0][0], content[-1][0]
    buckets = len({int(t * 100) for t, _ in content})  # distinct 10 ms arrival slots
    assert len(reads) >= STREAM_TOKENS // 2, len(reads)
    assert buckets >= STREAM_TOKENS // 5, buckets
    min_span = STREAM_TOKENS * STEP_DELAY_MS / 1000 * 0.6
    assert t_last - t_first >= min_span and t_first < 0.25 * t_last, (t_first, t_last)
    print(
        f"\nstream: {len(content)} content chunks over {len(reads)} reads, first at {t_first * 1000:.0f} ms, "
        f"last at {t_last * 1000:.0f} ms, {buckets} distinct 10 ms arrival slots"
    )

    # the official SDK reads the same stream
    stream = oai(front, f"/{ALPHA}/v1", client_key).completions.create(
        model=ALPHA,
        prompt="Once upon a time",
        max_tokens=16,
        stream=True,
        extra_body={"ignore_eos": True},
        stream_options={"include_usage": True},
    )
    got = list(stream)
    assert len([c for c in got if c.choices]) >= 2
    assert [c.usage.completion_tokens for c in got if c.usage][-1] == 16


def test_per_model_routes_reach_their_own_server(front, alpha_server, beta_server, client_key):
    models = {}
    for route in (f"/{ALPHA}/v1", f"/{BETA}/v1", "/v1"):
        models[route] = [m.id for m in oai(front, route, client_key).models.list()]
    assert models == {f"/{ALPHA}/v1": [ALPHA], f"/{BETA}/v1": [BETA, ALPHA], "/v1": [ALPHA]}, models

    for route, model, server, other in (
        (f"/{ALPHA}/v1", ALPHA, alpha_server, beta_server),
        (f"/{BETA}/v1", BETA, beta_server, alpha_server),
        ("/v1", ALPHA, alpha_server, beta_server),
    ):  # default model: alpha
        marker = f"route-{random_token()}"
        chat = oai(front, route, client_key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4, extra_query={"probe": marker}
        )
        assert chat.model == model
        line = wait_in_log(server, marker)
        assert "POST /v1/chat/completions?probe=" in line and " 200" in line, (route, line)
        assert marker not in other.log(), route
    # the front's access log names the upstream it used
    deadline = time.monotonic() + LOG_WAIT_S
    while True:  # nginx logs a request when it finalizes it: may trail the client by a moment
        ups = {e["uri"]: e["upstream"] for e in access_log(front) if e["uri"].endswith("/chat/completions")}
        if len(ups) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ups[f"/{ALPHA}/v1/chat/completions"] == alpha_server.hostport
    assert ups[f"/{BETA}/v1/chat/completions"] == beta_server.hostport
    # one server, two served names: S2 answers to alpha too (directly), under its first name
    direct = openai.OpenAI(base_url=beta_server.base + "/v1", api_key=beta_server.key, max_retries=0)
    assert direct.completions.create(model=ALPHA, prompt="x", max_tokens=2).model in (ALPHA, BETA)


def test_front_answers_401_for_missing_or_wrong_keys_and_vllm_sees_nothing(
    front, alpha_server, beta_server, client_key
):
    before = request_totals(alpha_server, beta_server)
    markers = []
    url = f"{front.https}/{ALPHA}/v1/chat/completions"
    body = {"model": ALPHA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    bad_headers = {
        "missing": {},
        "wrong": {"Authorization": "Bearer sk-not-a-key-0123456789abcdef"},
        "case-flipped": {"Authorization": f"Bearer {client_key.swapcase()}"},
        "prefix": {"Authorization": f"Bearer {client_key[:-1]}"},
        "suffix": {"Authorization": f"Bearer {client_key}x"},
        "basic-scheme": {"Authorization": f"Basic {client_key}"},
        "no-scheme": {"Authorization": client_key},
    }
    with httpx.Client(verify=front.ssl_context(), timeout=30) as c:
        for name, headers in bad_headers.items():
            for path in (f"/{ALPHA}/v1/chat/completions", f"/{BETA}/v1/models", "/v1/completions"):
                marker = f"bad-{name}-{random_token()}"
                markers.append(marker)
                r = c.post(f"{front.https}{path}", params={"probe": marker}, json=body, headers=headers)
                assert r.status_code == 401, (name, path, r.status_code, r.text)
                assert r.json() == {"error": "Unauthorized"}
    marker = f"bad-sdk-{random_token()}"
    markers.append(marker)
    with pytest.raises(openai.AuthenticationError):
        oai(front, f"/{BETA}/v1", "sk-wrong-key-0123456789abcdef").chat.completions.create(
            model=BETA, messages=[{"role": "user", "content": "hi"}], max_tokens=2, extra_query={"probe": marker}
        )
    # control: an accepted request with a marker does show up, so the log check below can see requests
    ok_marker = f"good-{random_token()}"
    with httpx.Client(verify=front.ssl_context(), timeout=30) as c:
        r = c.post(url, params={"probe": ok_marker}, json=body, headers={"Authorization": f"Bearer {client_key}"})
    assert r.status_code == 200, r.text
    assert ok_marker in wait_in_log(alpha_server, ok_marker)
    logs = alpha_server.log() + beta_server.log()
    leaked = [m for m in markers if m in logs]
    assert not leaked, f"requests refused by the front reached vLLM: {leaked}"
    after = request_totals(alpha_server, beta_server)
    assert after[1] == before[1], (before, after)  # nothing reached S2 at all
    assert after[0] > before[0]  # only the control request reached S1
    # the front logged the 401s (without the Authorization header)
    deadline = time.monotonic() + LOG_WAIT_S
    while [e["status"] for e in access_log(front)].count(401) < len(markers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["status"] for e in access_log(front)].count(401) >= len(markers)
    assert client_key not in open(front.paths.access_log).read()


def test_vllm_itself_answers_401_when_the_front_is_bypassed(alpha_server, beta_server, client_key, backend_key):
    for server in (alpha_server, beta_server):
        for name, headers in (
            ("missing", {}),
            ("client-key-of-the-front", {"Authorization": f"Bearer {client_key}"}),
            ("wrong", {"Authorization": "Bearer sk-not-a-key-0123456789abcdef"}),
        ):
            marker = f"direct-{name}-{random_token()}"
            r = httpx.post(
                server.base + "/v1/chat/completions",
                params={"probe": marker},
                timeout=30,
                headers=headers,
                json={"model": server.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            )
            assert r.status_code == 401, (server.name, name, r.status_code, r.text)
            line = wait_in_log(server, marker)
            assert " 401" in line, (server.name, name, line)  # vLLM's own log: vLLM answered it
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base + "/v1", api_key=client_key, max_retries=0).models.list()
        ok = openai.OpenAI(base_url=server.base + "/v1", api_key=backend_key, max_retries=0)
        assert server.name in [m.id for m in ok.models.list()]
        # /health and /metrics stay open on vLLM (the stack binds it to loopback / the private network)
        assert httpx.get(server.base + D.HEALTH_PATH, timeout=10).status_code == 200


def test_plain_http_redirects_to_https_and_health_needs_no_key(front):
    r = httpx.get(f"{front.http}/{ALPHA}/v1/models", timeout=10, follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == f"https://127.0.0.1:{front.listen.https_port}/{ALPHA}/v1/models"
    r = httpx.get(f"{front.https}{D.HEALTH_PATH}", verify=front.ssl_context(), timeout=10)
    assert r.status_code == 200
