"""Wiring regressions no other unit test pinned (each was broken in a copy and the fast tier still passed):

* KV sizing at tensor parallel > 1 (weights split over N GPUs, per-GPU figures and replica totals);
* every `monitoring.alerts.*For` reaching exactly its own rule's `for:`;
* the key path named by a type error in every field of the config model.

The alert fields and the config fields are enumerated from the pydantic models, not listed by hand.
"""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from pydantic import BaseModel

from vllm_stack import defaults as D
from vllm_stack.catalog import gpus, lookup_model
from vllm_stack.config import AlertSpec, StackConfig
from tests.support.config_paths import set_path
from vllm_stack.loader import ConfigError, load_stack_file, parse_config
from vllm_stack.render import alerts as A
from vllm_stack.render.cost_rules import FOR_FIELD as COST_FOR_FIELD
from vllm_stack.render.routing_monitoring import render_rules_file
from vllm_stack.sizing import fit, fit_for

ROOT = Path(__file__).resolve().parents[2]
GIB, MIB = 1024**3, 1024**2


# --- KV sizing at tensor parallel 2 ---------------------------------------------------------------


def _tp2_example():
    cfg = load_stack_file(ROOT / "examples" / "Pulumi.tp2-70b-fp16.yaml")
    (spec,) = cfg.models
    return spec


def test_tp2_example_is_the_case_computed_by_hand():
    spec = _tp2_example()
    assert (spec.model, spec.gpu, spec.tensor_parallel, spec.quantization, spec.kv_cache_dtype) == (
        "meta-llama/Llama-3.1-70B-Instruct",
        "H100-SXM5-80GB",
        2,
        "none",
        "auto",
    )
    assert (spec.gpu_memory_utilization, spec.max_model_len, spec.max_num_seqs) == (0.92, 16384, 64)
    # The catalog numbers the hand computation below uses.
    arch = lookup_model(spec.model).architecture
    assert (arch.layers, arch.kv_heads, arch.head_dim, arch.hidden_size, arch.intermediate_size) == (
        80,
        8,
        128,
        8192,
        28672,
    )
    assert (arch.vocab_size, arch.tied_embeddings, arch.max_positions) == (128256, False, 131072)
    assert gpus()["H100-SXM5-80GB"].cuda_total_gib == 79.18
    assert D.RUNTIME_OVERHEAD_GIB == 0.0


