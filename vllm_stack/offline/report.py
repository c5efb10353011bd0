"""Human output of a plan (rich tables and a resource tree) and the plan-to-plan diff.

The diff is what a pull-request comment shows: resources added/removed/changed and
the monthly cost delta.

Every value that comes from the stack file, the program or a path is escaped before rich
sees it (`[bold]` in a path or a name is text, not markup).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ..loader import display_text

if TYPE_CHECKING:  # plan.py imports this module
    from .plan import PlanResult


def _e(value: Any) -> str:
    """Text for rich: markup escaped (`[bold]` in a name or a path is text)."""
    return escape(display_text(value))


def _short_type(t: str) -> str:
    return t.split(":")[-1] if t.startswith("vllmstack:") else t


def resource_tree(doc: dict[str, Any]) -> Tree:
    root = Tree(f"[bold]stack {_e(doc['stack'])}[/] ({_e(doc['environment'])}, {_e(doc['platform'])})")
    nodes: dict[str | None, Tree] = {}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for r in doc["resources"]:
        parent = r["parent"] if r["parent"] and "pulumi:pulumi:Stack" not in r["parent"] else None
        children.setdefault(parent, []).append(r)

    def add(parent_tree: Tree, parent_urn: str | None) -> None:
        for r in children.get(parent_urn, []):
            secret = f" [magenta]({len(r['secretInputs'])} secret input(s))[/]" if r["secretInputs"] else ""
            node = parent_tree.add(f"{_e(r['name'])} [dim]{_e(_short_type(r['type']))}[/]{secret}")
            nodes[r["urn"]] = node
            add(node, r["urn"])

    add(root, None)
    return root


def sizing_table(doc: dict[str, Any]) -> Table:
    t = Table(
        title="Sizing per model (one replica; per GPU = each of its TP GPUs, as vLLM logs it; total = the replica)"
    )
    for col in (
        "model",
        "gpu",
        "TP",
        "util",
        "budget GiB per GPU",
        "weights GiB per GPU",
        "overhead GiB per GPU",
        "KV GiB per GPU",
        "KV GiB total",
        "KV tokens",
        "seqs @ maxModelLen",
        "fits",
        "replicas od/spot(max)",
        "needed @ peak",
        "all spot lost",
    ):
        t.add_column(col)
    for m in doc["capacity"]["models"]:
        f, r, ld, sl = m["fit"], m["replicas"], m["load"], m["spotLoss"]
        t.add_row(
            _e(m["model"]),
            _e(m["gpu"]),
            str(f["tensor_parallel"]),
            f"{f['gpu_memory_utilization']:g}",
            f"{f['budget_gib_per_gpu']:.2f} of {f['cuda_total_gib_per_gpu']:.2f}",
            f"{f['weights_gib_per_gpu']:.2f} [{_e(f['weight_format'])}]",
            f"{f['overhead_gib_per_gpu']:.2f}",
            f"{f['kv_gib_per_gpu']:.2f}",
            f"{f['kv_gib']:.2f}",
            str(f["kv_tokens"]),
            f"{f['max_concurrency_full_context']} x {f['max_model_len']}",
            "[green]yes[/]" if f["fits"] else f"[red]NO[/] {_e(f['reason'])}",
            f"{r['onDemand']}/{r['spot']}({r['spotMax']})",
            f"{ld['instancesNeeded']}" + ("" if ld["meetsPeak"] else " [yellow](short)[/]"),
            f"{sl['remainingRps']} of {sl['peakRps']} rps" + ("" if sl["coversPeak"] else " [yellow]short[/]"),
        )
    return t


def cost_table(doc: dict[str, Any]) -> Table:
    t = Table(title="Monthly cost (720 h)")
    for col in (
        "model",
        "GPUs",
        "$/hr blend",
        "on-demand only $/mo",
        "blend $/mo",
        "saving $/mo",
        "$/1M tokens",
        "price source",
    ):
        t.add_column(col)
    for m in doc["capacity"]["models"]:
        c = m["cost"]
        per_m = "-" if c["perMillionTokens"] is None else f"{c['perMillionTokens']:.4f}"
        t.add_row(
            _e(m["model"]),
            str(m["replicas"]["gpus"]),
            f"{c['blendPerHour']:.2f}",
            f"{c['onDemandMonthly']:,.2f}",
            f"{c['blendMonthly']:,.2f}",
            f"{c['savingMonthly']:,.2f}",
            per_m,
            _e(c["priceSource"].split(";")[0]),
        )
    tot = doc["capacity"]["total"]
    t.add_row(
        "[bold]total[/]",
        str(tot["gpus"]),
        f"{tot['blendPerHour']:.2f}",
        f"{tot['onDemandMonthly']:,.2f}",
        f"{tot['blendMonthly']:,.2f}",
        f"{tot['savingMonthly']:,.2f}",
        "",
        "",
    )
    return t


def _console() -> Console:
    """Wide enough for the tables when stdout is a pipe or a CI log (rich defaults to 80)."""
    probe = Console()
    return Console(soft_wrap=True, width=None if probe.is_terminal else 180, emoji=False)


def print_plan(result: PlanResult, out_dir: Path | None = None, console: Console | None = None) -> None:
    c = console or _console()
    doc = result.document
    c.print(resource_tree(doc))
    c.print(f"{len(doc['resources'])} resources")
    c.print(sizing_table(doc))
    c.print(cost_table(doc))
    for w in doc["warnings"]:
        c.print(f"[yellow]warning:[/] {_e(w)}")
    if doc["violations"]:
        vt = Table(title="Policy violations")
        for col in ("policy", "enforcement", "resource", "message"):
            vt.add_column(col)
        for v in doc["violations"]:
            vt.add_row(
                _e(v["policy"]), _e(v["enforcement"]), _e((v.get("urn") or "").split("::")[-1]), _e(v["message"])
            )
        c.print(vt)
    else:
        c.print("[green]policies: no violations[/]")
    if out_dir:
        c.print(f"artifacts: {len(doc['artifacts'])} files written to {_e(out_dir)}")


def plan_document_problem(doc: Any) -> str | None:
    """What keeps `doc` from being a plan document `diff_plans` can read (`key: problem`), or None."""
    if not isinstance(doc, dict):
        return f"top level: expected a JSON object (a `plan --json` document), got {type(doc).__name__}"
    for key in ("stack", "resources", "violations", "capacity"):
        if key not in doc:
            return f"{key}: required key is missing (not a `plan --json` document)"
    if not isinstance(doc["stack"], str):
        return "stack: expected a string"
    if not isinstance(doc["resources"], list):
        return "resources: expected a list"
    for i, r in enumerate(doc["resources"]):
        if not isinstance(r, dict):
            return f"resources[{i}]: expected an object"
        for key in ("type", "name"):
            if not isinstance(r.get(key), str):
                return f"resources[{i}].{key}: expected a string"
        if not isinstance(r.get("inputs"), dict):
            return f"resources[{i}].inputs: expected an object"
    if not isinstance(doc["violations"], list):
        return "violations: expected a list"
    total = doc["capacity"].get("total") if isinstance(doc["capacity"], dict) else None
    cost = total.get("blendMonthly") if isinstance(total, dict) else None
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost):
        return "capacity.total.blendMonthly: expected a finite number"
    return None


def diff_plans(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Resources keyed by type+name (URNs embed the stack name, which differs across stacks)."""

    def key(r: dict[str, Any]) -> str:
        return f"{r['type']}::{r['name']}"

    o = {key(r): r for r in old["resources"]}
    n = {key(r): r for r in new["resources"]}
    changed = sorted(k for k in o.keys() & n.keys() if o[k]["inputs"] != n[k]["inputs"])
    old_cost = old["capacity"]["total"]["blendMonthly"]
    new_cost = new["capacity"]["total"]["blendMonthly"]
    return {
        "from": old["stack"],
        "to": new["stack"],
        "added": sorted(n.keys() - o.keys()),
        "removed": sorted(o.keys() - n.keys()),
        "changed": changed,
        "monthlyCost": {"from": old_cost, "to": new_cost, "delta": round(new_cost - old_cost, 2)},
        "violations": {"from": len(old["violations"]), "to": len(new["violations"])},
    }


