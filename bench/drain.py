"""Spot drain with the rendered drain script: steady state vs during the drain, one run.

Two fake vLLM backends of one model behind the rendered front (client key passed through;
the fakes set TCP_NODELAY as uvicorn does), ~20 concurrent streaming clients (`bench.loadgen`,
bounded count and deadline, reading each stream to its end so connections are kept, as SDK
clients do: a graceful reload really closes them). After a steady phase, the rendered
`vllm-drain alpha <backend> DRAIN_SECONDS` takes the second (spot) backend out: `down` in its
upstream file, `nginx -t`, graceful reload, wait, then STOP_CMD
(SIGTERM to that backend, which finishes its in-flight streams and exits); the load goes on
afterwards on the remaining backend.

Requests are grouped by when they started: steady (after a warm-up, before the script
starts), during the drain (script start to script exit), after. Reported per window: count,
failed requests, latency p50/p95/p99, first-chunk p95, and the spike ratios during/steady.
Target: zero failed requests while draining (the point of the drain); the latency spike has
no target and is reported as measured.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Sequence

from bench import BenchResult, bench_main, fmt_ms, fmt_ratio, md_table, ratio
from bench.loadgen import LoadResult, RequestRecord, percentile

NAME = "drain"
TITLE = "Spot drain: steady state vs during the rendered drain script"

CONCURRENCY = 20
MAX_TOKENS = 20
TTFT_MS, ITL_MS = 20, 35  # one stream ≈ 0.7 s
WARMUP_S = 1.0
STEADY_S = 5.0  # load running before the drain starts
DRAIN_SECONDS = 3
AFTER_S = 3.0
REQUESTS = 400  # ≈ 28 streams/s: a little more than warm-up + steady + drain + after
LOAD_DEADLINE_S = 40.0
SCRIPT_TIMEOUT_S = 30.0
WINDOWS = ("steady", "during drain", "after drain")


def window_of(started_s: float, t_drain: float, t_drained: float, warmup_s: float = WARMUP_S) -> str | None:
    """Which window a request started in; None for the warm-up."""
    if started_s < warmup_s:
        return None
    if started_s < t_drain:
        return "steady"
    if started_s <= t_drained:
        return "during drain"
    return "after drain"


def window_stats(records: Sequence[RequestRecord]) -> dict:
    ok = [r for r in records if r.ok]
    lat = [r.latency_s for r in ok if r.latency_s is not None]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    return {
        "requests": len(records),
        "failed": len(records) - len(ok),
        "retried": sum(1 for r in records if r.retried),
        "latency_p50": percentile(lat, 50),
        "latency_p95": percentile(lat, 95),
        "latency_p99": percentile(lat, 99),
        "ttft_p95": percentile(ttft, 95),
    }


def split_windows(result: LoadResult, t_drain: float, t_drained: float) -> dict[str, dict]:
    groups: dict[str, list[RequestRecord]] = {w: [] for w in WINDOWS}
    for r in result.records:
        w = window_of(r.started_s, t_drain, t_drained)
        if w is not None:
            groups[w].append(r)
    return {w: window_stats(rs) for w, rs in groups.items()}


HEADERS = (
    "window",
    "requests",
    "failed",
    "reconnected",
    "latency p50",
    "latency p95",
    "latency p99",
    "first chunk p95",
    "target",
    "result",
)


def table_rows(win: dict[str, dict]) -> list[list[str]]:
    rows = []
    for w in WINDOWS:
        s = win[w]
        target = "0 failed" if w == "during drain" else "-"
        result = ("pass" if s["failed"] == 0 else "MISS") if w == "during drain" else "-"
        rows.append(
            [
                w,
                s["requests"],
                s["failed"],
                s["retried"],
                fmt_ms(s["latency_p50"]),
                fmt_ms(s["latency_p95"]),
                fmt_ms(s["latency_p99"]),
                fmt_ms(s["ttft_p95"]),
                target,
                result,
            ]
        )
    st, dr = win["steady"], win["during drain"]
    rows.append(
        [
            "spike: during / steady",
            "-",
            "-",
            "-",
            fmt_ratio(ratio(dr["latency_p50"], st["latency_p50"])),
            fmt_ratio(ratio(dr["latency_p95"], st["latency_p95"])),
            fmt_ratio(ratio(dr["latency_p99"], st["latency_p99"])),
            fmt_ratio(ratio(dr["ttft_p95"], st["ttft_p95"])),
            "-",
            "-",
        ]
    )
    return rows


def run() -> BenchResult:
    from tests.support.frontlab import NO_RATE_LIMIT, lab_front

    with lab_front(
        {"alpha": [{"capacity": "onDemand"}, {"capacity": "spot"}]},
        upstream_auth=False,
        front=NO_RATE_LIMIT,
        fake_args=("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--no-log-requests"),
    ) as fr:
        keep, drained = fr.fakes["alpha"]
        target = f"127.0.0.1:{drained.port}"

        async def scenario():
            load = asyncio.create_task(
                fr.load(
                    "alpha",
                    n_requests=REQUESTS,
                    concurrency=CONCURRENCY,
                    deadline_s=LOAD_DEADLINE_S,
                    stream=True,
                    max_tokens=MAX_TOKENS,
                )
            )
            t_run = time.perf_counter()
            await asyncio.sleep(STEADY_S)
            t_drain = time.perf_counter() - t_run
            proc = await fr.start_drain("alpha", target, DRAIN_SECONDS, f"kill -TERM {drained.proc.pid}")
            out, err = await asyncio.wait_for(proc.communicate(), SCRIPT_TIMEOUT_S)
            t_drained = time.perf_counter() - t_run
            result = await load
            return result, proc.returncode, out.decode(), err.decode(), t_drain, t_drained

        result, rc, out, err, t_drain, t_drained = asyncio.run(scenario())
        stopped_rc = drained.proc.popen.wait(timeout=15)
        keep_stats = keep.stats()
    if rc != 0:
        raise RuntimeError(f"drain script failed (rc {rc}):\n{out}\n{err}")
    win = split_windows(result, t_drain, t_drained)
    data = {
        "concurrency": CONCURRENCY,
        "max_tokens": MAX_TOKENS,
        "ttft_ms": TTFT_MS,
        "itl_ms": ITL_MS,
        "drain_seconds": DRAIN_SECONDS,
        "t_drain_start_s": t_drain,
        "t_drained_s": t_drained,
        "script_output": out.splitlines(),
        "drained_backend_exit": stopped_rc,
        "remaining_backend": {k: keep_stats[k] for k in ("requests_total", "completed", "aborted")},
        "windows": win,
        "load": result.summary(),
    }
    after_end = max((r.started_s for r in result.records), default=0.0) - t_drained
    notes = [
        f"{CONCURRENCY} concurrent streaming clients, {MAX_TOKENS} tokens per stream (TTFT {TTFT_MS} ms, "
        f"ITL {ITL_MS} ms ≈ 0.7 s), 2 backends; drain script started at {t_drain:.1f} s with "
        f"DRAIN_SECONDS={DRAIN_SECONDS}, exited at {t_drained:.1f} s (backend SIGTERMed, exit "
        f"{stopped_rc}); load went on {after_end:.1f} s after it",
        f"windows by request start; the first {WARMUP_S:g} s are warm-up and not counted",
        f"whole run: {result.successes}/{result.started} succeeded" + (", deadline hit" if result.deadline_hit else ""),
    ]
    return BenchResult(NAME, TITLE, md_table(HEADERS, table_rows(win)), data, notes)


def main(argv: list[str] | None = None) -> int:
    return bench_main("python -m bench.drain", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
