"""How long a replica's first start may take, and the rollout timeouts computed from it. Pure.

A first start downloads the weights (HF Hub), loads them into GPU memory and initialises the
engine; `budget(spec)` estimates each from the weight size (`sizing.weight_bytes`) and the
rates in `defaults`, adds `STARTUP_MARGIN_PCT`, and never goes below the startup probe's own
budget (`STARTUP_PROBE_BUDGET_SEC`, also systemd's TimeoutStartSec). The rollout timeout adds the
image pull: pulumi-kubernetes' `customTimeouts` on the Deployment, Kubernetes'
`progressDeadlineSeconds`, and the docker provider's health wait all use it, so `pulumi up`
neither gives up while the model is still loading nor waits forever for one that cannot start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import defaults as D
from .sizing import weight_bytes

if TYPE_CHECKING:
    from .catalog import Architecture
    from .config import ModelSpec

MIB = 1024**2
GIB = 1024**3


@dataclass(frozen=True)
class StartupBudget:
    weights_gib: float  # the checkpoint as downloaded and read (16-bit when quantized online)
    download_seconds: int
    load_seconds: int
    init_seconds: int
    margin_seconds: int
    probe_seconds: int  # the startup probe's own budget (failureThreshold x period)

    @property
    def estimate_seconds(self) -> int:
        """download + load + init + margin."""
        return self.download_seconds + self.load_seconds + self.init_seconds + self.margin_seconds

    @property
    def startup_seconds(self) -> int:
        """What the process may take until /health is 200: the estimate, never below the probe's budget."""
        return max(self.estimate_seconds, self.probe_seconds)

    @property
    def startup_probe_failure_threshold(self) -> int:
        return math.ceil(self.startup_seconds / D.PROBE_PERIOD_SEC)

    @property
    def rollout_seconds(self) -> int:
        """Image pull + startup, rounded up to whole minutes: how long `pulumi up` waits for a replica to
        become Ready / healthy (whole minutes so that the custom timeout, the docker health wait and
        progressDeadlineSeconds are the same number)."""
        return math.ceil((D.IMAGE_PULL_SEC + self.startup_seconds) / 60) * 60

    @property
    def rollout_timeout(self) -> str:
        """`rollout_seconds` as a Pulumi custom timeout."""
        return f"{self.rollout_seconds // 60}m"

    @property
    def fetch_seconds(self) -> int:
        """How long the weights pre-fetch may take by itself (download + its share of the margin),
        never below `WEIGHTS_FETCH_FLOOR_SEC`: the systemd oneshot's TimeoutStartSec."""
        share = math.ceil(self.download_seconds * D.STARTUP_MARGIN_PCT / 100)
        return max(D.WEIGHTS_FETCH_FLOOR_SEC, self.download_seconds + share)

    @property
    def fetch_deadline_seconds(self) -> int:
        """Image pull + the pre-fetch, whole minutes: the Kubernetes Job's activeDeadlineSeconds, its
        Pulumi custom timeout and the docker runtime's pre-fetch command timeout."""
        return math.ceil((D.IMAGE_PULL_SEC + self.fetch_seconds) / 60) * 60

    @property
    def fetch_timeout(self) -> str:
        """`fetch_deadline_seconds` as a Pulumi custom timeout."""
        return f"{self.fetch_deadline_seconds // 60}m"

    @property
    def progress_deadline_seconds(self) -> int:
        """Kubernetes' progressDeadlineSeconds: at least the rollout, never below the fixed floor."""
        return max(D.K8S_PROGRESS_DEADLINE_SEC, self.rollout_seconds)


def checkpoint_bytes(arch: Architecture, quantization: str) -> float:
    """Bytes on disk: the weights at the checkpoint's own format (16-bit unless pre-quantized)."""
    return weight_bytes(arch, quantization if arch.checkpoint is not None else "none")


def budget(spec: ModelSpec) -> StartupBudget:
    """The first-start budget of a model (its weights at its quantization)."""
    return budget_for(spec.model_info().architecture, spec.quantization)


def budget_for(arch: Architecture, quantization: str) -> StartupBudget:
    """The same from an architecture and a quantization (the policy reads them off an argv).

    Download and load move the CHECKPOINT: a pre-quantized one at its format, but a 16-bit one
    quantized online (`--quantization fp8`) is fetched and read at 16 bits (Llama-3.1-70B: 131 GiB,
    not the 68 GiB vLLM keeps after quantizing)."""
    size = checkpoint_bytes(arch, quantization)
    download = math.ceil(size / MIB / D.WEIGHT_DOWNLOAD_MIB_S)
    load = math.ceil(size / MIB / D.WEIGHT_LOAD_MIB_S)
    init = D.ENGINE_INIT_SEC
    margin = math.ceil((download + load + init) * D.STARTUP_MARGIN_PCT / 100)
    return StartupBudget(
        weights_gib=round(size / GIB, 2),
        download_seconds=download,
        load_seconds=load,
        init_seconds=init,
        margin_seconds=margin,
        probe_seconds=D.STARTUP_PROBE_BUDGET_SEC,
    )
