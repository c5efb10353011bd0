"""Evaluate every registered policy over recorded resources (used by `vllm_stack plan`)."""
from __future__ import annotations


def evaluate(resources, *, environment: str, pack_config: dict) -> list[dict]:
    return []
