"""rollout-timeout-covers-startup (policies/vllm_policy/rollout_rules.py), called directly on the
component inputs the shipped stacks register (tests/stack/program_dump) and on mutations of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from policies.vllm_policy.context import PolicyContext
from policies.vllm_policy.rollout_rules import (
    DOCKER_SERVER,
    K8S_SERVER,
    POLICY_ID,
    duration_seconds,
    rollout_timeout_covers_startup,
)
from tests.stack.conftest import dump

ROOT = Path(__file__).resolve().parents[2]
STACKS = [ROOT / "Pulumi.dev.yaml", ROOT / "Pulumi.prod.yaml", *sorted((ROOT / "examples").glob("Pulumi.*.yaml"))]


def _servers(stack: Path) -> list[tuple[str, dict]]:
    d = dump(str(stack))
    return [(r["type"], r["inputs"]) for r in d["resources"] if r["type"] in (K8S_SERVER, DOCKER_SERVER)]


def _check(rtype: str, props: dict, config: dict | None = None) -> list[str]:
    found: list[str] = []
    rollout_timeout_covers_startup(rtype, props, PolicyContext("prod", config or {}), lambda m, **_: found.append(m))
    return found


def _one(stack: str, rtype: str, name_part: str) -> dict:
    for t, props in _servers(ROOT / stack):
        text = json.dumps(props)
        if t == rtype and name_part in text:
            return copy.deepcopy(props)
    raise AssertionError((stack, rtype, name_part))


def test_doc_and_levels():
    from policies.vllm_policy import rollout_rules

    assert POLICY_ID in (rollout_rules.__doc__ or "")
    from policies.vllm_policy import checks

    assert checks.rule(POLICY_ID).levels == {"dev": "advisory", "prod": "mandatory"}


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_every_shipped_stack_passes(stack):
    servers = _servers(stack)
    if not servers:  # systemd runtime: TimeoutStartSec is the unit's budget (not this rule)
        assert "hostRuntime: systemd" in stack.read_text()
        return
    for rtype, props in servers:
        assert _check(rtype, props) == [], (rtype, props.get("model"))


def test_durations():
    assert [duration_seconds(t) for t in ("30m", "1h30m", "1800s", "2h", "", "10", "m", None)] == [
        1800,
        5400,
        1800,
        7200,
        None,
        None,
        None,
        None,
    ]


def test_k8s_rollout_shorter_than_the_70b_budget_is_refused():
    props = _one("Pulumi.prod.yaml", K8S_SERVER, "llama-70b-on-demand")
    props["rolloutTimeout"] = "10m"  # pulumi-kubernetes' default
    (msg,) = _check(K8S_SERVER, props)
    assert "rollout timeout 10m (600 s) is shorter than" in msg and "(2700 s)" in msg  # the probe: 270 x 10 s


def test_an_understated_declared_budget_does_not_hide_the_model_budget():
    props = _one("Pulumi.prod.yaml", K8S_SERVER, "llama-70b-on-demand")
    props["startupBudgetSeconds"] = 60
    props["rolloutTimeout"] = "20m"  # far above the declared 60 s, below the probe's 270 x 10 s
    (msg,) = _check(K8S_SERVER, props)
    assert "2700 s" in msg  # the startup probe: 270 x 10 s (= the model's own budget)
    pod = props["deployment"]["spec"]["template"]["spec"]
    pod["containers"][0]["startupProbe"]["failureThreshold"] = 3
    (msg,) = _check(K8S_SERVER, props)
    assert "the startup budget of meta-llama/Llama-3.1-70B-Instruct (2696 s)" in msg  # from the argv


def test_progress_deadline_shorter_than_the_rollout_is_refused():
    props = _one("Pulumi.prod.yaml", K8S_SERVER, "llama-70b-on-demand")
    props["deployment"]["spec"]["progressDeadlineSeconds"] = 600
    (msg,) = _check(K8S_SERVER, props)
    assert "progressDeadlineSeconds 600 is shorter than its rollout timeout 50m (3000 s)" in msg


def test_docker_health_wait_shorter_than_the_budget_is_refused_and_missing_is_refused():
    props = _one("Pulumi.dev.yaml", DOCKER_SERVER, "llama-8b")
    props["healthWaitSeconds"] = 60
    (msg,) = _check(DOCKER_SERVER, props)
    assert "health wait 60 s is shorter than" in msg and "(900 s)" in msg
    del props["healthWaitSeconds"]
    (msg,) = _check(DOCKER_SERVER, props)
    assert "no healthWaitSeconds" in msg


def test_threshold_from_the_pack_config():
    props = _one("Pulumi.dev.yaml", DOCKER_SERVER, "llama-8b")
    assert _check(DOCKER_SERVER, props) == []  # 1200 s against 900 s
    (msg,) = _check(DOCKER_SERVER, props, {POLICY_ID: {"minRolloutOverStartup": 1.5}})
    assert "(900 s x 1.5)" in msg


def test_other_resources_are_not_judged():
    assert _check("kubernetes:apps/v1:Deployment", {"spec": {}}) == []
