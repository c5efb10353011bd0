"""nginx -> vllm-router -> fake vLLM backends on loopback: the official openai client (streaming
and not), routes per model, 401 without a key, session affinity, prefix affinity, a SIGKILLed
backend, and a drain under load with zero failures (the rendered drain hook, then SIGTERM).

The router is the pinned one (`scripts/vllm_router_venv.sh`); its command line is the rendered
one (`render.router.router_argv`). Every process is on 127.0.0.1 and stopped by pid.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal

import httpx
import openai
import pytest

from tests.fakes.harness import start_fake
from tests.support.front import front_root, new_key
from tests.support.router import remove_worker, start_routed_front
from vllm_stack.endpoints import Backend
from vllm_stack.render import host_commands

N_BACKENDS = 3
N_LOAD = 600
PROMPT = "You are a careful assistant. " * 40


def _start(pki, policy: str, n: int = N_BACKENDS, fake_args: tuple[str, ...] = ()):
    root = front_root()
    backend_key = new_key("backend")
    keys = [new_key("client")]
    fakes = []
    try:
        for i in range(n):
            fakes.append(
                start_fake(
                    root / "logs",
                    "--grace-seconds",
                    "5",
                    "--ttft-ms",
                    "20",
                    "--itl-ms",
                    "2",
                    *fake_args,
                    model="chat",
                    api_key=backend_key,
                    name=f"fake_chat_{i}",
                )
            )
        other = start_fake(root / "logs", model="other", api_key=backend_key, name="fake_other")
        fakes.append(other)
        rf = start_routed_front(
            pki,
            routed="chat",
            workers=[f"http://127.0.0.1:{f.port}" for f in fakes[:n]],
            policy=policy,
            keys=keys,
            backend_key=backend_key,
            direct={"other": [Backend("other", "127.0.0.1", other.port)]},
            fakes={"chat": fakes[:n], "other": [other]},
            root=root,
            front={"rateLimitRps": 100_000, "rateLimitBurst": 100_000},  # the limiter has its own e2e test
        )
    except BaseException:
        for f in fakes:
            f.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return rf


@pytest.fixture
def routed(pki, request):
    rf = _start(pki, getattr(request, "param", "prefix"))
    yield rf
    rf.stop()
    shutil.rmtree(rf.front.root, ignore_errors=True)


def oai(rf, route: str, key: str | None = None, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{rf.front.https}{route}",
        api_key=key or rf.front.keys[0],
        max_retries=0,
        default_headers=headers or None,
        http_client=httpx.Client(verify=rf.front.ssl_context(), timeout=30),
    )


def per_worker(rf) -> dict[str, int]:
    """Requests each worker got, from the router's own metrics."""
    out = {w: 0 for w in rf.workers}
    for w, n in re.findall(r'vllm_router_processed_requests_total\{worker="([^"]+)"\} (\d+)', rf.router.metrics()):
        out[w] = int(n)
    return out


def chat(c: openai.OpenAI, model: str, text: str, stream: bool = False):
    msgs = [{"role": "system", "content": PROMPT}, {"role": "user", "content": text}]
    return c.chat.completions.create(model=model, messages=msgs, max_tokens=8, stream=stream)


def test_openai_client_through_nginx_and_router(routed):
    c = oai(routed, "/chat/v1")
    r = chat(c, "chat", "hello")
    assert r.choices[0].message.content and r.model == "chat"
    chunks = list(chat(c, "chat", "hello again", stream=True))
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) >= 1
    assert sum(per_worker(routed).values()) == 2  # both went through the router
    # Per-model routes: `other` goes straight to its server, not through the router.
    assert chat(oai(routed, "/other/v1"), "other", "hi").model == "other"
    assert sum(per_worker(routed).values()) == 2


def test_401_without_a_key_never_reaches_the_router(routed):
    with pytest.raises(openai.AuthenticationError):
        chat(oai(routed, "/chat/v1", key="sk-wrong-key-0123456789abcdef"), "chat", "x")
    with httpx.Client(verify=routed.front.ssl_context()) as h:
        assert h.post(f"{routed.front.https}/chat/v1/chat/completions", json={}).status_code == 401
    assert sum(per_worker(routed).values()) == 0


def test_prefix_policy_keeps_a_shared_prefix_on_one_replica(routed):
    c = oai(routed, "/chat/v1")
    for i in range(6):
        chat(c, "chat", f"question {i}")
    counts = per_worker(routed)
    assert sorted(counts.values()) == [0, 0, 6], counts


@pytest.mark.parametrize("routed", ["session"], indirect=True)
def test_session_header_pins_a_session_to_one_replica(routed):
    seen = {}
    for s in [f"session-{n}" for n in range(12)]:
        before = per_worker(routed)
        c = oai(routed, "/chat/v1", **{"X-Session-ID": s})
        for i in range(3):
            chat(c, "chat", f"unrelated {s} {i} " * (i + 1))
        after = per_worker(routed)
        moved = {w: after[w] - before[w] for w in after if after[w] != before[w]}
        assert list(moved.values()) == [3], (s, moved)
        seen[s] = next(iter(moved))
    assert len(set(seen.values())) >= 2, seen  # sessions are spread, each one kept


@pytest.mark.parametrize("routed", ["least_conn"], indirect=True)
def test_killed_backend_costs_no_request_when_idle(routed):
    c = oai(routed, "/chat/v1")
    victim = routed.front.fakes["chat"][0]
    victim.proc.stop(signal.SIGKILL)
    failures = 0
    for i in range(12):
        try:
            chat(c, "chat", f"after the kill {i}")
        except openai.APIError as exc:
            failures += 1
            print("failed", i, repr(exc))
    assert failures == 0
    assert sum(per_worker(routed).values()) >= 12


def test_drain_under_load_has_zero_failures(routed):
    victim = routed.front.fakes["chat"][1]
    worker = f"http://127.0.0.1:{victim.port}"
    hook = host_commands.router_drain_hook(routed.router.url, worker, 2)
    seen: dict[str, int] = {}

    async def scenario():
        load = asyncio.create_task(routed.front.load("chat", n_requests=N_LOAD, concurrency=6, deadline_s=60))
        await asyncio.sleep(0.5)
        proc = await asyncio.create_subprocess_shell(hook)
        assert await proc.wait() == 0
        seen.update(per_worker(routed))
        victim.proc.stop(signal.SIGTERM)  # what the pool's delete does after the hook
        return await load

    res = asyncio.run(scenario())
    assert res.started == N_LOAD and all(r.ok for r in res.records), [r.error for r in res.records if not r.ok][:5]
    assert worker not in routed.router.workers()
    assert seen[worker] > 0  # the victim served part of the load before it left the worker set
    assert sum(per_worker(routed).values()) - sum(seen.values()) > 0  # and the load outlived it


def test_remove_worker_is_what_the_hook_calls(routed):
    worker = routed.workers[0]
    assert remove_worker(routed.router, worker) == 200
    assert worker not in routed.router.workers() and len(routed.router.workers()) == N_BACKENDS - 1
