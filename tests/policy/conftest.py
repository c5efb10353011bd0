"""Policy tier fixtures (helpers live in tests/policy/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import all_plans


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "stack_plans: runs `python -m vllm_stack plan` on whole stack files (a subprocess per stack, ~2-4 s each)",
    )


@pytest.fixture(scope="session")
def plan_of():
    """plan_of(path) -> the `plan --json` document (all stack plans run once, 3 at a time)."""

    def get(path: Path) -> dict:
        doc = all_plans()[str(path)]
        assert "error" not in doc, doc.get("error")
        return doc

    return get
