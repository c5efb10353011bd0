"""nginx -> vllm-router -> two REAL vLLM CPU servers (tiny random-weight model): the official openai
client (streaming and not), 401 without a key, session affinity, the drain hook under load with
zero failures, and a SIGKILLed backend. Bounded, 127.0.0.1 only, every process stopped by pid.

The router's argv is the rendered one (`render.router.router_argv`); the front is `render_front`'s.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from pathlib import Path

import httpx
import openai
import pytest

from tests.real_vllm import harness as H
from tests.support.front import front_root, make_pki, new_key
from tests.support.router import start_routed_front
from vllm_stack.render import host_commands

pytestmark = pytest.mark.real_vllm
MODEL = "chat"


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    root = front_root(prefix="real-routing-")
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    key = new_key("backend")
    procs, rf = [], None
    try:
        ports = [H.free_port() for _ in range(3)]  # one to drain, one to SIGKILL, one that stays
        for i, p in enumerate(ports):
            argv, _ = H.test_profile([str(H.tiny_model_dir()), "--served-model-name", MODEL], p)
            procs.append(H.start_vllm(argv, {"VLLM_API_KEY": key, **H.own_core_env(i)}, Path(root) / "logs", p))
        for p, proc in zip(ports, procs):
            H.wait_healthy(p, timeout=300, proc=proc)
        rf = start_routed_front(
            pki,
            routed=MODEL,
            workers=[f"http://127.0.0.1:{p}" for p in ports],
            policy="session",
            keys=[new_key("client")],
            backend_key=key,
            root=Path(root),
            front={"rateLimitRps": 100_000, "rateLimitBurst": 100_000},
        )
        rf.vllm = dict(zip(rf.workers, procs))  # type: ignore[attr-defined]
        yield rf
    finally:
        if rf is not None:
            rf.stop()
        for proc in procs:
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def oai(rf, key: str | None = None, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{rf.front.https}/{MODEL}/v1",
        api_key=key or rf.front.keys[0],
        max_retries=0,
        default_headers=headers or None,
        http_client=httpx.Client(verify=rf.front.ssl_context(), timeout=60),
    )


def per_worker(rf) -> dict[str, int]:
    out = {w: 0 for w in rf.workers}
    for w, n in re.findall(r'vllm_router_processed_requests_total\{worker="([^"]+)"\} (\d+)', rf.router.metrics()):
        out[w] = int(n)
    return out


def ask(c: openai.OpenAI, text: str, stream: bool = False):
    return c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=4, stream=stream
    )


def test_openai_client_stream_and_not(routed):
    c = oai(routed)
    r = ask(c, "Say this is a test")
    assert r.model == MODEL and r.choices[0].finish_reason in ("stop", "length")
    chunks = list(ask(c, "Say this is a test", stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_401_without_a_valid_key(routed):
    before = sum(per_worker(routed).values())
    with pytest.raises(openai.AuthenticationError):
        ask(oai(routed, key="sk-not-a-key-0123456789abcdef"), "x")
    assert sum(per_worker(routed).values()) == before


def test_session_affinity(routed):
    targets = set()
    for s in range(5):
        before = per_worker(routed)
        c = oai(routed, **{"X-Session-ID": f"real-session-{s}"})
        for i in range(3):
            ask(c, f"turn {i} of session {s}")
        after = per_worker(routed)
        moved = [w for w in after if after[w] != before[w]]
        assert len(moved) == 1 and after[moved[0]] - before[moved[0]] == 3, (s, before, after)
        targets.add(moved[0])


def test_drain_under_load_has_zero_failures(routed):
    """The rendered drain hook (leave the worker set, wait) under load, then SIGTERM: no request fails."""
    victim = routed.workers[1]
    hook = host_commands.router_drain_hook(routed.router.url, victim, 2)

    async def scenario():
        load = asyncio.create_task(routed.front.load(MODEL, n_requests=40, concurrency=4, deadline_s=120, max_tokens=4))
        await asyncio.sleep(1.0)
        proc = await asyncio.create_subprocess_shell(hook)
        assert await proc.wait() == 0
        routed.vllm[victim].stop(signal.SIGTERM)  # what the pool's delete does after the hook
        return await load

    res = asyncio.run(scenario())
    failed = [r.error for r in res.records if not r.ok]
    assert res.started == 40 and failed == [], failed[:5]
    assert victim not in routed.router.workers()


def test_sigkilled_backend_costs_no_idle_request(routed):
    """SIGKILL (no drain) of an idle backend: retries and the circuit breaker keep every request whole."""
    victim = routed.workers[0]
    routed.vllm[victim].stop(signal.SIGKILL)
    c = oai(routed)
    failures = []
    for i in range(8):
        try:
            ask(c, f"after the kill {i}")
        except openai.APIError as exc:
            failures.append(repr(exc))
    assert failures == []
