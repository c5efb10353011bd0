"""The front's observers through the real tools: the exporter unit (`systemd-analyze verify` and
`security`), blackbox.yml (`prometheus-blackbox-exporter --config.check`, a broken one must fail),
and prometheus.yml with the nginx and probe jobs (`promtool check config`)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support import tools
from vllm_stack.deployment import build
from vllm_stack.loader import parse_config
from vllm_stack.render import front_monitoring as FM
from vllm_stack.render.alerts import render_alert_rules
from vllm_stack.render.prometheus import render_prometheus_yml

EXPOSURE_LIMIT = 3.5  # the vLLM unit's limit (issue 15)


def _cfg(**extra):
    raw = {
        "environment": "dev",
        "platform": "docker",
        "hostRuntime": "systemd",
        "hosts": [{"name": "gpu-1", "address": "10.0.0.10", "gpu": "L40S"}],
        "models": [{"name": "tiny", "model": "mistralai/Mistral-7B-v0.3", "gpu": "L40S"}],
    }
    raw.update(extra)
    return parse_config(raw, secrets=["tlsCertificate", "tlsPrivateKey"])


def test_exporter_unit_verifies_and_is_sandboxed(tmp_path):
    tools.require("systemd-analyze")
    tools.require("prometheus-nginx-exporter")  # ExecStart= must exist for verify
    ex = build(_cfg()).front_exporter
    assert ex is not None and ex.unit is not None
    unit = tmp_path / ex.unit
    unit.write_text(FM.render_exporter_unit(ex.unit, ex.listen))
    res = tools.systemd_verify(unit)
    assert res.ok, str(res)
    sec = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", sec.stdout + sec.stderr)
    assert m, sec.stdout[-2000:] + sec.stderr
    assert float(m.group(1)) <= EXPOSURE_LIMIT, m.group(0)
    # and the check bites: a misspelled key is reported
    unit.write_text(unit.read_text().replace("DynamicUser=yes", "DynamicUserr=yes"))
    assert not tools.systemd_verify(unit).ok


@pytest.mark.parametrize("tls", ["selfSigned", "provided"])
def test_blackbox_yml_passes_the_exporters_own_check(tmp_path, tls):
    tools.require("prometheus-blackbox-exporter")
    path = tmp_path / "blackbox.yml"
    path.write_text(FM.render_blackbox_yml(_cfg(front={"tls": tls, "domain": "llm.example.com"})))
    res = tools.blackbox_check_config(path)
    assert res.ok and "Config file is ok" in res.output, str(res)
    doc = yaml.safe_load(path.read_text())
    doc["modules"]["front_tls"]["http"]["tls_config"]["insecure_skip_verifyy"] = True
    path.write_text(yaml.safe_dump(doc))
    bad = tools.blackbox_check_config(path)
    assert not bad.ok and "insecure_skip_verifyy" in bad.output, str(bad)


def test_prometheus_yml_with_the_front_jobs_passes_promtool(tmp_path):
    tools.require("promtool")
    cfg = _cfg(monitoring={"host": "gpu-1"})
    d = build(cfg)
    (tmp_path / "vllm-alerts.yml").write_text(render_alert_rules(cfg))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        render_prometheus_yml(cfg, list(d.scrape_targets()), rule_files=["vllm-alerts.yml"], probes=d.probe_targets())
    )
    jobs = [j["job_name"] for j in yaml.safe_load(conf.read_text())["scrape_configs"]]
    assert jobs == ["vllm", "dcgm", "nginx", "blackbox-tls"]
    res = tools.promtool_check_config(conf)
    assert res.ok and "SUCCESS: 17 rules found" in res.output, str(res)
