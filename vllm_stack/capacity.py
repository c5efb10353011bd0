"""Capacity and cost projection per model and for the stack (plan output and `--json`).

Combines sizing (does it fit, how many sequences), the load model (how many replicas
peak traffic needs) and cost (on-demand only vs the configured spot blend), plus what
is left when every spot replica is preempted at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import sizing
from .cost import model_cost

if TYPE_CHECKING:
    from .config import ModelSpec, StackConfig


def model_projection(cfg: StackConfig, spec: ModelSpec) -> dict[str, Any]:
    fit = sizing.fit_for(spec)
    cost = model_cost(spec, dict(cfg.prices))
    load = spec.load
    needed = sizing.instances_needed(load.peak_rps, load.single_instance_rps, load.buffer_pct)
    replicas = spec.pool.replicas
    od_capacity = spec.pool.on_demand * load.single_instance_rps
    return {
        "model": spec.name,
        "hfModel": spec.model,
        "gpu": spec.gpu,
        "fit": fit.as_dict(),
        "replicas": {
            "onDemand": spec.pool.on_demand,
            "spot": spec.pool.spot,
            "spotMax": spec.pool.spot_ceiling,
            "total": replicas,
            "gpus": spec.gpus,
        },
        "load": {
            "peakRps": load.peak_rps,
            "singleInstanceRps": load.single_instance_rps,
            "bufferPct": load.buffer_pct,
            "instancesNeeded": needed,
            "meetsPeak": replicas >= needed,
        },
        "spotLoss": {
            "remainingReplicas": spec.pool.on_demand,
            "remainingRps": round(od_capacity, 3),
            "peakRps": load.peak_rps,
            "coversPeak": od_capacity >= load.peak_rps,
            "shortfallRps": round(max(0.0, load.peak_rps - od_capacity), 3),
        },
        "cost": {
            "onDemandPerHour": cost.on_demand_per_hour,
            "blendPerHour": cost.blend_per_hour,
            "onDemandMonthly": cost.on_demand_monthly,
            "blendMonthly": cost.blend_monthly,
            "savingMonthly": cost.saving_monthly,
            "perMillionTokens": cost.per_million_tokens,
            "priceSource": cost.price_source,
            "spotPricedAsOnDemand": cost.spot_priced_as_on_demand,
        },
    }


def stack_projection(cfg: StackConfig) -> dict[str, Any]:
    models = [model_projection(cfg, m) for m in cfg.models]
    total = {
        "gpus": sum(m["replicas"]["gpus"] for m in models),
        "onDemandMonthly": round(sum(m["cost"]["onDemandMonthly"] for m in models), 2),
        "blendMonthly": round(sum(m["cost"]["blendMonthly"] for m in models), 2),
        "onDemandPerHour": round(sum(m["cost"]["onDemandPerHour"] for m in models), 4),
        "blendPerHour": round(sum(m["cost"]["blendPerHour"] for m in models), 4),
    }
    total["savingMonthly"] = round(total["onDemandMonthly"] - total["blendMonthly"], 2)
    return {"models": models, "total": total}
