"""The CrossGuard side: registration, config schemas, the pack config files, the entry point,
and the wrappers called the way the analyzer calls them (never constructing PolicyPack: it blocks)."""

from __future__ import annotations

import ast
import json

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from vllm_stack import defaults as D

from .helpers import POLICY_DIR, VLLM_ARGV, container, deployment, pool, server, vllm_container_spec

from vllm_policy import checks, pack  # noqa: E402  (helpers put policies/ on sys.path)

EXPECTED_IDS = {
    "gpu-memory-utilization-ceiling",
    "model-fits-gpu",
    "fp8-requires-fp8-gpu",
    "no-secrets-in-argv",
    "secrets-only-in-secret-stores",
    "vllm-not-exposed",
    "tls-required-in-prod",
    "tls-min-version",
    "api-key-required",
    "on-demand-floor",
    "gpu-limits-and-probes",
    "pinned-images",
    "grafana-no-default-password",
    "no-invalid-vllm-flags",
    "quantization-matches-checkpoint",
    "vllm-replica-heals",
    "rollout-timeout-covers-startup",
    "router-pinned",
    "router-not-exposed",
    "router-network-policy",
}
STACK_RULES = {"gpu-limits-and-probes", "router-network-policy"}


@pytest.fixture(scope="module")
def policies():
    return {p.name: p for p in pack.build_policies()}


def test_every_policy_id_is_registered_with_description_and_schema(policies):
    assert EXPECTED_IDS <= set(policies)
    assert set(policies) - EXPECTED_IDS == {"fp8-requires-fp8-gpu-advisory", "quantization-matches-checkpoint-advisory"}
    assert set(checks.POLICY_IDS) == EXPECTED_IDS == {r.id for r in checks.RULES}
    for name, p in policies.items():
        assert len(p.description) > 40, name
        assert isinstance(p.config_schema, PolicyConfigSchema), name
        assert p.config_schema.properties["environment"]["enum"] == ["dev", "prod"]
        expected_cls = StackValidationPolicy if name in STACK_RULES else ResourceValidationPolicy
        assert isinstance(p, expected_cls), name


@pytest.mark.parametrize(
    "policy_id, key, default",
    [
        ("gpu-memory-utilization-ceiling", "prodCeiling", D.GPU_MEMORY_UTILIZATION_PROD_CEILING),
        ("gpu-memory-utilization-ceiling", "hardCeiling", D.GPU_MEMORY_UTILIZATION_HARD_CEILING),
        ("model-fits-gpu", "overheadGiB", D.RUNTIME_OVERHEAD_GIB),
        ("tls-min-version", "minVersion", D.TLS_MIN_VERSION),
        ("on-demand-floor", "drainSecondsMin", D.DRAIN_SECONDS_MIN),
        ("on-demand-floor", "drainSecondsMax", D.DRAIN_SECONDS_MAX),
        ("gpu-limits-and-probes", "readinessDelayMinSeconds", D.READINESS_DELAY_MIN_SEC),
    ],
)
def test_thresholds_are_in_the_schema_with_defaults_from_vllm_stack_defaults(policies, policy_id, key, default):
    prop = policies[policy_id].config_schema.properties[key]
    assert prop["default"] == default and prop["type"] in ("number", "integer", "string")


def test_registered_levels_are_the_prod_column_of_the_one_table(policies):
    for pid in EXPECTED_IDS:
        assert policies[pid].enforcement_level == EnforcementLevel(checks.rule(pid).levels["prod"])
    assert policies["fp8-requires-fp8-gpu-advisory"].enforcement_level == EnforcementLevel.ADVISORY
    assert {checks.rule(p).levels["prod"] for p in EXPECTED_IDS} == {"mandatory"}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_pack_config_files_are_generated_from_the_table(env):
    path = POLICY_DIR / "config" / f"{env}.json"
    assert json.loads(path.read_text()) == pack.pack_config(env), (
        f"{path} is stale: PYTHONPATH=policies .venv/bin/python -m vllm_policy.pack"
    )
    for pid, entry in pack.pack_config(env).items():
        assert entry["environment"] == env
        if pid in checks.RULES_BY_ID:
            assert entry["enforcementLevel"] == checks.rule(pid).levels[env]


