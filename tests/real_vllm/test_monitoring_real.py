"""The rendered monitoring against REAL vLLM: Debian's Prometheus scrapes S1 and S2 with the
rendered prometheus.yml and evaluates the rendered rules file (alerts and live-cost recording rules).

Test profile of the monitoring renderers (their documented knobs): scrape/evaluation interval 1 s
(`scrape_interval_override`), every alert `for` 2 s (`for_override`), no Alertmanager. Config
(`real_cfg()`): `monitoring.alerts.queueWaiting: 0.5`; model beta runs with `maxNumSeqs: 1`.

1. After some traffic, every Grafana panel query and every alert expression of
   `panel_and_alert_queries(cfg)` returns at least one series via /api/v1/query. Alert
   expressions run as rendered with `bool` added to their final comparison (`X > 0.5` ->
   `X > bool 0.5`), so they return their series whether or not they fire. DCGM-only queries are
   exempt (no GPU here): they are listed explicitly and must return nothing.
2. VllmQueueDepth fires for S2 (and only S2) under load the test creates, then clears.
"""

from __future__ import annotations

import math
import re
import shutil
import threading
import time

import httpx
import pytest

from tests.real_vllm.conftest import ALPHA, BETA, QUEUE_THRESHOLD, real_cfg, scrape_targets, slow
from tests.support.prometheus import start_prometheus
from vllm_stack import defaults as D
from vllm_stack.render import alerts as A
from vllm_stack.render.routing_monitoring import render_rules_file
from vllm_stack.render.grafana import metric_names, panel_and_alert_queries
from vllm_stack.render.prometheus import render_prometheus_yml

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]

FOR = "2s"
INTERVAL = "1s"
RULES_FILE = "vllm-alerts.yml"
UP_TIMEOUT = 30.0
FIRE_TIMEOUT = 60.0
CLEAR_TIMEOUT = 30.0
LOAD_WORKERS = 4  # against S2 (max-num-seqs 1): 3 waiting most of the time
LOAD_TOKENS = 40
LOAD_STEP_DELAY_MS = 10  # ~0.4 s per request: the queue stays full between scrapes

# Queries that only DCGM (GPU) metrics feed: exempt, and expected EMPTY on this CPU machine.
DCGM_ONLY = {
    "panel GPU temperature [A]",
    "panel GPU utilization [A]",
    "panel VRAM used [A]",
    "panel VRAM usage [A]",
    f"alert {A.GPU_TEMPERATURE_HIGH}",
    f"alert {A.GPU_VRAM_HIGH}",
}
#: The front's own alerts read the nginx and blackbox exporters, which this tier does not run
#: (tests/e2e/test_front_observed_e2e.py runs them against Debian's exporters): no series here.
FRONT_ONLY = {
    f"alert {A.FRONT_NGINX_DOWN}",
    f"alert {A.FRONT_REQUEST_RATE}",
    f"alert {A.FRONT_PROBE_FAILED}",
    f"alert {A.FRONT_CERT_EXPIRY}",
}
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)\s*(?!bool\b)(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)")
_QUOTED_OR_MATCHERS = re.compile(r'"(?:[^"\\]|\\.)*"|\{[^}]*\}')


def as_bool(expr: str) -> str:
    """Every comparison with a number gets `bool`: `X > 0.5` -> `X > bool 0.5`, so the alert
    expression returns 0/1 for each of its series instead of only the firing ones (label
    matchers and strings are left alone)."""
    skip = [m.span() for m in _QUOTED_OR_MATCHERS.finditer(expr)]
    out, last, n = [], 0, 0
    for m in _COMPARISON.finditer(expr):
        if any(a <= m.start() < b for a, b in skip):
            continue
        out.append(expr[last : m.start()] + f"{m.group(1)} bool {m.group(2)}")
        last, n = m.end(), n + 1
    assert n, f"alert expression without a comparison: {expr}"
    return "".join(out) + expr[last:]


