"""How `python -m vllm_stack plan <stack-file> --json` scales with replicas and models.

Generated prod-like stack files (environment prod, provided TLS, pinned image, explicit
limits and load figures as in Pulumi.prod.yaml), `replicas` = total replicas of the stack
split as evenly as possible over `models` (each model keeps its on-demand replica):

  * kubernetes: each model gets `pool.onDemand: 1` and a spot ceiling `pool.spotMax` for the
    rest (KEDA scales spot replicas up to it): replicas are numbers in Deployment/ScaledObject
    objects, so resources grow with models, not with replicas;
  * docker: one GPU host per replica (`hosts`, onDemand for the first replica of each model,
    spot for the others): resources grow with every host.

Each cell is timed as a subprocess, wall clock, best of 3 (a cell whose first run already
takes longer than REPEAT_CUTOFF_S is run once: best of 3 cannot bring it near the target).
Cells with fewer replicas than models cannot exist (a model has at least one replica).
The default grid fits `make bench`; `--full` runs every cell on both platforms (slow on docker).
Reported: wall time, resources in the JSON plan, time per resource, the growth between
cells (added seconds per added resource) and whether 100 replicas stay under 10 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import INFO, BenchResult, md_table, verdict, write_result

NAME = "plan_scaling"
TITLE = "Plan scaling: `vllm_stack plan --json` wall time vs replicas and models"
REPO_ROOT = Path(__file__).resolve().parents[1]

REPLICAS = (1, 10, 100)
MODELS = (1, 5, 20)
RUNS = 3
REPEAT_CUTOFF_S = 20.0
TARGET_100_REPLICAS_S = 10.0
PLAN_TIMEOUT_S = 300.0

#: (platform, replicas, models) measured by `make bench`
DEFAULT_CELLS = (
    [("kubernetes", r, 1) for r in REPLICAS]
    + [("kubernetes", 100, m) for m in MODELS[1:]]
    + [("docker", r, 1) for r in REPLICAS]
)

#: Catalog models that fit one L40S (as in Pulumi.prod.yaml / examples/Pulumi.docker-prod.yaml).
_CATALOG = (
    ("mistral-7b", "mistralai/Mistral-7B-Instruct-v0.3"),
    ("llama-8b", "meta-llama/Llama-3.1-8B-Instruct"),
    ("qwen-7b", "Qwen/Qwen2.5-7B-Instruct"),
)


def split(replicas: int, models: int) -> list[int]:
    """`replicas` over `models` as evenly as possible, earlier models first; each gets >= 1."""
    if models < 1 or replicas < models:
        raise ValueError(f"{replicas} replica(s) cannot serve {models} model(s)")
    base, extra = divmod(replicas, models)
    return [base + (1 if i < extra else 0) for i in range(models)]


def all_cells(platforms: tuple[str, ...] = ("kubernetes", "docker")) -> list[tuple[str, int, int]]:
    return [(p, r, m) for p in platforms for m in MODELS for r in REPLICAS if r >= m]


def stack_doc(platform: str, replicas: int, models: int) -> dict:
    """A prod-like `Pulumi.<stack>.yaml` document."""
    if platform not in ("kubernetes", "docker"):
        raise ValueError(f"unknown platform {platform!r}")
    specs, hosts = [], []
    for i, n in enumerate(split(replicas, models)):
        short, hf = _CATALOG[i % len(_CATALOG)]
        name = f"{short}-{i}"
        spec = {
            "name": name,
            "model": hf,
            "gpu": "L40S",
            "maxModelLen": 8192,
            "maxNumSeqs": 128,
            "gpuMemoryUtilization": 0.90,
            "image": "vllm/vllm-openai:v0.33.0",
            "default": i == 0,
            "load": {"peakRps": 10, "singleInstanceRps": 12, "bufferPct": 20, "tokensPerSecond": 3000},
        }
        if platform == "kubernetes":
            pool = {"onDemand": 1, "spot": 0, "drainSeconds": 20}
            if n > 1:
                pool["spotMax"] = n - 1
        else:
            pool = {"onDemand": 1, "spot": n - 1, "drainSeconds": 20}
            for j in range(n):
                hosts.append(
                    {
                        "name": f"gpu-{i}-{j}",
                        "address": f"10.{i % 250}.{j // 250}.{j % 250 + 1}",
                        "user": "ubuntu",
                        "gpu": "L40S",
                        "gpuCount": 1,
                        "capacity": "onDemand" if j == 0 else "spot",
                    }
                )
        spec["pool"] = pool
        specs.append(spec)
    cfg: dict = {"vllm-stack:environment": "prod", "vllm-stack:platform": platform}
    if platform == "docker":
        cfg["vllm-stack:hostRuntime"] = "systemd"
        cfg["vllm-stack:hosts"] = hosts
    cfg["vllm-stack:models"] = specs
    cfg["vllm-stack:front"] = {"domain": "llm.example.com", "tls": "provided"}
    cfg["vllm-stack:monitoring"] = {"scrapeIntervalSeconds": 10, "grafana": {"enabled": True}}
    return {"config": cfg}


@dataclass
class Cell:
    platform: str
    replicas: int
    models: int
    times_s: list[float]
    resources: int
    artifacts: int
    violations: int
    rc: int

    @property
    def best_s(self) -> float:
        return min(self.times_s)

    @property
    def per_resource_ms(self) -> float | None:
        return self.best_s / self.resources * 1000 if self.resources else None


#: Fewer added resources than this: the time difference is run-to-run noise, no growth is computed.
MIN_ADDED_RESOURCES = 10


def growth_ms_per_resource(a: Cell, b: Cell, min_added: int = MIN_ADDED_RESOURCES) -> float | None:
    """Added wall time per added resource from cell a to cell b (ms); None below `min_added` resources."""
    dr = b.resources - a.resources
    return None if dr < max(1, min_added) else (b.best_s - a.best_s) / dr * 1000


def time_plan(path: Path, runs: int = RUNS, cutoff_s: float = REPEAT_CUTOFF_S) -> tuple[list[float], dict, int]:
    times: list[float] = []
    doc: dict = {}
    rc = 0
    for i in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "vllm_stack", "plan", str(path), "--json"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=PLAN_TIMEOUT_S,
        )
        times.append(time.perf_counter() - t0)
        rc = p.returncode
        if p.returncode not in (0, 1):
            raise RuntimeError(f"plan {path.name} failed (rc {p.returncode}):\n{p.stderr[-2000:]}")
        if i == 0:
            doc = json.loads(p.stdout)
        if times[-1] > cutoff_s:
            break
    return times, doc, rc


def measure(cells, runs: int = RUNS, cutoff_s: float = REPEAT_CUTOFF_S) -> list[Cell]:
    out = []
    with tempfile.TemporaryDirectory(prefix="vllm-plan-bench-") as d:
        for platform, r, m in cells:
            path = Path(d) / f"Pulumi.bench-{platform}-r{r}-m{m}.yaml"
            path.write_text(yaml.safe_dump(stack_doc(platform, r, m), sort_keys=False))
            times, doc, rc = time_plan(path, runs, cutoff_s)
            out.append(
                Cell(
                    platform,
                    r,
                    m,
                    times,
                    len(doc.get("resources", [])),
                    len(doc.get("artifacts", [])),
                    len(doc.get("violations", [])),
                    rc,
                )
            )
    return out


HEADERS = (
    "platform",
    "replicas",
    "models",
    "resources",
    "runs",
    "best wall",
    "per resource",
    "growth vs smallest stack",
    "target",
    "result",
)


def table_rows(cells: list[Cell]) -> list[list[object]]:
    rows: list[list[object]] = []
    smallest: dict[str, Cell] = {}
    for c in cells:
        base = smallest.setdefault(c.platform, c)
        g = growth_ms_per_resource(base, c) if base is not c else None
        if c.replicas == 100:
            target, res = f"<{TARGET_100_REPLICAS_S:g} s", verdict(c.best_s, TARGET_100_REPLICAS_S)
        else:
            target, res = "-", INFO
        rows.append(
            [
                c.platform,
                c.replicas,
                c.models,
                c.resources,
                len(c.times_s),
                f"{c.best_s:.2f} s",
                "-" if c.per_resource_ms is None else f"{c.per_resource_ms:.1f} ms",
                "-" if g is None else f"{g:+.1f} ms/added resource",
                target,
                res,
            ]
        )
    return rows


def run(cells=DEFAULT_CELLS, runs: int = RUNS) -> BenchResult:
    measured = measure(cells, runs)
    data = {
        "runs": runs,
        "repeat_cutoff_s": REPEAT_CUTOFF_S,
        "target_100_replicas_s": TARGET_100_REPLICAS_S,
        "cells": [vars(c) | {"best_s": c.best_s, "per_resource_ms": c.per_resource_ms} for c in measured],
    }
    notes = [
        f"wall time of `python -m vllm_stack plan <file> --json` as a subprocess (interpreter start, program "
        f"under mocks, policies, rendering), best of {runs}; a cell whose first run exceeds "
        f"{REPEAT_CUTOFF_S:g} s is run once",
        "replicas: kubernetes = per-model spot ceiling (`spotMax`) summed over the stack; docker = one GPU host "
        "per replica",
        "growth: (best wall - the platform's first row) / (resources - its resources); not computed below "
        f"{MIN_ADDED_RESOURCES} added resources (noise)",
    ]
    bad = [c for c in measured if c.rc != 0 or c.violations]
    if bad:
        notes.append(
            "plans with violations or rc != 0: " + ", ".join(f"{c.platform} r{c.replicas} m{c.models}" for c in bad)
        )
    return BenchResult(NAME, TITLE, md_table(HEADERS, table_rows(measured)), data, notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plan_scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="every cell of the grid on both platforms (slow)")
    a = ap.parse_args(argv)
    res = run(all_cells() if a.full else DEFAULT_CELLS)
    write_result(res)
    print(res.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
