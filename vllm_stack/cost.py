"""Dollars: $/hr, $/month (720 h, seed 000), the spot blend, and $/1M tokens.

Prices come from the GPU catalog unless the stack's `prices` overrides them; nothing
here hard-codes a price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import defaults as D
from .catalog import gpus

if TYPE_CHECKING:
    from .config import ModelSpec, PriceSpec


@dataclass(frozen=True)
class Price:
    on_demand_per_hour: float
    spot_per_hour: float | None
    source: str


def price_for(gpu_id: str, overrides: Mapping[str, PriceSpec] | None = None) -> Price:
    o = (overrides or {}).get(gpu_id)
    g = gpus()[gpu_id]
    if o is not None:
        spot = o.spot_per_hour if o.spot_per_hour is not None else g.spot_per_hour
        return Price(o.on_demand_per_hour, spot, "stack config `prices`")
    return Price(g.on_demand_per_hour, g.spot_per_hour, g.price_source)


def monthly(per_hour: float) -> float:
    return round(per_hour * D.HOURS_PER_MONTH, 2)


def per_million_tokens(per_hour: float, tokens_per_second: float) -> float:
    """$/1M tokens = $/hr / (tokens/s x 3600) x 1e6."""
    return per_hour / (tokens_per_second * 3600) * 1e6


@dataclass(frozen=True)
class ModelCost:
    model: str
    gpu: str
    gpus_per_replica: int
    on_demand_replicas: int
    spot_replicas: int
    on_demand_per_hour: float  # the whole pool priced on-demand
    blend_per_hour: float  # on-demand floor + spot at spot price
    on_demand_monthly: float
    blend_monthly: float
    saving_monthly: float
    per_million_tokens: float | None
    price_source: str
    spot_priced_as_on_demand: bool  # no spot price known for this GPU

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_cost(spec: ModelSpec, overrides: Mapping[str, PriceSpec] | None = None) -> ModelCost:
    price = price_for(spec.gpu, overrides)
    tp = spec.tensor_parallel
    od_n, spot_n = spec.pool.on_demand, spec.pool.spot
    spot_rate = price.spot_per_hour if price.spot_per_hour is not None else price.on_demand_per_hour
    all_od = (od_n + spot_n) * tp * price.on_demand_per_hour
    blend = od_n * tp * price.on_demand_per_hour + spot_n * tp * spot_rate
    tps = spec.load.tokens_per_second
    replicas = od_n + spot_n
    per_m = per_million_tokens(blend / replicas, tps) if tps and replicas else None
    return ModelCost(
        model=spec.name,
        gpu=spec.gpu,
        gpus_per_replica=tp,
        on_demand_replicas=od_n,
        spot_replicas=spot_n,
        on_demand_per_hour=round(all_od, 4),
        blend_per_hour=round(blend, 4),
        on_demand_monthly=monthly(all_od),
        blend_monthly=monthly(blend),
        saving_monthly=round(monthly(all_od) - monthly(blend), 2),
        per_million_tokens=None if per_m is None else round(per_m, 4),
        price_source=price.source,
        spot_priced_as_on_demand=spot_n > 0 and price.spot_per_hour is None,
    )
