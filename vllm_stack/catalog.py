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
    cuda_total_gib: float = 0.0  # torch.cuda.mem_get_info() total: what vLLM's utilization multiplies
    cuda_total_source: str = ""
    mem_bandwidth_gbs: float = 0.0  # peak HBM GB/s (roofline: decode)
    bf16_tflops: float = 0.0  # dense BF16 tensor TFLOPS (roofline: prefill)
    fp8_tflops: float | None = None  # dense FP8 tensor TFLOPS (None: no FP8 tensor cores)
    perf_source: str = ""

    @property
    def vram_bytes(self) -> int:
        """The nvidia-smi board size."""
        return self.vram_mib * 1024 * 1024

    @property
    def cuda_total_bytes(self) -> int:
        """What vLLM sees as the device total (below the board size); the board size when unknown."""
        return int(self.cuda_total_gib * 1024**3) if self.cuda_total_gib else self.vram_bytes

    @property
    def supports_fp8(self) -> bool:
        return self.compute_capability >= FP8_MIN_COMPUTE_CAPABILITY


@dataclass(frozen=True)
class Checkpoint:
    """Format of a pre-quantized checkpoint (its config.json `quantization_config`)."""

    method: str  # the stack's `quantization` value that loads it: awq | gptq | fp8
    bits: int
    group_size: int | None = None  # AWQ/GPTQ scale group (None: per-channel)
    zero_point: bool = False
    format: str | None = None  # e.g. compressed-tensors (FP8 repos from llm-compressor)


@dataclass(frozen=True)
class Architecture:
    params: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    max_positions: int
    # Module shapes (config.json); None for an inline architecture that does not give them.
    hidden_size: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None
    tied_embeddings: bool = False
    experts: int = 1  # MoE: num_local_experts (1 = dense MLP)
    experts_per_token: int = 1
    qkv_bias: bool = False
    qk_norm: bool = False
    checkpoint: Checkpoint | None = None  # pre-quantized checkpoint format (None: 16-bit weights)

    @property
    def has_shapes(self) -> bool:
        return self.hidden_size is not None and self.intermediate_size is not None and self.vocab_size is not None


@dataclass(frozen=True)
class ModelInfo:
    id: str
    architecture: Architecture
    gated: bool
    aliases: tuple[str, ...] = ()
    quantized_from: str | None = None  # pre-quantized checkpoint: the model it was quantized from


def _opt_int(raw: dict[str, Any], key: str) -> int | None:
    return None if raw.get(key) is None else int(raw[key])


def _checkpoint(raw: dict[str, Any] | None) -> Checkpoint | None:
    if raw is None:
        return None
    return Checkpoint(
        method=str(raw["method"]),
        bits=int(raw["bits"]),
        group_size=_opt_int(raw, "groupSize"),
        zero_point=bool(raw.get("zeroPoint", False)),
        format=None if raw.get("format") is None else str(raw["format"]),
    )


def _architecture(raw: dict[str, Any], checkpoint: Checkpoint | None = None) -> Architecture:
    return Architecture(
        params=float(raw["params"]),
        layers=int(raw["layers"]),
        attention_heads=int(raw["attentionHeads"]),
        kv_heads=int(raw["kvHeads"]),
        head_dim=int(raw["headDim"]),
        max_positions=int(raw["maxPositions"]),
        hidden_size=_opt_int(raw, "hiddenSize"),
        intermediate_size=_opt_int(raw, "intermediateSize"),
        vocab_size=_opt_int(raw, "vocabSize"),
        tied_embeddings=bool(raw.get("tiedEmbeddings", False)),
        experts=int(raw.get("experts", 1)),
        experts_per_token=int(raw.get("expertsPerToken", 1)),
        qkv_bias=bool(raw.get("qkvBias", False)),
        qk_norm=bool(raw.get("qkNorm", False)),
        checkpoint=checkpoint,
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
            cuda_total_gib=float(v.get("cudaTotalGiB") or 0.0),
            cuda_total_source=str(v.get("cudaTotalSource") or ""),
            mem_bandwidth_gbs=float(v.get("memBandwidthGBs") or 0.0),
            bf16_tflops=float(v.get("bf16TFLOPS") or 0.0),
            fp8_tflops=None if v.get("fp8TFLOPS") is None else float(v["fp8TFLOPS"]),
            perf_source=str(v.get("perfSource") or ""),
        )
        for gid, v in raw.items()
    }


@lru_cache(maxsize=1)
def models() -> dict[str, ModelInfo]:
    """All catalog models keyed by every id they answer to (base id and aliases)."""
    raw = yaml.safe_load((DATA_DIR / "models.yaml").read_text())
    out: dict[str, ModelInfo] = {}
    for mid, v in raw.items():
        shape = raw[v["quantizedFrom"]] if "quantizedFrom" in v else v
        info = ModelInfo(
            id=mid,
            architecture=_architecture(shape, _checkpoint(v.get("checkpoint"))),
            gated=bool(v.get("gated", False)),
            aliases=tuple(v.get("aliases") or ()),
            quantized_from=v.get("quantizedFrom"),
        )
        for key in (mid, *info.aliases):
            out[key] = info
    return out


def gpu_ids() -> tuple[str, ...]:
    return tuple(gpus())


def lookup_model(model_id: str) -> ModelInfo | None:
    return models().get(model_id)
