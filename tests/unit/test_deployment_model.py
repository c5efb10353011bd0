"""The deployment model is the one place names, paths and URLs are spelled."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vllm_stack import deployment as M
from vllm_stack.loader import load_stack_file

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(ROOT.glob("Pulumi.*.yaml")) + sorted((ROOT / "examples").glob("Pulumi.*.yaml"))
#: Product code: the package, the stack program, the policy pack (tests and consumer examples may spell values).
PRODUCT = [*ROOT.joinpath("vllm_stack").rglob("*.py"), ROOT / "__main__.py", *ROOT.joinpath("policies").rglob("*.py")]
FIXED = {
    k: getattr(M, k)
    for k in (
        "SECRET_PLACEHOLDER",
        "MODEL_SECRET",
        "FRONT_KEYS_SECRET",
        "FRONT_TLS_SECRET",
        "GRAFANA_SECRET",
        "PROMETHEUS_CONTAINER",
        "GRAFANA_CONTAINER",
        "ALERTMANAGER_CONTAINER",
        "ALERTMANAGER_DIR",
        "MONITORING_DIR",
        "RULES_FILE",
        "UPSTREAM_AUTH_PATH",
        "CONTAINER_SECRET_ENV",
    )
}


def _model_values() -> set[str]:
    values = set(FIXED.values())
    for path in STACKS:
        d = M.build(load_stack_file(path))
        values |= {d.prometheus_url, d.front_url} | {u for _, u in d.routes}
        values |= {d.grafana_url} if d.grafana_url else set()
        values |= {d.alertmanager_url} if d.alertmanager_url else set()
        for s in d.servers:
            values |= {v for v in (s.container, s.unit, s.wrapper, s.deployment, s.secret_env) if v}
    return values


def _literals(path: Path) -> set[str]:
    """String constants of a module, docstrings excepted (prose may quote an example name)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    }


def test_no_model_value_is_spelled_outside_the_model():
    values = _model_values()
    homes = {
        ROOT / "vllm_stack" / "deployment.py",
        ROOT / "vllm_stack" / "defaults.py",
    }  # each value defined once, there
    offenders = sorted(
        f"{p.relative_to(ROOT)}: {lit!r}"
        for p in PRODUCT
        if p not in homes
        for lit in _literals(p)
        for v in values
        if v == lit or (len(v) > 12 and v in lit)
    )
    assert offenders == []


def test_literal_check_sees_a_second_spelling(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('NAME = "vllm-grafana"\n')
    assert "vllm-grafana" in _literals(probe) & _model_values()


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_model_names_every_server_and_url(path):
    cfg = load_stack_file(path)
    d = M.build(cfg)
    assert [n for n, _ in d.routes] == [m.name for m in cfg.models] + ["default"]
    for s in d.servers:
        if cfg.platform == "kubernetes":
            assert s.deployment == f"{s.model}-{'on-demand' if s.capacity == 'onDemand' else 'spot'}"
        elif cfg.host_runtime == "systemd":
            assert s.unit and s.unit.endswith(".service") and s.container is None
        else:
            assert s.container == f"vllm-{s.name}" and s.unit is None
    if cfg.platform != "kubernetes":
        assert d.prometheus_url == "http://127.0.0.1:9090"  # where Prometheus listens (issue 13 defect)
        # every replica, every host's DCGM exporter, and the front's nginx exporter
        assert len(d.scrape_targets()) == len(d.servers) + len(cfg.hosts) + 1
        ex = d.front_exporter
        assert ex is not None and ex.host == d.front_host and ex.scrape_target.job == "nginx"
        if cfg.host_runtime == "systemd":
            assert ex.unit == "vllm-nginx-exporter.service" and ex.container is None
        else:
            assert ex.container == "vllm-nginx-exporter" and ex.unit is None
        # Prometheus on the front host (the shipped stacks): the exporter stays on loopback
        assert d.monitoring_host == d.front_host and ex.listen == "127.0.0.1:9113"
        if cfg.front.tls != "none":
            assert d.probe_targets() == ("https://127.0.0.1/health",)
            assert d.tls_probe is not None and d.tls_probe.container == "vllm-blackbox-exporter"
    else:
        assert d.grafana_url is None or d.grafana_url.startswith("http://vllm-stack-grafana.")
        assert d.front_exporter is not None and d.front_exporter.sidecar == "nginx-exporter"
        assert d.front_exporter.scrape_target.address == f"vllm-stack-front-metrics.{cfg.kubernetes.namespace}.svc"
        if cfg.front.tls != "none" and not cfg.monitoring.prometheus_operator:
            assert d.probe_targets() == (f"https://vllm-stack-front.{cfg.kubernetes.namespace}.svc/health",)
        # the model Secret holds the API key, and the HF token exactly when the stack sets one
        in_model_secret = {r.key: r.env for r in d.secrets if r.k8s_secret == M.MODEL_SECRET}
        assert in_model_secret == {
            "apiKey": "VLLM_API_KEY",
            **({"hfToken": "HF_TOKEN"} if "hfToken" in cfg.secrets else {}),
        }
