"""What the rendered TLS nginx front costs: direct-to-backend vs through the front, side by side.

One fake vLLM backend behind the front exactly as rendered (`render_front`, TLS with a test
CA, key gate, backend key swapped in, per-key rate limit raised so it never answers 429).
The same backend is measured directly (plain HTTP with the backend key) and through the
front (HTTPS, client key), in interleaved runs direct/front/direct/front/... so drift on a
shared machine hits both arms alike; records of the rounds are pooled per arm.

Scenarios (the fake's timings are set through `/_fake/state`, same backend for both arms):
  * non-stream, fake defaults (TTFT 50 ms, ITL 10 ms, 16 tokens ≈ 200 ms per request);
  * stream, same timings: time to first chunk (first SSE `data:` event) and latency;
  * non-stream, instant backend (TTFT = ITL = 0): what remains is the proxy hop itself.
Throughput is closed-loop at a fixed concurrency (requests/s that `concurrency` clients
get), so with a realistic backend it moves with latency; with the instant backend it is
CPU-bound and client, nginx and fake share the same cores.

Both arms use `bench.loadgen` as is: it reads every stream to the end of its body, so
connections are kept alive and reused (no new TLS handshake per request through the front),
and the fake, like uvicorn (vLLM's server), sets TCP_NODELAY on its connections.

Targets: p50 +≤ 1 ms, ≤ 5 % throughput loss, first-chunk ratio ≤ 1.05. Misses are reported.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from dataclasses import dataclass
from typing import Sequence

import httpx

from bench import (
    INFO,
    BenchResult,
    Pooled,
    bench_main,
    fmt_delta_ms,
    fmt_ms,
    fmt_num,
    fmt_ratio,
    loss_pct,
    md_table,
    pool,
    ratio,
    verdict,
)
from bench.loadgen import LoadResult, run_load

NAME = "front_overhead"
TITLE = "Front overhead: direct to backend vs through the rendered TLS nginx"

P50_DELTA_LIMIT_MS = 1.0
THROUGHPUT_LOSS_LIMIT_PCT = 5.0
FIRST_CHUNK_RATIO_LIMIT = 1.05
MAX_TOKENS = 16
CONCURRENCY = 8


@dataclass(frozen=True)
class Scenario:
    label: str
    stream: bool
    ttft_ms: float
    itl_ms: float
    requests: int  # per run
    rounds: int  # direct/front pairs


SCENARIOS = (
    Scenario("non-stream (TTFT 50 ms, ITL 10 ms)", False, 50, 10, 96, 3),
    Scenario("stream (TTFT 50 ms, ITL 10 ms)", True, 50, 10, 96, 3),
    Scenario("non-stream, instant backend", False, 0, 0, 400, 3),
)
MODEL = "alpha"


def _delta(front: float | None, direct: float | None) -> float | None:
    return None if front is None or direct is None else front - direct


def compare_rows(label: str, stream: bool, direct: Pooled, front: Pooled) -> list[list[str]]:
    """Table rows for one scenario: metric, direct, front, ratio, delta, target, verdict."""
    rows = []
    d50 = _delta(front.latency_p50, direct.latency_p50)
    rows.append(
        [
            label,
            "latency p50",
            fmt_ms(direct.latency_p50, 2),
            fmt_ms(front.latency_p50, 2),
            fmt_ratio(ratio(front.latency_p50, direct.latency_p50)),
            fmt_delta_ms(d50),
            f"+≤{P50_DELTA_LIMIT_MS:g} ms",
            verdict(None if d50 is None else d50 * 1000, P50_DELTA_LIMIT_MS),
        ]
    )
    rows.append(
        [
            label,
            "latency p95",
            fmt_ms(direct.latency_p95, 2),
            fmt_ms(front.latency_p95, 2),
            fmt_ratio(ratio(front.latency_p95, direct.latency_p95)),
            fmt_delta_ms(_delta(front.latency_p95, direct.latency_p95)),
            "-",
            INFO,
        ]
    )
    loss = loss_pct(front.throughput_rps, direct.throughput_rps)
    rows.append(
        [
            label,
            "throughput",
            fmt_num(direct.throughput_rps, 1, " req/s"),
            fmt_num(front.throughput_rps, 1, " req/s"),
            fmt_ratio(ratio(front.throughput_rps, direct.throughput_rps)),
            "-" if loss is None else f"{-loss:+.1f} %",
            f"≤{THROUGHPUT_LOSS_LIMIT_PCT:g} % loss",
            verdict(loss, THROUGHPUT_LOSS_LIMIT_PCT),
        ]
    )
    if stream:
        r = ratio(front.ttft_p50, direct.ttft_p50)
        rows.append(
            [
                label,
                "first chunk p50",
                fmt_ms(direct.ttft_p50, 2),
                fmt_ms(front.ttft_p50, 2),
                fmt_ratio(r),
                fmt_delta_ms(_delta(front.ttft_p50, direct.ttft_p50)),
                f"≤{FIRST_CHUNK_RATIO_LIMIT:g}×",
                verdict(r, FIRST_CHUNK_RATIO_LIMIT),
            ]
        )
        rows.append(
            [
                label,
                "first chunk p95",
                fmt_ms(direct.ttft_p95, 2),
                fmt_ms(front.ttft_p95, 2),
                fmt_ratio(ratio(front.ttft_p95, direct.ttft_p95)),
                fmt_delta_ms(_delta(front.ttft_p95, direct.ttft_p95)),
                "-",
                INFO,
            ]
        )
    return rows


HEADERS = ("scenario", "metric", "direct", "front", "front/direct", "delta", "target", "result")


def interleave(rounds: int) -> list[str]:
    """Run order: direct, front, direct, front, ..."""
    return [arm for _ in range(rounds) for arm in ("direct", "front")]


def run(scenarios: Sequence[Scenario] = SCENARIOS, concurrency: int = CONCURRENCY) -> BenchResult:
    from tests.support.frontlab import NO_RATE_LIMIT, lab_front

    rows: list[list[str]] = []
    data: dict = {"concurrency": concurrency, "max_tokens": MAX_TOKENS, "scenarios": []}
    with lab_front({MODEL: [{"capacity": "onDemand"}]}, front=NO_RATE_LIMIT, fake_args=("--no-log-requests",)) as fr:
        (fake,) = fr.fakes[MODEL]
        front_ssl = ssl.create_default_context(cafile=str(fr.pki.ca))

        def load(arm: str, sc: Scenario, n: int) -> LoadResult:
            # the transport (its TLS context) is built here, outside the timed run
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            if arm == "direct":
                url, key, transport = fake.base_url, fr.backend_key, httpx.AsyncHTTPTransport(limits=limits)
            else:
                url, key = f"{fr.https}/{MODEL}/v1", fr.keys[0]
                transport = httpx.AsyncHTTPTransport(verify=front_ssl, limits=limits)
            return asyncio.run(
                run_load(
                    url,
                    n_requests=n,
                    concurrency=concurrency,
                    deadline_s=60,
                    api_key=key,
                    model=MODEL,
                    stream=sc.stream,
                    max_tokens=MAX_TOKENS,
                    seed=7,
                    transport=transport,
                )
            )

        for sc in scenarios:
            fake.set_state(ttft_ms=sc.ttft_ms, itl_ms=sc.itl_ms)
            for arm in ("direct", "front"):  # warm-up: connections, TLS session, caches
                load(arm, sc, 2 * concurrency)
            runs: dict[str, list[LoadResult]] = {"direct": [], "front": []}
            for arm in interleave(sc.rounds):
                runs[arm].append(load(arm, sc, sc.requests))
            direct, front = pool(runs["direct"]), pool(runs["front"])
            rows += compare_rows(sc.label, sc.stream, direct, front)
            data["scenarios"].append(
                {
                    "label": sc.label,
                    "stream": sc.stream,
                    "ttft_ms": sc.ttft_ms,
                    "itl_ms": sc.itl_ms,
                    "requests_per_run": sc.requests,
                    "rounds": sc.rounds,
                    "order": interleave(sc.rounds),
                    "direct": direct.to_json(),
                    "front": front.to_json(),
                    "runs": {arm: [r.summary() for r in rs] for arm, rs in runs.items()},
                }
            )
    notes = [
        "backend: the fake vLLM, which sets TCP_NODELAY on its connections as uvicorn does (since its "
        "listening socket is created with IPPROTO_TCP); clients (bench.loadgen) read every stream to its end "
        "and keep their connections",
        f"{concurrency} concurrent clients, {MAX_TOKENS} tokens per request, chat completions; "
        "each scenario: warm-up, then direct/front pairs interleaved ("
        + ", ".join(f"{s.rounds}" for s in scenarios)
        + " pairs), records pooled per arm",
        "direct = plain HTTP to the fake; front = HTTPS (TLS 1.2/1.3, test CA) through nginx as rendered",
        "throughput is closed-loop at fixed concurrency; on the instant backend it is CPU-bound with "
        "client, nginx and fake sharing the machine's cores",
    ]
    failures = sum(s[a]["failures"] for s in data["scenarios"] for a in ("direct", "front"))
    if failures:
        notes.append(f"{failures} request(s) failed during the runs (see JSON)")
    return BenchResult(NAME, TITLE, md_table(HEADERS, rows), data, notes)


def main(argv: list[str] | None = None) -> int:
    return bench_main("python -m bench.front_overhead", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
