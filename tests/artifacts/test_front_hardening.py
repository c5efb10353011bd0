"""Front hardening (issue 15): HSTS in prod, worker_rlimit_nofile >= 2 x worker_connections,
Grafana on the monitoring host's loopback only (SSH platform), a liveness probe on the DCGM
DaemonSet. Rendered configs through `nginx -t`; the HSTS header checked on a live nginx on
127.0.0.1 (every answer of the TLS server, a proxied 401 and the front's own /health)."""

from __future__ import annotations

import re

import pytest

from tests.support.front import launch_front, make_pki
from tests.support.tools import nginx_t, require
from vllm_stack import defaults as D
from vllm_stack.deployment import build
from vllm_stack.endpoints import Backend
from vllm_stack.loader import parse_config
from vllm_stack.render.grafana import grafana_ini_overrides
from vllm_stack.render.k8s_nodes import dcgm_exporter
from vllm_stack.render.nginx import FrontListen, NginxPaths, render_front

from tests.artifacts.test_nginx_artifacts import PROD_BACKENDS, check, dev_cfg, prod_cfg, write_front

HSTS = 'add_header Strict-Transport-Security "max-age=63072000" always;'


def _docker_cfg(env: str):
    return parse_config(
        {
            "environment": env,
            "platform": "docker",
            "hosts": [{"name": "gpu-1", "address": "10.0.0.10", "gpu": "L40S"}],
            "models": [{"name": "tiny", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}],
            "front": {"tls": "selfSigned", "domain": "localhost"},
        }
    )


def _rlimit(conf: str) -> tuple[int, int]:
    rl = int(re.search(r"^worker_rlimit_nofile (\d+);", conf, flags=re.M).group(1))
    wc = int(re.search(r"^\s*worker_connections (\d+);", conf, flags=re.M).group(1))
    return rl, wc


def test_prod_front_sends_hsts_everywhere_and_passes_nginx_t(tmp_path):
    require("nginx")
    paths = NginxPaths.under(tmp_path, upstream_auth=True)
    files = render_front(prod_cfg(), PROD_BACKENDS, paths=paths, user=None)
    conf = files["nginx.conf"]
    # server level, and in every proxied location (their own add_header drops the server's)
    proxied = conf.count("proxy_pass http://")
    assert conf.count(HSTS) == proxied + 1 and proxied >= 2
    rl, wc = _rlimit(conf)
    assert rl >= 2 * wc and (rl, wc) == (8192, 4096)
    write_front(tmp_path, files, paths)
    check(tmp_path, paths)


def test_dev_and_plain_http_fronts_send_no_hsts():
    assert (
        "Strict-Transport-Security" not in render_front(dev_cfg(), [Backend("tiny", "127.0.0.1", 8000)])["nginx.conf"]
    )
    assert (
        "Strict-Transport-Security"
        not in render_front(dev_cfg(tls="none"), [Backend("tiny", "127.0.0.1", 8000)])["nginx.conf"]
    )


def test_rlimit_below_twice_connections_is_what_nginx_t_would_not_catch(tmp_path):
    """nginx -t accepts any rlimit: the assertion above, not the tool, holds the 2x rule."""
    require("nginx")
    paths = NginxPaths.under(tmp_path)
    files = render_front(
        dev_cfg(), [Backend("tiny", "127.0.0.1", 8000)], paths=paths, listen=FrontListen("127.0.0.1", 18080, 18443)
    )
    files["nginx.conf"] = re.sub(r"worker_rlimit_nofile \d+;", "worker_rlimit_nofile 1024;", files["nginx.conf"])
    write_front(tmp_path, files, paths)
    assert nginx_t(paths.conf, tmp_path).ok
    rl, wc = _rlimit(files["nginx.conf"])
    assert not rl >= 2 * wc


@pytest.mark.timeout(60)
def test_live_prod_front_answers_with_hsts(tmp_path):
    require("nginx")
    pki = make_pki(tmp_path / "pki")
    cfg = _docker_cfg("prod")
    fr = launch_front(pki, cfg, [Backend("tiny", "127.0.0.1", 9)], keys=["k" * 32], backend_key=None)
    try:
        with fr.client() as c:
            r401 = c.get(f"{fr.https}/tiny/v1/models")
            health = c.get(f"{fr.https}/health")
        assert r401.status_code == 401 and r401.headers["strict-transport-security"] == D.HSTS_HEADER
        assert health.headers["strict-transport-security"] == D.HSTS_HEADER
    finally:
        fr.stop()


def test_grafana_listens_on_loopback_on_ssh_hosts_only():
    docker = grafana_ini_overrides(_docker_cfg("dev"))
    assert docker["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert build(_docker_cfg("dev")).grafana_url == "http://127.0.0.1:3000"
    k8s = parse_config(
        {
            "environment": "dev",
            "platform": "kubernetes",
            "models": [{"name": "tiny", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}],
        }
    )
    assert "GF_SERVER_HTTP_ADDR" not in grafana_ini_overrides(k8s)  # the pod IP, behind a ClusterIP Service


def test_dcgm_daemonset_has_a_liveness_probe():
    k8s = parse_config(
        {
            "environment": "prod",
            "platform": "kubernetes",
            "models": [{"name": "tiny", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}],
        }
    )
    (c,) = dcgm_exporter(k8s)["spec"]["template"]["spec"]["containers"]
    lp = c["livenessProbe"]
    assert lp["httpGet"] == {"path": "/health", "port": "metrics"}
    assert (lp["initialDelaySeconds"], lp["periodSeconds"], lp["failureThreshold"]) == (45, 10, 6)
