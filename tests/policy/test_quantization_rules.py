"""`quantization-matches-checkpoint` (policies/vllm_policy/quantization_rules.py), called directly."""

from __future__ import annotations

import pytest

from tests.policy.helpers import VLLM_ARGV, evaluate, ids, server
from vllm_policy.context import PolicyContext
from vllm_policy.quantization_rules import quantization_matches_checkpoint


def run(args: list[str], env: str = "prod") -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    r = server(argv=args)

    def report(msg: str, advisory: bool = False) -> None:
        out.append((msg, advisory))

    quantization_matches_checkpoint(r.type, r.inputs, PolicyContext(env), report)
    return out


def argv(model: str, *extra: str) -> list[str]:
    return [model, *VLLM_ARGV[1:], *extra]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_awq_on_a_16bit_checkpoint_is_mandatory(env):
    (msg, advisory), = run(argv("meta-llama/Llama-3.1-70B-Instruct", "--quantization", "awq"), env)  # fmt: skip
    assert not advisory
    assert "--quantization awq on meta-llama/Llama-3.1-70B-Instruct, a 16-bit checkpoint" in msg
    assert msg.endswith("allowed: (no flag), fp8")


def test_fp8_on_an_awq_checkpoint_is_mandatory():
    (msg, advisory), = run(argv("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", "-q", "fp8"))  # fmt: skip
    assert not advisory and "a pre-quantized AWQ checkpoint" in msg and msg.endswith("allowed: awq")


@pytest.mark.parametrize("flag", ["awq", "awq_marlin", "AWQ"])
def test_explicit_awq_on_an_awq_checkpoint_is_advisory(flag):
    (msg, advisory), = run(argv("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", "--quantization", flag))  # fmt: skip
    assert advisory and "leave the flag out" in msg


@pytest.mark.parametrize(
    "args",
    [
        argv("meta-llama/Llama-3.1-70B-Instruct", "--quantization", "fp8"),  # online FP8
        argv("meta-llama/Llama-3.1-70B-Instruct"),  # no flag
        argv("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"),  # detection, as the stack renders it
        argv("/models/custom", "--quantization", "awq"),  # not in the catalog: cannot judge
    ],
)
def test_loadable_or_unjudgeable_passes(args):
    assert run(args) == []


def test_other_methods_are_judged_on_pre_quantized_checkpoints_only():
    assert run(argv("meta-llama/Llama-3.1-8B-Instruct", "--quantization", "fp8_per_tensor")) == []  # online method
    (msg, advisory), = run(argv("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "--quantization", "torchao"))  # fmt: skip
    assert not advisory and "refuses to start" in msg


def test_registered_with_a_mandatory_and_an_advisory_half():
    bad = evaluate([server(argv=argv("meta-llama/Llama-3.1-8B-Instruct", "--quantization", "awq"))], "dev")
    assert ids(bad, "mandatory") == {"quantization-matches-checkpoint"}
