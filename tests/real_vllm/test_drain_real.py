"""The rendered drain procedure with two REAL vLLM backends of one model behind the rendered front.

alpha -> S1 (on-demand; started by the rendered systemd wrapper) and S2 (spot; also serves alpha).
Four concurrent streaming chat clients (bench.loadgen's request code, each request tagged with
its own X-Request-ID) run through the front before, during and after the drain of S1 by the
rendered `vllm-drain alpha 127.0.0.1:<S1> <drainSeconds>`, whose STOP_CMD does what
`systemctl stop` does to the unit (KillMode=mixed: SIGTERM to the wrapper, which forwards it to
vLLM and waits). vLLM generates these streams at a fixed pace (test hook, ~0.8 s each), so some
are always in flight on S1 when nginx reloads.

Checks: zero failed client requests; streams in flight on S1 at the reload finished there; no
request started after the reload reached S1; S1 served nothing after STOP_CMD; SIGTERM ended the
wrapper, vLLM and every child before the unit's TimeoutStopSec, with exit status 0.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.loadgen import RequestRecord, _one
from tests.real_vllm.conftest import (
    ALPHA,
    BETA,
    DRAIN_SECONDS,
    access_log,
    alive,
    real_cfg,
    slow,
    spec_of,
    start_real_front,
    wall,
)
from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]

CONCURRENCY = 4
MAX_TOKENS = 40
STEP_DELAY_MS = 20  # one stream ~0.8 s on S1
BEFORE_S = 3.0  # load running before the drain starts
AFTER_S = 3.0  # load kept running after the drain script ended
MAX_REQUESTS = 400  # hard bound
RELOAD_SETTLE_S = 1.0  # old nginx workers stop accepting within this after `nginx -s reload`
SCRIPT_TIMEOUT_S = DRAIN_SECONDS + 30


@pytest.fixture(scope="module")
def front(request, real_pki, alpha_server, beta_server, backend_key, client_key):
    cfg = real_cfg()
    backends = [
        Backend(ALPHA, "127.0.0.1", alpha_server.port, "onDemand"),
        Backend(ALPHA, "127.0.0.1", beta_server.port, "spot"),
        Backend(BETA, "127.0.0.1", beta_server.port),
    ]
    fr = start_real_front(real_pki, cfg, backends, keys=[backend_key, client_key], backend_key=backend_key)
    yield fr
    fr.stop()
    if not request.session.testsfailed:
        shutil.rmtree(fr.root, ignore_errors=True)


async def _scenario(fr, client_key: str, target: str, stop_cmd: str):
    url = f"{fr.https}/{ALPHA}/v1/chat/completions"
    records: list[tuple[str, RequestRecord]] = []
    stop = asyncio.Event()
    t_run = time.perf_counter()
    t_run_wall = wall()
    counter = [0]

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set() and counter[0] < MAX_REQUESTS:
            i = counter[0]
            counter[0] += 1
            rid = f"drain-{i}"
            rec = RequestRecord(index=i)
            records.append((rid, rec))
            body = {
                "model": ALPHA,
                "messages": [{"role": "user", "content": f"story {i}"}],
                "max_tokens": MAX_TOKENS,
                "stream": True,
                "stream_options": {"include_usage": True},
                "ignore_eos": True,
                **slow(STEP_DELAY_MS),
            }
            await _one(
                client,
                url,
                body,
                {"Authorization": f"Bearer {client_key}", "X-Request-ID": rid},
                True,
                True,
                rec,
                t_run,
            )

    async with httpx.AsyncClient(
        verify=fr.ssl_context(), timeout=httpx.Timeout(60, connect=10), limits=httpx.Limits(max_connections=CONCURRENCY)
    ) as client:
        workers = [asyncio.create_task(worker(client)) for _ in range(CONCURRENCY)]
        await asyncio.sleep(BEFORE_S)
        t_drain = wall()
        proc = await fr.start_drain(ALPHA, target, DRAIN_SECONDS, stop_cmd)
        lines: list[tuple[float, str]] = []
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), SCRIPT_TIMEOUT_S)
            if not line:
                break
            lines.append((wall(), line.decode().rstrip()))
        rc = await asyncio.wait_for(proc.wait(), SCRIPT_TIMEOUT_S)
        err = (await proc.stderr.read()).decode()
        await asyncio.sleep(AFTER_S)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 120)
    return records, t_run_wall, t_drain, lines, rc, err


def test_drain_under_streaming_load_loses_nothing_and_sigterm_ends_vllm_in_time(
    front, alpha_server, beta_server, client_key
):
    drain_seconds = spec_of(real_cfg(), ALPHA).pool.drain_seconds
    assert drain_seconds == DRAIN_SECONDS
    target = alpha_server.hostport
    pids = alpha_server.vllm_pids()  # wrapper, vLLM API server, engine core, helpers
    assert len(pids) >= 3, pids
    stop_mark = front.root / "stop-time"
    # STOP_CMD = `systemctl stop vllm-alpha` on a unit with KillMode=mixed: SIGTERM to the main process
    stop_cmd = f"date +%s.%N > {stop_mark}; kill -TERM {alpha_server.proc.pid}"

    gone: dict[str, float] = {}
    watching = threading.Event()

    def watch() -> None:  # from STOP_CMD on: when is every process of the service gone?
        while not stop_mark.exists() and not watching.is_set():
            time.sleep(0.02)
        while not watching.is_set():
            if not [p for p in pids if alive(p)]:
                gone["t"] = wall()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        records, t0, t_drain, lines, rc, err = asyncio.run(_scenario(front, client_key, target, stop_cmd))
        watcher.join(timeout=DRAIN_SECONDS + 5)
    finally:
        watching.set()

    text = [ln for _, ln in lines]
    assert rc == 0, (text, err)
    t_reload = next(t for t, ln in lines if "nginx reloaded" in ln)
    t_stop = float(stop_mark.read_text())
    assert any("running STOP_CMD" in ln for ln in text) and text[-1].endswith("drained"), text
    assert t_stop - t_reload >= drain_seconds - 0.5, (t_reload, t_stop)

    # SIGTERM (forwarded by the wrapper) ended every process of the service before the unit's
    # TimeoutStopSec (drainSeconds + TERMINATION_GRACE_EXTRA_SEC) would SIGKILL it. Nothing is in flight
    # on S1 by now, yet vLLM 0.32 on CPU takes ~10 s: its engine leaves the busy loop at once, the
    # executor waits 5 s for the CPU worker, SIGTERMs it, and the process manager force-kills the engine
    # when --shutdown-timeout (drainSeconds) runs out (the wrapper's log has vLLM's [shutdown] lines).
    left = [p for p in pids if alive(p)]
    assert "t" in gone and not left, f"still alive after SIGTERM: {left}\n{alpha_server.proc.tail(30)}"
    gone_after = gone["t"] - t_stop
    assert gone_after <= drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC, gone_after
    print(
        f"\nevery process of S1 gone {gone_after:.2f}s after SIGTERM (SIGKILL would come at "
        f"{drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC}s)"
    )
    alpha_server.proc.popen.wait(timeout=5)
    assert alpha_server.proc.popen.returncode == 0, alpha_server.proc.tail(30)
    wrapper_log = alpha_server.proc.log_path.read_text(errors="replace")
    assert "received SIGTERM; forwarding it to vLLM" in wrapper_log
    assert "vLLM exited with status 0" in wrapper_log

    # zero failed client requests
    failed = [
        (
            rid,
            r.status,
            r.error,
            f"started {t0 + r.started_s - t_reload:+.3f}s after the reload",
            f"ended {t0 + r.started_s + (r.latency_s or 0) - t_reload:+.3f}s",
            f"ttft {r.ttft_s}",
        )
        for rid, r in records
        if not r.ok
    ]
    assert not failed, failed[:5]
    # load really ran (each client ~3 streams over the ~16 s; the drain checks below need only a few)
    assert len(records) >= 3 * CONCURRENCY, len(records)

    # where each request went (the front's access log, by X-Request-ID; nginx logs a request
    # when it finalizes it, which can trail the client's last read by a moment)
    want = {rid for rid, _ in records}
    deadline = time.monotonic() + 5
    while True:
        log = {e["request_id"]: e for e in access_log(front) if e["request_id"].startswith("drain-")}
        if set(log) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(log) == want, f"access log misses requests: {sorted(want - set(log))}"
    s1, s2 = alpha_server.hostport, beta_server.hostport
    timing = {rid: (t0 + r.started_s, t0 + r.started_s + r.latency_s) for rid, r in records}
    to_s1 = [rid for rid in log if log[rid]["upstream"] == s1]
    assert all(log[rid]["upstream"] in (s1, s2) for rid in log), {log[r]["upstream"] for r in log}
    # 200; or 499 when the client (loadgen stops reading at `data: [DONE]`) hung up before nginx saw the
    # upstream's final chunk: those clients had the complete stream (checked above)
    assert all(log[rid]["status"] in (200, 499) for rid in log), {log[r]["status"] for r in log}
    # S1 served before the drain, and had streams in flight when nginx reloaded ...
    assert any(timing[rid][1] < t_drain for rid in to_s1), "S1 got no traffic before the drain"
    in_flight = [rid for rid in to_s1 if timing[rid][0] < t_reload < timing[rid][1]]
    assert in_flight, "no stream was in flight on S1 at the reload: the drain was not exercised"
    # ... which finished there (successfully, see above) before SIGTERM
    assert all(timing[rid][1] < t_stop for rid in to_s1), [(r, timing[r]) for r in to_s1 if timing[r][1] >= t_stop]
    # no request started after the reload settled reached S1; S2 took them all
    late_s1 = [rid for rid in to_s1 if timing[rid][0] > t_reload + RELOAD_SETTLE_S]
    assert not late_s1, late_s1
    after_stop = [rid for rid in log if timing[rid][0] > t_stop]
    assert after_stop and all(log[rid]["upstream"] == s2 for rid in after_stop)
    # the upstream file says `down` for S1
    upstream = Path(front.paths.upstream_file(ALPHA)).read_text()
    line = next(ln for ln in upstream.splitlines() if f"server {target} " in ln)
    assert line.split("#")[0].rstrip().endswith(" down;"), line
    print(
        f"\n{len(records)} streams, 0 failed; {len(to_s1)} on S1 ({len(in_flight)} in flight at the reload, "
        f"all done {t_stop - max(timing[r][1] for r in to_s1):.1f}s before STOP); {len(after_stop)} after STOP, "
        f"all on S2; SIGTERM -> wrapper, vLLM and children gone in {gone_after:.1f}s (limit {drain_seconds}s)"
    )
