"""The routing tier under the mock engine: a routed model on SSH hosts (systemd) and on Kubernetes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vllm_stack import defaults as D

from .conftest import by_type, dump, one
from .test_program_docker import _assert_secret_containment

DIGEST = "registry.example/vllm-router@sha256:" + "b" * 64
MODEL = {"model": "meta-llama/Llama-3.1-8B-Instruct", "gpu": "L40S"}


def _stack(tmp: Path, name: str, config: dict) -> str:
    path = tmp / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": {f"vllm-stack:{k}": v for k, v in config.items()}}))
    return str(path)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> dict:
    return dump(
        _stack(
            tmp_path_factory.mktemp("routing"),
            "routed",
            {
                "environment": "dev",
                "platform": "docker",
                "hostRuntime": "systemd",
                "hosts": [
                    {"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S", "gpuCount": 2},
                    {"name": "gpu-s", "address": "10.0.0.7", "gpu": "L40S", "gpuCount": 1, "capacity": "spot"},
                ],
                "models": [
                    {"name": "llama", **MODEL, "pool": {"onDemand": 1, "spot": 1}, "routing": {"enabled": True}},
                    {"name": "plain", **MODEL},
                ],
            },
        )
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> dict:
    return dump(
        _stack(
            tmp_path_factory.mktemp("routing-k8s"),
            "routedk8s",
            {
                "environment": "prod",
                "platform": "kubernetes",
                "models": [{"name": "llama", **MODEL, "routing": {"enabled": True, "policy": "session"}}],
                "router": {"image": DIGEST},
                "front": {"tls": "selfSigned"},
            },
        )
    )


def test_host_router_component_unit_and_install(hosts):
    r = one(hosts, f"{D.COMPONENT_PREFIX}:SystemdVllmRouter", "vllm-router-llama")
    assert r["inputs"]["url"] == "http://127.0.0.1:30000" and r["inputs"]["unitName"] == "vllm-router-llama.service"
    assert r["inputs"]["install"].endswith(f"vllm-router=={D.ROUTER_VERSION}")
    unit = hosts["artifacts"]["hosts/gpu-a/systemd/vllm-router-llama.service"]["content"]
    assert "--worker-urls http://127.0.0.1:8000 http://10.0.0.7:8000" in unit
    assert len(by_type(hosts, f"{D.COMPONENT_PREFIX}:SystemdVllmRouter")) == 1  # `plain` is not routed


def test_host_nginx_upstream_is_the_router_for_the_routed_model_only(hosts):
    up = hosts["artifacts"]["front/upstreams/llama.conf"]["content"]
    assert "server 127.0.0.1:30000 " in up and "10.0.0.7" not in up
    plain = hosts["artifacts"]["front/upstreams/plain.conf"]["content"]
    assert "30000" not in plain and ":8001" in plain


def test_spot_drain_hook_leaves_the_router_worker_set_first(hosts):
    spot = [s for s in by_type(hosts, f"{D.COMPONENT_PREFIX}:SystemdVllmServer") if s["inputs"]["capacity"] == "spot"]
    assert len(spot) == 1
    assert spot[0]["inputs"]["drain"]["command"] == (
        "/usr/bin/curl -fsS -X POST 'http://127.0.0.1:30000/remove_worker?url=http://10.0.0.7:8000' && sleep 20"
    )
    _assert_secret_containment(hosts)


def test_k8s_router_objects_and_front_upstream(cluster):
    comp = one(cluster, f"{D.COMPONENT_PREFIX}:KubernetesVllmRouter", "vllm-router-llama")
    assert comp["inputs"]["url"] == "http://vllm-router-llama.vllm.svc:30000"
    dep = one(cluster, "kubernetes:apps/v1:Deployment", "deployment-vllm-router-llama")
    c = dep["inputs"]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == DIGEST and c["args"][c["args"].index("--policy") + 1] == "consistent_hash"
    role = one(cluster, "kubernetes:rbac.authorization.k8s.io/v1:Role", "role-vllm-router-llama")
    assert role["inputs"]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    one(cluster, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "networkpolicy-vllm-router-llama")
    up = cluster["artifacts"]["front/upstreams/llama.conf"]["content"]
    assert "server vllm-router-llama.vllm.svc:30000 " in up
    _assert_secret_containment(cluster)


def test_host_monitoring_scrapes_the_router_and_has_the_routing_group(hosts):
    prom = yaml.safe_load(hosts["artifacts"]["monitoring/prometheus.yml"]["content"])
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "vllm-router")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:29000"]
    rules = yaml.safe_load(hosts["artifacts"][f"monitoring/{D.RULES_FILE}"]["content"])
    assert [g["name"] for g in rules["groups"]] == [D.ALERT_GROUP, D.ROUTING_ALERT_GROUP, D.COST_RULE_GROUP]
    assert rules["groups"][1]["rules"][0]["alert"] == "VllmPrefixCacheHitRateCollapse"


def test_k8s_prometheus_discovers_the_router_metrics_port(cluster):
    prom = yaml.safe_load(cluster["artifacts"]["monitoring/prometheus.yml"]["content"])
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "vllm-router")
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keeps[0]["regex"] == "vllm-stack;router" and keeps[1]["regex"] == "metrics"


def _findings(d: dict, env: str) -> list[str]:
    from policies.vllm_policy import routing_rules as RR
    from policies.vllm_policy.checks import Res
    from policies.vllm_policy.context import PolicyContext

    ctx, out = PolicyContext(env), []
    for r in d["resources"]:
        for rule in (RR.router_pinned, RR.router_not_exposed):
            rule(r["type"], r["inputs"], ctx, lambda m, **kw: out.append(f"{r['name']}: {m}"))
    res = [Res(r["type"], r["inputs"], urn=r["urn"], name=r["name"]) for r in d["resources"]]
    RR.router_network_policy(res, ctx, lambda m, urn=None: out.append(m))
    return out


def test_routing_policies_pass_on_what_the_program_registers(hosts, cluster):
    assert _findings(hosts, "dev") == []
    assert _findings(cluster, "prod") == []


def test_routing_policies_see_the_program_shapes(hosts, cluster):
    """The same rules do fire on the recorded inputs once a value is wrong (they read the real shapes)."""
    import copy

    bad = copy.deepcopy(cluster)
    for r in bad["resources"]:
        if r["type"] == "kubernetes:apps/v1:Deployment" and r["name"] == "deployment-vllm-router-llama":
            r["inputs"]["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/vllm-router:0.1.17"
        if r["type"] == "kubernetes:core/v1:Service" and r["name"] == "service-vllm-router-llama":
            r["inputs"]["spec"]["type"] = "NodePort"
    assert len(_findings(bad, "prod")) == 2
    bad = copy.deepcopy(hosts)
    n = 0
    for r in bad["resources"]:
        stdin = r["inputs"].get("stdin")
        if isinstance(stdin, str) and "ExecStart=/opt/vllm-router" in stdin:
            r["inputs"]["stdin"] = stdin.replace("--host 127.0.0.1", "--host 0.0.0.0")
            n += 1
    assert n == 1 and len(_findings(bad, "dev")) == 1