def test_docs_rules_table_is_generated_from_the_declarations():
    text = pack.DOCS.read_text()
    assert pack.RULES_START + "\n" + pack.render_rules_table() + pack.RULES_END in text, (
        "docs/policies.md is stale: PYTHONPATH=policies .venv/bin/python -m vllm_policy.pack"
    )
    table = pack.render_rules_table()
    for r in checks.RULES:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{r.id}` |"))
        assert r.reads and r.reads.split("`")[0][:20] in row
        assert row.count("|") - row.count("\\|") == 7, row  # six cells: no unescaped pipe in a cell
    fp8 = next(line for line in table.splitlines() if line.startswith("| `fp8-requires-fp8-gpu` |"))
    assert fp8.endswith("| M / A | M / A | `minComputeCapability` (8.9) |")
    fits = next(line for line in table.splitlines() if line.startswith("| `model-fits-gpu` |"))
    assert "| A | M |" in fits


def test_rule_declarations_are_checked():
    from vllm_policy.context import Rule

    with pytest.raises(ValueError, match="levels"):
        Rule("x", "d", lambda *a: None, {"prod": "mandatory"})
    with pytest.raises(ValueError, match="scope"):
        Rule("x", "d", lambda *a: None, {"dev": "advisory", "prod": "mandatory"}, scope="fleet")


def test_component_type_tokens_are_the_component_classes():
    from vllm_stack.components import host, kubernetes

    from vllm_policy import shapes

    def token(cls) -> str:
        return f"{D.COMPONENT_PREFIX}:{cls.__name__}"

    assert shapes.SERVER_COMPONENTS == {
        token(c) for c in (host.DockerVllmServer, host.SystemdVllmServer, kubernetes.KubernetesVllmServer)
    }
    assert shapes.HOST_SERVER_COMPONENTS == {token(c) for c in (host.DockerVllmServer, host.SystemdVllmServer)}
    assert shapes.POOL_COMPONENTS == {
        token(c) for c in (host.HostSpotOnDemandPool, kubernetes.KubernetesSpotOnDemandPool)
    }


def test_main_holds_only_the_policy_pack_construction():
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # docstring
            continue
        assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Call), ast.dump(node)
        calls.append(node.value)
    assert len(calls) == 2, "expected sys.path.insert(...) and PolicyPack(...) only"
    path_call, pack_call = calls
    assert ast.unparse(path_call.func) == "sys.path.insert"
    assert ast.unparse(pack_call.func) == "PolicyPack"
    kw = {k.arg: k.value for k in pack_call.keywords}
    assert set(kw) == {"name", "policies", "enforcement_level"}
    assert ast.literal_eval(kw["name"]) == pack.PACK_NAME == "vllm-stack-policies"
    assert ast.unparse(kw["policies"]) == "build_policies()"
    assert "repo root" in (POLICY_DIR / "__main__.py").read_text()  # the sys.path comment


