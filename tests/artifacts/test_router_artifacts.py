"""The routing tier's artifacts, checked by the tools that consume them: the router's own argument
parser (the pinned vllm-router), systemd-analyze on its unit, kubernetes-validate on its objects."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import tools
from tests.support.router import router_venv
from tests.unit.test_routing import DIGEST, host_cfg, k8s_cfg
from vllm_stack import defaults as D
from vllm_stack.deployment import build
from vllm_stack.render import k8s
from vllm_stack.render import router as R

PARSE = """
import json, sys
from vllm_router.launch_router import parse_router_args
a = parse_router_args(sys.argv[1:])
print(json.dumps({k: getattr(a, k) for k in ("host", "port", "policy", "worker_urls", "service_discovery",
      "selector", "service_discovery_namespace", "service_discovery_port", "prometheus_port",
      "health_check_endpoint", "retry_max_retries", "health_failure_threshold")}, default=str))
"""


def parse(argv: list[str]) -> dict:
    py = router_venv() / "bin" / "python"
    out = subprocess.run([str(py), "-c", PARSE, *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_host_argv_as_the_router_parses_it():
    cfg = host_cfg("systemd", "session")
    r = build(cfg).routers[0]
    got = parse(R.router_argv(cfg, r))
    assert got["host"] == "127.0.0.1" and got["port"] == r.port and got["prometheus_port"] == r.metrics_port
    assert got["policy"] == "consistent_hash" and got["worker_urls"] == list(r.workers)
    assert got["service_discovery"] is False and got["health_check_endpoint"] == D.HEALTH_PATH
    assert got["retry_max_retries"] == D.ROUTER_RETRIES and got["health_failure_threshold"] == D.ROUTER_HEALTH_FAILURES


def test_k8s_argv_as_the_router_parses_it():
    cfg = k8s_cfg()
    got = parse(R.router_argv(cfg, build(cfg).routers[0]))
    assert got["service_discovery"] is True and got["worker_urls"] == []
    assert got["selector"] in (
        {"vllm-stack/model": "llama", "app.kubernetes.io/component": "vllm"},
        str({"vllm-stack/model": "llama", "app.kubernetes.io/component": "vllm"}),
    )
    assert got["service_discovery_namespace"] == "vllm" and got["service_discovery_port"] == D.VLLM_PORT


def test_the_parser_rejects_a_policy_it_does_not_know():
    py = router_venv() / "bin" / "python"
    out = subprocess.run([str(py), "-c", PARSE, "--policy", "prefix"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_router_unit_passes_systemd_analyze(tmp_path: Path):
    tools.require("systemd-analyze")
    cfg = host_cfg("systemd")
    r = build(cfg).routers[0]
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "vllm-router"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / str(r.unit)
    unit.write_text(R.render_router_unit(cfg, r, install_dir=str(tmp_path)))
    res = tools.systemd_verify(unit)
    assert res.ok, str(res)
    assert res.output.strip() == "", str(res)


def test_router_unit_check_catches_a_typo(tmp_path: Path):
    tools.require("systemd-analyze")
    cfg = host_cfg("systemd")
    r = build(cfg).routers[0]
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "vllm-router"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / str(r.unit)
    unit.write_text(R.render_router_unit(cfg, r, install_dir=str(tmp_path)).replace("Restart=", "Restartt="))
    assert not tools.systemd_verify(unit).ok


@pytest.mark.parametrize("operator", [False, True])
def test_router_objects_pass_kubernetes_validate_strict(tmp_path: Path, operator: bool):
    tools.require("kubernetes-validate")
    cfg = k8s_cfg()
    if operator:
        cfg = cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(update={"prometheus_operator": True})})
    objs = R.router_objects(cfg, build(cfg).routers[0], DIGEST)
    f = tmp_path / "router.yaml"
    f.write_text(k8s.dump_yaml(objs))
    res = tools.kubernetes_validate(f, D.K8S_VERSION)
    assert res.ok, str(res)
    assert res.output.count("passed for resource") == len(objs) == 6, res.output


def test_kubernetes_validate_rejects_a_broken_network_policy(tmp_path: Path):
    tools.require("kubernetes-validate")
    cfg = k8s_cfg()
    objs = R.router_objects(cfg, build(cfg).routers[0], DIGEST)
    np = next(o for o in objs if o["kind"] == "NetworkPolicy")
    np["spec"]["ingress"][0]["from"][0]["podSelectr"] = {}
    f = tmp_path / "router.yaml"
    f.write_text(k8s.dump_yaml(objs))
    assert not tools.kubernetes_validate(f, D.K8S_VERSION).ok
