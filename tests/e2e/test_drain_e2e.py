"""The rendered drain script under load, through the real nginx front.

Two fake backends of one model behind the front (client key passed through to vLLM, no
backend-key include). bench.loadgen keeps ~20 concurrent streaming chat clients busy
(bounded count and deadline) while the rendered `vllm-drain` takes the second backend out:
`down` in its upstream file, `nginx -t`, graceful reload, wait, then STOP_CMD (which records
the backend's counters and SIGTERMs it). Checks: zero failed requests; after the reload no new
request reaches the drained backend while the other keeps taking them; its in-flight streams
completed (none aborted) before it was stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import httpx
import pytest


pytestmark = pytest.mark.timeout(60)

CONCURRENCY = 20
N_REQUESTS = 220  # ~25 streams/s with the timings below: ~9 s of load
LOAD_DEADLINE_S = 30.0  # safety bound only; the count ends the run first
MAX_TOKENS = 20
TTFT_MS, ITL_MS = 20, 35  # one stream ≈ 0.7 s
DRAIN_AFTER_S = 2.5  # load running steadily before the drain starts
DRAIN_SECONDS = 3
RELOAD_SETTLE_S = 1.0  # new workers up, old ones no longer accept requests
SCRIPT_TIMEOUT_S = 20.0


async def _stats(port: int) -> dict:
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(f"http://127.0.0.1:{port}/_fake/stats")
        r.raise_for_status()
        return r.json()


def test_drain_under_streaming_load_loses_nothing(front_factory):
    fr = front_factory(
        {"alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}]},
        upstream_auth=False,
        front={"rateLimitRps": 10_000, "rateLimitBurst": 10_000},
        fake_args=("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)),
    )
    keep, drained = fr.fakes["alpha"]
    stop_stats = fr.root / "stop-stats.json"
    stop_script = fr.root / "stop.sh"
    stop_script.write_text(
        "#!/bin/sh\nset -eu\n"
        f"curl -fsS http://127.0.0.1:{drained.port}/_fake/stats > {stop_stats}\n"
        f"kill -TERM {drained.proc.pid}\n"
    )
    target = f"127.0.0.1:{drained.port}"

    async def scenario():
        load = asyncio.create_task(
            fr.load(
                "alpha",
                n_requests=N_REQUESTS,
                concurrency=CONCURRENCY,
                deadline_s=LOAD_DEADLINE_S,
                stream=True,
                max_tokens=MAX_TOKENS,
            )
        )
        t_run = time.perf_counter()
        await asyncio.sleep(DRAIN_AFTER_S)
        before = {"keep": await _stats(keep.port), "drained": await _stats(drained.port)}
        proc = await fr.start_drain("alpha", target, DRAIN_SECONDS, f"sh {stop_script}")
        lines: list[str] = []
        t_reload = None
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), SCRIPT_TIMEOUT_S)
            if not line:
                break
            lines.append(line.decode().rstrip())
            if "nginx reloaded" in lines[-1]:
                t_reload = time.perf_counter() - t_run
                await asyncio.sleep(RELOAD_SETTLE_S)
                settled = {"keep": await _stats(keep.port), "drained": await _stats(drained.port)}
        rc = await asyncio.wait_for(proc.wait(), SCRIPT_TIMEOUT_S)
        err = (await proc.stderr.read()).decode()
        result = await load
        return result, rc, lines, err, before, settled, t_reload

    result, rc, lines, err, before, settled, t_reload = asyncio.run(scenario())

    summary = result.summary()
    assert rc == 0, (lines, err)
    assert t_reload is not None, lines
    assert any("running STOP_CMD" in x for x in lines) and lines[-1].endswith("drained"), lines
    # zero failed requests, and the run was not cut by its deadline
    assert result.failures == 0 and result.not_started == 0 and not result.deadline_hit, (
        summary,
        [r.error for r in result.records if r.error][:5],
    )
    assert result.successes == N_REQUESTS
    # the drained backend served before the drain ...
    assert before["drained"]["requests_total"] > 0
    # ... got no new request after the reload (its counters when STOP_CMD ran equal those right
    # after the reload settled) and finished every stream it had in flight
    at_stop = json.loads(stop_stats.read_text())
    assert at_stop["requests_total"] == settled["drained"]["requests_total"], (settled["drained"], at_stop)
    assert at_stop["in_flight"] == 0 and at_stop["aborted"] == 0
    assert at_stop["completed"] == at_stop["requests_total"]
    assert set(at_stop["by_status"]) == {"200"}
    # ... while the other backend kept taking new requests
    final_keep = keep.stats()
    assert final_keep["requests_total"] > settled["keep"]["requests_total"] + CONCURRENCY
    assert final_keep["aborted"] == 0
    # the stop command really stopped it
    drained.proc.popen.wait(timeout=10)
    assert drained.proc.popen.returncode == 0
    # load kept running across the reload and after the stop
    assert max(r.started_s for r in result.records) > t_reload + DRAIN_SECONDS
    upstream = (fr.root / "upstreams" / "alpha.conf").read_text()
    assert f"server {target} " in upstream and [ln for ln in upstream.splitlines() if f"server {target} " in ln][
        0
    ].split("#")[0].rstrip().endswith(" down;")


def test_undrain_brings_the_backend_back(front_factory):
    fr = front_factory(
        {"alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}]},
        upstream_auth=False,
        fake_args=("--ttft-ms", "1", "--itl-ms", "1"),
    )
    a, b = fr.fakes["alpha"]
    target = f"127.0.0.1:{b.port}"
    env = {**os.environ}

    def run(*args):
        return subprocess.run(
            ["sh", str(fr.drain_script), *args], env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S
        )

    body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}

    def burst(n: int) -> None:
        with fr.client() as c:
            for _ in range(n):
                assert c.post(f"{fr.https}/alpha/v1/chat/completions", json=body, headers=fr.auth()).status_code == 200

    p = run("alpha", target, "0")
    assert p.returncode == 0, p.stdout + p.stderr
    time.sleep(RELOAD_SETTLE_S)
    b0 = b.stats()["requests_total"]
    burst(10)
    assert b.stats()["requests_total"] == b0
    p = run("--undrain", "alpha", target)
    assert p.returncode == 0, p.stdout + p.stderr
    time.sleep(RELOAD_SETTLE_S)
    burst(10)
    assert b.stats()["requests_total"] > b0
    # a config nginx rejects is rolled back and nothing is reloaded
    upstream = fr.root / "upstreams" / "alpha.conf"
    good = upstream.read_text()
    (fr.root / "api-keys.map").write_text("this is not a map line\n")
    p = run("alpha", target, "0")
    assert p.returncode == 1 and "restored" in p.stderr, p.stdout + p.stderr
    assert upstream.read_text() == good