def test_kv_sizing_at_tensor_parallel_2_by_hand():
    """Per GPU, as vLLM accounts for it: 79.18 GiB (CUDA-visible) x 0.92, half of every Linear layer and of
    the embedding and lm_head (16-bit), all the norms and the rotary cache, the activation peak at 8192
    batched tokens (H100 class), NCCL at TP 2, the CUDA-graph estimate; the replica's KV tokens are the
    per-GPU remainder over the per-GPU bytes per token (each GPU holds 4 of the 8 KV heads)."""
    f = fit_for(_tp2_example())
    tp = 2
    budget_gpu = 79.18 * GIB * 0.92  # 72.85 GiB
    linear = 80 * (8192 * (8192 + 2 * 1024) + 8192 * 8192 + 3 * 8192 * 28672)  # 68.45e9 params
    embed = lm_head = 128256 * 8192  # 1.05e9 params each
    norms = 80 * 2 * 8192 + 8192
    rotary = 131072 * 128 * 2
    weights_gpu = (linear + embed + lm_head) / tp * 2 + norms * 2 + rotary  # 65.74 GiB
    activation = max(8192 * (2 * 8192 + 3 * 28672 / tp) * 2, 64 * 128256 * 4 * 5)  # MLP at 8192 tokens
    non_torch = (0.16 + 1.79) * GIB  # + NCCL at TP > 1
    cudagraph = 0.15 * GIB + 80 * 8192 * min(2 * 64, 512) * 2
    overhead_gpu = activation + non_torch + cudagraph
    kv_gpu = budget_gpu - weights_gpu - overhead_gpu
    per_token_gpu = 2 * 80 * (8 // tp) * 128 * 2  # 160 KiB per GPU
    per_token = 2 * 80 * 8 * 128 * 2  # 320 KiB for the replica

    assert linear == 68_451_041_280
    assert round(weights_gpu / GIB, 2) == 65.74
    assert round(activation / GIB, 2) == 0.91
    assert round(overhead_gpu / GIB, 2) == 3.16
    assert round(kv_gpu / GIB, 2) == 3.94
    assert per_token == 327_680

    assert f.tensor_parallel == 2
    # per GPU, labelled
    assert f.cuda_total_gib_per_gpu == 79.18 and f.budget_gib_per_gpu == round(budget_gpu / GIB, 2) == 72.85
    assert f.weights_gib_per_gpu == 65.74 and f.overhead_gib_per_gpu == 3.16 and f.kv_gib_per_gpu == 3.94
    assert f.max_num_batched_tokens == 8192 and f.non_torch_gib_per_gpu == 1.95
    # replica totals
    assert f.vram_gib_total == round(79.18 * GIB * tp / GIB, 2) == 158.36
    assert f.budget_gib == round(budget_gpu * tp / GIB, 2) == 145.69
    assert f.weights_gib == round(weights_gpu * tp / GIB, 2) == 131.48
    assert f.overhead_gib == round(overhead_gpu * tp / GIB, 2) == 6.33
    assert f.kv_gib == round(kv_gpu * tp / GIB, 2) == 7.88
    assert f.kv_bytes_per_token == per_token
    assert f.kv_tokens == int(kv_gpu // per_token_gpu) == 25_836
    assert f.max_concurrency_full_context == 25_836 // 16384 == 1
    assert f.fits is True
    assert f.reason == "7.9 GiB KV = 25836 tokens = 1 sequences of 16384"


def test_the_same_model_on_one_gpu_does_not_fit():
    """TP 1 vs TP 2 of the same numbers: the budget doubles, the weights do not."""
    spec = _tp2_example()
    arch, gpu = lookup_model(spec.model).architecture, gpus()[spec.gpu]
    one = fit(
        "x",
        arch,
        gpu,
        tensor_parallel=1,
        quantization="none",
        kv_cache_dtype="auto",
        max_model_len=16384,
        max_num_seqs=64,
        gpu_memory_utilization=0.92,
    )
    assert one.fits is False and one.kv_tokens == 0
    assert one.weights_gib == 131.45  # norms and rotary cache counted once, not per GPU
    assert one.kv_gib == round(72.85 - 131.45 - one.overhead_gib, 2)


# --- every alert's `for` ------------------------------------------------------------------------

HOST = {"name": "gpu-1", "address": "10.0.0.10", "gpu": "L40S"}
MODEL = {"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}
DISTINCT = "17m"

#: `*For` fields of AlertSpec, enumerated from the model: (python name, config key).
FOR_FIELDS = sorted((name, f.alias or name) for name, f in AlertSpec.model_fields.items() if name.endswith("_for"))


def _rules(alerts: dict) -> dict[str, dict]:
    cfg = parse_config(
        {
            "environment": "dev",
            "platform": "docker",
            "hosts": [HOST],
            "models": [MODEL],
            "monitoring": {"alerts": alerts},
        }
    )
    # the rules file the stack deploys: every group's alerts (recording rules have no `for`)
    doc = yaml.safe_load(render_rules_file(cfg))
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


#: Every configurable alert and the field holding its `for`: the `vllm` group's and the cost alert.
ALL_FOR_FIELD = {**A.FOR_FIELD, **COST_FOR_FIELD}


def test_every_for_field_is_mapped_to_alerts_and_every_alert_has_one():
    assert len(FOR_FIELDS) == 15, FOR_FIELDS
    assert set(A.FOR_FIELD) == set(A.ALERT_NAMES)
    assert set(ALL_FOR_FIELD.values()) == {name for name, _ in FOR_FIELDS}
    assert set(_rules({})) == set(ALL_FOR_FIELD)
    defaults = {name: AlertSpec.model_fields[name].default for name, _ in FOR_FIELDS}
    assert DISTINCT not in defaults.values(), defaults


@pytest.mark.parametrize("field, key", FOR_FIELDS, ids=[k for _, k in FOR_FIELDS])
def test_alert_for_reaches_only_its_rule(field, key):
    default = _rules({})
    changed = _rules({key: DISTINCT})
    owners = {alert for alert, f in ALL_FOR_FIELD.items() if f == field}
    assert owners, field
    for alert, rule in changed.items():
        if alert in owners:
            assert rule["for"] == DISTINCT, (key, alert, rule["for"])
        else:
            assert rule["for"] == default[alert]["for"] != DISTINCT, (key, alert, rule["for"])
            assert rule["for"] == getattr(AlertSpec(), ALL_FOR_FIELD[alert]), alert


def test_all_for_fields_at_once_land_on_their_own_rules():
    values = {key: f"{i + 11}m" for i, (_, key) in enumerate(FOR_FIELDS)}
    by_field = {name: values[key] for name, key in FOR_FIELDS}
    rules = _rules(values)
    assert {alert: r["for"] for alert, r in rules.items()} == {a: by_field[f] for a, f in ALL_FOR_FIELD.items()}


# --- the key path of every config error --------------------------------------------------------

BASELINE: dict[str, Any] = {
    "environment": "prod",
    "platform": "docker",
    "hostRuntime": "systemd",
    "hosts": [
        {
            "name": "gpu-1",
            "address": "10.0.0.10",
            "user": "ubuntu",
            "port": 22,
            "gpu": "L40S",
            "gpuCount": 1,
            "capacity": "onDemand",
        }
    ],
    "models": [
        {
            "name": "custom",
            "model": "/models/custom",
            "revision": "main",
            "gpu": "L40S",
            "tensorParallel": 1,
            "quantization": "none",
            "kvCacheDtype": "auto",
            "maxModelLen": 8192,
            "maxNumSeqs": 64,
            "gpuMemoryUtilization": 0.9,
            "extraArgs": ["--enable-chunked-prefill"],
            "pool": {
                "onDemand": 1,
                "spot": 0,
                "spotMax": 0,
                "drainSeconds": 20,
                "peakSchedule": {"start": "45 8 * * 1-5", "end": "0 19 * * 1-5", "timezone": "UTC", "replicas": 1},
            },
            "load": {"peakRps": 2.0, "singleInstanceRps": 1.0, "bufferPct": 20.0, "tokensPerSecond": 100.0},
            "image": "vllm/vllm-openai:v0.33.0",
            "routing": {"enabled": True, "policy": "prefix"},
            "architecture": {
                "params": 7.2e9,
                "layers": 32,
                "kvHeads": 8,
                "headDim": 128,
                "attentionHeads": 32,
                "maxPositions": 32768,
                "hiddenSize": 4096,
                "intermediateSize": 14336,
                "vocabSize": 32768,
                "tieWordEmbeddings": False,
            },
            "default": True,
            "unhealthyRestartSeconds": 60,
        }
    ],
    "front": {
        "domain": "vllm.example.com",
        "tls": "selfSigned",
        "clientMaxBodySize": "50m",
        "readTimeoutSeconds": 600,
        "rateLimitRps": 5.0,
        "rateLimitBurst": 10,
        "serviceType": "LoadBalancer",
        "host": "gpu-1",
    },
    "monitoring": {
        "scrapeIntervalSeconds": 10,
        "grafana": {"enabled": True},
        "alerts": {
            "queueWaiting": 10.0,
            "queueFor": "2m",
            "kvCacheUsage": 0.9,
            "kvCacheFor": "5m",
            "ttftP95Seconds": 2.0,
            "ttftFor": "3m",
            "preemptions5m": 5.0,
            "preemptionsFor": "5m",
            "backendDownFor": "1m",
            "gpuTempCelsius": 80.0,
            "gpuTempFor": "5m",
            "vramUsage": 0.95,
            "vramFor": "5m",
            "errorRate": 0.05,
            "errorRateFor": "5m",
            "itlP95Seconds": 0.2,
            "itlFor": "5m",
            "e2eP95Seconds": 60.0,
            "e2eFor": "5m",
            "queueTimeP95Seconds": 2.0,
            "queueTimeFor": "5m",
        },
        "alertmanager": {
            "enabled": True,
            "external": "alertmanager.example.com:9093",
            "receivers": [
                {
                    "name": "mail",
                    "type": "email",
                    "severities": ["critical", "warning"],
                    "sendResolved": True,
                    "to": "oncall@example.com",
                    "from": "alerts@example.com",
                    "smarthost": "smtp.example.com:587",
                    "username": "alerts",
                }
            ],
            "groupWait": "30s",
            "groupInterval": "5m",
            "repeatInterval": "4h",
            "criticalRepeatInterval": "1h",
        },
        "runbookBaseUrl": "https://runbooks.example.com/docs/runbooks.md",
        "prometheusOperator": False,
        "prometheusUrl": "http://prometheus.example.com:9090",
        "host": "gpu-1",
    },
    "prices": {"L40S": {"onDemandPerHour": 0.72, "spotPerHour": 0.3}},
    "kubernetes": {"namespace": "vllm", "storageClass": "fast-ssd", "weightsPvcSize": "500Gi"},
    "router": {"version": "0.1.17", "image": "registry.example/vllm-router@sha256:" + "a" * 64},
}


def _base(ann: Any) -> tuple[Any, bool]:
    """Strip Annotated and Optional: (inner annotation, was optional)."""
    optional = False
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(ann) if a is not type(None)]
            assert len(rest) == 1, f"a real union needs its own wrong value: {ann}"
            optional, ann = True, rest[0]
        else:
            return ann, optional


def config_fields(model: type[BaseModel] = StackConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path with `[]` for list items and `<gpu>` for map values, annotation) for every field and
    every list item / map value, recursively."""
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        yield from _walk(f.annotation, f"{prefix}{f.alias or name}")


def _walk(ann: Any, key: str) -> Iterator[tuple[str, Any]]:
    yield key, ann
    inner, _ = _base(ann)
    origin = typing.get_origin(inner)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        yield from config_fields(inner, key + ".")
    elif origin in (tuple, list):
        yield from _walk(typing.get_args(inner)[0], key + "[]")
    elif origin is dict:
        yield from _walk(typing.get_args(inner)[1], key + ".<gpu>")


def wrong_type(ann: Any) -> Any:
    """A value of the wrong JSON type for the annotation (never None: None is valid for Optional)."""
    inner, _ = _base(ann)
    origin = typing.get_origin(inner)
    if origin is typing.Literal or inner is str:
        return 7
    if inner is bool:
        return "true"
    if inner in (int, float):
        return "7"
    if origin in (tuple, list, frozenset):
        return {"not": "a list"}
    if origin is dict:
        return ["not", "a", "map"]
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return "not-an-object"
    raise AssertionError(f"no wrong value for {ann!r}: extend wrong_type()")


def _set(doc: dict, pattern: str, value: Any) -> str:
    concrete = set_path(doc, pattern, value)
    assert concrete is not None, (pattern, "the baseline does not reach it")
    return concrete


FIELDS = list(config_fields())


def test_the_baseline_loads_and_sets_every_field():
    parse_config(copy.deepcopy(BASELINE))
    assert len(FIELDS) == 134, [p for p, _ in FIELDS]  # a field added to the model changes this on purpose
    for pattern, _ in FIELDS:
        _set(copy.deepcopy(BASELINE), pattern, None)  # asserts the baseline reaches the key


@pytest.mark.parametrize("pattern, ann", FIELDS, ids=[p for p, _ in FIELDS])
def test_wrong_type_is_refused_with_its_concrete_key_path(pattern, ann):
    doc = copy.deepcopy(BASELINE)
    value = wrong_type(ann)
    concrete = _set(doc, pattern, value)
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    assert exc.value.path == concrete, (pattern, value, str(exc.value))
    assert str(exc.value).startswith(f"{concrete}: ")
