"""Every policy-pack config key is read by its check, and label-less vLLM workloads fail under CI.

Config keys: enumerated from the registered policies' `PolicyConfigSchema`s (`pack.build_policies()`),
not listed by hand. For each (policy, key) a crafted input passes at the default and fails with the
key set, both through the CrossGuard wrapper (`policy.validate` with the policy's config, the way
`--policy-pack-config` reaches it) and through the offline plan's `evaluate(pack_config=...)`. A
declared key without a crafted case, or one that no check reads, fails here.

`environment` is declared by every policy and consumed by the wrappers (pack.resolve_environment,
offline.configured_environment), not by each check: it is tested on the rules whose check reads
`ctx.prod` (found in their source).

Labels: the mandatory rules that skip a vLLM workload when its `vllm-stack/gpu`, `vllm-stack/model`
or `vllm-stack/capacity` label is missing must report it instead under `CI=true` (as
tests/support/tools.require does for missing tools).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
    StackValidationPolicy,
)

from vllm_stack import defaults as D

from .helpers import command, deployment, evaluate, ids, pdb, pool, res, server, vllm_container_spec

from vllm_policy import checks, context, pack  # noqa: E402  (helpers put policies/ on sys.path)

SHARED_KEYS = {"environment"}
POLICIES = {p.name: p for p in pack.build_policies()}
DECLARED = sorted(
    (name, key) for name, p in POLICIES.items() for key in p.config_schema.properties if key not in SHARED_KEYS
)


def _rule_id(policy_name: str) -> str:
    return policy_name.removesuffix(pack.ADVISORY_SUFFIX)


def _is_companion(policy_name: str) -> bool:
    return policy_name != _rule_id(policy_name)


# --- crafted inputs ------------------------------------------------------------------------------


def _argv(model: str = "meta-llama/Llama-3.1-8B-Instruct", **flags_: str) -> list[str]:
    out = [
        model,
        "--served-model-name",
        "llama-8b",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--tensor-parallel-size",
        "1",
        "--max-model-len",
        "8192",
        "--max-num-seqs",
        "64",
    ]
    for k, v in flags_.items():
        out += ["--" + k.replace("_", "-"), v]
    return out


def _l40s(**flags_: str):
    """A docker vLLM server component on an L40S (46068 MiB, compute capability 8.9) running Llama-3.1-8B."""
    return server(argv=_argv(**flags_), gpu="L40S")


NGINX = """
http {
    map $http_authorization $vllm_key_ok { default 0; include /etc/nginx/vllm/api-keys.map; }
    server { listen 80; return 301 https://$host$request_uri; }
    server {
        listen 443 ssl;
        ssl_certificate /etc/nginx/vllm/tls/fullchain.pem;
        ssl_certificate_key /etc/nginx/vllm/tls/privkey.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location /v1/ { if ($vllm_key_ok = 0) { return 401; } proxy_pass http://vllm_llama-8b/v1/; }
    }
}
"""


def _k8s(prestop: str = "20", readiness: float = 120.0) -> list:
    """A prod on-demand k8s model (1 replica, preStop sleep, PDB) that passes every rule at the defaults."""
    spec = vllm_container_spec(prestop=["sleep", prestop], readiness_delay=readiness)
    return [deployment(container_spec=spec, grace=45.0), pdb()]


def _systemd_server(watchdog_sec: int):
    """A SystemdVllmServer of the shipped systemd example, its unit rendered with `watchdog_sec`."""
    from vllm_stack.loader import load_stack_file
    from vllm_stack.placement import place
    from vllm_stack.render import systemd as Sd

    from .helpers import ROOT

    cfg = load_stack_file(ROOT / "examples" / "Pulumi.docker-prod.yaml")
    spec = cfg.models[0]
    unit = Sd.render_systemd_unit(cfg, spec, place(cfg)[spec.name][0], watchdog_sec=watchdog_sec)
    srv = server(kind="SystemdVllmServer")
    srv.inputs["unit"] = {"id": "unit", "path": "/etc/systemd/system/vllm-llama-8b.service", "content": unit}
    return srv


@dataclass(frozen=True)
class Case:
    resources: Callable[[], list]
    value: Any  # set for the key: turns the verdict from pass to fail (from fail to pass if `loosens`)
    env: str = "prod"  # environment label of the resources / offline environment
    loosens: bool = False  # the key relaxes the rule (router-pinned.requireDigest: false)


CASES: dict[tuple[str, str], Case] = {
    # 0.92 passes the default prod ceiling 0.93; a ceiling of 0.9 refuses it
    ("gpu-memory-utilization-ceiling", "prodCeiling"): Case(lambda: [_l40s(gpu_memory_utilization="0.92")], 0.9),
    # dev judges only the hard ceiling: 0.94 passes 0.95, not 0.935
    ("gpu-memory-utilization-ceiling", "hardCeiling"): Case(
        lambda: [_l40s(gpu_memory_utilization="0.94")], 0.935, "dev"
    ),
    # 8B fp16 (15 GiB) on an L40S at 0.9 (40.5 GiB): fits with 4 GiB overhead, not with 30 GiB
    ("model-fits-gpu", "overheadGiB"): Case(lambda: [_l40s(gpu_memory_utilization="0.9")], 30.0),
    # no --gpu-memory-utilization: the assumed 0.92 fits, 0.3 (13.5 GiB) does not hold the weights
    ("model-fits-gpu", "defaultUtilization"): Case(lambda: [_l40s()], 0.3),
    # FP8 KV cache on an L40S (8.9): allowed at 8.9, refused if FP8 needs 9.0 (Hopper)
    ("fp8-requires-fp8-gpu", "minComputeCapability"): Case(
        lambda: [_l40s(gpu_memory_utilization="0.9", kv_cache_dtype="fp8")], 9.0
    ),
    # FP8 weights on an L40S: the advisory half fires when FP8 compute needs 9.0
    ("fp8-requires-fp8-gpu-advisory", "minComputeCapability"): Case(
        lambda: [_l40s(gpu_memory_utilization="0.9", quantization="fp8")], 9.0
    ),
    ("tls-min-version", "minVersion"): Case(
        lambda: [
            command("front-nginx-conf", create="sudo install -D -m 644 /dev/stdin /etc/nginx/nginx.conf", stdin=NGINX)
        ],
        "TLSv1.3",
    ),
    # one on-demand replica meets the floor of 1, not 2
    ("on-demand-floor", "minOnDemand"): Case(lambda: [pool(on_demand=1.0, spot=1.0)], 2),
    # preStop sleep 20 s is inside 10-30 s; outside 25-30 s and 10-15 s
    ("on-demand-floor", "drainSecondsMin"): Case(_k8s, 25),
    ("on-demand-floor", "drainSecondsMax"): Case(_k8s, 15),
    # readiness after 120 s meets the default minimum, not 150 s
    ("gpu-limits-and-probes", "readinessDelayMinSeconds"): Case(_k8s, 150),
    # WatchdogSec 45 = TimeoutStopSec 35 + the default 10 s margin; a 20 s margin refuses it
    ("vllm-replica-heals", "marginSec"): Case(lambda: [_systemd_server(watchdog_sec=45)], 20),
    # an 8B docker server waits 1200 s for a 900 s startup: 1.33x passes 1.0, not 1.5
    ("rollout-timeout-covers-startup", "minRolloutOverStartup"): Case(lambda: [server()], 1.5),
    # a router image pinned by tag only fails the default (digest required) and passes once relaxed
    ("router-pinned", "requireDigest"): Case(
        lambda: [
            res(
                "docker:index/container:Container",
                "vllm-router-llama-8b",
                {"name": "vllm-router-llama-8b", "image": "registry.example/vllm-router:0.1.17", "command": []},
            )
        ],
        False,
        loosens=True,
    ),
}


# --- running a policy both ways ------------------------------------------------------------------


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def crossguard(policy_name: str, resources: list, config: dict) -> list[str]:
    """Messages the registered CrossGuard policy reports, called the way the analyzer calls it."""
    policy, got = POLICIES[policy_name], []
    report = lambda message, urn=None: got.append(message)  # noqa: E731
    if isinstance(policy, StackValidationPolicy):
        prs = [PolicyResource(r.type, r.inputs, r.urn, r.name, _opts(), None, None, [], {}) for r in resources]
        policy.validate(StackValidationArgs(prs, config), report)
    else:
        for r in resources:
            policy.validate(ResourceValidationArgs(r.type, r.inputs, r.urn, r.name, _opts(), None, config), report)
    return got


def offline(policy_name: str, resources: list, env: str, config: dict) -> list[str]:
    """Messages the offline plan reports under the rule's id (the companion: its advisory findings)."""
    rid = _rule_id(policy_name)
    found = evaluate(resources, env, {rid: config} if config else {})
    return [
        v["message"]
        for v in found
        if v["policy"] == rid and (v["enforcement"] == context.ADVISORY) == _is_companion(policy_name)
    ]


# --- config keys -----------------------------------------------------------------------------------


def test_the_declarations_are_what_the_cases_cover():
    assert len(DECLARED) >= 10, DECLARED
    stale = set(CASES) - set(DECLARED)
    assert not stale, f"cases for keys no policy declares: {sorted(stale)}"
    # every threshold table entry reaches a registered policy's schema
    assert {(pid, k) for r in checks.RULES for pid, k in ((r.id, t.key) for t in r.thresholds)} <= set(DECLARED)


@pytest.mark.parametrize("policy_name, key", DECLARED, ids=[f"{p}.{k}" for p, k in DECLARED])
def test_config_key_changes_the_verdict(policy_name, key):
    case = CASES.get((policy_name, key))
    assert case is not None, (
        f"{policy_name} declares config key {key!r} but no crafted case proves a check reads it: add one to CASES"
    )
    prop = POLICIES[policy_name].config_schema.properties[key]
    assert case.value != prop["default"]
    resources = case.resources()
    base = {"environment": case.env}

    def fails(found: list) -> bool:
        return (found != []) != case.loosens

    # at the default (implicit or explicit) the crafted input passes (fails, for a loosening key) ...
    assert not fails(crossguard(policy_name, resources, base))
    assert not fails(crossguard(policy_name, resources, {**base, key: prop["default"]}))
    assert not fails(offline(policy_name, resources, case.env, {}))
    assert not fails(offline(policy_name, resources, case.env, {key: prop["default"]}))
    # ... and the configured value flips the verdict, through both entry points
    assert fails(crossguard(policy_name, resources, {**base, key: case.value}))
    assert fails(offline(policy_name, resources, case.env, {key: case.value}))


ENV_CASES: dict[str, Callable[[], list]] = {
    # prod-only findings on prod-labelled resources; `environment: dev` in the policy config lifts them
    "gpu-memory-utilization-ceiling": lambda: [_l40s(gpu_memory_utilization="0.94")],
    "tls-required-in-prod": lambda: [
        command(
            "front-nginx-conf",
            create="sudo install -D -m 644 /dev/stdin /etc/nginx/nginx.conf",
            stdin=NGINX.replace("listen 443 ssl;", "listen 443;"),
        )
    ],
    "on-demand-floor": lambda: [pool(on_demand=0.0, spot=2.0)],
    "gpu-limits-and-probes": lambda: [
        deployment(container_spec=vllm_container_spec(prestop=["sleep", "20"]), grace=45.0)
    ],
}
READS_PROD = sorted(r.id for r in checks.RULES if "ctx.prod" in inspect.getsource(r.check))


def test_env_cases_cover_every_check_that_reads_the_environment():
    assert set(ENV_CASES) == set(READS_PROD)


@pytest.mark.parametrize("rule_id", READS_PROD)
def test_environment_key_reaches_the_check(rule_id):
    resources = ENV_CASES[rule_id]()
    assert crossguard(rule_id, resources, {}) != []  # labelled prod: judged as prod
    assert crossguard(rule_id, resources, {"environment": "prod"}) != []
    assert crossguard(rule_id, resources, {"environment": "dev"}) == []  # the config wins over the labels
    assert offline(rule_id, resources, "prod", {}) != []
    assert offline(rule_id, resources, "prod", {"environment": "dev"}) == []


# --- mandatory rules that skip label-less workloads must fail under CI -----------------------------


def _without_labels(r, *keys: str):
    """A copy of a hand-built docker Container / k8s Deployment with label keys removed everywhere."""
    r = copy.deepcopy(r)
    if isinstance(r.inputs.get("labels"), list):
        r.inputs["labels"] = [lb for lb in r.inputs["labels"] if lb["label"] not in keys]
    for path in (("metadata",), ("spec", "template", "metadata")):
        meta = r.inputs
        for p in path:
            meta = meta.get(p, {})
        for k in keys:
            (meta.get("labels") or {}).pop(k, None)
    sel = r.inputs.get("spec", {}).get("template", {}).get("spec", {}).get("nodeSelector")
    for k in keys:
        (sel or {}).pop(k, None)
    return r


def _gpu_less(**flags_: str):
    r = copy.deepcopy(_l40s(gpu_memory_utilization="0.9", **flags_))
    del r.inputs["gpu"]
    return r


def _k8s_without(label: str) -> list:
    dep, budget = _k8s()
    return [_without_labels(dep, label), budget]


#: (rule, the label it needs, the labelled input that passes, the same input without the label)
SKIPS = [
    ("model-fits-gpu", "`gpu` input", lambda: [_l40s(gpu_memory_utilization="0.9")], lambda: [_gpu_less()]),
    (
        "fp8-requires-fp8-gpu",
        "`gpu` input",
        lambda: [_l40s(gpu_memory_utilization="0.9", kv_cache_dtype="fp8")],
        lambda: [_gpu_less(kv_cache_dtype="fp8")],
    ),
    ("gpu-limits-and-probes", D.LABEL_CAPACITY, _k8s, lambda: _k8s_without(D.LABEL_CAPACITY)),
]
SKIP_IDS = [f"{rule}-without-{label.strip('`').split('/')[-1].split('`')[0]}" for rule, label, _, _ in SKIPS]


@pytest.mark.parametrize("rule_id, label, labelled, unlabelled", SKIPS, ids=SKIP_IDS)
def test_the_crafted_inputs_pass_with_labels_and_are_skipped_outside_ci(
    monkeypatch, rule_id, label, labelled, unlabelled
):
    """Controls for the CI test below: the label is the only difference, and outside CI a missing label
    stays a silent skip (unchanged by the fix)."""
    monkeypatch.delenv("CI", raising=False)
    assert checks.rule(rule_id).levels["prod"] == context.MANDATORY
    assert rule_id not in ids(evaluate(labelled(), "prod"))
    assert rule_id not in ids(evaluate(unlabelled(), "prod"))
    if rule_id == "fp8-requires-fp8-gpu":  # with the label, the same argv on an FP8-less GPU does fail
        a100 = server(argv=_argv(gpu_memory_utilization="0.9", kv_cache_dtype="fp8"), gpu="A100-SXM4-80GB")
        assert rule_id in ids(evaluate([a100], "prod"), "mandatory")


@pytest.mark.parametrize("rule_id, label, labelled, unlabelled", SKIPS, ids=SKIP_IDS)
def test_a_missing_label_fails_the_mandatory_rule_under_ci(monkeypatch, rule_id, label, labelled, unlabelled):
    monkeypatch.setenv("CI", "true")
    assert rule_id not in ids(evaluate(labelled(), "prod"))  # labelled: still passes in CI
    found = evaluate(unlabelled(), "prod")
    assert rule_id in ids(found, "mandatory"), found
    assert label in "\n".join(v["message"] for v in found if v["policy"] == rule_id)
    # the CrossGuard policy reports it too
    assert any(label in m for m in crossguard(rule_id, unlabelled(), {"environment": "prod"}))
