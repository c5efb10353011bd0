"""`make bench`: every benchmark in one run, results to bench/results/<name>.json, tables to stdout.

    python -m bench.run_all                    # all four, ~4 minutes on 2 cores
    python -m bench.run_all --only balancing   # one (repeatable)

After a complete run (all benchmarks, none failed) the tables also replace the section
between the RESULTS markers of bench/README.md. Exit 1 if a benchmark raised; a missed
target is a measurement, not a failure (see the `result` columns).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench import BenchResult, machine, write_result

BENCHES = ("front_overhead", "balancing", "drain", "plan_scaling", "sizing_peers")
README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def results_markdown(results: list[tuple[BenchResult, float]], total_s: float) -> str:
    m = machine()
    head = (
        f"Measured {m['time_utc']} on {m['cpus']} CPU(s), Python {m['python']}; `make bench` took "
        f"{total_s:.0f} s ({', '.join(f'{r.name} {t:.0f} s' for r, t in results)})."
    )
    return "\n".join([head, ""] + [r.markdown() for r, _ in results]).rstrip() + "\n"


def replace_section(text: str, body: str, begin: str = BEGIN, end: str = END) -> str:
    """`text` with everything between the begin and end markers replaced by `body`."""
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError("README has no results markers")
    return text[: i + len(begin)] + "\n" + body + text[j:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=BENCHES, help="run only this benchmark (repeatable)")
    a = ap.parse_args(argv)
    names = [n for n in BENCHES if not a.only or n in a.only]
    t_all = time.perf_counter()
    done: list[tuple[BenchResult, float]] = []
    failed: list[str] = []
    for name in names:
        print(f"== bench {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            res = importlib.import_module(f"bench.{name}").run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        elapsed = time.perf_counter() - t0
        res.data["elapsed_s"] = round(elapsed, 1)
        path = write_result(res)
        print(f"== bench {name}: {elapsed:.0f} s, wrote {path}", file=sys.stderr, flush=True)
        done.append((res, elapsed))
    total = time.perf_counter() - t_all
    md = results_markdown(done, total)
    print(md)
    if not failed and len(done) == len(BENCHES):
        README.write_text(replace_section(README.read_text(), md))
        print(f"updated {README}", file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
