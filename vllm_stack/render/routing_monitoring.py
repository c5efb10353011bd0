"""Observability of the routing tier: the routers' scrape targets, the prefix-cache alert (its own
rule group, `vllm-routing`), its `promtool test rules` cases, and the dashboard row (per-replica load
and the prefix-cache hit rate).

Hit rate = `rate(vllm:prefix_cache_hits_total) / rate(vllm:prefix_cache_queries_total)` per model
(vLLM V1 counts prompt tokens looked up / found in the prefix cache). It collapses when requests stop
reaching the replica that holds their prefix (router down and bypassed, a policy change, a worker
set churning) or the cache thrashes; a traffic drop alone is not a collapse, hence the "steady"
condition: the lookup rate is at least `ALERT_PREFIX_STEADY_SHARE` of what it was
`ALERT_PREFIX_STEADY_OFFSET` ago.
"""

from __future__ import annotations

from typing import Any

import yaml

from .. import defaults as D
from ..config import StackConfig
from ..deployment import Deployment
from ..endpoints import ScrapeTarget
from .alerts import AlertRule, expand_template, num

PREFIX_HIT_RATE_COLLAPSE = "VllmPrefixCacheHitRateCollapse"
ROUTER_METRIC_PROCESSED = "vllm_router_processed_requests_total"  # per worker (read from the router's /metrics)
ROUTER_METRIC_WORKER_HEALTH = "vllm_router_worker_health"
LABEL_ROUTER_WORKER = "worker"


def router_scrape_targets(dep: Deployment) -> tuple[ScrapeTarget, ...]:
    """One target per router (job `vllm-router`); on SSH hosts the router's metrics listen on the front
    host's loopback, so Prometheus must run there (the default `monitoring.host` is the front host)."""
    return tuple(r.scrape_target for r in dep.routers)


def _by_model(metric: str, window: str = D.ALERT_RATE_WINDOW, offset: str | None = None) -> str:
    off = f" offset {offset}" if offset else ""
    return f"sum by ({D.LABEL_VLLM_MODEL_NAME}) (rate({metric}[{window}]{off}))"


def hit_rate_expr() -> str:
    return f"{_by_model(D.METRIC_PREFIX_HITS)} / {_by_model(D.METRIC_PREFIX_QUERIES)}"


def collapse_expr() -> str:
    q = _by_model(D.METRIC_PREFIX_QUERIES)
    return (
        f"({hit_rate_expr()}) < {num(D.ALERT_PREFIX_HIT_RATE)}"
        f" and {q} > {num(D.ALERT_PREFIX_MIN_QUERY_TOKENS_PER_S)}"
        f" and {q} >= {num(D.ALERT_PREFIX_STEADY_SHARE)} * "
        f"{_by_model(D.METRIC_PREFIX_QUERIES, offset=D.ALERT_PREFIX_STEADY_OFFSET)}"
    )


def routing_alert_rules(cfg: StackConfig, *, for_override: str | None = None) -> list[AlertRule]:
    mn = f"{{{{ $labels.{D.LABEL_VLLM_MODEL_NAME} }}}}"
    return [
        AlertRule(
            PREFIX_HIT_RATE_COLLAPSE,
            collapse_expr(),
            for_override or D.ALERT_PREFIX_HIT_FOR,
            D.SEVERITY_WARNING,
            f"Prefix-cache hit rate collapsed for model {mn}",
            f'The prefix-cache hit rate of {mn} is {{{{ printf "%.2f" $value }}}} (threshold '
            f"{num(D.ALERT_PREFIX_HIT_RATE)}) with steady traffic for more than {for_override or D.ALERT_PREFIX_HIT_FOR}: "
            "requests no longer reach the replica holding their prefix (router bypassed or down, policy "
            "changed, workers churning) or the cache thrashes; check the router's worker set and policy.",
            D.ALERT_PREFIX_HIT_RATE,
        )
    ]


def routing_alert_rules_doc(
    cfg: StackConfig, *, for_override: str | None = None, runbook_base: str | None = None
) -> dict[str, Any]:
    base = runbook_base or cfg.monitoring.runbook_base_url
    return {
        "groups": [
            {
                "name": D.ROUTING_ALERT_GROUP,
                "rules": [r.as_rule(base) for r in routing_alert_rules(cfg, for_override=for_override)],
            }
        ]
    }


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)


def render_routing_alert_rules(cfg: StackConfig, *, for_override: str | None = None) -> str:
    return _dump(routing_alert_rules_doc(cfg, for_override=for_override))


