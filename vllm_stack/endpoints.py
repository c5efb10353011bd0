"""What the renderers of the front and of monitoring consume: backends and scrape targets.

Components build these from placement (docker) or Service DNS (kubernetes); tests build
them by hand on loopback. Keeping them plain dataclasses keeps the renderers pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["up", "down", "backup"]


@dataclass(frozen=True)
class Backend:
    """One vLLM server behind the front."""

    model: str  # served model name (route /<model>/v1/)
    address: str  # IP, host name or Service DNS
    port: int
    capacity: str = "onDemand"  # onDemand | spot
    state: State = "up"  # the pool marks draining servers `down`

    @property
    def hostport(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class ScrapeTarget:
    """One /metrics endpoint Prometheus scrapes, with the labels alerts group by."""

    job: str  # vllm | dcgm | nginx
    address: str
    port: int
    labels: tuple[tuple[str, str], ...] = ()
    metrics_path: str = "/metrics"

    @property
    def hostport(self) -> str:
        return f"{self.address}:{self.port}"
