"""`python -m vllm_stack plan <stack|path.yaml> [--out DIR] [--json] [--diff OTHER]` and `docs`.

Exit codes: 0 ok, 1 a mandatory policy failed, 2 bad input (one line on stderr naming the key).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .loader import ConfigError, resolve_stack_path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vllm_stack", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    plan = sub.add_parser("plan", help="offline plan: program under mocks, policies, artifacts, capacity and cost")
    plan.add_argument("stack", help="stack name (dev, prod → Pulumi.<name>.yaml) or a path to a stack file")
    plan.add_argument("--out", type=Path, help="write rendered artifacts and plan.json here (atomically)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON instead of tables")
    plan.add_argument("--diff", metavar="OTHER", help="compare with another stack file or a previous --json output")
    docs = sub.add_parser("docs", help="regenerate the config reference (README section and JSON schema)")
    docs.add_argument("--check", action="store_true", help="fail if the generated docs are out of date")
    return p


def _load_other(other: str) -> dict:
    path = Path(other)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    proc = subprocess.run([sys.executable, "-m", "vllm_stack", "plan", str(resolve_stack_path(other, REPO_ROOT)),
                           "--json"], capture_output=True, text=True, cwd=REPO_ROOT)
    if proc.returncode not in (0, 1):
        raise ConfigError("--diff", proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "plan failed")
    return json.loads(proc.stdout)


def cmd_plan(args) -> int:
    from .offline.plan import build_plan, write_artifacts
    from .offline.report import diff_plans, print_diff, print_plan

    path = resolve_stack_path(args.stack, REPO_ROOT)
    if not path.exists():
        raise ConfigError("", f"no stack file {path} (stacks here: "
                              f"{', '.join(sorted(p.name for p in REPO_ROOT.glob('Pulumi.*.yaml')))})")
    result = build_plan(path)
    if args.out:
        write_artifacts(result, args.out)
    diff = diff_plans(_load_other(args.diff), result.document) if args.diff else None
    if args.json:
        doc = dict(result.document)
        if diff is not None:
            doc["diff"] = diff
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print_plan(result, out_dir=args.out)
        if diff is not None:
            print_diff(diff)
    return 1 if result.mandatory_failures else 0


def cmd_docs(args) -> int:
    from .docs import check_docs, write_docs
    if args.check:
        stale = check_docs()
        for s in stale:
            print(f"error: {s} is out of date; run `python -m vllm_stack docs`", file=sys.stderr)
        return 1 if stale else 0
    write_docs()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return cmd_plan(args) if args.cmd == "plan" else cmd_docs(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
