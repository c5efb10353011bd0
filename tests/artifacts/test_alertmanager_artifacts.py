"""Rendered alertmanager.yml through Debian's amtool (prometheus-alertmanager 0.25).

Every shipped stack's file (rendered as the plan records it, with placeholders for the
receivers' secrets) and one with every receiver type pass `amtool check-config`; a mutated
file (a route to a receiver that does not exist) must fail, so the check bites.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import tools
from vllm_stack.deployment import SECRET_PLACEHOLDER
from vllm_stack.loader import load_stack_file, parse_config
from vllm_stack.render import alertmanager as AM

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(ROOT.glob("Pulumi.*.yaml")) + sorted((ROOT / "examples").glob("Pulumi.*.yaml"))

EVERY_RECEIVER = {
    "environment": "prod",
    "platform": "kubernetes",
    "models": [{"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}],
    "monitoring": {
        "alertmanager": {
            "receivers": [
                {"name": "hook", "type": "webhook"},
                {"name": "pager", "type": "pagerduty", "severities": ["critical"]},
                {"name": "chat", "type": "slack", "severities": ["warning"]},
                {
                    "name": "mail",
                    "type": "email",
                    "to": "oncall@example.com",
                    "from": "alerts@example.com",
                    "smarthost": "smtp.example.com:587",
                    "username": "alerts",
                },
            ]
        }
    },
}


def _check(tmp_path: Path, name: str, text: str) -> tools.ToolResult:
    p = tmp_path / f"{name}.yml"
    p.write_text(text)
    return tools.amtool_check_config(p)


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_every_shipped_stack_passes_amtool(stack, tmp_path):
    tools.require("amtool")
    cfg = load_stack_file(stack)
    if not AM.deployed(cfg):
        pytest.skip(f"{stack.name} deploys no Alertmanager")
    text = AM.render_alertmanager_yml(cfg, AM.placeholder_secrets(cfg, SECRET_PLACEHOLDER))
    r = _check(tmp_path, stack.stem, text)
    assert r.ok, str(r)
    assert f"{len(cfg.monitoring.alertmanager.receivers) + 1} receivers" in r.output
    assert "2 inhibit rules" in r.output


def test_every_receiver_type_passes_amtool_and_a_broken_route_fails(tmp_path):
    tools.require("amtool")
    cfg = parse_config(EVERY_RECEIVER)
    text = AM.render_alertmanager_yml(cfg, AM.placeholder_secrets(cfg, SECRET_PLACEHOLDER))
    ok = _check(tmp_path, "every", text)
    assert ok.ok, str(ok)
    assert "5 receivers" in ok.output
    doc = yaml.safe_load(text)
    doc["route"]["routes"][0]["receiver"] = "nobody"
    bad = _check(tmp_path, "broken", yaml.safe_dump(doc))
    assert not bad.ok and "nobody" in bad.output
