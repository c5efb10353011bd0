"""alertmanager.yml renderer and its config: routes by severity, grouping, inhibition, secrets.

Pure-function tests; amtool checks the rendered files in tests/artifacts, the real
Alertmanager delivers them in tests/e2e/test_alert_delivery_e2e.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from vllm_stack import defaults as D
from vllm_stack.deployment import build
from vllm_stack.loader import ConfigError, parse_config
from vllm_stack.render import alertmanager as AM
from vllm_stack.render import alerts as A
from vllm_stack.render.k8s import alertmanager_secret, monitoring_objects, render_prometheus_yml_k8s

HOST = {"name": "gpu-1", "address": "10.0.0.10", "gpu": "L40S"}
MODEL = {"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}
RECEIVERS = [
    {"name": "hook", "type": "webhook"},
    {"name": "pager", "type": "pagerduty", "severities": ["critical"]},
    {"name": "chat", "type": "slack", "severities": ["warning"], "sendResolved": False},
    {
        "name": "mail",
        "type": "email",
        "to": "oncall@example.com",
        "from": "alerts@example.com",
        "smarthost": "smtp.example.com:587",
        "username": "alerts",
    },
]
SECRETS = {
    "alertWebhookUrl": "https://hooks.example.com/T1",
    "alertPagerdutyKey": "R0UT1NGKEY",
    "alertSlackUrl": "https://hooks.slack.com/services/X",
    "alertEmailPassword": "smtp-pw",
}


def cfg_with(platform: str = "docker", **alertmanager: Any):
    doc: dict[str, Any] = {
        "environment": "prod",
        "platform": platform,
        "models": [MODEL],
        "monitoring": {"alertmanager": alertmanager},
    }
    if platform == "docker":
        doc["hosts"] = [HOST]
    return parse_config(doc, secrets=list(SECRETS))


def test_routes_one_per_receiver_and_severity_critical_repeats_sooner():
    doc = AM.alertmanager_config(cfg_with(receivers=RECEIVERS), SECRETS)
    root = doc["route"]
    assert root["receiver"] == D.ALERTMANAGER_NULL_RECEIVER == "blackhole"
    assert root["group_by"] == ["alertname", "model"]
    assert (root["group_wait"], root["group_interval"], root["repeat_interval"]) == ("30s", "5m", "4h")
    got = [(r["receiver"], r["matchers"], r.get("repeat_interval"), r["continue"]) for r in root["routes"]]
    assert got == [
        ("hook", ['severity="critical"'], "1h", True),
        ("hook", ['severity="warning"'], None, True),
        ("pager", ['severity="critical"'], "1h", True),
        ("chat", ['severity="warning"'], None, True),
        ("mail", ['severity="critical"'], "1h", True),
        ("mail", ['severity="warning"'], None, True),
    ]
    # every alert rule's severity is one a receiver can subscribe to
    assert {r.severity for r in A.alert_rules(cfg_with())} <= set(D.ALERTMANAGER_SEVERITIES)


def test_receivers_carry_their_secret_values_in_the_right_field():
    doc = AM.alertmanager_config(cfg_with(receivers=RECEIVERS), SECRETS)
    rx = {r["name"]: r for r in doc["receivers"]}
    assert rx["blackhole"] == {"name": "blackhole"}
    assert rx["hook"]["webhook_configs"] == [{"send_resolved": True, "url": "https://hooks.example.com/T1"}]
    assert rx["pager"]["pagerduty_configs"] == [{"send_resolved": True, "routing_key": "R0UT1NGKEY"}]
    assert rx["chat"]["slack_configs"] == [{"send_resolved": False, "api_url": "https://hooks.slack.com/services/X"}]
    assert rx["mail"]["email_configs"] == [
        {
            "send_resolved": True,
            "to": "oncall@example.com",
            "from": "alerts@example.com",
            "smarthost": "smtp.example.com:587",
            "auth_username": "alerts",
            "auth_password": "smtp-pw",
        }
    ]


def test_inhibition_backend_down_silences_its_own_saturation_alerts():
    doc = AM.alertmanager_config(cfg_with(), {})
    assert doc["inhibit_rules"] == [
        {
            "source_matchers": ['alertname="VllmBackendDown"'],
            "target_matchers": ['alertname=~"VllmQueueDepth|VllmKvCachePressure|VllmPreemptions"'],
            "equal": ["instance"],
        },
        {
            "source_matchers": ['alertname="VllmNoHealthyBackend"'],
            "target_matchers": ['alertname="VllmBackendDown"'],
            "equal": ["model"],
        },
    ]
    # the labels the inhibition compares are on both sides: per-instance alerts, `model` from the scrape config
    rules = {r.name: r for r in A.alert_rules(cfg_with())}
    for name in AM.BACKEND_DOWN_INHIBITS:
        assert "sum by" not in rules[name].expr, name  # keeps `instance`
    assert f"sum by ({D.SCRAPE_LABEL_MODEL})" in rules[A.NO_HEALTHY_BACKEND].expr


def test_needed_secrets_and_placeholders():
    cfg = cfg_with(receivers=RECEIVERS + [{"name": "hook2", "type": "webhook"}])
    assert AM.needed_secrets(cfg) == ["alertWebhookUrl", "alertPagerdutyKey", "alertSlackUrl", "alertEmailPassword"]
    ph = AM.placeholder_secrets(cfg, "secret-placeholder")
    assert ph["alertWebhookUrl"] == ph["alertSlackUrl"] == "https://secret-placeholder.invalid/"
    assert ph["alertPagerdutyKey"] == ph["alertEmailPassword"] == "secret-placeholder"
    # an email receiver without SMTP auth needs no secret and sends no credentials
    plain = {k: v for k, v in RECEIVERS[3].items() if k != "username"}
    cfg2 = cfg_with(receivers=[plain])
    assert AM.needed_secrets(cfg2) == []
    (mail,) = [r for r in AM.alertmanager_config(cfg2, {})["receivers"] if r["name"] == "mail"]
    assert "auth_password" not in mail["email_configs"][0] and "auth_username" not in mail["email_configs"][0]
    with pytest.raises(ValueError, match="alertPagerdutyKey"):
        AM.alertmanager_config(cfg, {k: v for k, v in SECRETS.items() if k != "alertPagerdutyKey"})


def test_target_per_platform_and_mode():
    assert AM.target(cfg_with()) == "127.0.0.1:9093"
    k8s = cfg_with("kubernetes")
    assert AM.target(k8s) == "vllm-stack-alertmanager.default.svc:9093" or AM.target(k8s).endswith(".svc:9093")
    assert AM.target(k8s) == f"vllm-stack-alertmanager.{k8s.kubernetes.namespace}.svc:9093"
    assert AM.target(cfg_with(external="am.example.com:9093")) == "am.example.com:9093"
    assert not AM.deployed(cfg_with(external="am.example.com:9093"))
    assert AM.target(cfg_with(enabled=False)) is None and AM.needed_secrets(cfg_with(enabled=False)) == []
    assert build(cfg_with()).alertmanager_url == "http://127.0.0.1:9093"
    assert build(cfg_with(enabled=False)).alertmanager_url is None
    prom = yaml.safe_load(render_prometheus_yml_k8s(k8s))
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [AM.target(k8s)]


def test_command_turns_ha_gossip_off_and_listens_where_told():
    argv = AM.command("/c/alertmanager.yml", "/alertmanager", AM.LOCAL_LISTEN)
    assert argv == [
        "--config.file=/c/alertmanager.yml",
        "--storage.path=/alertmanager",
        "--web.listen-address=127.0.0.1:9093",
        "--cluster.listen-address=",
    ]


def test_kubernetes_objects_deployment_service_and_secret():
    cfg = cfg_with("kubernetes", receivers=RECEIVERS)
    text = AM.render_alertmanager_yml(cfg, AM.placeholder_secrets(cfg, "secret-placeholder"))
    objs = monitoring_objects(
        cfg, render_prometheus_yml_k8s(cfg), "groups: []\n", {}, grafana_secret="g", alertmanager_yml=text
    )
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    dep = by[("Deployment", "vllm-stack-alertmanager")]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == D.ALERTMANAGER_IMAGE and "--cluster.listen-address=" in c["args"]
    assert "--web.listen-address=:9093" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    vol = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vol["config"]["secret"]["secretName"] == "vllm-stack-alertmanager-config"
    svc = by[("Service", "vllm-stack-alertmanager")]
    assert svc["spec"]["ports"][0]["port"] == 9093 and svc["spec"]["type"] == "ClusterIP"
    sec = alertmanager_secret(cfg, text)
    assert sec["kind"] == "Secret" and sec["stringData"] == {"alertmanager.yml": text}
    none = monitoring_objects(cfg, render_prometheus_yml_k8s(cfg), "groups: []\n", {}, grafana_secret="g")
    assert not [o for o in none if "alertmanager" in o["metadata"]["name"]]


@pytest.mark.parametrize(
    "receivers, key, words",
    [
        ([{"name": "a", "type": "webhook"}, {"name": "a", "type": "slack"}], "receivers", "unique"),
        ([{"name": "blackhole", "type": "webhook"}], "receivers", "reserved"),
        ([{"name": "m", "type": "email", "to": "a@example.com"}], "receivers", "smarthost"),
        ([{"name": "w", "type": "webhook", "to": "a@example.com"}], "to", "only an `email` receiver"),
        ([{"name": "w", "type": "sms"}], "type", "webhook"),
        ([{"name": "w", "type": "webhook", "severities": ["info"]}], "severities", "critical"),
        (
            [{"name": "m", "type": "email", "to": "not-an-address", "from": "a@example.com", "smarthost": "s:25"}],
            "to",
            "email",
        ),
    ],
)
def test_bad_receivers_are_refused_naming_the_key(receivers, key, words):
    with pytest.raises(ConfigError) as exc:
        cfg_with(receivers=receivers)
    assert exc.value.path.startswith("monitoring.alertmanager") and key in exc.value.path
    assert words in str(exc.value)


def test_runbook_commands_follow_the_model_under_the_operator():
    from vllm_stack.render.runbooks import render_runbook_commands

    cfg = parse_config(
        {
            "environment": "dev",
            "platform": "kubernetes",
            "models": [MODEL],
            "monitoring": {"prometheusOperator": True, "grafana": {"enabled": False}},
        }
    )
    text = render_runbook_commands(build(cfg), cfg.monitoring.runbook_base_url)
    assert "deploy/llama-8b-on-demand" in text and "deploy/vllm-stack-front" in text
    # the operator runs Prometheus and its Alertmanager: the stack created neither Deployment
    assert "deploy/vllm-stack-prometheus" not in text and "vllm-stack-alertmanager" not in text
