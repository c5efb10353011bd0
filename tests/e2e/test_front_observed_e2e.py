"""The front is observed: Debian nginx with the rendered nginx.conf (its loopback stub_status
listener), Debian's prometheus-nginx-exporter and prometheus-blackbox-exporter started with the
rendered flags and blackbox.yml, and Debian Prometheus scraping them with the rendered
prometheus.yml (the `nginx` job and the `blackbox-tls` probe job) and the rendered rules.

* N requests through the front raise `nginx_http_requests_total` by N (plus the exporter's own
  stub_status reads, one per scrape, which nginx counts too);
* `probe_ssl_earliest_cert_expiry` is the test certificate's notAfter, to the second, and a
  certificate valid 10 days (< the 14-day threshold) makes FrontCertificateExpiresSoon fire;
* stub_status answers on the loopback listener and 404s on the public one;
* nginx stopped: FrontNginxDown and FrontProbeFailed fire.

Loopback only, free ports, every `for` 2 s, scrape/evaluation 1 s; every wait bounded; every
process stopped by pid.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_front
from tests.support import tools
from tests.support.front import make_pki
from tests.support.procs import Proc, free_port, poll, wait_port
from tests.support.prometheus import start_prometheus
from vllm_stack import defaults as D
from vllm_stack.endpoints import ScrapeTarget
from vllm_stack.loader import parse_config
from vllm_stack.quoting import host_port, http_url
from vllm_stack.render import alerts as A
from vllm_stack.render import front_monitoring as FM
from vllm_stack.render.alerts import render_alert_rules
from vllm_stack.render.prometheus import render_prometheus_yml

MODEL = "tiny"
FOR = "2s"
INTERVAL = "1s"
CERT_DAYS = 10
N_REQUESTS = 25
RULES_FILE = "vllm-alerts.yml"
WAIT = 30.0

pytestmark = pytest.mark.timeout(180)


def _not_after(cert: Path) -> int:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(cert)], check=True, capture_output=True, text=True
    ).stdout
    return int(ssl.cert_time_to_seconds(out.strip().removeprefix("notAfter=")))


def _firing(prom, name: str) -> list[dict]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_front_requests_and_certificate_are_observed(tmp_path, procs):
    for tool in ("nginx", "prometheus", "prometheus-nginx-exporter", "prometheus-blackbox-exporter"):
        tools.require(tool)
    t_start = time.monotonic()
    pki = make_pki(tmp_path / "pki", days=CERT_DAYS)
    front = start_front(pki, {MODEL: [{}]})
    try:
        cfg = parse_config(
            {
                "environment": "dev",
                "platform": "docker",
                "hosts": [{"name": "gpu-a", "address": "127.0.0.1", "gpu": "L40S"}],
                "models": [{"name": MODEL, "model": "mistralai/Mistral-7B-v0.3", "gpu": "L40S"}],
            }
        )
        # the rendered status listener: loopback only, allow 127.0.0.1, deny the rest
        conf = front.files["nginx.conf"]
        assert f"listen {host_port(D.LOOPBACK, front.listen.status_port)};" in conf
        status_url = http_url(D.LOOPBACK, front.listen.status_port, D.NGINX_STATUS_PATH)
        assert httpx.get(status_url, timeout=5).text.startswith("Active connections:")
        with front.client() as c:
            assert c.get(f"{front.https}{D.NGINX_STATUS_PATH}").status_code == 404  # never on the public server

        exporter_port, blackbox_port = free_port(), free_port()
        exporter = Proc(
            "nginx-exporter",
            [
                shutil.which("prometheus-nginx-exporter") or D.NGINX_EXPORTER_DEBIAN_BIN,
                *FM.exporter_argv(host_port(D.LOOPBACK, exporter_port), scrape_uri=status_url),
            ],
            tmp_path,
        )
        procs.append(exporter)
        blackbox_yml = tmp_path / D.BLACKBOX_CONFIG_FILE
        blackbox_yml.write_text(FM.render_blackbox_yml(cfg))
        blackbox = Proc(
            "blackbox",
            [
                shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter",
                *FM.blackbox_argv(str(blackbox_yml), host_port(D.LOOPBACK, blackbox_port)),
            ],
            tmp_path,
        )
        procs.append(blackbox)
        wait_port(exporter_port, 15, proc=exporter)
        wait_port(blackbox_port, 15, proc=blackbox)

        target = FM.probe_target(D.LOOPBACK, front.listen.https_port)
        nginx_target = ScrapeTarget(D.JOB_NGINX, D.LOOPBACK, exporter_port, ((D.SCRAPE_LABEL_HOST, "gpu-a"),))
        prom_yml = render_prometheus_yml(
            cfg,
            [nginx_target],
            rule_files=[RULES_FILE],
            alertmanager=None,
            scrape_interval_override=INTERVAL,
            probes=[target],
            blackbox=host_port(D.LOOPBACK, blackbox_port),
        )
        prom = start_prometheus(tmp_path / "prom", prom_yml, {RULES_FILE: render_alert_rules(cfg, for_override=FOR)})
        procs.append(prom.proc)

        def logs() -> str:
            return (
                f"prometheus:\n{prom.proc.tail(15)}\nexporter:\n{exporter.tail(15)}\nblackbox:\n{blackbox.tail(15)}\n"
                f"front:\n{front.error_log()[-2000:]}"
            )

        def requests_total() -> float | None:
            res = prom.query(f'{D.METRIC_NGINX_REQUESTS}{{job="{D.JOB_NGINX}"}}')
            return float(res[0]["value"][1]) if res else None

        t_up = poll(
            lambda: prom.query(f'{D.METRIC_NGINX_UP}{{job="{D.JOB_NGINX}"}} == 1') and requests_total() is not None,
            WAIT,
            "nginx_up 1",
            logs,
        )

        # N requests through the public TLS listener raise the counter by N (+ the stub_status reads)
        before, t0 = requests_total(), time.monotonic()
        assert before is not None
        with front.client() as c:
            for _ in range(N_REQUESTS):
                assert c.get(f"{front.https}{D.HEALTH_PATH}").status_code == 200
        sent_s = time.monotonic() - t0
        t_rise = poll(lambda: (requests_total() or 0) >= before + N_REQUESTS, WAIT, f"{N_REQUESTS} more requests", logs)
        after = requests_total()
        assert after is not None
        # exporter reads of stub_status in the window: one per 1 s scrape, and a little slack
        assert before + N_REQUESTS <= after <= before + N_REQUESTS + (sent_s + t_rise) / 1.0 + 3, (before, after)

        # the probe reads the certificate nginx serves: its notAfter, to the second
        poll(lambda: prom.query(f'{D.METRIC_PROBE_SUCCESS}{{job="{D.JOB_BLACKBOX}"}} == 1'), WAIT, "probe ok", logs)
        expiry = prom.query(f'{D.METRIC_SSL_EARLIEST_EXPIRY}{{job="{D.JOB_BLACKBOX}"}}')
        assert len(expiry) == 1 and expiry[0]["metric"]["instance"] == target, expiry
        assert float(expiry[0]["value"][1]) == _not_after(pki.cert)

        # 10 days left < 14: the certificate alert fires, its value is the days left
        t_cert = poll(lambda: _firing(prom, A.FRONT_CERT_EXPIRY), WAIT, A.FRONT_CERT_EXPIRY, logs)
        (alert,) = _firing(prom, A.FRONT_CERT_EXPIRY)
        assert alert["labels"]["instance"] == target and alert["labels"]["severity"] == D.SEVERITY_WARNING
        assert CERT_DAYS - 0.01 < float(alert["value"]) <= CERT_DAYS, alert
        assert not _firing(prom, A.FRONT_NGINX_DOWN) and not _firing(prom, A.FRONT_PROBE_FAILED)

        # nginx gone: the exporter reports nginx_up 0 and the probe fails
        t1 = time.monotonic()
        front.stop()
        t_down = poll(
            lambda: _firing(prom, A.FRONT_NGINX_DOWN) and _firing(prom, A.FRONT_PROBE_FAILED),
            WAIT,
            "FrontNginxDown and FrontProbeFailed",
            logs,
        )
        (down,) = _firing(prom, A.FRONT_NGINX_DOWN)
        assert down["labels"]["instance"] == nginx_target.hostport and down["labels"]["host"] == "gpu-a"
        print(
            f"\nfront observed: nginx_up after {t_up:.1f}s; +{after - before:.0f} requests seen {t_rise:.1f}s after "
            f"{N_REQUESTS} sent; certificate alert firing {t_cert:.1f}s after the probe; nginx-down alerts "
            f"{t_down:.1f}s after nginx stopped ({time.monotonic() - t1:.1f}s); total {time.monotonic() - t_start:.1f}s"
        )
    finally:
        front.stop()
        shutil.rmtree(front.root, ignore_errors=True)
