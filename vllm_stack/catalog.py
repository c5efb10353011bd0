"""GPU and model catalogs, loaded once from the YAML data files beside this module.

Data, not code: a new GPU or model is a YAML edit, and every number has its source
written next to it in the data file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).with_name("data")
FP8_MIN_COMPUTE_CAPABILITY = 8.9  # Ada/Hopper/Blackwell have FP8 tensor cores (vllm-facts.md)


@dataclass(frozen=True)
class Gpu:
    id: str
    vram_mib: int
    compute_capability: float
    on_demand_per_hour: float
    spot_per_hour: float | None
    price_source: str

    @property
    def vram_bytes(self) -> int:
        return self.vram_mib * 1024 * 1024

    @property
    def supports_fp8(self) -> bool:
        return self.compute_capability >= FP8_MIN_COMPUTE_CAPABILITY


@dataclass(frozen=True)
class Architecture:
    params: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    max_positions: int


@dataclass(frozen=True)
class ModelInfo:
    id: str
    architecture: Architecture
    gated: bool
    aliases: tuple[str, ...] = ()


def _architecture(raw: dict[str, Any]) -> Architecture:
    return Architecture(
        params=float(raw["params"]),
        layers=int(raw["layers"]),
        attention_heads=int(raw["attentionHeads"]),
        kv_heads=int(raw["kvHeads"]),
        head_dim=int(raw["headDim"]),
        max_positions=int(raw["maxPositions"]),
    )


@lru_cache(maxsize=1)
def gpus() -> dict[str, Gpu]:
    raw = yaml.safe_load((DATA_DIR / "gpus.yaml").read_text())
    return {
        gid: Gpu(
            id=gid,
            vram_mib=int(v["vramMiB"]),
            compute_capability=float(v["computeCapability"]),
            on_demand_per_hour=float(v["onDemandPerHour"]),
            spot_per_hour=None if v.get("spotPerHour") is None else float(v["spotPerHour"]),
            price_source=str(v["priceSource"]),
        )
        for gid, v in raw.items()
    }


@lru_cache(maxsize=1)
def models() -> dict[str, ModelInfo]:
    """All catalog models keyed by every id they answer to (base id and aliases)."""
    raw = yaml.safe_load((DATA_DIR / "models.yaml").read_text())
    out: dict[str, ModelInfo] = {}
    for mid, v in raw.items():
        info = ModelInfo(
            id=mid,
            architecture=_architecture(v),
            gated=bool(v.get("gated", False)),
            aliases=tuple(v.get("aliases") or ()),
        )
        for key in (mid, *info.aliases):
            out[key] = info
    return out


def gpu_ids() -> tuple[str, ...]:
    return tuple(gpus())


def lookup_model(model_id: str) -> ModelInfo | None:
    return models().get(model_id)