def render_rules_file(cfg: StackConfig, *, for_override: str | None = None) -> str:
    """The one rules file Prometheus loads: the `vllm` alerts, the `vllm-routing` group when a model is
    routed, and the `vllm-cost` recording rules and alert (each its own group). `for_override`: the
    alert groups' `for` (tests)."""
    from .alerts import alert_rules_doc
    from .cost_rules import cost_rules_doc

    groups = list(alert_rules_doc(cfg, for_override=for_override)["groups"])
    if any(m.routing.enabled for m in cfg.models):
        groups += routing_alert_rules_doc(cfg, for_override=for_override)["groups"]
    groups += cost_rules_doc(cfg)["groups"]
    return _dump({"groups": groups})


def render_routing_promtool_tests(cfg: StackConfig, rules_file: str, model: str = "chat") -> str:
    """Three cases over 60 minutes at 1m steps: steady traffic, hit rate 0.9 then 0.05 from minute 35
    (fires); the same collapse while traffic drops to a tenth (quiet); steady traffic at 0.9 (quiet)."""
    label = f'{{{D.LABEL_VLLM_MODEL_NAME}="{model}"}}'
    for_min = int(D.ALERT_PREFIX_HIT_FOR.rstrip("m"))

    def series(per_min_queries: list[int], per_min_hits: list[int]) -> list[dict[str, str]]:
        q, h, qs, hs = 0, 0, [], []
        for a, b in zip(per_min_queries, per_min_hits):
            q += a
            h += b
            qs.append(str(q))
            hs.append(str(h))
        return [
            {"series": f"{D.METRIC_PREFIX_QUERIES}{label}", "values": " ".join(qs)},
            {"series": f"{D.METRIC_PREFIX_HITS}{label}", "values": " ".join(hs)},
        ]

    steady = [6000] * 61  # 100 tokens/s
    collapse_hits = [5400] * 35 + [300] * 26
    dropped = [6000] * 35 + [600] * 26
    dropped_hits = [5400] * 35 + [30] * 26
    fire_at = 35 + 5 + for_min + 2  # rate window catches up (5m), then `for`
    (rule,) = routing_alert_rules(cfg)
    labels = {"severity": D.SEVERITY_WARNING, D.LABEL_VLLM_MODEL_NAME: model}
    value = 300 / 6000  # the collapsed hit rate once the 5m window holds only collapsed minutes
    firing = {
        "exp_labels": labels,
        "exp_annotations": {
            "summary": expand_template(rule.summary, labels, value),
            "description": expand_template(rule.description, labels, value),
            "runbook_url": rule.runbook_url(cfg.monitoring.runbook_base_url),
        },
    }
    doc = {
        "rule_files": [rules_file],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series(steady, collapse_hits),
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": PREFIX_HIT_RATE_COLLAPSE, "exp_alerts": []},
                    {"eval_time": f"{fire_at}m", "alertname": PREFIX_HIT_RATE_COLLAPSE, "exp_alerts": [firing]},
                ],
            },
            {
                "interval": "1m",
                "input_series": series(dropped, dropped_hits),
                "alert_rule_test": [
                    {"eval_time": f"{fire_at}m", "alertname": PREFIX_HIT_RATE_COLLAPSE, "exp_alerts": []}
                ],
            },
            {
                "interval": "1m",
                "input_series": series(steady, [5400] * 61),
                "alert_rule_test": [
                    {"eval_time": f"{fire_at}m", "alertname": PREFIX_HIT_RATE_COLLAPSE, "exp_alerts": []}
                ],
            },
        ],
    }
    return _dump(doc)


def routing_panel_queries() -> list[tuple[str, str]]:
    """(expr, legend) of the dashboard row: per-replica load as the router sees it, running requests per
    vLLM replica, and the prefix-cache hit rate per model."""
    return [
        (
            f"sum by ({LABEL_ROUTER_WORKER}) (rate({ROUTER_METRIC_PROCESSED}[{D.ALERT_RATE_WINDOW}]))",
            f"{{{{{LABEL_ROUTER_WORKER}}}}}",
        ),
        (f"sum by (instance) ({D.METRIC_REQUESTS_RUNNING})", "{{instance}}"),
        (hit_rate_expr(), f"{{{{{D.LABEL_VLLM_MODEL_NAME}}}}}"),
    ]


__all__ = [
    "PREFIX_HIT_RATE_COLLAPSE",
    "collapse_expr",
    "hit_rate_expr",
    "render_routing_alert_rules",
    "render_routing_promtool_tests",
    "router_scrape_targets",
    "routing_alert_rules",
    "routing_panel_queries",
]
