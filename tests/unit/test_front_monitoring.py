"""The front's observers as rendered: the loopback stub_status listener, the nginx exporter on both
host runtimes and as a k8s sidecar, the blackbox probe and its scrape job, and the front alerts'
expressions with the numbers the config gives them."""

from __future__ import annotations

import re
from typing import Any

import yaml

from vllm_stack import defaults as D
from vllm_stack.deployment import build
from vllm_stack.loader import parse_config
from vllm_stack.render import alerts as A
from vllm_stack.render import front_monitoring as FM
from vllm_stack.render import k8s as K
from vllm_stack.render.k8s_monitoring import render_prometheus_yml_k8s, service_monitors
from vllm_stack.render.nginx import FrontListen, render_front
from vllm_stack.render.prometheus import prometheus_config

MODEL = {"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}


def host_cfg(front_address: str = "10.0.0.10", **extra: Any):
    raw: dict[str, Any] = {
        "environment": "dev",
        "platform": "docker",
        "hosts": [
            {"name": "gpu-1", "address": front_address, "gpu": "L40S"},
            {"name": "gpu-2", "address": "10.0.0.11", "gpu": "L40S"},
        ],
        "models": [MODEL],
    }
    raw.update(extra)
    return parse_config(raw)


def k8s_cfg(**extra: Any):
    raw: dict[str, Any] = {"environment": "prod", "platform": "kubernetes", "models": [MODEL]}
    raw.update(extra)
    return parse_config(raw, secrets=["tlsCertificate", "tlsPrivateKey"])


def _status_server(conf: str) -> str:
    m = re.search(r"server \{\n\s+listen (127\.0\.0\.1:\d+);.*?\n    \}\n", conf, flags=re.S)
    assert m, conf
    return m.group(0)


def test_stub_status_is_a_loopback_listener_that_admits_only_loopback():
    cfg = host_cfg()
    conf = render_front(cfg, build(cfg).front_backends(), listen=FrontListen(status_port=18080))["nginx.conf"]
    status = _status_server(conf)
    assert "listen 127.0.0.1:18080;" in status
    assert "location = /stub_status {" in status and "stub_status;" in status
    assert status.index("allow 127.0.0.1;") < status.index("deny all;")
    # exactly one stub_status directive, in that server only: never on the public listeners
    assert conf.count("stub_status;") == 1
    public = conf.replace(status, "")
    assert "/stub_status" not in public and "listen 443 ssl;" in public and "listen 80;" in public
    # the default port is the exporter's default scrape URI
    default = render_front(cfg, build(cfg).front_backends())["nginx.conf"]
    assert "listen 127.0.0.1:8080;" in default
    assert FM.SCRAPE_URI == "http://127.0.0.1:8080/stub_status"


def test_exporter_on_the_monitoring_host_stays_on_loopback():
    cfg = host_cfg()
    d = build(cfg)
    ex = d.front_exporter
    assert ex is not None and ex.host == "gpu-1" and ex.container == "vllm-nginx-exporter" and ex.unit is None
    assert ex.listen == "127.0.0.1:9113"
    assert FM.exporter_argv(ex.listen) == [
        "--nginx.scrape-uri=http://127.0.0.1:8080/stub_status",
        "--web.listen-address=127.0.0.1:9113",
    ]
    nginx_jobs = [j for j in prometheus_config(cfg, d.scrape_targets(), rule_files=[])["scrape_configs"]]
    (job,) = [j for j in nginx_jobs if j["job_name"] == "nginx"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9113"], "labels": {"host": "gpu-1"}}]


def test_exporter_reached_from_another_monitoring_host_listens_on_the_front_address():
    cfg = host_cfg(monitoring={"host": "gpu-2"})
    d = build(cfg)
    assert d.front_exporter is not None and d.front_exporter.listen == "10.0.0.10:9113"
    assert d.front_exporter.scrape_target.hostport == "10.0.0.10:9113"
    assert d.probe_targets() == ("https://10.0.0.10/health",)
    # a DNS-named front host: every interface, scraped by name
    cfg = host_cfg("front.example.com", monitoring={"host": "gpu-2"})
    d = build(cfg)
    assert d.front_exporter is not None and d.front_exporter.listen == "0.0.0.0:9113"
    assert d.front_exporter.scrape_target.hostport == "front.example.com:9113"


def test_systemd_runtime_gets_a_unit_running_debians_exporter():
    cfg = host_cfg(hostRuntime="systemd")
    ex = build(cfg).front_exporter
    assert ex is not None and ex.unit == "vllm-nginx-exporter.service" and ex.container is None
    unit = FM.render_exporter_unit(ex.unit, ex.listen)
    assert (
        "ExecStart=/usr/bin/prometheus-nginx-exporter --nginx.scrape-uri=http://127.0.0.1:8080/stub_status "
        "--web.listen-address=127.0.0.1:9113\n"
    ) in unit
    assert "DynamicUser=yes\n" in unit and "CapabilityBoundingSet=\n" in unit
    # Go's runtime calls setrlimit (denied @resources) at start: EPERM, not a SIGSYS kill (tests/systemd)
    assert "SystemCallFilter=~@privileged @resources\nSystemCallErrorNumber=EPERM\n" in unit
    from vllm_stack.render.host_commands import install_nginx_exporter

    # Debian's own unit (every interface, :9113) is disabled after the install
    assert install_nginx_exporter().endswith("sudo systemctl disable --now prometheus-nginx-exporter.service")


def test_blackbox_module_verifies_a_provided_certificate_and_skips_a_self_signed_one():
    mod = FM.blackbox_config(host_cfg())["modules"][D.BLACKBOX_MODULE]
    assert mod["prober"] == "http" and mod["http"]["fail_if_not_ssl"] is True
    assert mod["http"]["tls_config"] == {"insecure_skip_verify": True}
    mod = FM.blackbox_config(k8s_cfg(front={"tls": "provided", "domain": "llm.example.com"}))["modules"]
    assert mod[D.BLACKBOX_MODULE]["http"]["tls_config"] == {"server_name": "llm.example.com"}


def test_probe_job_uses_the_standard_relabelling():
    job = FM.probe_scrape_config("https://10.0.0.10/health")
    assert job == {
        "job_name": "blackbox-tls",
        "metrics_path": "/probe",
        "params": {"module": ["front_tls"]},
        "static_configs": [{"targets": ["https://10.0.0.10/health"]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": "127.0.0.1:9115"},
        ],
    }
    # a plain-HTTP front has no certificate: no probe
    assert build(host_cfg(front={"tls": "none"})).probe_targets() == ()


def _objs(cfg) -> list[dict]:
    files = K.render_front_files(cfg, upstream_auth=True)
    return K.front_objects(cfg, files, keys_secret="keys", tls_secret="tls")


def test_kubernetes_front_pods_carry_the_exporter_sidecar_behind_a_cluster_ip_service():
    cfg = k8s_cfg()
    objs = {(o["kind"], o["metadata"]["name"]): o for o in _objs(cfg)}
    pod = objs[("Deployment", "vllm-stack-front")]["spec"]["template"]["spec"]
    exporter = next(c for c in pod["containers"] if c["name"] == "nginx-exporter")
    assert exporter["image"] == D.NGINX_EXPORTER_IMAGE == "nginx/nginx-prometheus-exporter:1.4.0"
    assert exporter["args"] == ["--nginx.scrape-uri=http://127.0.0.1:8080/stub_status", "--web.listen-address=:9113"]
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9113, "protocol": "TCP"}]
    assert exporter["securityContext"]["runAsNonRoot"] is True and exporter["securityContext"]["runAsUser"] == 65534
    assert "readinessProbe" not in exporter and "livenessProbe" not in exporter  # never gates the front's traffic
    svc = objs[("Service", "vllm-stack-front-metrics")]["spec"]
    assert svc["type"] == "ClusterIP" and svc["ports"] == [
        {"name": "metrics", "port": 9113, "targetPort": "metrics", "protocol": "TCP"}
    ]
    # the public Service never carries the metrics port
    public = objs[("Service", "vllm-stack-front")]["spec"]
    assert {p["name"] for p in public["ports"]} == {"https", "http"}


def test_kubernetes_prometheus_scrapes_the_sidecars_and_probes_the_front_service():
    cfg = k8s_cfg()
    doc = yaml.safe_load(render_prometheus_yml_k8s(cfg))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    keep = jobs["nginx"]["relabel_configs"][:2]
    assert keep[0]["regex"] == "vllm-stack;front" and keep[1]["regex"] == "metrics"
    assert jobs["blackbox-tls"]["static_configs"] == [{"targets": ["https://vllm-stack-front.vllm.svc/health"]}]
    objs = K.monitoring_objects(cfg, render_prometheus_yml_k8s(cfg), A.render_alert_rules(cfg), {}, grafana_secret="g")
    prom = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "vllm-stack-prometheus")
    bb = next(c for c in prom["spec"]["template"]["spec"]["containers"] if c["name"] == "blackbox-exporter")
    assert bb["image"] == D.BLACKBOX_IMAGE == "prom/blackbox-exporter:v0.25.0"
    assert bb["args"] == ["--config.file=/etc/prometheus/blackbox.yml", "--web.listen-address=127.0.0.1:9115"]
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "vllm-stack-prometheus-config")
    assert yaml.safe_load(cm["data"]["blackbox.yml"]) == FM.blackbox_config(cfg)
    # plain HTTP: no probe, no sidecar
    plain = k8s_cfg(front={"tls": "none"})
    assert "blackbox-tls" not in {
        j["job_name"] for j in yaml.safe_load(render_prometheus_yml_k8s(plain))["scrape_configs"]
    }
    # the operator: a ServiceMonitor for the front-metrics Service
    sms = {o["metadata"]["name"]: o for o in service_monitors(k8s_cfg(monitoring={"prometheusOperator": True}))}
    assert sms["vllm-stack-front-metrics"]["spec"]["endpoints"][0]["port"] == "metrics"


