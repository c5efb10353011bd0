"""Reliability of the rendered nginx front when backends come and go without the drain script.

What `test_front_e2e.py` (SIGKILL with non-streaming requests in flight) and
`test_drain_e2e.py` (planned drain) don't cover, each on its own function-scoped front over
two fake vLLM backends on 127.0.0.1:

* a backend still loading its model (port bound, connection refused) takes no request and
  costs clients nothing; once it listens it gets traffic again after at most `fail_timeout`;
* a spot preemption without notice (SIGKILL) under ~20 concurrent streams: only the streams
  that were running on the killed backend fail, every request started after the kill
  succeeds, and the front stops trying the dead backend;
* a response that has started streaming is never retried on another backend;
* a backend stopped with SIGTERM but not drained first (vLLM's own graceful shutdown) loses
  no request: in-flight streams finish, new ones are retried on the other backend.

Load comes from `bench.loadgen.run_load` (bounded in count and time); backend counters from
the fakes' `/_fake/stats`; nginx's view from its JSON access log and its error log.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Awaitable, Callable, TypeVar

import httpx
import pytest

from bench.loadgen import LoadResult
from tests.support.frontlab import NO_RATE_LIMIT, access_log, error_lines, start_fake_at
from tests.support.procs import wait_port
from vllm_stack import defaults as D

pytestmark = pytest.mark.timeout(60)

CONNECT_REFUSED = "connect() failed (111: Connection refused)"
T = TypeVar("T")


async def _stats(port: int) -> dict:
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(f"http://127.0.0.1:{port}/_fake/stats")
        r.raise_for_status()
        return r.json()


def _body(max_tokens: int, stream: bool = False, content: str = "x") -> dict:
    return {
        "model": "alpha",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def _signal_during_load(
    fr,
    backend,
    sig: int,
    *,
    n_requests: int,
    concurrency: int,
    max_tokens: int,
    after_s: float,
    then: Callable[[], Awaitable[T]] | None = None,
) -> tuple[LoadResult, dict, float, T | None]:
    """Stream `n_requests` chats to model alpha through the front (`run_load`, bounded); `after_s`
    into the run, read `backend`'s /_fake/stats and send it `sig` right after the read (before
    yielding to the loop); then await `then()`, if given, while the load goes on; then the load.

    Returns (the load's result, the backend's stats just before the signal, the signal's time
    in seconds since the run began, what `then` returned)."""
    load = asyncio.create_task(
        fr.load(
            "alpha", n_requests=n_requests, concurrency=concurrency, deadline_s=40, stream=True, max_tokens=max_tokens
        )
    )
    t_run = time.perf_counter()  # <= loadgen's own t0: offsets below are conservative
    await asyncio.sleep(after_s)
    before = await _stats(backend.port)
    backend.proc.signal(sig)
    t_signal = time.perf_counter() - t_run
    during = await then() if then is not None else None
    return await load, before, t_signal, during


# --------------------------------------------------------------------------- a backend still loading


LOAD_SECONDS = 5.0  # recovery is bounded by fail_timeout (10 s) anyway
LOADING_CONCURRENCY = 4
LOADING_REQUESTS = 100  # ~1.7 s of load at the timings below, all while the backend loads
RECOVERY_SLACK_S = 4.0  # after fail_timeout: time for the next request to pick it


def test_loading_backend_gets_no_traffic_and_costs_clients_nothing(front_factory):
    # The second backend is `dead` at render time: a free port nobody listens on yet. A fake
    # then binds it and "loads its model" for LOAD_SECONDS (bound, not listening: refused).
    fr = front_factory(
        {"alpha": [{"capacity": "onDemand"}, {"dead": True, "capacity": "spot"}]},
        front=NO_RATE_LIMIT,
        fake_args=("--ttft-ms", "20", "--itl-ms", "5"),
    )
    (ready,) = fr.fakes["alpha"]
    port = next(
        int(ln.split()[1].rsplit(":", 1)[1])
        for ln in fr.files["upstreams/alpha.conf"].splitlines()
        if ln.strip().startswith("server ") and f":{ready.port} " not in ln
    )
    t_start = time.monotonic()
    loading = start_fake_at(
        fr.root / "logs",
        port,
        "--load-seconds",
        str(LOAD_SECONDS),
        "--grace-seconds",
        "1",
        "--ttft-ms",
        "20",
        "--itl-ms",
        "5",
        api_key=fr.backend_key,
        model="alpha",
        name="fake_vllm_loading",
    )
    fr.fakes["alpha"].append(loading)

    result = asyncio.run(
        fr.load(
            "alpha",
            n_requests=LOADING_REQUESTS,
            concurrency=LOADING_CONCURRENCY,
            deadline_s=LOAD_SECONDS - 0.5,
            stream=True,
            max_tokens=8,
        )
    )
    during_load = time.monotonic() - t_start
    assert during_load < LOAD_SECONDS, "the load must run while the backend is still loading"
    # zero client-visible failures, and the run was not cut short
    assert result.failures == 0 and result.successes == LOADING_REQUESTS and not result.deadline_hit, result.summary()
    # nginx did try the loading backend (least_conn picks the idle one), was refused, and
    # retried on the ready one: every such request still answered 200 from `ready`
    refused = error_lines(fr, port, CONNECT_REFUSED)
    assert refused, fr.error_log()
    assert len(refused) <= D.UPSTREAM_MAX_FAILS + LOADING_CONCURRENCY, refused
    log = access_log(fr)
    assert len(log) == LOADING_REQUESTS
    tried = [e for e in log if f"127.0.0.1:{port}" in e["upstream"]]
    assert len(tried) == len(refused)
    for e in tried:
        assert e["status"] == 200, e
        assert e["upstream"] == f"127.0.0.1:{port}, 127.0.0.1:{ready.port}", e
        assert e["upstream_status"].split(", ") == ["502", "200"], e
    assert ready.stats()["by_status"] == {"200": LOADING_REQUESTS}

    # Loaded: it listens, and gets requests again once fail_timeout since the refusals is over.
    wait_port(port, LOAD_SECONDS + 5, proc=loading.proc)
    t_loaded = time.monotonic()
    assert loading.stats()["requests_total"] == 0  # nothing reached it while it was loading
    first_at = None
    with fr.client() as c:
        while time.monotonic() - t_loaded < D.UPSTREAM_FAIL_TIMEOUT_SEC + RECOVERY_SLACK_S:
            r = c.post(f"{fr.https}/alpha/v1/chat/completions", json=_body(2), headers=fr.auth())
            assert r.status_code == 200, r.text
            if loading.stats()["requests_total"] > 0:
                first_at = time.monotonic()
                break
            time.sleep(0.1)
    assert first_at is not None, "the loaded backend never received a request"
    assert first_at - t_start <= D.UPSTREAM_FAIL_TIMEOUT_SEC + RECOVERY_SLACK_S
    assert loading.stats()["by_status"] == {"200": 1}
    # once back, least_conn spreads a burst over both
    with fr.client() as c:
        for _ in range(10):
            assert c.post(f"{fr.https}/alpha/v1/chat/completions", json=_body(2), headers=fr.auth()).status_code == 200
    assert loading.stats()["requests_total"] >= 3
    assert len(error_lines(fr, port, CONNECT_REFUSED)) == len(refused)  # no refusal after it loaded


# --------------------------------------------------------------------------- preemption without notice


KILL_CONCURRENCY = 20
KILL_REQUESTS = 180  # ~30 streams/s: the count ends the run ~3.5 s after the kill (< fail_timeout)
KILL_MAX_TOKENS = 20
KILL_TTFT_MS, KILL_ITL_MS = 50, 30  # one stream ≈ 0.6 s; TTFT > the stats-read → kill gap
KILL_AFTER_S = 2.5
ROUTING_SETTLED_S = 1.0  # after this, no new attempt on the dead backend is allowed


def test_sigkill_under_streaming_load_fails_only_the_streams_it_was_serving(front_factory):
    fr = front_factory(
        {"alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}]},
        front=NO_RATE_LIMIT,
        fake_args=("--ttft-ms", str(KILL_TTFT_MS), "--itl-ms", str(KILL_ITL_MS)),
    )
    survivor, victim = fr.fakes["alpha"]

    async def settled() -> tuple[int, int]:
        await asyncio.sleep(ROUTING_SETTLED_S)
        return len(error_lines(fr, victim.port, CONNECT_REFUSED)), (await _stats(survivor.port))["requests_total"]

    result, before, t_kill, (refused_settled, survivor_settled) = asyncio.run(
        _signal_during_load(
            fr,
            victim,
            signal.SIGKILL,
            n_requests=KILL_REQUESTS,
            concurrency=KILL_CONCURRENCY,
            max_tokens=KILL_MAX_TOKENS,
            after_s=KILL_AFTER_S,
            then=settled,
        )
    )
    victim.proc.popen.wait(timeout=5)
    fr.fakes["alpha"] = [survivor]
    summary = result.summary()
    errors = [(r.index, round(r.started_s, 3), r.error) for r in result.records if r.error]

    assert not result.deadline_hit and result.not_started == 0, summary
    assert before["in_flight"] >= 3, before  # the victim really was serving a share of the streams
    # only streams that were running on the victim can fail (those still waiting for their
    # first token were retried by nginx: nothing had been sent to the client yet)
    assert 1 <= result.failures <= before["in_flight"], (before, errors)
    for r in result.records:
        if r.error:
            assert r.started_s < t_kill, (t_kill, errors)
            assert r.status == 200 and r.error.startswith(("RemoteProtocolError", "ReadError", "Truncated")), errors
    after = [r for r in result.records if r.started_s > t_kill]
    assert len(after) >= 3 * KILL_CONCURRENCY, summary  # the load went on well past the kill
    assert all(r.ok for r in after), errors
    # the front stopped trying the dead backend within fail_timeout: a few refused connects
    # right after the kill, none in the rest of the run (which ends before fail_timeout)
    refused = error_lines(fr, victim.port, CONNECT_REFUSED)
    assert len(refused) <= D.UPSTREAM_MAX_FAILS + KILL_CONCURRENCY, refused
    assert len(refused) == refused_settled, refused
    assert result.wall_s - t_kill < D.UPSTREAM_FAIL_TIMEOUT_SEC
    # every request after the settle point went to the survivor, none was cut there
    final = survivor.stats()
    assert final["requests_total"] > survivor_settled + KILL_CONCURRENCY
    assert final["aborted"] == 0 and set(final["by_status"]) == {"200"}


# --------------------------------------------------------------------------- a started stream is never retried


PARTIAL_MAX_TOKENS = 100
PARTIAL_ITL_MS = 40  # 4 s stream: plenty of time to kill its backend mid-way
CHUNKS_BEFORE_KILL = 5


def test_partially_streamed_response_is_not_retried_elsewhere(front_factory):
    fr = front_factory(
        {"alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}]},
        front=NO_RATE_LIMIT,
        fake_args=("--ttft-ms", "20", "--itl-ms", str(PARTIAL_ITL_MS)),
    )
    a, b = fr.fakes["alpha"]
    before = {f.port: f.stats()["requests_total"] for f in (a, b)}
    rid = "partial-stream-0001"
    chunks, done, victim, error = 0, False, None, None
    with fr.client() as c:
        try:
            with c.stream(
                "POST",
                f"{fr.https}/alpha/v1/chat/completions",
                json=_body(PARTIAL_MAX_TOKENS, stream=True, content="long story"),
                headers={**fr.auth(), "X-Request-ID": rid},
            ) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    if line.strip() == "data: [DONE]":
                        done = True
                        break
                    chunks += 1
                    if chunks == CHUNKS_BEFORE_KILL:
                        busy = [f for f in (a, b) if f.stats()["in_flight"] == 1]
                        assert len(busy) == 1, [f.stats() for f in (a, b)]
                        victim = busy[0]
                        victim.proc.signal(signal.SIGKILL)
        except httpx.HTTPError as e:
            error = e
    assert victim is not None
    other = b if victim is a else a
    victim.proc.popen.wait(timeout=5)
    fr.fakes["alpha"] = [other]
    # the client saw a broken stream: some chunks, then an error, never [DONE]
    assert not done
    assert isinstance(error, httpx.RemoteProtocolError), repr(error)
    assert CHUNKS_BEFORE_KILL <= chunks < PARTIAL_MAX_TOKENS
    time.sleep(1.0)  # a retry, if nginx made one, would have reached the other backend by now
    assert other.stats()["requests_total"] == before[other.port]
    assert other.stats()["in_flight"] == 0
    # nginx's own record: one upstream only, status 200 already sent
    (entry,) = [e for e in access_log(fr) if e["request_id"] == rid]
    assert entry["upstream"] == f"127.0.0.1:{victim.port}", entry
    assert entry["status"] == 200 and entry["bytes_sent"] > 0, entry
    assert error_lines(fr, victim.port, "prematurely closed", "reset by peer"), fr.error_log()


# --------------------------------------------------------------------------- SIGTERM without a drain


TERM_CONCURRENCY = 16
TERM_REQUESTS = 160
TERM_TTFT_MS, TERM_ITL_MS = 20, 25  # stream ≈ 0.5 s < the fakes' 1 s grace period
TERM_AFTER_S = 2.0


def test_sigterm_without_drain_loses_no_request(front_factory):
    """vLLM's own graceful shutdown (a spot notice handled without the drain script)."""
    fr = front_factory(
        {"alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}]},
        front=NO_RATE_LIMIT,
        fake_args=("--ttft-ms", str(TERM_TTFT_MS), "--itl-ms", str(TERM_ITL_MS)),
    )
    keep, stopped = fr.fakes["alpha"]
    result, before, t_term, _ = asyncio.run(
        _signal_during_load(
            fr,
            stopped,
            signal.SIGTERM,
            n_requests=TERM_REQUESTS,
            concurrency=TERM_CONCURRENCY,
            max_tokens=20,
            after_s=TERM_AFTER_S,
        )
    )
    rc = stopped.proc.popen.wait(timeout=10)
    fr.fakes["alpha"] = [keep]
    errors = [r.error for r in result.records if r.error]
    assert before["in_flight"] >= 2, before
    assert result.failures == 0 and result.successes == TERM_REQUESTS, (result.summary(), errors[:5])
    assert sum(1 for r in result.records if r.started_s > t_term) >= 2 * TERM_CONCURRENCY
    assert rc == 0
    log = stopped.log()
    assert "shutdown complete" in log and "cutting" not in log, log[-2000:]
    assert keep.stats()["aborted"] == 0
    # nginx recorded no failed response: every attempt on the stopping backend either finished
    # or was refused/closed before a byte went to the client, and was retried
    assert all(e["status"] == 200 for e in access_log(fr)), [e for e in access_log(fr) if e["status"] != 200]
