"""Rendered prometheus.yml + alert rules in a real Prometheus, scraping two fake vLLM backends.

Loopback only: two `tests.fakes.fake_vllm` processes serve /metrics with vLLM 0.33's names;
Debian's `prometheus` scrapes them every second (the renderer's test profile) and evaluates
the rendered rules with every `for` shortened to 5 s (`for_override`). Forcing the fake's
gauges through `/_fake/state` must make VllmQueueDepth and VllmKvCachePressure fire for
that backend only, and clear when the load drops; killing a backend must fire
VllmBackendDown, and killing both VllmNoHealthyBackend. Every wait is bounded; every
process is stopped by pid in teardown.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.support.procs import Proc, free_port, wait_port
from tests.support.prometheus import Prometheus, start_prometheus
from vllm_stack import defaults as D
from vllm_stack.endpoints import ScrapeTarget
from vllm_stack.loader import parse_config
from vllm_stack.render import alerts as A
from vllm_stack.render.alerts import render_alert_rules
from vllm_stack.render.prometheus import render_prometheus_yml

REPO = Path(__file__).resolve().parents[2]
MODEL = "llama-8b"
FOR = "5s"  # for_override: every alert's `for` in this test
INTERVAL = "1s"  # scrape + evaluation interval (renderer test profile)
FIRE_TIMEOUT = 45.0
CLEAR_TIMEOUT = 30.0
RULES_FILE = "vllm-alerts.yml"

pytestmark = pytest.mark.timeout(120)


def _cfg():
    return parse_config(
        {
            "environment": "dev",
            "platform": "docker",
            "hosts": [
                {"name": "gpu-a", "address": "127.0.0.1", "gpu": "L40S"},
                {"name": "gpu-b", "address": "127.0.0.2", "gpu": "L40S", "capacity": "spot"},
            ],
            "models": [
                {
                    "name": MODEL,
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu": "L40S",
                    "pool": {"onDemand": 1, "spot": 1},
                }
            ],
        }
    )


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.cfg = _cfg()
        self.fakes: dict[str, tuple[Proc, int]] = {}
        self.prom: Prometheus | None = None
        self.timings: dict[str, float] = {}

    def start_fake(self, name: str) -> None:
        port = free_port()
        proc = Proc(
            f"fake-{name}",
            [
                sys.executable,
                "-m",
                "tests.fakes.fake_vllm",
                "--port",
                str(port),
                "--served-model-name",
                MODEL,
                "--no-log-requests",
            ],
            self.tmp,
            cwd=REPO,
        )
        self.procs.append(proc)
        wait_port(port, 15, proc=proc)
        self.fakes[name] = (proc, port)

    def instance(self, name: str) -> str:
        return f"127.0.0.1:{self.fakes[name][1]}"

    def start_prometheus(self) -> None:
        targets = [
            ScrapeTarget(
                D.JOB_VLLM,
                "127.0.0.1",
                port,
                (
                    (D.SCRAPE_LABEL_MODEL, MODEL),
                    (D.SCRAPE_LABEL_CAPACITY, capacity),
                    (D.SCRAPE_LABEL_HOST, f"gpu-{name}"),
                ),
            )
            for (name, (_, port)), capacity in zip(sorted(self.fakes.items()), ("onDemand", "spot"))
        ]
        conf = render_prometheus_yml(
            self.cfg, targets, rule_files=[RULES_FILE], alertmanager=None, scrape_interval_override=INTERVAL
        )
        start = time.monotonic()
        self.prom = start_prometheus(self.tmp, conf, {RULES_FILE: render_alert_rules(self.cfg, for_override=FOR)})
        self.procs.append(self.prom.proc)
        self.timings["prometheus ready"] = round(time.monotonic() - start, 1)

    def set_state(self, name: str, **state: Any) -> None:
        r = httpx.post(f"http://127.0.0.1:{self.fakes[name][1]}/_fake/state", json=state, timeout=5)
        assert r.status_code == 200, r.text

    def alerts(self) -> list[dict]:
        return self.prom.alerts()

    def up(self) -> dict[str, float]:
        return self.prom.up(D.JOB_VLLM)

    def matching(self, name: str, state: str = "firing", **labels: str) -> list[dict]:
        return [
            a
            for a in self.alerts()
            if a["labels"].get("alertname") == name
            and a["state"] == state
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def poll(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        start = time.monotonic()
        while True:
            try:
                if cond():
                    elapsed = time.monotonic() - start
                    self.timings[what] = round(elapsed, 1)
                    return elapsed
            except httpx.HTTPError:
                pass
            if time.monotonic() - start > timeout:
                try:
                    current = [
                        (a["labels"].get("alertname"), a["labels"].get("instance"), a["state"]) for a in self.alerts()
                    ]
                except httpx.HTTPError as e:
                    current = f"(alerts unavailable: {e})"
                pytest.fail(
                    f"timed out after {timeout}s waiting for {what}; alerts now: {current}\n"
                    f"prometheus log:\n{self.prom.proc.tail(20) if self.prom else ''}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        s.start_fake("a")
        s.start_fake("b")
        s.start_prometheus()
        yield s
    finally:
        s.stop()
        print(f"\nalert e2e timings (s): {s.timings}")
        for proc in s.procs:
            assert proc.popen.poll() is not None, f"{proc.name} (pid {proc.pid}) still running"


def test_alerts_fire_and_clear(stack: Stack):
    a = stack.cfg.monitoring.alerts
    inst_a, inst_b = stack.instance("a"), stack.instance("b")
    stack.poll(lambda: stack.up() == {inst_a: 1.0, inst_b: 1.0}, 20, "both targets up")

    waiting = int(a.queue_waiting) + 5
    kv = round(min(1.0, a.kv_cache_usage + 0.05), 3)
    stack.set_state("a", waiting_override=waiting, kv_usage_override=kv)
    stack.poll(
        lambda: stack.matching(A.QUEUE_DEPTH, instance=inst_a) and stack.matching(A.KV_CACHE_PRESSURE, instance=inst_a),
        FIRE_TIMEOUT,
        "queue + kv alerts firing",
    )
    (queue,) = stack.matching(A.QUEUE_DEPTH, instance=inst_a)
    assert queue["labels"]["severity"] == D.SEVERITY_WARNING
    assert queue["labels"][D.LABEL_VLLM_MODEL_NAME] == MODEL and queue["labels"][D.SCRAPE_LABEL_MODEL] == MODEL
    assert float(queue["value"]) == waiting
    assert f"has {waiting} requests waiting" in queue["annotations"]["description"]
    assert queue["annotations"]["runbook_url"].endswith("#vllmqueuedepth")
    (kv_alert,) = stack.matching(A.KV_CACHE_PRESSURE, instance=inst_a)
    assert float(kv_alert["value"]) == pytest.approx(kv)
    # the unloaded backend does not alert
    assert not [x for x in stack.alerts() if x["labels"].get("instance") == inst_b]

    # drop the load and lose backend b at the same time
    stack.set_state("a", waiting_override=None, kv_usage_override=None)
    stack.fakes["b"][0].stop()
    stack.poll(
        lambda: not stack.matching(A.QUEUE_DEPTH) and not stack.matching(A.KV_CACHE_PRESSURE),
        CLEAR_TIMEOUT,
        "queue + kv alerts cleared",
    )
    stack.poll(lambda: stack.matching(A.BACKEND_DOWN, instance=inst_b), FIRE_TIMEOUT, "backend b down firing")
    (down,) = stack.matching(A.BACKEND_DOWN, instance=inst_b)
    assert down["labels"]["severity"] == D.SEVERITY_CRITICAL and down["labels"][D.SCRAPE_LABEL_MODEL] == MODEL
    assert not stack.matching(A.BACKEND_DOWN, instance=inst_a)
    assert not stack.matching(A.NO_HEALTHY_BACKEND) and not stack.matching(A.NO_HEALTHY_BACKEND, state="pending")

    # the last replica goes too: the model has no healthy backend
    stack.fakes["a"][0].stop()
    stack.poll(lambda: stack.matching(A.NO_HEALTHY_BACKEND, model=MODEL), FIRE_TIMEOUT, "no healthy backend firing")
