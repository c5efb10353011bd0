"""Monitoring renderers: prometheus.yml, alert rules, promtool tests, Grafana provisioning.

Pure-function tests: thresholds flow from the config, only metric names that vLLM 0.33 and
the DCGM exporter really expose, every alert documented in docs/runbooks.md, no password
literal in Grafana's environment. The real tools run in tests/artifacts.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes import fake_vllm
from vllm_stack import defaults as D
from vllm_stack.endpoints import ScrapeTarget
from vllm_stack.loader import parse_config
from vllm_stack.render import alerts as A
from vllm_stack.render.alerts import ALERT_NAMES, render_alert_rules, render_promtool_tests
from vllm_stack.render.grafana import (
    grafana_ini_overrides,
    metric_names,
    metric_names_used,
    panel_and_alert_queries,
    render_grafana,
)
from vllm_stack.render.prometheus import render_prometheus_yml

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RENDER_SOURCES = [ROOT / "vllm_stack" / "render" / f for f in ("alerts.py", "grafana.py", "prometheus.py")]

# What vLLM 0.33 exposes on /metrics (shared/notes/vllm-facts.md; histograms as their
# _bucket/_sum/_count series) plus the NVIDIA DCGM exporter fields and Prometheus' own `up`.
VLLM_033_METRICS = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:num_preemptions_total",
    "vllm:request_success_total",
    *(
        f"{h}{suffix}"
        for h in (
            "vllm:time_to_first_token_seconds",
            "vllm:inter_token_latency_seconds",
            "vllm:e2e_request_latency_seconds",
            "vllm:request_queue_time_seconds",
        )
        for suffix in ("_bucket", "_sum", "_count")
    ),
}
DCGM_METRICS = {
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_XID_ERRORS",
}
#: The front's signals (render/front_monitoring.py): nginx-prometheus-exporter's, blackbox_exporter's, and
#: vLLM's FastAPI instrumentation (tests/e2e/test_front_observed_e2e.py reads the first two from the real tools).
FRONT_METRICS = {
    D.METRIC_NGINX_UP,
    D.METRIC_NGINX_REQUESTS,
    D.METRIC_PROBE_SUCCESS,
    D.METRIC_SSL_EARLIEST_EXPIRY,
    D.METRIC_HTTP_REQUESTS,
}
ALLOWED_METRICS = VLLM_033_METRICS | DCGM_METRICS | FRONT_METRICS | {"up"}
REMOVED_NAMES = ("gpu_cache_usage_perc", "time_per_output_token", "avg_generation_throughput")

HOST = {"name": "gpu-1", "address": "10.0.0.10", "gpu": "L40S"}
MODEL = {"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}


def make_cfg(**monitoring: Any):
    alerts = monitoring.pop("alerts", {})
    return parse_config(
        {
            "environment": "dev",
            "platform": "docker",
            "hosts": [HOST],
            "models": [MODEL],
            "monitoring": {**monitoring, "alerts": alerts},
        }
    )


def rules_by_name(text: str) -> dict[str, dict]:
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == [D.ALERT_GROUP]
    return {r["alert"]: r for r in doc["groups"][0]["rules"]}


def fake_metric_names() -> set[str]:
    """Sample names the fake vLLM (written to vLLM 0.33's registry) puts on /metrics."""
    text = fake_vllm.Metrics("m", 4096).render(running=1, waiting=2, kv_usage=0.5)
    return {re.match(r"[^{ ]+", line).group(0) for line in text.splitlines() if line and not line.startswith("#")}


TARGETS = [
    ScrapeTarget(D.JOB_VLLM, "10.0.0.10", 8000, (("model", "llama-8b"), ("capacity", "onDemand"), ("host", "gpu-1"))),
    ScrapeTarget(D.JOB_VLLM, "10.0.0.11", 8000, (("model", "llama-8b"), ("capacity", "spot"), ("host", "gpu-2"))),
    ScrapeTarget(D.JOB_VLLM, "10.0.0.10", 8001, (("model", "llama-8b"), ("capacity", "onDemand"), ("host", "gpu-1"))),
    ScrapeTarget(D.JOB_DCGM, "10.0.0.10", D.DCGM_EXPORTER_PORT, (("host", "gpu-1"),)),
    ScrapeTarget(D.JOB_DCGM, "10.0.0.11", D.DCGM_EXPORTER_PORT, (("host", "gpu-2"),)),
    ScrapeTarget(D.JOB_NGINX, "10.0.0.10", 9113, (("host", "gpu-1"),)),
]


# --------------------------------------------------------------------------- alert rules


THRESHOLD_CASES = [
    # (config key, new value, alert, the expression must end with)
    ("queueWaiting", 37, A.QUEUE_DEPTH, "vllm:num_requests_waiting > 37"),
    ("kvCacheUsage", 0.85, A.KV_CACHE_PRESSURE, "vllm:kv_cache_usage_perc > 0.85"),
    ("ttftP95Seconds", 1.5, A.HIGH_TTFT_P95, "[5m]))) > 1.5"),
    ("preemptions5m", 12, A.PREEMPTIONS, "increase(vllm:num_preemptions_total[5m]) > 12"),
    ("gpuTempCelsius", 83, A.GPU_TEMPERATURE_HIGH, "DCGM_FI_DEV_GPU_TEMP > 83"),
    ("vramUsage", 0.95, A.GPU_VRAM_HIGH, "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.95"),
    ("errorRate", 0.02, A.ERROR_RATE, "[5m])) > 0.02"),
]


@pytest.mark.parametrize("key,value,alert,expr_tail", THRESHOLD_CASES, ids=[c[0] for c in THRESHOLD_CASES])
def test_threshold_flows_from_config(key, value, alert, expr_tail):
    default = rules_by_name(render_alert_rules(make_cfg()))[alert]
    changed = rules_by_name(render_alert_rules(make_cfg(alerts={key: value})))[alert]
    assert changed["expr"].endswith(expr_tail), changed["expr"]
    assert changed["expr"] != default["expr"]
    # the description quotes the configured threshold, not the default
    assert f"threshold {A.num(value)}" in changed["annotations"]["description"]


def test_default_expressions_match_vllm_facts():
    r = rules_by_name(render_alert_rules(make_cfg()))
    assert r[A.QUEUE_DEPTH]["expr"] == f"vllm:num_requests_waiting > {D.ALERT_QUEUE_WAITING}"
    assert r[A.KV_CACHE_PRESSURE]["expr"] == "vllm:kv_cache_usage_perc > 0.9"
    assert r[A.HIGH_TTFT_P95]["expr"] == (
        "histogram_quantile(0.95, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket[5m]))) > 2"
    )
    assert r[A.PREEMPTIONS]["expr"] == "increase(vllm:num_preemptions_total[5m]) > 5"
    assert r[A.BACKEND_DOWN]["expr"] == 'up{job="vllm"} == 0'
    assert r[A.NO_HEALTHY_BACKEND]["expr"] == (
        'sum by (model) (up{job="vllm"}) == 0 or sum by (model) (absent(up{job="vllm",model="llama-8b"}))'
    )
    assert r[A.GPU_TEMPERATURE_HIGH]["expr"] == "DCGM_FI_DEV_GPU_TEMP > 80"
    assert r[A.ERROR_RATE]["expr"] == (
        'sum by (model_name) (rate(vllm:request_success_total{finished_reason=~"abort|error"}[5m])) / '
        "sum by (model_name) (rate(vllm:request_success_total[5m])) > 0.05"
    )
    severities = {name: rule["labels"]["severity"] for name, rule in r.items()}
    assert severities[A.HIGH_TTFT_P95] == severities[A.BACKEND_DOWN] == severities[A.NO_HEALTHY_BACKEND] == "critical"
    assert severities[A.QUEUE_DEPTH] == severities[A.KV_CACHE_PRESSURE] == "warning"


def test_no_healthy_backend_covers_every_configured_model():
    cfg = parse_config(
        {
            "environment": "prod",
            "platform": "kubernetes",
            "models": [
                {
                    "name": "llama-70b",
                    "model": "meta-llama/Llama-3.1-70B-Instruct",
                    "gpu": "H100-SXM5-80GB",
                    "quantization": "fp8",
                },
                {"name": "mistral-7b", "model": "mistralai/Mistral-7B-Instruct-v0.3", "gpu": "L40S"},
            ],
        }
    )
    expr = rules_by_name(render_alert_rules(cfg))[A.NO_HEALTHY_BACKEND]["expr"]
    arms = expr.split(" or ")
    assert arms[0] == 'sum by (model) (up{job="vllm"}) == 0'
    assert arms[1:] == [f'sum by (model) (absent(up{{job="vllm",model="{m}"}}))' for m in ("llama-70b", "mistral-7b")]


def test_for_durations_flow_from_config_and_override():
    cfg = make_cfg(alerts={"queueFor": "7m", "backendDownFor": "30s"})
    r = rules_by_name(render_alert_rules(cfg))
    assert r[A.QUEUE_DEPTH]["for"] == "7m"
    assert r[A.BACKEND_DOWN]["for"] == r[A.NO_HEALTHY_BACKEND]["for"] == "30s"
    assert r[A.KV_CACHE_PRESSURE]["for"] == D.ALERT_KV_CACHE_FOR
    fast = rules_by_name(render_alert_rules(cfg, for_override="5s"))
    assert {rule["for"] for rule in fast.values()} == {"5s"}
    assert [rule["expr"] for rule in fast.values()] == [rule["expr"] for rule in r.values()]


def test_error_rate_finish_reasons_exist_in_vllm():
    # vLLM 0.33 FINISH_REASON_STRINGS = (stop, length, abort, error, repetition); the fake emits stop/length/abort
    assert set(D.FAILED_FINISH_REASONS) <= {"stop", "length", "abort", "error", "repetition"}
    assert "abort" in fake_vllm._FINISH_REASONS and "abort" in D.FAILED_FINISH_REASONS
    assert not {"stop", "length"} & set(D.FAILED_FINISH_REASONS)


def test_every_alert_has_severity_summary_and_runbook_anchor():
    rules = rules_by_name(render_alert_rules(make_cfg()))
    assert tuple(rules) == ALERT_NAMES
    text = RUNBOOKS.read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    # GitHub heading slugs as well, so the link works whichever way the doc is viewed
    slugs = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in (D.SEVERITY_WARNING, D.SEVERITY_CRITICAL), name
        ann = rule["annotations"]
        assert ann["summary"].strip() and ann["description"].strip(), name
        assert "{{ $labels." in ann["description"], name
        doc, _, frag = ann["runbook_url"].partition("#")
        # absolute (notifications leave the repository): the configured base, which ends in the doc's path
        assert doc == D.RUNBOOK_BASE_URL and doc.startswith("https://") and doc.endswith("/" + D.RUNBOOKS_DOC)
        assert (ROOT / D.RUNBOOKS_DOC).is_file()
        assert frag in anchors, f'{name}: no <a id="{frag}"> in {D.RUNBOOKS_DOC}'
        assert frag in slugs, f"{name}: no heading with slug {frag}"
    for name in ("VllmQueueDepth", "VllmKvCachePressure", "VllmHighTtftP95", "VllmErrorRate"):
        assert "$value" in rules[name]["annotations"]["description"]


def test_runbook_base_url_is_configurable():
    rules = rules_by_name(render_alert_rules(make_cfg(runbookBaseUrl="https://ops.example.org/rb.md")))
    assert rules["VllmQueueDepth"]["annotations"]["runbook_url"] == "https://ops.example.org/rb.md#vllmqueuedepth"


def test_runbook_sections_have_checks_fixes_and_paging():
    text = RUNBOOKS.read_text()
    parts = re.split(r'<a id="([^"]+)"></a>', text)
    sections = dict(zip(parts[1::2], parts[2::2]))
    from vllm_stack.render.cost_rules import COST_ALERT
    from vllm_stack.render.routing_monitoring import PREFIX_HIT_RATE_COLLAPSE as PREFIX_HIT_ALERT

    # every alert the stack can deploy: the vllm group, the routing group, the cost group
    assert set(sections) == {A.anchor(n) for n in (*ALERT_NAMES, PREFIX_HIT_ALERT, COST_ALERT)}
    for anchor, body in sections.items():
        assert "**Meaning.**" in body and "**First checks.**" in body, anchor
        assert "**Page" in body, anchor
        assert re.search(r"curl|nvidia-smi|journalctl", body), anchor
    assert "gpu_cache_usage_perc" in sections["vllmkvcachepressure"]  # documents the rename
    assert "--kv-cache-dtype fp8" in sections["vllmkvcachepressure"]


def test_runbook_url_base_is_configurable():
    r = rules_by_name(render_alert_rules(make_cfg(), runbook_base="https://runbooks.example/vllm.md"))
    assert r[A.BACKEND_DOWN]["annotations"]["runbook_url"] == "https://runbooks.example/vllm.md#vllmbackenddown"


def test_rules_use_only_constants_not_removed_names():
    cfg = make_cfg()
    texts = [
        render_alert_rules(cfg),
        render_promtool_tests(cfg, "rules.yml"),
        render_prometheus_yml(cfg, TARGETS, rule_files=["rules.yml"]),
        *render_grafana(cfg).values(),
    ]
    texts += [p.read_text() for p in RENDER_SOURCES]
    for text in texts:
        for bad in REMOVED_NAMES:
            assert bad not in text


def test_renderer_sources_do_not_retype_metric_literals():
    # metric names live in defaults.py; the renderers import them
    for path in RENDER_SOURCES:
        src = path.read_text()
        assert not re.search(r'"vllm:[a-z_]+', src), path
        assert not re.search(r'"DCGM_FI_', src), path


# --------------------------------------------------------------------------- promtool tests (structure)


def test_promtool_tests_cover_every_alert_both_ways():
    doc = yaml.safe_load(render_promtool_tests(make_cfg(), "vllm-alerts.yml"))
    assert doc["rule_files"] == ["vllm-alerts.yml"]
    firing, quiet = {}, {}
    for group in doc["tests"]:
        for check in group["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).setdefault(check["alertname"], []).append(check)
    assert set(firing) == set(ALERT_NAMES)
    assert set(quiet) == set(ALERT_NAMES)
    for name in ALERT_NAMES:
        for exp in (e for c in firing[name] for e in c["exp_alerts"]):
            assert exp["exp_annotations"]["runbook_url"].endswith(f"#{A.anchor(name)}")
            assert "{{" not in exp["exp_annotations"]["description"]


def _series_values(doc: dict, test_name_prefix: str) -> list[str]:
    group = next(g for g in doc["tests"] if g["name"].startswith(test_name_prefix))
    return [s["values"] for s in group["input_series"]]


def test_promtool_inputs_follow_the_thresholds():
    d1 = yaml.safe_load(render_promtool_tests(make_cfg(), "r.yml"))
    d2 = yaml.safe_load(render_promtool_tests(make_cfg(alerts={"queueWaiting": 40, "gpuTempCelsius": 70}), "r.yml"))
    assert _series_values(d1, "VllmQueueDepth stays quiet") != _series_values(d2, "VllmQueueDepth stays quiet")
    assert _series_values(d2, "VllmQueueDepth stays quiet")[0].startswith("40x")
    assert _series_values(d2, "VllmQueueDepth fires")[0].startswith("50x")
    assert _series_values(d2, "GpuTemperatureHigh stays quiet")[0].startswith("70x")
    assert _series_values(d2, "GpuTemperatureHigh fires")[0].startswith("75x")


def test_promtool_eval_times_follow_for():
    doc = yaml.safe_load(render_promtool_tests(make_cfg(alerts={"queueFor": "4m"}), "r.yml"))
    group = next(g for g in doc["tests"] if g["name"].startswith("VllmQueueDepth fires"))
    times = [(c["eval_time"], bool(c["exp_alerts"])) for c in group["alert_rule_test"]]
    assert times == [("3m", False), ("5m", True)]


def test_expand_template_matches_prometheus_forms():
    out = A.expand_template('{{ $labels.instance }} at {{ printf "%.2f" $value }}', {"instance": "h:1"}, 0.951)
    assert out == "h:1 at 0.95"
    with pytest.raises(ValueError):
        A.expand_template("{{ $value | humanize }}", {}, 1.0)


# --------------------------------------------------------------------------- prometheus.yml


def test_prometheus_yml_interval_jobs_and_grouping():
    cfg = make_cfg(scrapeIntervalSeconds=15, alertmanager={"external": "am.internal:9093"})
    doc = yaml.safe_load(render_prometheus_yml(cfg, TARGETS, rule_files=["/etc/vllm-monitoring/vllm-alerts.yml"]))
    assert doc["global"]["scrape_interval"] == doc["global"]["evaluation_interval"] == "15s"
    assert doc["rule_files"] == ["/etc/vllm-monitoring/vllm-alerts.yml"]
    assert [j["job_name"] for j in doc["scrape_configs"]] == ["vllm", "dcgm", "nginx"]
    vllm = doc["scrape_configs"][0]
    assert vllm["metrics_path"] == "/metrics"
    groups = {tuple(sorted(g["labels"].items())): g["targets"] for g in vllm["static_configs"]}
    assert groups[(("capacity", "onDemand"), ("host", "gpu-1"), ("model", "llama-8b"))] == [
        "10.0.0.10:8000",
        "10.0.0.10:8001",
    ]
    assert groups[(("capacity", "spot"), ("host", "gpu-2"), ("model", "llama-8b"))] == ["10.0.0.11:8000"]
    dcgm_targets = sorted(t for g in doc["scrape_configs"][1]["static_configs"] for t in g["targets"])
    assert dcgm_targets == ["10.0.0.10:9400", "10.0.0.11:9400"]
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["am.internal:9093"]


def test_prometheus_yml_alertmanager_optional_and_test_profile():
    cfg = make_cfg(alertmanager={"external": "am.internal:9093"})
    assert "alerting" not in yaml.safe_load(render_prometheus_yml(cfg, TARGETS, rule_files=[], alertmanager=None))
    off = make_cfg(alertmanager={"enabled": False})
    assert "alerting" not in yaml.safe_load(render_prometheus_yml(off, TARGETS, rule_files=[]))
    # by default the stack deploys its own, on the monitoring host's loopback beside Prometheus
    own = yaml.safe_load(render_prometheus_yml(make_cfg(), TARGETS, rule_files=[]))
    assert own["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    fast = yaml.safe_load(render_prometheus_yml(cfg, TARGETS, rule_files=[], scrape_interval_override="1s"))
    assert fast["global"]["scrape_interval"] == fast["global"]["evaluation_interval"] == "1s"


def test_prometheus_yml_mixed_metrics_paths_and_determinism():
    targets = TARGETS + [ScrapeTarget(D.JOB_NGINX, "10.0.0.11", 9113, (("host", "gpu-2"),), metrics_path="/stats")]
    a = render_prometheus_yml(make_cfg(), targets, rule_files=["r.yml"])
    b = render_prometheus_yml(make_cfg(), list(reversed(targets)), rule_files=["r.yml"])
    assert a == b
    nginx = yaml.safe_load(a)["scrape_configs"][2]
    paths = {
        g["labels"]["host"]: g["labels"].get("__metrics_path__", nginx["metrics_path"]) for g in nginx["static_configs"]
    }
    assert paths == {"gpu-1": "/metrics", "gpu-2": "/stats"}


# --------------------------------------------------------------------------- grafana


def _dashboard(cfg) -> dict:
    return json.loads(render_grafana(cfg)["dashboards/vllm.json"])


def _targets(dash: dict) -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dash["panels"] if p["type"] != "row"}


def test_dashboard_shape_and_variable():
    dash = _dashboard(make_cfg())
    assert dash["uid"] == D.GRAFANA_DASHBOARD_UID == _dashboard(make_cfg(scrapeIntervalSeconds=30))["uid"]
    assert dash["schemaVersion"] == D.GRAFANA_SCHEMA_VERSION
    (var,) = dash["templating"]["list"]
    assert var["name"] == "model_name"
    assert var["query"] == "label_values(vllm:num_requests_running, model_name)"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # no two panels overlap on the grid
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24


def test_dashboard_has_the_required_panels():
    t = _targets(_dashboard(make_cfg()))
    joined = {title: " ".join(exprs) for title, exprs in t.items()}
    assert "rate(vllm:request_success_total{" in joined["Request rate"]
    assert "vllm:num_requests_waiting" in joined["Requests waiting"]
    assert "vllm:num_requests_running" in joined["Requests running"]
    assert "vllm:kv_cache_usage_perc" in joined["KV cache usage"]
    for title, hist in (
        ("Time to first token", "vllm:time_to_first_token_seconds_bucket"),
        ("Inter-token latency", "vllm:inter_token_latency_seconds_bucket"),
        ("End-to-end request latency", "vllm:e2e_request_latency_seconds_bucket"),
    ):
        assert [e.split(",")[0] for e in t[title]] == ["histogram_quantile(0.5", "histogram_quantile(0.95"], title
        assert all(hist in e and 'model_name=~"$model_name"' in e for e in t[title]), title
    assert "rate(vllm:generation_tokens_total{" in joined["Tokens per second"]
    assert t["GPU temperature"] == ["DCGM_FI_DEV_GPU_TEMP"]
    assert t["GPU utilization"] == ["DCGM_FI_DEV_GPU_UTIL"]
    assert t["VRAM used"] == ["DCGM_FI_DEV_FB_USED"]


def test_dashboard_threshold_lines_follow_config():
    def steps(dash, title):
        p = next(p for p in dash["panels"] if p.get("title") == title)
        return [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]

    dash = _dashboard(make_cfg(alerts={"queueWaiting": 33, "ttftP95Seconds": 1.25}))
    assert steps(dash, "Requests waiting") == [None, 33]
    assert steps(dash, "Time to first token") == [None, 1.25]
    assert steps(dash, "GPU temperature") == [None, D.ALERT_GPU_TEMP_C]


def test_queries_only_use_real_metric_names():
    from vllm_stack.render.routing_monitoring import render_rules_file

    cfg = make_cfg()
    # the stack's own recording rules (vllm_stack:*) count only if the rules file it deploys records them
    recorded = {
        r["record"] for g in yaml.safe_load(render_rules_file(cfg))["groups"] for r in g["rules"] if "record" in r
    }
    recorded.add(
        D.REC_PLAN_COST_PER_MTOK
    )  # recorded when load.tokensPerSecond is set (tests/artifacts/test_cost_rules)
    used = metric_names_used(cfg) - recorded
    assert used <= ALLOWED_METRICS, used - ALLOWED_METRICS
    # and the vLLM ones are what a vLLM-0.33-shaped /metrics really serves
    served = fake_metric_names()
    vllm_used = {m for m in used if m.startswith("vllm:")}
    assert vllm_used <= served, vllm_used - served
    assert VLLM_033_METRICS <= served, VLLM_033_METRICS - served
    # a sanity check that the allow-list can fail
    assert "vllm:gpu_cache_usage_perc" not in ALLOWED_METRICS


def test_panel_and_alert_queries_are_plain_promql():
    queries = dict(panel_and_alert_queries(make_cfg()))
    assert all("$" not in q for q in queries.values())
    assert {f"alert {n}" for n in ALERT_NAMES} <= set(queries)
    assert queries["variable model_name"] == "vllm:num_requests_running"
    assert any(k.startswith("panel Time to first token") for k in queries)


def test_metric_name_extraction():
    assert metric_names(
        "histogram_quantile(0.95, sum by (le, model_name) "
        '(rate(vllm:time_to_first_token_seconds_bucket{model_name=~"a|b"}[5m]))) > 2'
    ) == {"vllm:time_to_first_token_seconds_bucket"}
    assert metric_names("DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.9") == {
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
    }
    assert metric_names('sum by (model) (up{job="vllm"}) == 0 and on (model) foo_total offset 5m') == {
        "up",
        "foo_total",
    }


def test_grafana_provisioning_files():
    files = render_grafana(make_cfg(), prometheus_url="http://127.0.0.1:19090")
    assert set(files) == {"datasources/prometheus.yaml", "dashboards/provider.yaml", "dashboards/vllm.json"}
    (ds,) = yaml.safe_load(files["datasources/prometheus.yaml"])["datasources"]
    assert ds["url"] == "http://127.0.0.1:19090" and ds["isDefault"] is True
    assert ds["uid"] == D.GRAFANA_DATASOURCE_UID and ds["type"] == "prometheus"
    (prov,) = yaml.safe_load(files["dashboards/provider.yaml"])["providers"]
    assert prov["options"]["path"] == f"{D.GRAFANA_PROVISIONING_DIR}/dashboards"
    dash = json.loads(files["dashboards/vllm.json"])
    uids = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    assert uids == {D.GRAFANA_DATASOURCE_UID}
    assert render_grafana(make_cfg()) == render_grafana(make_cfg())


def test_grafana_env_no_anonymous_no_password_literal():
    env = grafana_ini_overrides(make_cfg())
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_AUTH_BASIC_ENABLED"] in ("true", "false")
    assert env["GF_SECURITY_ADMIN_USER"] == D.GRAFANA_ADMIN_USER
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == D.GRAFANA_ADMIN_PASSWORD_FILE
    assert D.GRAFANA_ADMIN_PASSWORD_FILE.startswith("/run/secrets/")
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert not [k for k in env if re.search(r"PASSWORD|SECRET|TOKEN|KEY", k) and not k.endswith("__FILE")]
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_renderers_do_not_mutate_config():
    cfg = make_cfg()
    before = copy.deepcopy(cfg.model_dump())
    render_alert_rules(cfg, for_override="5s")
    render_promtool_tests(cfg, "r.yml")
    render_grafana(cfg)
    assert cfg.model_dump() == before