@pytest.fixture(scope="module")
def prom(alpha_server, beta_server, shared_tmp):
    cfg = real_cfg()
    rules = render_rules_file(cfg, for_override=FOR)  # what the stack deploys: alerts and the cost group
    conf = render_prometheus_yml(
        cfg,
        scrape_targets(cfg, [alpha_server, beta_server]),
        rule_files=[RULES_FILE],
        alertmanager=None,
        scrape_interval_override=INTERVAL,
    )
    root = shared_tmp / "prometheus"
    p = start_prometheus(root, conf, {RULES_FILE: rules})
    p.cfg, p.rules = cfg, rules
    try:
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline:
            up = p.up(D.JOB_VLLM)
            if up == {alpha_server.hostport: 1.0, beta_server.hostport: 1.0}:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"targets not up within {UP_TIMEOUT}s: {up}\n{p.proc.tail()}")
        yield p
    finally:
        p.stop()
        shutil.rmtree(root, ignore_errors=True)


def traffic(server, n: int = 6) -> None:
    """Chat, completions and streams with the stack's names, so every vLLM metric has samples."""
    h = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.base, headers=h, timeout=60) as c:
        for i in range(n):
            r = c.post(
                "/v1/chat/completions",
                json={
                    "model": server.name,
                    "max_tokens": 8 + i,
                    "messages": [{"role": "user", "content": f"hello {i}"}],
                },
            )
            assert r.status_code == 200, r.text
            r = c.post("/v1/completions", json={"model": server.name, "prompt": f"count {i}", "max_tokens": 6})
            assert r.status_code == 200, r.text
            with c.stream(
                "POST",
                "/v1/completions",
                json={"model": server.name, "prompt": "stream", "max_tokens": 5, "stream": True},
            ) as s:
                assert s.status_code == 200
                assert b"[DONE]" in b"".join(s.iter_raw())


def test_every_panel_and_alert_query_returns_series(prom, alpha_server, beta_server):
    cfg = prom.cfg
    queries = panel_and_alert_queries(cfg)
    names = [n for n, _ in queries]
    assert len(names) == len(set(names))
    # the DCGM exemption list is exactly the queries that select only DCGM metrics
    dcgm = {n for n, e in queries if metric_names(e) and all(m.startswith("DCGM_") for m in metric_names(e))}
    assert dcgm == DCGM_ONLY, dcgm ^ DCGM_ONLY
    # every alert of the rules file is covered
    assert {n.split(" ", 1)[1] for n in names if n.startswith("alert ")} == set(A.ALERT_NAMES)

    for s in (alpha_server, beta_server):
        traffic(s)
    time.sleep(3)  # >= 2 scrapes after the traffic (rate() needs two samples)

    empty, nan_only, results = [], [], {}
    for name, expr in queries:
        q = as_bool(expr) if name.startswith("alert ") else expr
        series = prom.query(q)
        results[name] = series
        if name in DCGM_ONLY or name in FRONT_ONLY:
            assert series == [], (name, series)  # no GPU/DCGM exporter, no front exporters: nothing to show
            continue
        if not series:
            empty.append((name, q))
        elif name.startswith("panel") and not any(math.isfinite(float(s["value"][1])) for s in series):
            nan_only.append((name, q, series))
    assert not empty, "queries with no series against real vLLM:\n" + "\n".join(f"{n}: {q}" for n, q in empty)
    assert not nan_only, "panel queries with only NaN:\n" + "\n".join(map(str, nan_only))

    # the vLLM series carry the served model names and the scrape labels the alerts group by
    running = prom.query(D.METRIC_REQUESTS_RUNNING)
    assert {(s["metric"][D.LABEL_VLLM_MODEL_NAME], s["metric"][D.SCRAPE_LABEL_MODEL]) for s in running} == {
        (ALPHA, ALPHA),
        (BETA, BETA),
    }
    # healthy backends: the two "down" alerts evaluate to 0 for every series
    for alert in (A.BACKEND_DOWN, A.NO_HEALTHY_BACKEND):
        assert {float(s["value"][1]) for s in results[f"alert {alert}"]} == {0.0}
    # vLLM's own HTTP counter feeds the 5xx share: 0 for each model after the 2xx-only traffic above
    assert {float(s["value"][1]) for s in results[f"alert {A.HTTP_5XX_RATIO}"]} == {0.0}
    assert {s["metric"][D.SCRAPE_LABEL_MODEL] for s in results[f"alert {A.HTTP_5XX_RATIO}"]} == {ALPHA, BETA}
    print(
        f"\n{len(queries) - len(DCGM_ONLY) - len(FRONT_ONLY)} queries returned series; exempt (empty): "
        f"{sorted(DCGM_ONLY | FRONT_ONLY)}"
    )


