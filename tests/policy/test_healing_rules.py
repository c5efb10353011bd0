"""`vllm-replica-heals` (policies/vllm_policy/healing_rules.py), called directly: on hand-built
units/containers and on every resource of every shipped stack."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.policy.helpers import ROOT, all_dumps, good_stack_files
from vllm_policy.context import PolicyContext  # noqa: F401  (sys.path set by helpers)
from vllm_policy.healing_rules import POLICY_ID, REQUIRED_SANDBOX, SYSTEMD_SERVER, vllm_replica_heals
from vllm_stack import defaults as D
from vllm_stack.loader import load_stack_file
from vllm_stack.placement import place
from vllm_stack.render import systemd as Sd

CONTAINER = "docker:index/container:Container"


def found(resource_type: str, props: dict, config: dict | None = None) -> list[str]:
    out: list[str] = []
    vllm_replica_heals(resource_type, props, PolicyContext("prod", config or {}), lambda m, *a, **k: out.append(m))
    return out


def shipped_unit() -> str:
    cfg = load_stack_file(ROOT / "examples" / "Pulumi.docker-prod.yaml")
    spec = cfg.models[0]
    return Sd.render_systemd_unit(cfg, spec, place(cfg)[spec.name][0])


def server(unit: str) -> dict:
    """A SystemdVllmServer's registered inputs, as far as the rule reads them."""
    return {"model": "llama-8b", "unit": {"id": "unit", "path": "/etc/systemd/system/x.service", "content": unit}}


def with_line(unit: str, old: str, new: str | None) -> str:
    assert unit.count(old + "\n") == 1, old
    return unit.replace(old + "\n", "" if new is None else new + "\n")


def test_docstring_states_id_levels_and_threshold():
    from vllm_policy import healing_rules

    doc = healing_rules.__doc__ or ""
    assert POLICY_ID in doc and "prod mandatory, dev advisory" in doc and "marginSec" in doc
    from vllm_policy import checks

    rule = checks.rule(POLICY_ID)
    assert rule.levels == {"dev": "advisory", "prod": "mandatory"}
    assert rule.threshold("marginSec").default == D.PROBE_PERIOD_SEC


def test_the_shipped_unit_passes():
    assert found(SYSTEMD_SERVER, server(shipped_unit())) == []


def test_unit_without_watchdog_fails():
    unit = with_line(shipped_unit(), f"WatchdogSec={D.UNHEALTHY_RESTART_SEC}", None)
    (msg,) = found(SYSTEMD_SERVER, server(unit))
    assert "llama-8b: no WatchdogSec=" in msg


def test_watchdog_that_could_kill_a_draining_replica_fails():
    unit = shipped_unit()  # TimeoutStopSec=35 (drain 20 + 15)
    assert "TimeoutStopSec=35\n" in unit
    ok = with_line(unit, "WatchdogSec=60", "WatchdogSec=45")  # 35 + 10
    assert found(SYSTEMD_SERVER, server(ok)) == []
    bad = with_line(unit, "WatchdogSec=60", "WatchdogSec=44")
    (msg,) = found(SYSTEMD_SERVER, server(bad))
    assert "WatchdogSec=44 is below TimeoutStopSec=35 + 10 s" in msg
    # the margin is configurable
    assert found(SYSTEMD_SERVER, server(ok), {POLICY_ID: {"marginSec": 20}})
    assert found(SYSTEMD_SERVER, server(with_line(unit, "WatchdogSec=60", "WatchdogSec=1min"))) == []


@pytest.mark.parametrize("key", sorted(REQUIRED_SANDBOX))
def test_each_sandbox_setting_is_required(key):
    unit = shipped_unit()
    line = next(ln for ln in unit.splitlines() if ln.startswith(f"{key}="))
    msgs = found(SYSTEMD_SERVER, server(with_line(unit, line, None)))
    assert len(msgs) == 1 and f"llama-8b: unset; the sandbox needs {key}=" in msgs[0], msgs


def test_a_weaker_value_fails():
    msgs = found(SYSTEMD_SERVER, server(with_line(shipped_unit(), "ProtectSystem=strict", "ProtectSystem=full")))
    assert msgs == ["vLLM unit of llama-8b: ProtectSystem=full; the sandbox needs ProtectSystem=strict "
                    "(systemd-analyze security <= 3.5)"]  # fmt: skip


def test_unit_text_outside_the_server_component_is_not_read():
    unit = with_line(shipped_unit(), f"WatchdogSec={D.UNHEALTHY_RESTART_SEC}", None)
    assert found("command:remote:Command", {"stdin": unit}) == []
    assert found("command:remote:Command", {"create": "sudo systemctl restart x"}) == []


def test_vllm_container_needs_a_healthcheck():
    props = {"image": D.VLLM_IMAGE, "healthcheck": {"tests": ["CMD", "python3", "-c", "..."]}}
    assert found(CONTAINER, props) == []
    bare = copy.deepcopy(props)
    del bare["healthcheck"]
    (msg,) = found(CONTAINER, bare)
    assert "without a healthcheck" in msg and D.HEALER_NAME in msg
    assert found(CONTAINER, {"image": "nginx:1.27"}) == []


def test_every_shipped_stack_passes_and_the_rule_sees_its_replicas():
    seen = 0
    for path in good_stack_files():
        resources = all_dumps()[str(path)]
        assert not isinstance(resources, str), resources
        for r in resources:
            assert found(r.type, r.inputs) == [], (Path(path).name, r.name)
            if r.type in (CONTAINER, SYSTEMD_SERVER):
                seen += 1
    assert seen >= 4  # docker containers and systemd units of the shipped stacks
