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

Targets: p50 +≤ 1 ms, ≤ 5 % throughput loss, first-chunk ratio ≤ 1.05. Misses are reported.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

from bench import (INFO, BenchResult, fmt_delta_ms, fmt_ms, fmt_num, fmt_ratio, loss_pct, md_table, ratio,
                   verdict, write_result)
from bench.loadgen import LoadResult, percentile, run_load

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
    requests: int        # per run
    rounds: int          # direct/front pairs


SCENARIOS = (
    Scenario("non-stream (TTFT 50 ms, ITL 10 ms)", False, 50, 10, 96, 3),
    Scenario("stream (TTFT 50 ms, ITL 10 ms)", True, 50, 10, 96, 3),
    Scenario("non-stream, instant backend", False, 0, 0, 400, 3),
)


@dataclass
class Pooled:
    """Records of several runs of one arm, pooled."""
    successes: int
    failures: int
    wall_s: float
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None

    @property
    def throughput_rps(self) -> float | None:
        return self.successes / self.wall_s if self.wall_s > 0 else None


def pool(results: Iterable[LoadResult]) -> Pooled:
    results = list(results)
    ok = [r for res in results for r in res.records if r.ok]
    lat = [r.latency_s for r in ok if r.latency_s is not None]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    return Pooled(successes=len(ok), failures=sum(res.failures + res.not_started for res in results),
                  wall_s=sum(res.wall_s for res in results), latency_p50=percentile(lat, 50),
                  latency_p95=percentile(lat, 95), ttft_p50=percentile(ttft, 50), ttft_p95=percentile(ttft, 95))


def _delta(front: float | None, direct: float | None) -> float | None:
    return None if front is None or direct is None else front - direct


def compare_rows(label: str, stream: bool, direct: Pooled, front: Pooled) -> list[list[str]]:
    """Table rows for one scenario: metric, direct, front, ratio, delta, target, verdict."""
    rows = []
    d50 = _delta(front.latency_p50, direct.latency_p50)
    rows.append([label, "latency p50", fmt_ms(direct.latency_p50, 2), fmt_ms(front.latency_p50, 2),
                 fmt_ratio(ratio(front.latency_p50, direct.latency_p50)), fmt_delta_ms(d50),
                 f"+≤{P50_DELTA_LIMIT_MS:g} ms", verdict(None if d50 is None else d50 * 1000, P50_DELTA_LIMIT_MS)])
    rows.append([label, "latency p95", fmt_ms(direct.latency_p95, 2), fmt_ms(front.latency_p95, 2),
                 fmt_ratio(ratio(front.latency_p95, direct.latency_p95)),
                 fmt_delta_ms(_delta(front.latency_p95, direct.latency_p95)), "-", INFO])
    loss = loss_pct(front.throughput_rps, direct.throughput_rps)
    rows.append([label, "throughput", fmt_num(direct.throughput_rps, 1, " req/s"),
                 fmt_num(front.throughput_rps, 1, " req/s"), fmt_ratio(ratio(front.throughput_rps,
                                                                             direct.throughput_rps)),
                 "-" if loss is None else f"{-loss:+.1f} %", f"≤{THROUGHPUT_LOSS_LIMIT_PCT:g} % loss",
                 verdict(loss, THROUGHPUT_LOSS_LIMIT_PCT)])
    if stream:
        r = ratio(front.ttft_p50, direct.ttft_p50)
        rows.append([label, "first chunk p50", fmt_ms(direct.ttft_p50, 2), fmt_ms(front.ttft_p50, 2), fmt_ratio(r),
                     fmt_delta_ms(_delta(front.ttft_p50, direct.ttft_p50)), f"≤{FIRST_CHUNK_RATIO_LIMIT:g}×",
                     verdict(r, FIRST_CHUNK_RATIO_LIMIT)])
        rows.append([label, "first chunk p95", fmt_ms(direct.ttft_p95, 2), fmt_ms(front.ttft_p95, 2),
                     fmt_ratio(ratio(front.ttft_p95, direct.ttft_p95)),
                     fmt_delta_ms(_delta(front.ttft_p95, direct.ttft_p95)), "-", INFO])
    return rows


HEADERS = ("scenario", "metric", "direct", "front", "front/direct", "delta", "target", "result")


def interleave(rounds: int) -> list[str]:
    """Run order: direct, front, direct, front, ..."""
    return [arm for _ in range(rounds) for arm in ("direct", "front")]


def run(scenarios: Sequence[Scenario] = SCENARIOS, concurrency: int = CONCURRENCY) -> BenchResult:
    from tests.support.frontlab import NO_RATE_LIMIT, lab_front

    rows: list[list[str]] = []
    data: dict = {"concurrency": concurrency, "max_tokens": MAX_TOKENS, "scenarios": []}
    with lab_front({"alpha": [{"capacity": "onDemand"}]}, front=NO_RATE_LIMIT,
                   fake_args=("--no-log-requests",)) as fr:
        (fake,) = fr.fakes["alpha"]
        arms = {
            "direct": dict(base_url=fake.base_url, api_key=fr.backend_key),
            "front": dict(base_url=f"{fr.https}/alpha/v1", api_key=fr.keys[0], ca_path=str(fr.pki.ca)),
        }

        def load(arm: str, sc: Scenario, n: int) -> LoadResult:
            kw = dict(arms[arm])
            return asyncio.run(run_load(kw.pop("base_url"), n_requests=n, concurrency=concurrency,
                                        deadline_s=60, model="alpha", stream=sc.stream, max_tokens=MAX_TOKENS,
                                        seed=7, **kw))

        for sc in scenarios:
            fake.set_state(ttft_ms=sc.ttft_ms, itl_ms=sc.itl_ms)
            for arm in ("direct", "front"):   # warm-up: connections, TLS session, caches
                load(arm, sc, 2 * concurrency)
            runs: dict[str, list[LoadResult]] = {"direct": [], "front": []}
            for arm in interleave(sc.rounds):
                runs[arm].append(load(arm, sc, sc.requests))
            direct, front = pool(runs["direct"]), pool(runs["front"])
            rows += compare_rows(sc.label, sc.stream, direct, front)
            data["scenarios"].append({
                "label": sc.label, "stream": sc.stream, "ttft_ms": sc.ttft_ms, "itl_ms": sc.itl_ms,
                "requests_per_run": sc.requests, "rounds": sc.rounds, "order": interleave(sc.rounds),
                "direct": vars(direct) | {"throughput_rps": direct.throughput_rps},
                "front": vars(front) | {"throughput_rps": front.throughput_rps},
                "runs": {arm: [r.summary() for r in rs] for arm, rs in runs.items()},
            })
    notes = [f"{concurrency} concurrent clients, {MAX_TOKENS} tokens per request, chat completions; "
             f"each scenario: warm-up, then {SCENARIOS[0].rounds} direct/front pairs interleaved, records pooled "
             f"per arm",
             "direct = plain HTTP to the fake; front = HTTPS (TLS 1.2/1.3, test CA) through nginx as rendered",
             "throughput is closed-loop at fixed concurrency; on the instant backend it is CPU-bound with "
             "client, nginx and fake sharing the machine's cores"]
    failures = sum(s[a]["failures"] for s in data["scenarios"] for a in ("direct", "front"))
    if failures:
        notes.append(f"{failures} request(s) failed during the runs (see JSON)")
    return BenchResult(NAME, TITLE, md_table(HEADERS, rows), data, notes)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench.front_overhead", description=__doc__.split("\n\n")[0]).parse_args(argv)
    res = run()
    write_result(res)
    print(res.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