def test_pack_files_exist_and_pin_like_the_root():
    yml = (POLICY_DIR / "PulumiPolicy.yaml").read_text()
    assert "runtime:" in yml and "name: python" in yml
    root = {
        line.split("==")[0]: line
        for line in (POLICY_DIR.parent / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    for line in (POLICY_DIR / "requirements.txt").read_text().splitlines():
        if "==" in line:
            assert root[line.split("==")[0]] == line


# --- the wrappers, called like the analyzer does ---------------------------------------------------


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def _resource_args(r, config=None) -> ResourceValidationArgs:
    return ResourceValidationArgs(r.type, r.inputs, r.urn, r.name, _opts(), None, config)


def _run(policy, args) -> list[tuple]:
    got = []
    policy.validate(args, lambda message, urn=None: got.append((message, urn)))
    return got


def test_resource_policy_reads_environment_from_config_then_labels(policies):
    r = deployment(env="dev", container_spec=vllm_container_spec(lifecycle=None))  # no preStop drain
    p = policies["on-demand-floor"]
    assert _run(p, _resource_args(r)) == []  # label says dev: a missing preStop is judged only in prod
    got = _run(p, _resource_args(r, {"environment": "prod"}))  # config wins
    assert len(got) == 1 and "no preStop drain" in got[0][0]
    p = policies["gpu-memory-utilization-ceiling"]
    r = server(argv=VLLM_ARGV + ["--gpu-memory-utilization", "0.94"])  # a component: no label, prod by default
    assert len(_run(p, _resource_args(r))) == 1
    assert _run(p, _resource_args(r, {"environment": "dev"})) == []  # dev: 0.94 < the hard ceiling 0.95
    assert _run(p, _resource_args(r, {"environment": "prod", "prodCeiling": 0.95})) == []


def test_mixed_level_rule_splits_between_policy_and_advisory_companion(policies):
    a = [
        "meta-llama/Llama-3.1-70B-Instruct",
        "--quantization",
        "fp8",
        "--kv-cache-dtype",
        "fp8",
        "--gpu-memory-utilization",
        "0.92",
        "--max-model-len",
        "8192",
    ]
    r = server(argv=a, gpu="A100-SXM4-80GB")
    main = _run(policies["fp8-requires-fp8-gpu"], _resource_args(r))
    advisory = _run(policies["fp8-requires-fp8-gpu-advisory"], _resource_args(r))
    assert len(main) == 1 and "--kv-cache-dtype fp8" in main[0][0]
    assert len(advisory) == 1 and "Marlin" in advisory[0][0]


def test_stack_policy_reports_with_the_resource_urn(policies):
    dep = deployment("llama-8b-on-demand")
    pr = PolicyResource(dep.type, dep.inputs, dep.urn, dep.name, _opts(), None, None, [], {})
    got = _run(policies["gpu-limits-and-probes"], StackValidationArgs([pr], {}))
    assert len(got) == 1 and "PodDisruptionBudget" in got[0][0] and got[0][1] == dep.urn


def test_component_inputs_are_judged_like_the_analyzer_sends_them(policies):
    """Under the CLI a component's registered inputs reach resource policies (docs/policies.md)."""
    got = _run(policies["on-demand-floor"], _resource_args(pool(on_demand=0.0, spot=2.0)))
    assert len(got) == 1 and "0 on-demand" in got[0][0]


def test_unknown_values_during_preview_surface_as_unknown_value_error(policies):
    """CrossGuard turns UnknownValueError into a "can't run during preview" note, so checks let it through."""
    r = server()
    props = unknown_checking_proxy({**r.inputs, "argv": UNKNOWN_STRING_VALUE})
    args = ResourceValidationArgs(r.type, props, r.urn, r.name, _opts(), None, None)
    with pytest.raises(UnknownValueError):
        policies["gpu-memory-utilization-ceiling"].validate(args, lambda m, u=None: None)


def test_unknown_image_digest_does_not_stop_the_argv_checks(policies):
    """A vLLM Container's image is the RemoteImage digest: unknown in every preview."""
    r = container(ports=[{"internal": 8000.0, "external": 8000.0, "ip": "0.0.0.0"}])
    props = unknown_checking_proxy({**r.inputs, "image": UNKNOWN_STRING_VALUE})
    args = ResourceValidationArgs(r.type, props, r.urn, r.name, _opts(), None, {"environment": "prod"})
    got = _run(policies["vllm-not-exposed"], args)
    assert len(got) == 1 and "0.0.0.0" in got[0][0]


def test_docs_list_every_policy_and_config_key():
    text = (POLICY_DIR.parent / "docs" / "policies.md").read_text()
    for pid in EXPECTED_IDS:
        assert f"`{pid}`" in text, pid
    for r in checks.RULES:
        for t in r.thresholds:
            assert f"`{t.key}`" in text, (r.id, t.key)
    for secret in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"):
        assert secret in text
    assert "--policy-pack-config" in text


def test_environment_resolution_order(monkeypatch):
    monkeypatch.setattr(pack, "_stack_config_environment", lambda: None)
    assert pack.resolve_environment({"environment": "dev"}, ["prod"]) == "dev"  # pack config first
    assert pack.resolve_environment({}, ["dev", None]) == "dev"  # then labels
    assert pack.resolve_environment({}, ["dev", "prod"]) == "prod"  # any prod label: strict
    assert pack.resolve_environment({}, [None]) == "prod"  # nothing: fail safe
    monkeypatch.setattr(pack, "_stack_config_environment", lambda: "dev")
    assert pack.resolve_environment({}, [None]) == "dev"  # stack config before prod


def test_stack_config_environment_is_read_from_the_pulumi_runtime(monkeypatch):
    import pulumi.runtime.config as rc

    monkeypatch.setattr(rc, "get_config", lambda k: "dev" if k == f"{D.PROJECT}:environment" else None)
    assert pack._stack_config_environment() == "dev"
