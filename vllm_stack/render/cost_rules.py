"""Live cost next to planned cost: Prometheus recording rules, one alert, promtool tests, dashboard panels.

Its own rule group (`vllm-cost`, `defaults.COST_RULE_GROUP`) beside the `vllm` alert group of
`alerts.py`. Prices come from the same place as the plan's (`cost.price_for`: the GPU catalog or the
stack's `prices`); the running replica count by capacity class is the number of vLLM scrape targets
up (each replica is one target carrying the `model` and `capacity` scrape labels); the token rate is
vLLM's `vllm:generation_tokens_total`.

Per model (the `model` label):
* `vllm_stack:replicas_running{capacity}`  = count of vLLM targets up;
* `vllm_stack:cost_dollars_per_hour`       = on-demand replicas x TP x on-demand price + spot replicas x
  TP x spot price (spot priced on-demand when the GPU has no spot price, as the plan does);
* `vllm_stack:generation_tokens_per_second` = rate of generated tokens over `ALERT_RATE_WINDOW`;
* `vllm_stack:cost_dollars_per_million_tokens` = $/hour / (tokens/s x 3600) x 1e6 (only while tokens flow);
* `vllm_stack:plan_cost_dollars_per_hour` / `..._per_million_tokens` = the plan's figures (constants).
Alert `VllmCostAbovePlan`: live $/1M tokens above plan x factor for an hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from .. import defaults as D
from ..cost import model_cost, price_for
from .alerts import num

if TYPE_CHECKING:
    from ..config import ModelSpec, PriceSpec, StackConfig

COST_ALERT = "VllmCostAbovePlan"
#: The `monitoring.alerts` field that sets the cost alert's `for` (as alerts.FOR_FIELD for the `vllm` group).
FOR_FIELD: dict[str, str] = {COST_ALERT: "cost_above_plan_for"}
CAPACITIES = ("onDemand", "spot")


def _target(model: str, capacity: str | None = None) -> str:
    m = [f'job="{D.JOB_VLLM}"', f'{D.SCRAPE_LABEL_MODEL}="{model}"']
    if capacity:
        m.append(f'{D.SCRAPE_LABEL_CAPACITY}="{capacity}"')
    return "{" + ",".join(m) + "}"


def _with_model(expr: str, model: str) -> str:
    """Attach `model="<name>"` to a label-less result."""
    return f'label_replace({expr}, "{D.SCRAPE_LABEL_MODEL}", "{model}", "", "")'


def _replica_rate(spec: ModelSpec, prices: Mapping[str, PriceSpec] | None, capacity: str) -> float:
    p = price_for(spec.gpu, prices)
    rate = p.on_demand_per_hour if capacity == "onDemand" or p.spot_per_hour is None else p.spot_per_hour
    return rate * spec.tensor_parallel


def model_rules(spec: ModelSpec, prices: Mapping[str, PriceSpec] | None = None) -> list[dict[str, Any]]:
    name, model_label = spec.name, D.SCRAPE_LABEL_MODEL
    rules: list[dict[str, Any]] = []
    for cap in CAPACITIES:
        rules.append(
            {
                "record": D.REC_REPLICAS,
                "expr": f"count by ({model_label}, {D.SCRAPE_LABEL_CAPACITY}) (up{_target(name, cap)} == 1)",
                "labels": {D.SCRAPE_LABEL_CAPACITY: cap},
            }
        )
    terms = [
        f'(sum({D.REC_REPLICAS}{{{model_label}="{name}",{D.SCRAPE_LABEL_CAPACITY}="{cap}"}}) or vector(0)) * '
        f"{num(_replica_rate(spec, prices, cap))}"
        for cap in CAPACITIES
    ]
    rules.append({"record": D.REC_COST_PER_HOUR, "expr": _with_model(" + ".join(terms), name)})
    rules.append(
        {
            "record": D.REC_TOKENS_PER_SECOND,
            "expr": f"sum by ({model_label}) (rate({D.METRIC_GENERATION_TOKENS}{_target(name)}[{D.ALERT_RATE_WINDOW}]))",
        }
    )
    sel = f'{{{model_label}="{name}"}}'
    rules.append(
        {
            "record": D.REC_COST_PER_MTOK,
            "expr": f"{D.REC_COST_PER_HOUR}{sel} / on({model_label}) ({D.REC_TOKENS_PER_SECOND}{sel} * 3600 > 0) * 1e6",
        }
    )
    cost = model_cost(spec, prices)
    rules.append({"record": D.REC_PLAN_COST_PER_HOUR, "expr": _with_model(f"vector({num(cost.blend_per_hour)})", name)})
    if cost.per_million_tokens is not None:
        rules.append(
            {
                "record": D.REC_PLAN_COST_PER_MTOK,
                "expr": _with_model(f"vector({num(round(cost.per_million_tokens, 6))})", name),
            }
        )
    # Each model's rules carry its label: the same record name with distinct label sets (promtool's
    # duplicate-rule lint, and Prometheus, tell them apart by it).
    for r in rules:
        r["labels"] = {model_label: name, **r.get("labels", {})}
    return rules


def cost_alert(
    factor: float = D.ALERT_COST_ABOVE_PLAN_FACTOR,
    for_: str = D.ALERT_COST_ABOVE_PLAN_FOR,
    *,
    runbook_base: str = D.RUNBOOKS_DOC,
) -> dict[str, Any]:
    m = D.SCRAPE_LABEL_MODEL
    return {
        "alert": COST_ALERT,
        "expr": f"{D.REC_COST_PER_MTOK} > on({m}) ({num(factor)} * {D.REC_PLAN_COST_PER_MTOK})",
        "for": for_,
        "labels": {"severity": D.SEVERITY_WARNING},
        "annotations": {
            "summary": f"{{{{ $labels.{m} }}}}: live cost above plan x {num(factor)}",
            "description": f'{{{{ $labels.{m} }}}} costs ${{{{ printf "%.3f" $value }}}} per 1M generated tokens, '
            f"more than {num(factor)} x the plan's $/1M tokens for {for_}: fewer tokens per replica than "
            "planned (load below plan, or slower replicas) or more replicas running than planned",
            "runbook_url": f"{runbook_base}#{COST_ALERT.lower()}",
        },
    }


def cost_rules_doc(cfg: StackConfig, *, factor: float | None = None, for_: str | None = None) -> dict[str, Any]:
    """The `vllm-cost` group; the factor and duration default to `monitoring.alerts.costAbovePlan*`."""
    a = cfg.monitoring.alerts
    rules: list[dict[str, Any]] = []
    for spec in cfg.models:
        rules += model_rules(spec, dict(cfg.prices))
    rules.append(
        cost_alert(
            a.cost_above_plan_factor if factor is None else factor,
            a.cost_above_plan_for if for_ is None else for_,
            runbook_base=cfg.monitoring.runbook_base_url,
        )
    )
    return {"groups": [{"name": D.COST_RULE_GROUP, "rules": rules}]}


def render_cost_rules(cfg: StackConfig, *, factor: float | None = None, for_: str | None = None) -> str:
    return yaml.safe_dump(cost_rules_doc(cfg, factor=factor, for_=for_), sort_keys=False, width=1000)


def cost_panel_queries() -> list[tuple[str, str, str, str]]:
    """(title, unit, live query, plan query) of the dashboard's cost row: live beside the plan."""
    m = D.SCRAPE_LABEL_MODEL
    return [
        (
            "Cost $/hour: live vs plan",
            "currencyUSD",
            f"sum by ({m}) ({D.REC_COST_PER_HOUR})",
            f"sum by ({m}) ({D.REC_PLAN_COST_PER_HOUR})",
        ),
        (
            "Cost $/1M tokens: live vs plan",
            "currencyUSD",
            f"sum by ({m}) ({D.REC_COST_PER_MTOK})",
            f"sum by ({m}) ({D.REC_PLAN_COST_PER_MTOK})",
        ),
    ]
