"""Stack files are read as the Pulumi CLI reads them (YAML 1.2 core schema), so the plan and
`pulumi up` see the same values."""

from __future__ import annotations

import datetime

import pytest

from vllm_stack.loader import ConfigError
from vllm_stack.stackfile import parse_yaml


@pytest.mark.parametrize(
    "text, want",
    [
        ("7.6e9", 7.6e9),
        ("1e20", 1e20),
        ("-3", -3),
        ("010", 10),
        ("0x1F", 31),
        ("0o17", 15),
        ("1.5", 1.5),
        ("true", True),
        ("False", False),
        ("yes", "yes"),
        ("on", "on"),
        ("No", "No"),
        ("~", None),
        ("null", None),
        ("2026-01-01", "2026-01-01"),
        ("1_000", "1_000"),
        (".5", 0.5),
        ("5.", 5.0),
    ],
)
def test_plain_scalars_follow_yaml_1_2(text, want):
    value = parse_yaml(f"a: {text}\n")["a"]
    assert value == want and type(value) is type(want), (text, value)
    assert not isinstance(value, datetime.date)


def test_infinity_is_a_float_that_the_config_then_refuses():
    assert parse_yaml("a: .inf\n")["a"] == float("inf")


def test_duplicate_keys_are_refused_with_their_path():
    with pytest.raises(ConfigError) as exc:
        parse_yaml("config:\n  a: 1\n  a: 2\n", "s.yaml")
    assert "config.a" in str(exc.value) and "duplicate key" in str(exc.value)
