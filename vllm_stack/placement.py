"""Where each replica runs: hosts and GPU indices (docker) or a capacity class (kubernetes).

Pure and deterministic (config order), so a plan diff only moves a replica when the
config moved it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import defaults as D

if TYPE_CHECKING:
    from .config import StackConfig

CAPACITY_CLASSES = ("onDemand", "spot")
K8S_CAPACITY = {"onDemand": "on-demand", "spot": "spot"}


@dataclass(frozen=True)
class Replica:
    model: str
    capacity: str  # onDemand | spot
    index: int  # within the model and capacity class
    host: str | None = None  # docker platform
    address: str | None = None
    gpu_indices: tuple[int, ...] = ()
    port: int = D.VLLM_PORT

    @property
    def name(self) -> str:
        cls = "od" if self.capacity == "onDemand" else "spot"
        return f"{self.model}-{cls}-{self.index}"


class PlacementError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")


def place(cfg: StackConfig) -> dict[str, list[Replica]]:
    """Replicas per model name. Raises PlacementError naming the pool key that cannot be met."""
    out: dict[str, list[Replica]] = {}
    if cfg.platform == "kubernetes":
        for m in cfg.models:
            out[m.name] = [Replica(m.name, "onDemand", i) for i in range(m.pool.on_demand)] + [
                Replica(m.name, "spot", i) for i in range(m.pool.spot)
            ]
        return out
    free = {h.name: list(range(h.gpu_count)) for h in cfg.hosts}
    next_port = {h.name: D.VLLM_PORT for h in cfg.hosts}
    for mi, m in enumerate(cfg.models):
        reps: list[Replica] = []
        for capacity, wanted, key in (("onDemand", m.pool.on_demand, "onDemand"), ("spot", m.pool.spot, "spot")):
            candidates = [h for h in cfg.hosts if h.capacity == capacity and h.gpu == m.gpu]
            placed = 0
            for h in candidates:
                while placed < wanted and len(free[h.name]) >= m.tensor_parallel:
                    gpu_idx = tuple(free[h.name][: m.tensor_parallel])
                    del free[h.name][: m.tensor_parallel]
                    reps.append(Replica(m.name, capacity, placed, h.name, h.address, gpu_idx, next_port[h.name]))
                    next_port[h.name] += 1
                    placed += 1
            if placed < wanted:
                offer = (
                    ", ".join(
                        f"{h.name}: {len(free[h.name]) + sum(len(r.gpu_indices) for r in reps if r.host == h.name)} "
                        f"GPU(s)"
                        for h in candidates
                    )
                    or "none"
                )
                raise PlacementError(
                    f"models[{mi}].pool.{key}",
                    f"{wanted} is not allowed; needs {wanted} {capacity} replica(s) x {m.tensor_parallel} {m.gpu} GPU(s) "
                    f"on `hosts` with capacity {capacity}, but only {placed} fit (hosts with {m.gpu}/{capacity}: {offer})",
                )
        out[m.name] = reps
    return out
