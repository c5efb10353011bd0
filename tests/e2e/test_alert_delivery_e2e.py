"""Alerts reach someone: fake vLLM -> Debian Prometheus (rendered rules) -> Debian Alertmanager
(rendered alertmanager.yml) -> a webhook receiver on 127.0.0.1, then the resolved notification.

Loopback only; every `for` is 5 s, scrape/evaluation 1 s, group_wait/group_interval 1 s (the
test profile of the same renderers). A second test posts alerts straight to Alertmanager's API
to prove the rendered inhibition: a down backend silences its own queue alert, not another's.
Every wait is bounded; every process is stopped by pid.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.alertmanager import Alertmanager, Webhook, start_alertmanager
from tests.support.procs import Proc, free_port, poll, wait_port
from tests.support.prometheus import start_prometheus
from vllm_stack import defaults as D
from vllm_stack.endpoints import ScrapeTarget
from vllm_stack.loader import parse_config
from vllm_stack.render import alerts as A
from vllm_stack.render.alertmanager import render_alertmanager_yml
from vllm_stack.render.alerts import render_alert_rules
from vllm_stack.render.prometheus import render_prometheus_yml

REPO = Path(__file__).resolve().parents[2]
MODEL = "llama-8b"
FOR = "5s"
INTERVAL = "1s"
GROUP = "1s"
DELIVER_TIMEOUT = 45.0
RULES_FILE = "vllm-alerts.yml"
RUNBOOKS = "https://runbooks.example.org/docs/runbooks.md"

pytestmark = pytest.mark.timeout(150)


def _cfg():
    return parse_config(
        {
            "environment": "dev",
            "platform": "docker",
            "hosts": [{"name": "gpu-a", "address": "127.0.0.1", "gpu": "L40S"}],
            "models": [{"name": MODEL, "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}],
            "monitoring": {
                "runbookBaseUrl": RUNBOOKS,
                "alertmanager": {
                    "groupWait": GROUP,
                    "groupInterval": GROUP,
                    "repeatInterval": "1h",
                    "receivers": [{"name": "oncall", "type": "webhook"}],
                },
            },
        },
        secrets=["alertWebhookUrl"],
    )


@pytest.fixture
def webhook():
    w = Webhook()
    try:
        yield w
    finally:
        w.close()


def _alertmanager(tmp: Path, cfg, webhook: Webhook, procs: list[Proc]) -> Alertmanager:
    am = start_alertmanager(tmp / "am", render_alertmanager_yml(cfg, {"alertWebhookUrl": webhook.url}))
    procs.append(am.proc)
    return am


def test_alert_delivered_then_resolved(tmp_path, webhook, procs):
    cfg = _cfg()
    am = _alertmanager(tmp_path, cfg, webhook, procs)
    port = free_port()
    fake = Proc(
        "fake-a",
        [sys.executable, "-m", "tests.fakes.fake_vllm", "--port", str(port), "--served-model-name", MODEL],
        tmp_path,
        cwd=REPO,
    )
    procs.append(fake)
    wait_port(port, 15, proc=fake)
    target = ScrapeTarget(
        D.JOB_VLLM,
        "127.0.0.1",
        port,
        ((D.SCRAPE_LABEL_MODEL, MODEL), (D.SCRAPE_LABEL_CAPACITY, "onDemand"), (D.SCRAPE_LABEL_HOST, "gpu-a")),
    )
    conf = render_prometheus_yml(
        cfg, [target], rule_files=[RULES_FILE], alertmanager=am.hostport, scrape_interval_override=INTERVAL
    )
    assert f"- {am.hostport}" in conf
    prom = start_prometheus(tmp_path / "prom", conf, {RULES_FILE: render_alert_rules(cfg, for_override=FOR)})
    procs.append(prom.proc)

    def logs() -> str:
        return f"prometheus:\n{prom.proc.tail(15)}\nalertmanager:\n{am.proc.tail(15)}\nwebhook: {webhook.received}"

    poll(lambda: prom.up(D.JOB_VLLM) == {f"127.0.0.1:{port}": 1.0}, 20, "target up", logs)
    waiting = int(cfg.monitoring.alerts.queue_waiting) + 5
    t0 = time.monotonic()
    r = httpx.post(f"http://127.0.0.1:{port}/_fake/state", json={"waiting_override": waiting}, timeout=5)
    assert r.status_code == 200
    poll(lambda: webhook.notifications(A.QUEUE_DEPTH, "firing"), DELIVER_TIMEOUT, "firing notification", logs)
    t_fire, alert = webhook.notifications(A.QUEUE_DEPTH, "firing")[0]
    firing_at = {a["labels"]["alertname"]: a.get("activeAt") for a in prom.alerts()}
    assert A.QUEUE_DEPTH in firing_at
    assert alert["labels"]["severity"] == D.SEVERITY_WARNING
    assert alert["labels"][D.SCRAPE_LABEL_MODEL] == MODEL and alert["labels"]["instance"] == f"127.0.0.1:{port}"
    assert alert["annotations"]["runbook_url"] == f"{RUNBOOKS}#vllmqueuedepth"
    assert f"has {waiting} requests waiting" in alert["annotations"]["description"]
    (body,) = [b for t, b in webhook.received if t == t_fire]
    assert body["receiver"] == "oncall" and body["groupLabels"] == {"alertname": A.QUEUE_DEPTH, "model": MODEL}
    delivery = t_fire - t0

    t1 = time.monotonic()
    r = httpx.post(f"http://127.0.0.1:{port}/_fake/state", json={"waiting_override": None}, timeout=5)
    assert r.status_code == 200
    poll(lambda: webhook.notifications(A.QUEUE_DEPTH, "resolved"), DELIVER_TIMEOUT, "resolved notification", logs)
    t_res, resolved = webhook.notifications(A.QUEUE_DEPTH, "resolved")[0]
    assert resolved["labels"]["instance"] == f"127.0.0.1:{port}" and resolved["endsAt"] > alert["startsAt"]
    print(
        f"\nalert delivery (s): over threshold -> webhook firing {delivery:.1f} (for={FOR}, scrape={INTERVAL}, "
        f"group_wait={GROUP}); cleared -> webhook resolved {t_res - t1:.1f}"
    )
    # the for-duration is a floor; scrape + evaluation + group_wait + delivery must stay small on top of it
    assert 5.0 <= delivery < 5.0 + 15.0


def test_backend_down_inhibits_its_own_queue_alert(tmp_path, webhook, procs):
    cfg = _cfg()
    am = _alertmanager(tmp_path, cfg, webhook, procs)

    def alert(name: str, instance: str, severity: str) -> dict:
        return {
            "labels": {
                "alertname": name,
                "instance": instance,
                "severity": severity,
                D.SCRAPE_LABEL_MODEL: MODEL,
            }
        }

    am.post_alerts(
        [
            alert(A.BACKEND_DOWN, "10.0.0.1:8000", D.SEVERITY_CRITICAL),
            alert(A.QUEUE_DEPTH, "10.0.0.1:8000", D.SEVERITY_WARNING),
            alert(A.QUEUE_DEPTH, "10.0.0.2:8000", D.SEVERITY_WARNING),
        ]
    )

    def logs() -> str:
        return f"alertmanager:\n{am.proc.tail(15)}\nwebhook: {webhook.received}"

    poll(
        lambda: webhook.notifications(A.BACKEND_DOWN, "firing") and webhook.notifications(A.QUEUE_DEPTH, "firing"),
        DELIVER_TIMEOUT,
        "both notifications",
        logs,
    )
    time.sleep(2.5)  # two more group intervals: an inhibited alert would have been sent by now
    queue = {a["labels"]["instance"] for _, a in webhook.notifications(A.QUEUE_DEPTH, "firing")}
    assert queue == {"10.0.0.2:8000"}
    inhibited = am.alerts(inhibited="true", active="false", silenced="false")
    assert [(a["labels"]["alertname"], a["labels"]["instance"]) for a in inhibited] == [
        (A.QUEUE_DEPTH, "10.0.0.1:8000")
    ]
    assert inhibited[0]["status"]["inhibitedBy"]
