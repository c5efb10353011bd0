"""Run the CrossGuard pack's plain check functions over a recorded program run.

The pack (`policies/`) and the offline plan share one implementation per rule: this
module only imports `policies/vllm_policy` and feeds it the recorded resources.
"""
from __future__ import annotations

import sys
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parents[1] / "policies"


def _registry():
    if str(POLICY_DIR) not in sys.path:
        sys.path.insert(0, str(POLICY_DIR))
    from vllm_policy import offline  # noqa: WPS433 (import after path set-up)
    return offline


def run_policies(resources, cfg, pack_config: dict | None = None) -> list[dict]:
    """Violations as dicts: policy, enforcement, message, urn (sorted, stable)."""
    return _registry().evaluate(resources, environment=cfg.environment, pack_config=pack_config or {})