def _queue_alerts(prom, state: str | None = None) -> list[dict]:
    return [
        a
        for a in prom.alerts()
        if a["labels"].get("alertname") == A.QUEUE_DEPTH and (state is None or a["state"] == state)
    ]


def test_queue_depth_alert_fires_under_real_load_and_clears(prom, alpha_server, beta_server):
    assert f"{D.METRIC_REQUESTS_WAITING} > {QUEUE_THRESHOLD}" in prom.rules
    assert _queue_alerts(prom) == [], _queue_alerts(prom)
    stop = threading.Event()
    errors: list[str] = []
    done = [0]

    def worker(i: int) -> None:
        with httpx.Client(
            base_url=beta_server.base, timeout=60, headers={"Authorization": f"Bearer {beta_server.key}"}
        ) as c:
            while not stop.is_set():
                r = c.post(
                    "/v1/completions",
                    json={
                        "model": BETA,
                        "prompt": f"load {i}",
                        "max_tokens": LOAD_TOKENS,
                        "ignore_eos": True,
                        **slow(LOAD_STEP_DELAY_MS),
                    },
                )
                if r.status_code != 200:
                    errors.append(r.text[:200])
                done[0] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(LOAD_WORKERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        firing = []
        while time.monotonic() - t0 < FIRE_TIMEOUT and not firing:
            firing = _queue_alerts(prom, "firing")
            time.sleep(0.5)
        fired_after = time.monotonic() - t0
        waiting_seen = prom.query(f"max_over_time({D.METRIC_REQUESTS_WAITING}[1m])")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:3]
    assert firing, (
        f"{A.QUEUE_DEPTH} did not fire within {FIRE_TIMEOUT}s; max waiting seen: "
        f"{[(s['metric']['instance'], s['value'][1]) for s in waiting_seen]}; alerts: {prom.alerts()}"
    )
    labels = [a["labels"] for a in firing]
    assert {lb["instance"] for lb in labels} == {beta_server.hostport}, labels
    lb = labels[0]
    assert lb[D.LABEL_VLLM_MODEL_NAME] == BETA and lb[D.SCRAPE_LABEL_MODEL] == BETA
    assert lb["severity"] == D.SEVERITY_WARNING and lb["job"] == D.JOB_VLLM
    assert float(firing[0]["value"]) > QUEUE_THRESHOLD
    assert not [a for a in _queue_alerts(prom) if a["labels"]["instance"] == alpha_server.hostport]
    # and it clears once the load is gone
    t1 = time.monotonic()
    while time.monotonic() - t1 < CLEAR_TIMEOUT and _queue_alerts(prom):
        time.sleep(0.5)
    assert _queue_alerts(prom) == [], _queue_alerts(prom)
    print(
        f"\n{A.QUEUE_DEPTH} fired for {beta_server.hostport} after {fired_after:.1f}s of load "
        f"({done[0]} requests, value {firing[0]['value']}), cleared {time.monotonic() - t1:.1f}s after it stopped"
    )
