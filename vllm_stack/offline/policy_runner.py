"""Run the CrossGuard pack's plain check functions over a recorded program run.

The pack (`policies/`) and the offline plan share one implementation per rule: this
module only imports `policies/vllm_policy` and feeds it the recorded resources.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import StackConfig
    from .engine import RecordedResource

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"


def run_policies(
    resources: Iterable[RecordedResource], cfg: StackConfig, pack_config: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Violations as dicts: policy, enforcement, message, urn (sorted, stable)."""
    if str(POLICY_DIR) not in sys.path:
        sys.path.insert(0, str(POLICY_DIR))
    from vllm_policy import offline  # noqa: WPS433 (import after path set-up)

    return offline.evaluate(resources, environment=cfg.environment, pack_config=pack_config or {})
