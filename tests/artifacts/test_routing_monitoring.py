"""The routing tier's alert (own group `vllm-routing`) through promtool: the rules check, and
`promtool test rules` cases (a collapse with steady traffic fires; a collapse with a traffic drop
and a steady hit rate stay quiet); a mutated threshold proves the cases bite."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support import tools
from tests.unit.test_routing import host_cfg
from vllm_stack import defaults as D
from vllm_stack.deployment import build
from vllm_stack.render import routing_monitoring as RM

RULES = "routing-alerts.yml"


def _write(tmp: Path, rules_text: str) -> Path:
    (tmp / RULES).write_text(rules_text)
    tests = tmp / "routing-tests.yml"
    tests.write_text(RM.render_routing_promtool_tests(host_cfg(), RULES))
    return tests


def test_routing_rules_pass_promtool_check(tmp_path: Path):
    tools.require("promtool")
    (tmp_path / RULES).write_text(RM.render_routing_alert_rules(host_cfg()))
    res = tools.promtool_check_rules(tmp_path / RULES)
    assert res.ok and "SUCCESS: 1 rules found" in res.output, str(res)


def test_routing_promtool_cases_pass(tmp_path: Path):
    tools.require("promtool")
    res = tools.promtool_test_rules(_write(tmp_path, RM.render_routing_alert_rules(host_cfg())))
    assert res.ok and "SUCCESS" in res.output, str(res)


def test_routing_promtool_cases_bite(tmp_path: Path):
    tools.require("promtool")
    rules = RM.render_routing_alert_rules(host_cfg())
    broken = rules.replace(f"< {D.ALERT_PREFIX_HIT_RATE}", "< 0.01")  # never fires at 0.05
    assert broken != rules
    assert not tools.promtool_test_rules(_write(tmp_path, broken)).ok
    no_steady = rules.replace(f" >= {D.ALERT_PREFIX_STEADY_SHARE} *", " >= 0 *")  # fires on a traffic drop
    assert no_steady != rules
    assert not tools.promtool_test_rules(_write(tmp_path, no_steady)).ok


def test_group_is_its_own_and_the_alert_has_a_runbook():
    cfg = host_cfg()
    doc = yaml.safe_load(RM.render_routing_alert_rules(cfg))
    (group,) = doc["groups"]
    assert group["name"] == "vllm-routing" != D.ALERT_GROUP
    (rule,) = group["rules"]
    assert rule["for"] == D.ALERT_PREFIX_HIT_FOR
    # absolute: monitoring.runbookBaseUrl + the section's anchor
    assert rule["annotations"]["runbook_url"] == f"{cfg.monitoring.runbook_base_url}#vllmprefixcachehitratecollapse"
    assert rule["annotations"]["runbook_url"].startswith("https://")
    assert "## VllmPrefixCacheHitRateCollapse" in (Path(__file__).resolve().parents[2] / D.RUNBOOKS_DOC).read_text()


def test_router_scrape_targets():
    (t,) = RM.router_scrape_targets(build(host_cfg()))
    assert (t.job, t.address, t.port) == ("vllm-router", "127.0.0.1", 29000)
    assert dict(t.labels) == {"model": "llama"}


def test_dashboard_queries_show_load_per_replica_and_hit_rate():
    q = [e for e, _ in RM.routing_panel_queries()]
    assert q[0] == "sum by (worker) (rate(vllm_router_processed_requests_total[5m]))"
    assert q[2] == (
        "sum by (model_name) (rate(vllm:prefix_cache_hits_total[5m])) / "
        "sum by (model_name) (rate(vllm:prefix_cache_queries_total[5m]))"
    )


def test_routed_dashboard_type_checks(tmp_path: Path):
    import json

    from vllm_stack.render.grafana import render_grafana

    tools.require("grafana_check")
    files = render_grafana(host_cfg())
    dash = json.loads(files["dashboards/vllm.json"])
    titles = [p["title"] for p in dash["panels"]]
    start = titles.index("Routing")
    assert titles[start : start + 4] == [
        "Routing",
        "Requests per replica (router)",
        "Running requests per replica",
        "Prefix-cache hit rate",
    ]
    hit = dash["panels"][start + 3]
    assert hit["targets"][0]["expr"] == RM.hit_rate_expr() and hit["fieldConfig"]["defaults"]["max"] == 1
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(dash, indent=2))
    res = tools.grafana_check(path)
    assert res.ok, str(res)


def test_routed_prometheus_config_and_rules_pass_promtool(tmp_path: Path):
    import yaml

    from vllm_stack.render.prometheus import render_prometheus_yml

    tools.require("promtool")
    cfg = host_cfg()
    text = RM.render_rules_file(cfg)
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == [D.ALERT_GROUP, D.ROUTING_ALERT_GROUP, D.COST_RULE_GROUP]
    (tmp_path / RULES).write_text(text)
    prom = tmp_path / "prometheus.yml"
    prom.write_text(render_prometheus_yml(cfg, list(build(cfg).scrape_targets()), rule_files=[RULES]))
    res = tools.promtool_check_config(prom)
    assert res.ok and f"SUCCESS: {sum(len(g['rules']) for g in doc['groups'])} rules found" in res.output, str(res)
    assert "vllm-router" in prom.read_text()
