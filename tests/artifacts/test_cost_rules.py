"""Live-cost recording rules and the cost-above-plan alert (vllm_stack/render/cost_rules.py) through promtool.

`promtool check rules` checks the PromQL; `promtool test rules` runs hand-computed cases: 2 on-demand
and 1 spot replica of the prod stack's llama-70b (1x H100 at $2.50 on-demand / $1.03 spot) generating
600 tokens/s (above the plan's $/1M tokens x 1.5: fires after 1 h) and 3000 tokens/s (below: quiet).
A mutated rule file (the spot price read as on-demand) must fail the same cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import tools
from vllm_stack import defaults as D
from vllm_stack.cost import model_cost
from vllm_stack.loader import load_stack_file
from vllm_stack.render.cost_rules import COST_ALERT, cost_rules_doc, render_cost_rules
from vllm_stack.render.grafana import dashboard
from vllm_stack.render.routing_monitoring import render_rules_file

ROOT = Path(__file__).resolve().parents[2]
RULES = "vllm-cost.yml"
MODEL = "llama-70b"


@pytest.fixture(scope="module")
def cfg():
    return load_stack_file(ROOT / "Pulumi.prod.yaml")


def _spec(cfg):
    (spec,) = [m for m in cfg.models if m.name == MODEL]
    return spec


def _series(tokens_per_second: int) -> list[dict[str, str]]:
    out = []
    for host, cap in (("a", "onDemand"), ("b", "onDemand"), ("c", "spot")):
        labels = f'job="{D.JOB_VLLM}",model="{MODEL}",capacity="{cap}",host="{host}"'
        out.append({"series": f"up{{{labels}}}", "values": "1x90"})
        per_minute = tokens_per_second * 60 // 3
        out.append({"series": f"{D.METRIC_GENERATION_TOKENS}{{{labels}}}", "values": f"0+{per_minute}x90"})
    return out


def _tests_doc(cfg) -> dict:
    spec = _spec(cfg)
    assert (spec.gpu, spec.tensor_parallel) == ("H100-SXM5-80GB", 1)
    hourly = 2 * 2.50 + 1 * 1.03  # catalog prices of the H100 (no `prices` override in prod)
    plan = model_cost(spec, dict(cfg.prices)).per_million_tokens
    assert plan is not None
    live_slow = hourly / (600 * 3600) * 1e6  # 2.7917 $/1M tokens
    assert live_slow > 1.5 * plan > hourly / (3000 * 3600) * 1e6
    sel = f'{{model="{MODEL}"}}'
    return {
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "live cost above plan x 1.5 for an hour",
                "interval": "1m",
                "input_series": _series(600),
                "promql_expr_test": [
                    {
                        "expr": f"{D.REC_REPLICAS}{sel}",
                        "eval_time": "10m",
                        "exp_samples": [
                            {"labels": f'{D.REC_REPLICAS}{{model="{MODEL}",capacity="onDemand"}}', "value": 2},
                            {"labels": f'{D.REC_REPLICAS}{{model="{MODEL}",capacity="spot"}}', "value": 1},
                        ],
                    },
                    {
                        "expr": f"{D.REC_COST_PER_HOUR}{sel}",
                        "eval_time": "10m",
                        "exp_samples": [{"labels": f"{D.REC_COST_PER_HOUR}{sel}", "value": hourly}],
                    },
                    {
                        "expr": f"{D.REC_TOKENS_PER_SECOND}{sel}",
                        "eval_time": "10m",
                        "exp_samples": [{"labels": f"{D.REC_TOKENS_PER_SECOND}{sel}", "value": 600}],
                    },
                    {
                        "expr": f"{D.REC_COST_PER_MTOK}{sel}",
                        "eval_time": "10m",
                        "exp_samples": [{"labels": f"{D.REC_COST_PER_MTOK}{sel}", "value": live_slow}],
                    },
                    {
                        "expr": f"{D.REC_PLAN_COST_PER_MTOK}{sel}",
                        "eval_time": "10m",
                        "exp_samples": [{"labels": f"{D.REC_PLAN_COST_PER_MTOK}{sel}", "value": round(plan, 6)}],
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "50m", "alertname": COST_ALERT, "exp_alerts": []},
                    {
                        "eval_time": "80m",
                        "alertname": COST_ALERT,
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": D.SEVERITY_WARNING, "model": MODEL},
                                "exp_annotations": {
                                    "summary": f"{MODEL}: live cost above plan x 1.5",
                                    "description": f"{MODEL} costs ${live_slow:.3f} per 1M generated tokens, more "
                                    "than 1.5 x the plan's $/1M tokens for 1h: fewer tokens per replica than planned "
                                    "(load below plan, or slower replicas) or more replicas running than planned",
                                    "runbook_url": f"{cfg.monitoring.runbook_base_url}#{COST_ALERT.lower()}",
                                },
                            }
                        ],
                    },
                ],
            },
            {
                "name": "live cost below plan x 1.5: quiet",
                "interval": "1m",
                "input_series": _series(3000),
                "alert_rule_test": [{"eval_time": "80m", "alertname": COST_ALERT, "exp_alerts": []}],
            },
        ],
    }


def _write(tmp_path: Path, rules_text: str, cfg) -> Path:
    (tmp_path / RULES).write_text(rules_text)
    t = tmp_path / "cost-tests.yml"
    t.write_text(yaml.safe_dump(_tests_doc(cfg), sort_keys=False))
    return t


def test_cost_rules_are_their_own_group(cfg):
    doc = cost_rules_doc(cfg)
    assert [g["name"] for g in doc["groups"]] == [D.COST_RULE_GROUP]
    alerts = [r for r in doc["groups"][0]["rules"] if "alert" in r]
    assert [a["alert"] for a in alerts] == [COST_ALERT] and alerts[0]["for"] == D.ALERT_COST_ABOVE_PLAN_FOR
    assert "2 *" in cost_rules_doc(cfg, factor=2)["groups"][0]["rules"][-1]["expr"]  # the factor is a parameter


def test_promtool_checks_the_rules(cfg, tmp_path):
    tools.require("promtool")
    (tmp_path / RULES).write_text(render_cost_rules(cfg))
    res = tools.promtool_check_rules(tmp_path / RULES)
    assert res.ok, res.output


def test_promtool_runs_the_cost_cases(cfg, tmp_path):
    tools.require("promtool")
    res = tools.promtool_test_rules(_write(tmp_path, render_cost_rules(cfg), cfg))
    assert res.ok and "SUCCESS" in res.output, res.output


def test_the_cases_catch_a_wrong_spot_price(cfg, tmp_path):
    tools.require("promtool")
    text = render_cost_rules(cfg).replace("* 1.03", "* 2.5", 1)
    assert text != render_cost_rules(cfg)
    res = tools.promtool_test_rules(_write(tmp_path, text, cfg))
    assert not res.ok and D.REC_COST_PER_HOUR in res.output, res.output


def test_the_stack_loads_the_cost_group_with_an_absolute_runbook_and_its_configured_factor(cfg):
    doc = yaml.safe_load(render_rules_file(cfg))
    (group,) = [g for g in doc["groups"] if g["name"] == D.COST_RULE_GROUP]
    (alert,) = [r for r in group["rules"] if r.get("alert") == COST_ALERT]
    assert alert["annotations"]["runbook_url"] == f"{cfg.monitoring.runbook_base_url}#{COST_ALERT.lower()}"
    assert alert["annotations"]["runbook_url"].startswith("https://")
    tuned = cfg.model_copy(
        update={
            "monitoring": cfg.monitoring.model_copy(
                update={
                    "alerts": cfg.monitoring.alerts.model_copy(
                        update={"cost_above_plan_factor": 3.0, "cost_above_plan_for": "2h"}
                    )
                }
            )
        }
    )
    (alert,) = [
        r
        for g in yaml.safe_load(render_rules_file(tuned))["groups"]
        for r in g["rules"]
        if r.get("alert") == COST_ALERT
    ]
    assert alert["for"] == "2h" and alert["expr"].endswith(f"(3 * {D.REC_PLAN_COST_PER_MTOK})")


def test_dashboard_panels_put_live_beside_plan(cfg):
    panels = [p for p in dashboard(cfg)["panels"] if p.get("title", "").startswith("Cost $/")]
    assert [p["title"] for p in panels] == ["Cost $/hour: live vs plan", "Cost $/1M tokens: live vs plan"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert exprs == [
        f"sum by (model) ({D.REC_COST_PER_HOUR})",
        f"sum by (model) ({D.REC_PLAN_COST_PER_HOUR})",
        f"sum by (model) ({D.REC_COST_PER_MTOK})",
        f"sum by (model) ({D.REC_PLAN_COST_PER_MTOK})",
    ]