def print_diff(diff: dict[str, Any], console: Console | None = None) -> None:
    c = console or _console()
    c.print(f"[bold]plan diff {_e(diff['from'])} → {_e(diff['to'])}[/]")
    for label, color in (("added", "green"), ("removed", "red"), ("changed", "yellow")):
        c.print(f"[{color}]{label}: {len(diff[label])}[/]")
        for k in diff[label]:
            c.print(f"  [{color}]{'+' if label == 'added' else '-' if label == 'removed' else '~'}[/] {_e(k)}")
    mc = diff["monthlyCost"]
    c.print(f"monthly cost: ${mc['from']:,.2f} → ${mc['to']:,.2f} (delta ${mc['delta']:+,.2f})")


def recommend_table(ranked: list[Any]) -> Table:
    """`recommend` ranking: the cheapest configuration that fits and meets the SLA first."""
    t = Table(title="recommend: configurations by $/month (fit + SLA first; per replica figures)")
    for col in (
        "#",
        "checkpoint",
        "quant",
        "gpu",
        "TP",
        "replicas od/spot",
        "$/month",
        "$/1M tok",
        "batch",
        "tok/s per replica",
        "ITL p95 ms",
        "TTFT p95 ms",
        "KV GiB per GPU",
        "verdict",
    ):
        t.add_column(col)
    for i, c in enumerate(ranked, 1):
        p = c.perf
        t.add_row(
            str(i),
            _e(c.checkpoint),
            _e(c.quantization),
            _e(c.gpu),
            str(c.tensor_parallel),
            f"{c.on_demand}/{c.spot}" if c.meets_sla else "-",
            f"{c.monthly:.2f}" if c.meets_sla else "-",
            "-" if c.per_million_tokens is None else f"{c.per_million_tokens:.4f}",
            str(p.batch) if p else "-",
            f"{p.tokens_per_second:.0f}" if p else "-",
            f"{p.itl_p95_ms:g}" if p else "-",
            f"{p.ttft_p95_ms:g}" if p else "-",
            f"{c.kv_gib_per_gpu:.2f}",
            "[green]ok[/]" if c.meets_sla else f"[red]no[/] {_e(c.why_not)}",
        )
    return t
