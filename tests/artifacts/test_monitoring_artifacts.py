"""Rendered monitoring artifacts through the real tools.

promtool (Debian prometheus 2.42) checks prometheus.yml and the rules and runs the
generated `promtool test rules` cases; mutated rule files prove those cases bite; the
Grafana dashboard type-checks against @grafana/schema; yamllint reads every YAML file.
Each tool either runs or the test skips locally / fails under CI=true (tools.require).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import tools
from vllm_stack import defaults as D
from vllm_stack.config import StackConfig
from vllm_stack.endpoints import ScrapeTarget
from vllm_stack.loader import parse_config
from vllm_stack.render import alerts as A
from vllm_stack.render.alerts import render_alert_rules, render_promtool_tests
from vllm_stack.render.grafana import render_grafana
from vllm_stack.render.prometheus import render_prometheus_yml

RULES = "vllm-alerts.yml"
TESTS = "vllm-alerts.test.yml"

CONFIGS: dict[str, dict[str, Any]] = {
    # like Pulumi.dev.yaml: one docker host, relaxed queue/TTFT alerts
    "dev": {
        "environment": "dev",
        "platform": "docker",
        "hosts": [{"name": "gpu-dev-1", "address": "10.0.0.10", "gpu": "L40S"}],
        "models": [{"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S", "maxNumSeqs": 64}],
        "monitoring": {
            "scrapeIntervalSeconds": 10,
            "alerts": {"queueWaiting": 50, "queueFor": "5m", "ttftP95Seconds": 5, "ttftFor": "10m"},
        },
    },
    # like Pulumi.prod.yaml: kubernetes, two models, seed thresholds, an Alertmanager
    "prod": {
        "environment": "prod",
        "platform": "kubernetes",
        "models": [
            {
                "name": "llama-70b",
                "model": "meta-llama/Llama-3.1-70B-Instruct",
                "gpu": "H100-SXM5-80GB",
                "quantization": "fp8",
                "kvCacheDtype": "fp8",
                "gpuMemoryUtilization": 0.92,
                "pool": {"onDemand": 1, "spot": 1, "spotMax": 4},
            },
            {
                "name": "mistral-7b",
                "model": "mistralai/Mistral-7B-Instruct-v0.3",
                "gpu": "L40S",
                "pool": {"onDemand": 2},
            },
        ],
        "monitoring": {"scrapeIntervalSeconds": 15, "alertmanager": {"external": "alertmanager.monitoring.svc:9093"}},
    },
    # awkward numbers: thresholds with 3 decimals, sub-minute `for`, zero preemptions allowed
    "odd": {
        "environment": "dev",
        "platform": "docker",
        "hosts": [{"name": "gpu-1", "address": "10.0.0.20", "gpu": "H100-SXM5-80GB"}],
        "models": [{"name": "chat", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "H100-SXM5-80GB"}],
        "monitoring": {
            "alerts": {
                "queueWaiting": 7,
                "queueFor": "30s",
                "kvCacheUsage": 0.925,
                "ttftP95Seconds": 0.35,
                "ttftFor": "45s",
                "preemptions5m": 0,
                "gpuTempCelsius": 77.5,
                "vramUsage": 0.875,
                "errorRate": 0.01,
                "backendDownFor": "15s",
            }
        },
    },
}


def targets_for(cfg: StackConfig) -> list[ScrapeTarget]:
    out = []
    if cfg.platform == "docker":
        for i, m in enumerate(cfg.models):
            for h in cfg.hosts:
                out.append(
                    ScrapeTarget(
                        D.JOB_VLLM,
                        h.address,
                        D.VLLM_PORT + i,
                        (
                            (D.SCRAPE_LABEL_MODEL, m.name),
                            (D.SCRAPE_LABEL_CAPACITY, h.capacity),
                            (D.SCRAPE_LABEL_HOST, h.name),
                        ),
                    )
                )
        for h in cfg.hosts:
            out.append(ScrapeTarget(D.JOB_DCGM, h.address, D.DCGM_EXPORTER_PORT, ((D.SCRAPE_LABEL_HOST, h.name),)))
    else:
        for m in cfg.models:
            out.append(
                ScrapeTarget(
                    D.JOB_VLLM,
                    f"{m.name}.{cfg.kubernetes.namespace}.svc",
                    D.VLLM_PORT,
                    ((D.SCRAPE_LABEL_MODEL, m.name),),
                )
            )
        out.append(ScrapeTarget(D.JOB_DCGM, f"dcgm-exporter.{cfg.kubernetes.namespace}.svc", D.DCGM_EXPORTER_PORT))
    return out


def write_artifacts(cfg: StackConfig, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"prometheus": out / "prometheus.yml", "rules": out / RULES, "tests": out / TESTS}
    # rule_files relative to prometheus.yml: promtool check config resolves them and checks them too
    paths["prometheus"].write_text(render_prometheus_yml(cfg, targets_for(cfg), rule_files=[RULES]))
    paths["rules"].write_text(render_alert_rules(cfg))
    paths["tests"].write_text(render_promtool_tests(cfg, RULES))
    for rel, text in render_grafana(cfg).items():
        p = out / "grafana" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        paths[rel] = p
    return paths


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def rendered(request, tmp_path_factory) -> tuple[StackConfig, dict[str, Path]]:
    cfg = parse_config(CONFIGS[request.param])
    return cfg, write_artifacts(cfg, tmp_path_factory.mktemp(f"monitoring-{request.param}"))


# --------------------------------------------------------------------------- promtool


# promtool run -> (its wrapper, the rendered file it reads, what it must print)
PROMTOOL_RUNS = {
    "check_config": (tools.promtool_check_config, "prometheus", "SUCCESS: 17 rules found"),  # it read our rules too
    "check_rules": (tools.promtool_check_rules, "rules", "SUCCESS: 17 rules found"),
    "test_rules": (tools.promtool_test_rules, "tests", "SUCCESS"),
}


@pytest.mark.parametrize("run", list(PROMTOOL_RUNS))
def test_promtool(rendered, run):
    tools.require("promtool")
    promtool, artifact, expected = PROMTOOL_RUNS[run]
    _, paths = rendered
    res = promtool(paths[artifact])
    assert res.ok, str(res)
    assert expected in res.output, res.output


def test_promtool_check_config_fails_on_missing_rule_file(tmp_path):
    """Negative control: check config does read rule_files."""
    tools.require("promtool")
    cfg = parse_config(CONFIGS["dev"])
    p = tmp_path / "prometheus.yml"
    p.write_text(render_prometheus_yml(cfg, targets_for(cfg), rule_files=["nowhere.yml"]))
    res = tools.promtool_check_config(p)
    assert not res.ok and "nowhere.yml" in res.output, str(res)


# --------------------------------------------------------------------------- the tests bite


def _with_alerts(cfg: StackConfig, **changes: Any) -> StackConfig:
    """cfg with monitoring.alerts fields changed, WITHOUT validation (a drifted rules file may hold anything)."""
    alerts = cfg.monitoring.alerts.model_copy(update=changes)
    return cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(update={"alerts": alerts})})


def _mutations(cfg: StackConfig) -> list[tuple[str, str, dict[str, str]]]:
    """(id, alert, {expr/for replacements}) — each one must make the generated tests fail."""
    base = {r.name: r for r in A.alert_rules(cfg)}
    a = cfg.monitoring.alerts
    out: list[tuple[str, str, dict[str, str]]] = []
    for name in A.ALERT_NAMES:
        field = A.THRESHOLD_FIELD[name]
        if field is not None:
            t = getattr(a, field)
            for label, value in (("threshold x2", t * 2 if t else 1.0), ("threshold x0.4", t * 0.4)):
                if value == t:
                    continue  # 0 * 0.4: no change to detect
                mutated = {r.name: r for r in A.alert_rules(_with_alerts(cfg, **{field: value}))}[name]
                out.append((f"{name}: {label}", name, {"expr": mutated.expr}))
        else:
            out.append((f"{name}: == 1", name, {"expr": base[name].expr.replace("== 0", "== 1")}))
        if " > " in base[name].expr and name in (A.QUEUE_DEPTH, A.KV_CACHE_PRESSURE, A.GPU_TEMPERATURE_HIGH):
            out.append((f"{name}: >=", name, {"expr": base[name].expr.replace(" > ", " >= ")}))
        hold = A.duration_seconds(base[name].for_)
        out.append((f"{name}: for x2+10m", name, {"for": A.duration_text(hold * 2 + 600)}))
        if hold:
            out.append((f"{name}: for 0s", name, {"for": "0s"}))
    return out


def _failed_alertnames(output: str) -> set[str]:
    return set(re.findall(r"alertname: (\w+), time:", output))


@pytest.mark.parametrize("config_name", ["dev", "odd"])
def test_generated_tests_fail_against_drifted_rules(config_name, tmp_path):
    """A rules file whose threshold, comparison or `for` drifted from the config fails the generated
    `promtool test rules` cases of that alert. The annotations stay as rendered, so only the
    behaviour differs. (Each mutation runs the drifted alert's own test groups: promtool spends
    ~30 ms per group, and the full file runs unmutated in the control and in test_promtool[test_rules].)"""
    tools.require("promtool")
    cfg = parse_config(CONFIGS[config_name])
    tests_doc = yaml.safe_load(render_promtool_tests(cfg, RULES))
    rules_doc = yaml.safe_load(render_alert_rules(cfg))
    groups_of = {
        name: [g for g in tests_doc["tests"] if g["alert_rule_test"][0]["alertname"] == name] for name in A.ALERT_NAMES
    }
    assert all(len(groups) >= 2 for groups in groups_of.values()), {n: len(g) for n, g in groups_of.items()}
    jobs = []
    for i, (label, alert, change) in enumerate(_mutations(cfg)):
        doc = json.loads(json.dumps(rules_doc))
        rule = next(r for r in doc["groups"][0]["rules"] if r["alert"] == alert)
        assert any(rule[k] != v for k, v in change.items()), label
        rule.update(change)
        d = tmp_path / f"m{i}"
        d.mkdir()
        (d / RULES).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        (d / TESTS).write_text(
            yaml.safe_dump({**tests_doc, "tests": groups_of[alert]}, sort_keys=False, allow_unicode=True)
        )
        jobs.append((label, alert, d / TESTS))
    # control: the unmutated rules pass the full generated file in the same setup
    (tmp_path / RULES).write_text(yaml.safe_dump(rules_doc, sort_keys=False, allow_unicode=True))
    (tmp_path / TESTS).write_text(yaml.safe_dump(tests_doc, sort_keys=False, allow_unicode=True))
    control = tools.promtool_test_rules(tmp_path / TESTS)
    assert control.ok, str(control)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: (job[0], job[1], tools.promtool_test_rules(job[2])), jobs))
    survived = [label for label, _, res in results if res.ok]
    assert not survived, f"mutations the generated tests did not catch: {survived}"
    for label, alert, res in results:
        assert res.rc == 1, f"{label}: {res}"
        assert _failed_alertnames(res.output) == {alert}, f"{label}: {res.output[-2000:]}"
    assert len(results) >= 3 * len(A.ALERT_NAMES)


# --------------------------------------------------------------------------- grafana


def test_grafana_dashboard_type_checks(rendered):
    tools.require("grafana_check")
    _, paths = rendered
    res = tools.grafana_check(paths["dashboards/vllm.json"])
    assert res.ok, str(res)


def test_grafana_check_rejects_a_broken_dashboard(tmp_path):
    """Negative control: an unknown key, and a panel without `type`, each fail the same check."""
    tools.require("grafana_check")
    good = json.loads(render_grafana(parse_config(CONFIGS["dev"]))["dashboards/vllm.json"])
    typo, untyped = json.loads(json.dumps(good)), json.loads(json.dumps(good))
    typo["titel"] = typo.pop("title")
    del untyped["panels"][1]["type"]
    paths = []
    for name, dash in (("typo.json", typo), ("untyped.json", untyped)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(dash, indent=2))
    res = tools.grafana_check(*paths)
    assert not res.ok and res.rc == 1, str(res)
    assert "typo.json:" in res.output and "titel" in res.output, res.output
    assert "untyped.json:" in res.output and "'type'" in res.output, res.output


# --------------------------------------------------------------------------- yamllint


def test_yamllint(rendered):
    tools.require("yamllint")
    _, paths = rendered
    for key, path in sorted(paths.items()):
        if path.suffix not in (".yml", ".yaml"):
            continue
        res = tools.yamllint(path)
        assert res.ok, f"{key}: {res}"
        assert ":error:" not in res.output, f"{key}: {res}"
