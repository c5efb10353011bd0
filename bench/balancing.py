"""least_conn (as rendered) vs round-robin over three equal backends with heavy-tailed requests.

Three fake vLLM backends of one model, equal capacity (`--max-num-seqs 4` each, TTFT 20 ms,
ITL 4 ms), each drawing output lengths (lognormal, median 48 tokens, sigma 1) and TTFT/ITL
factors from its own seeded generator (`--heavy-tail --seed`). Two policies, same everything
else:

  * least_conn: the front exactly as `render_front` renders it;
  * round-robin: the same rendered upstream file with its `least_conn;` line removed
    (`round_robin_upstream`), nginx reloaded before the run; nginx's default is weighted
    round-robin, and every server has the same weight.

Same request sequence for both: the client sends the same prompts in the same order at the
same concurrency (`bench.loadgen`, fixed seed), and each policy gets freshly started backends
with the same seeds, so backend k's i-th request draws the same size under both policies
(what changes is which requests land on which backend: the balancer's decision). Two rounds
with different seeds, ordered least_conn/RR then RR/least_conn to cancel drift; records
pooled per policy.

Concurrency: CONCURRENCY = 9 closed-loop clients on 3 x 4 = 12 running slots (75 %): loaded,
but a balancer that looks at busy connections can always find a free slot, so least_conn
should never queue while round-robin, blind to request length, piles new requests behind long
ones. A sampler polls each backend's `/_fake/stats` (running/waiting) every 100 ms to show it.

Target: least_conn p95 <= 0.8 x round-robin p95 (p99 reported as well).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field

import httpx

from bench import BenchResult, Pooled, bench_main, fmt_ms, fmt_num, fmt_ratio, md_table, pool, ratio, verdict
from bench.loadgen import LoadResult

NAME = "balancing"
TITLE = "Balancing: least_conn (as rendered) vs round-robin, 3 equal backends, heavy-tailed requests"

BACKENDS = 3
MAX_NUM_SEQS = 4
CONCURRENCY = 9
REQUESTS_PER_RUN = 200
MAX_TOKENS = 1024  # the lognormal tail (p99.9 ≈ 1050 tokens) is almost never cut
FAKE_ARGS = (
    "--max-num-seqs",
    str(MAX_NUM_SEQS),
    "--ttft-ms",
    "20",
    "--itl-ms",
    "4",
    "--heavy-tail",
    "--no-log-requests",
)
ROUNDS = ((11, 12, 13), (21, 22, 23))  # backend seeds per round
P95_RATIO_TARGET = 0.8
SAMPLE_EVERY_S = 0.1
POLICIES = ("least_conn", "round_robin")


def round_robin_upstream(upstream_conf: str) -> str:
    """The rendered upstream file with its single `least_conn;` directive line removed."""
    lines = upstream_conf.splitlines(keepends=True)
    hits = [i for i, ln in enumerate(lines) if ln.split("#", 1)[0].strip() == "least_conn;"]
    if len(hits) != 1:
        raise ValueError(f"expected exactly one `least_conn;` line, found {len(hits)}")
    del lines[hits[0]]
    return "".join(lines)


def run_order(rounds: int) -> list[str]:
    """least_conn, RR, RR, least_conn, least_conn, RR, ... (ABBA: linear drift cancels)."""
    out: list[str] = []
    for i in range(rounds):
        out += list(POLICIES if i % 2 == 0 else POLICIES[::-1])
    return out


@dataclass
class Occupancy:
    """Backend (running, waiting) samples taken during a run."""

    samples: list[list[tuple[int, int]]] = field(default_factory=list)  # per sample: per backend

    def add(self, per_backend: list[tuple[int, int]]) -> None:
        self.samples.append(per_backend)

    @property
    def queued_share(self) -> float | None:
        """Share of samples in which some backend had a request waiting for a slot."""
        if not self.samples:
            return None
        return sum(1 for s in self.samples if any(w > 0 for _, w in s)) / len(self.samples)

    @property
    def max_waiting(self) -> int:
        return max((w for s in self.samples for _, w in s), default=0)

    @property
    def mean_busy_slots(self) -> float | None:
        if not self.samples:
            return None
        return sum(sum(r for r, _ in s) for s in self.samples) / len(self.samples)

    def merge(self, other: "Occupancy") -> "Occupancy":
        return Occupancy(self.samples + other.samples)


async def _sample(ports: list[int], occ: Occupancy, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=2) as c:
        while not stop.is_set():
            try:
                stats = [(await c.get(f"http://127.0.0.1:{p}/_fake/stats")).json() for p in ports]
                occ.add([(s["running"], s["waiting"]) for s in stats])
            except httpx.HTTPError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
            except asyncio.TimeoutError:
                pass


def one_run(policy: str, seeds: tuple[int, ...], client_seed: int) -> tuple[LoadResult, Occupancy, dict]:
    from tests.support.frontlab import NO_RATE_LIMIT, lab_front, rewrite_upstream

    specs = [{"capacity": "onDemand", "args": ("--seed", str(s))} for s in seeds]
    with lab_front({"alpha": specs}, front=NO_RATE_LIMIT, fake_args=FAKE_ARGS) as fr:
        if policy == "round_robin":
            rewrite_upstream(fr, "alpha", round_robin_upstream)
        fakes = fr.fakes["alpha"]

        async def scenario() -> tuple[LoadResult, Occupancy]:
            occ, stop = Occupancy(), asyncio.Event()
            sampler = asyncio.create_task(_sample([f.port for f in fakes], occ, stop))
            try:
                res = await fr.load(
                    "alpha",
                    n_requests=REQUESTS_PER_RUN,
                    concurrency=CONCURRENCY,
                    deadline_s=90,
                    stream=False,
                    max_tokens=MAX_TOKENS,
                    seed=client_seed,
                )
            finally:
                stop.set()
                await sampler
            return res, occ

        res, occ = asyncio.run(scenario())
        per_backend = {
            f"backend{i}": {k: f.stats()[k] for k in ("requests_total", "completed", "aborted")}
            for i, f in enumerate(fakes)
        }
    return res, occ, per_backend


HEADERS = ("metric", "least_conn", "round-robin", "least_conn / RR", "target", "result")


def table_rows(lc: Pooled, rr: Pooled, occ_lc: Occupancy, occ_rr: Occupancy) -> list[list[str]]:
    p95 = ratio(lc.latency_p95, rr.latency_p95)
    return [
        [
            "latency p50",
            fmt_ms(lc.latency_p50),
            fmt_ms(rr.latency_p50),
            fmt_ratio(ratio(lc.latency_p50, rr.latency_p50)),
            "-",
            "-",
        ],
        [
            "latency mean",
            fmt_ms(lc.latency_mean),
            fmt_ms(rr.latency_mean),
            fmt_ratio(ratio(lc.latency_mean, rr.latency_mean)),
            "-",
            "-",
        ],
        [
            "latency p95",
            fmt_ms(lc.latency_p95),
            fmt_ms(rr.latency_p95),
            fmt_ratio(p95),
            f"≤{P95_RATIO_TARGET:g}",
            verdict(p95, P95_RATIO_TARGET),
        ],
        [
            "latency p99",
            fmt_ms(lc.latency_p99),
            fmt_ms(rr.latency_p99),
            fmt_ratio(ratio(lc.latency_p99, rr.latency_p99)),
            "-",
            "-",
        ],
        [
            "throughput",
            fmt_num(lc.throughput_rps, 1, " req/s"),
            fmt_num(rr.throughput_rps, 1, " req/s"),
            fmt_ratio(ratio(lc.throughput_rps, rr.throughput_rps)),
            "-",
            "-",
        ],
        [
            "failed requests",
            str(lc.failures),
            str(rr.failures),
            "-",
            "0",
            "pass" if lc.failures == rr.failures == 0 else "MISS",
        ],
        ["samples with a queued request", _pct(occ_lc.queued_share), _pct(occ_rr.queued_share), "-", "-", "-"],
        ["max waiting on one backend", str(occ_lc.max_waiting), str(occ_rr.max_waiting), "-", "-", "-"],
        [
            "mean busy slots (of 12)",
            fmt_num(occ_lc.mean_busy_slots, 1),
            fmt_num(occ_rr.mean_busy_slots, 1),
            "-",
            "-",
            "-",
        ],
    ]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f} %"


def run(rounds: int = len(ROUNDS)) -> BenchResult:
    results: dict[str, list[LoadResult]] = {p: [] for p in POLICIES}
    occ: dict[str, Occupancy] = {p: Occupancy() for p in POLICIES}
    runs = []
    order = run_order(rounds)
    for i, policy in enumerate(order):
        rnd = i // 2
        seeds = ROUNDS[rnd % len(ROUNDS)]
        t0 = time.perf_counter()
        res, o, per_backend = one_run(policy, seeds, client_seed=rnd)
        results[policy].append(res)
        occ[policy] = occ[policy].merge(o)
        runs.append(
            {
                "policy": policy,
                "round": rnd,
                "seeds": seeds,
                "elapsed_s": time.perf_counter() - t0,
                "summary": res.summary(),
                "backends": per_backend,
                "queued_share": o.queued_share,
                "max_waiting": o.max_waiting,
                "mean_busy_slots": o.mean_busy_slots,
            }
        )
    lc, rr = pool(results["least_conn"]), pool(results["round_robin"])
    data = {
        "backends": BACKENDS,
        "max_num_seqs": MAX_NUM_SEQS,
        "concurrency": CONCURRENCY,
        "requests_per_run": REQUESTS_PER_RUN,
        "max_tokens": MAX_TOKENS,
        "fake_args": FAKE_ARGS,
        "order": order,
        "least_conn": lc.to_json(),
        "round_robin": rr.to_json(),
        "runs": runs,
        "p95_ratio": ratio(lc.latency_p95, rr.latency_p95),
        "p99_ratio": ratio(lc.latency_p99, rr.latency_p99),
    }
    notes = [
        f"{BACKENDS} backends x --max-num-seqs {MAX_NUM_SEQS} = {BACKENDS * MAX_NUM_SEQS} running slots; "
        f"{CONCURRENCY} closed-loop clients (75 % of the slots: loaded, not saturated), non-streaming chat, "
        f"max_tokens {MAX_TOKENS}; heavy tail: lognormal output length (median 48 tokens, sigma 1), TTFT 20 ms "
        f"and ITL 4 ms times lognormal factors",
        f"{rounds} rounds x {REQUESTS_PER_RUN} requests per policy, order {'/'.join(order)}, fresh backends with "
        f"the same seeds per round; round-robin = rendered upstream minus its `least_conn;` line",
        "queued: a sample (every 100 ms) in which some backend had a request waiting for a running slot",
    ]
    return BenchResult(
        NAME, TITLE, md_table(HEADERS, table_rows(lc, rr, occ["least_conn"], occ["round_robin"])), data, notes
    )


def main(argv: list[str] | None = None) -> int:
    return bench_main("python -m bench.balancing", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