def test_front_alert_expressions_carry_the_configured_numbers():
    cfg = host_cfg(
        models=[
            {**MODEL, "load": {"peakRps": 4, "bufferPct": 50}},
            {**MODEL, "name": "other", "load": {"peakRps": 2, "bufferPct": 0}},
        ],
        monitoring={"alerts": {"frontRateFactor": 2, "http5xxRatio": 0.1, "tlsExpiryDays": 21, "tlsExpiryFor": "30m"}},
    )
    rules = {r.name: r for r in A.alert_rules(cfg)}
    # planned peak: 4 x 1.5 + 2 x 1.0 = 8/s, x factor 2
    assert A.planned_peak_rps(cfg) == 8.0
    assert rules[A.FRONT_REQUEST_RATE].expr == 'sum by (job) (rate(nginx_http_requests_total{job="nginx"}[5m])) > 16'
    total = 'sum by (model) (rate(http_requests_total{job="vllm"}[5m]))'
    assert rules[A.HTTP_5XX_RATIO].expr == (
        f'(sum by (model) (rate(http_requests_total{{job="vllm",status="5xx"}}[5m])) or 0 * {total}) / {total} > 0.1'
    )
    assert rules[A.FRONT_CERT_EXPIRY].expr == (
        '(probe_ssl_earliest_cert_expiry{job="blackbox-tls"} - time()) / 86400 < 21'
    )
    assert rules[A.FRONT_CERT_EXPIRY].for_ == "30m"
    assert rules[A.FRONT_NGINX_DOWN].expr == 'up{job="nginx"} == 0 or nginx_up{job="nginx"} == 0'
    assert rules[A.FRONT_PROBE_FAILED].expr == 'probe_success{job="blackbox-tls"} == 0'
    assert {rules[n].severity for n in (A.FRONT_NGINX_DOWN, A.FRONT_PROBE_FAILED, A.HTTP_5XX_RATIO)} == {"critical"}
    assert {rules[n].severity for n in (A.FRONT_REQUEST_RATE, A.FRONT_CERT_EXPIRY)} == {"warning"}
    # the default threshold is the 14 days
    assert rules[A.FRONT_CERT_EXPIRY].threshold == 21 and D.ALERT_TLS_EXPIRY_DAYS == 14
