"""Benchmarks of the stack on loopback (`make bench` → `python -m bench.run_all`).

Each benchmark module (front_overhead, balancing, drain, plan_scaling) has a `run()` that
measures its variants side by side in one run and returns a `BenchResult`; `run_all`
writes `bench/results/<name>.json` and prints the markdown tables. `loadgen` is the
bounded load client they all use. The pure helpers below (ratios, verdicts, markdown)
are unit-tested in tests/unit/test_bench_smoke.py.

"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PASS, MISS, INFO = "pass", "MISS", "-"


@dataclass
class BenchResult:
    name: str
    title: str
    table: str  # markdown, ready to paste
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = [f"### {self.title}", "", self.table]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "machine": machine(),
            "table_md": self.table,
            "notes": self.notes,
            **self.data,
        }


@dataclass
class Pooled:
    """Records of several load runs (one arm, one policy...), pooled."""

    successes: int
    failures: int
    wall_s: float
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    latency_p99: float | None = None
    latency_mean: float | None = None

    @property
    def throughput_rps(self) -> float | None:
        return self.successes / self.wall_s if self.wall_s > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "throughput_rps": self.throughput_rps}


def pool(results: Iterable[Any]) -> Pooled:
    """Pool `bench.loadgen.LoadResult`s: percentiles over all successful records, throughput over summed wall time."""
    from bench.loadgen import percentile

    results = list(results)
    ok = [r for res in results for r in res.records if r.ok]
    lat = [r.latency_s for r in ok if r.latency_s is not None]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    return Pooled(
        successes=len(ok),
        failures=sum(res.failures + res.not_started for res in results),
        wall_s=sum(res.wall_s for res in results),
        latency_p50=percentile(lat, 50),
        latency_p95=percentile(lat, 95),
        latency_p99=percentile(lat, 99),
        latency_mean=sum(lat) / len(lat) if lat else None,
        ttft_p50=percentile(ttft, 50),
        ttft_p95=percentile(ttft, 95),
    )


def upstream_ports(upstream_conf: str) -> list[int]:
    """Ports of the `server` lines of a rendered upstream file (loopback backends)."""
    return [
        int(ln.split()[1].rsplit(":", 1)[1].rstrip(";"))
        for ln in upstream_conf.splitlines()
        if ln.strip().startswith("server ")
    ]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def ratio(new: float | None, base: float | None) -> float | None:
    """new / base, None when either is missing or base is 0."""
    if new is None or base is None or base == 0:
        return None
    return new / base


def loss_pct(new: float | None, base: float | None) -> float | None:
    """How much lower `new` is than `base`, in percent (negative: higher)."""
    r = ratio(new, base)
    return None if r is None else (1.0 - r) * 100.0


def verdict(value: float | None, limit: float) -> str:
    """`pass` when value <= limit, `MISS` otherwise (a missing value is a miss)."""
    return PASS if value is not None and value <= limit else MISS


def fmt_ms(seconds: float | None, digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def fmt_delta_ms(seconds: float | None, digits: int = 2) -> str:
    return "-" if seconds is None else f"{seconds * 1000:+.{digits}f} ms"


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}"


def fmt_num(v: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are str()-ed and `|` escaped."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    if any(len(r) != len(headers) for r in rows):
        raise ValueError("every row needs one cell per header")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_result(result: BenchResult, results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(result.to_json(), indent=2, sort_keys=False, default=str) + "\n")
    return path


def bench_main(prog: str, doc: str, run, argv: list[str] | None = None) -> int:
    """The CLI of a single benchmark module: no options, run it, write and print its result."""
    import argparse

    argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0]).parse_args(argv)
    res = run()
    write_result(res)
    print(res.markdown())
    return 0
