"""Whole stacks through `python -m vllm_stack plan <file> --json` (one program per subprocess).

* good stacks (every Pulumi.*.yaml in the repo root and examples/*.yaml): no mandatory violation;
* the bad-case corpus (tests/policy/cases/*.yaml, `# expect: <policy-id>` header): exactly that
  policy fires and no other mandatory one.

Violations the config loader refuses before any program runs (`--dtype fp8` in extraArgs exits 2)
are covered on hand-built resources in test_checks.py; docs/policies.md lists them.
"""

from __future__ import annotations

import pytest

from vllm_policy import checks, shapes

from .helpers import LABEL_GPU, all_dumps, case_files, expected_policy, good_stack_files

pytestmark = pytest.mark.stack_plans

#: Rules that need the GPU model on the resource (the `vllm-stack/gpu` label / wrapper marker).
NEEDS_GPU_LABEL = {"model-fits-gpu", "fp8-requires-fp8-gpu"}


def _has_gpu_label(doc: dict) -> bool:
    return any(LABEL_GPU in shapes.resource_labels(r["type"], r["inputs"]) for r in doc["resources"])


def _show(violations: list[dict]) -> str:
    return (
        "\n".join(
            f"  {v['policy']} [{v['enforcement']}] {v['urn'].rsplit('::', 1)[-1]}: {v['message']}" for v in violations
        )
        or "  (none)"
    )


@pytest.mark.parametrize("path", good_stack_files(), ids=lambda p: p.name)
def test_good_stacks_have_no_mandatory_violation(plan_of, path):
    doc = plan_of(path)
    mandatory = [v for v in doc["violations"] if v["enforcement"] == "mandatory"]
    assert mandatory == [], f"{path.name}:\n{_show(mandatory)}"
    assert doc["returncode"] == 0


def test_there_are_good_stacks_and_a_corpus():
    names = {p.name for p in good_stack_files()}
    assert {"Pulumi.dev.yaml", "Pulumi.prod.yaml"} <= names
    assert 8 <= len(case_files()) <= 14


@pytest.mark.parametrize("path", case_files(), ids=lambda p: p.stem)
def test_bad_case_fires_exactly_its_policy(plan_of, path):
    expected = expected_policy(path)
    assert expected in checks.POLICY_IDS, f"{path.name}: unknown policy id {expected!r}"
    doc = plan_of(path)
    if expected in NEEDS_GPU_LABEL:  # the components label every vLLM workload with its GPU
        assert _has_gpu_label(doc), (
            f"{path.name}: no vLLM workload carries `{LABEL_GPU}`; {expected} cannot see the GPU"
        )
    fired = {v["policy"] for v in doc["violations"]}
    assert expected in fired, f"{path.name}: {expected} did not fire; got:\n{_show(doc['violations'])}"
    other_mandatory = [v for v in doc["violations"] if v["enforcement"] == "mandatory" and v["policy"] != expected]
    assert other_mandatory == [], f"{path.name}: other mandatory policies fired:\n{_show(other_mandatory)}"
    if any(v["enforcement"] == "mandatory" for v in doc["violations"]):
        assert doc["returncode"] == 1  # the plan's exit code blocks CI


@pytest.mark.parametrize("path", good_stack_files(), ids=lambda p: p.name)
def test_good_stacks_with_real_secret_values_have_no_violation_offline_or_under_the_cli(path):
    """Secrets as real-looking values (sk-…, hf_…, PEM keys; tests/stack SCAN_SECRETS) instead of
    placeholders: the secret rules must not mistake the stack's own secret stores for leaks, also
    in CLI mode, where secret-ness is unknown (secret_keys=None)."""
    from vllm_policy import checks, offline
    from vllm_policy.context import PolicyContext

    resources = all_dumps()[str(path)]
    assert not isinstance(resources, str), resources
    env = plan_env(path)
    assert offline.evaluate(resources, environment=env, pack_config={}) == []
    found: list[str] = []
    res = [checks.Res(r.type, r.inputs, r.urn, r.name, None, r.parent or "") for r in resources if r.custom]
    ctx = PolicyContext(env, {})
    for rule in checks.RULES:
        if rule.scope == "stack":
            rule.check(res, ctx, lambda m, urn=None, *, advisory=False, _id=rule.id: found.append(f"{_id}: {m}"))
        else:
            for r in res:
                rule.check(
                    r.type,
                    r.props,
                    ctx,
                    lambda m, *, advisory=False, _id=rule.id: found.append(f"{_id}: {m}"),
                    secret_keys=None,
                )
    assert found == []


def plan_env(path) -> str:
    import yaml

    return yaml.safe_load(path.read_text())["config"]["vllm-stack:environment"]
