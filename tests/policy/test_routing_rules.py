"""router-pinned and router-not-exposed (policies/vllm_policy/routing_rules.py), called directly on
the objects the stack renders and on broken variants of them."""

from __future__ import annotations

import copy

import pytest

from policies.vllm_policy import routing_rules as RR
from policies.vllm_policy.checks import Res
from policies.vllm_policy.context import PolicyContext
from tests.unit.test_routing import DIGEST, host_cfg, k8s_cfg
from vllm_stack.deployment import build
from vllm_stack.render import host_commands
from vllm_stack.render import router as R

DEP, SVC, CONTAINER, CMD = (
    "kubernetes:apps/v1:Deployment",
    "kubernetes:core/v1:Service",
    "docker:index/container:Container",
    "command:remote:Command",
)
PROD, DEV = PolicyContext("prod"), PolicyContext("dev")


def run(rule, typ, props, ctx=PROD) -> list[str]:
    out: list[str] = []
    rule(typ, props, ctx, lambda msg, **kw: out.append(msg))
    return out


def k8s_objs(image: str = DIGEST) -> dict[str, dict]:
    cfg = k8s_cfg()
    return {o["kind"]: o for o in R.router_objects(cfg, build(cfg).routers[0], image)}


def router_container(image: str = DIGEST, host: str = "127.0.0.1") -> dict:
    cfg = host_cfg("docker", image=DIGEST)
    argv = R.router_argv(cfg, build(cfg).routers[0])
    argv[argv.index("--host") + 1] = host
    return {"name": "vllm-router-llama", "image": image, "command": argv, "networkMode": "host"}


# --- router-pinned ---------------------------------------------------------------------------


def test_rendered_router_objects_are_pinned():
    assert run(RR.router_pinned, DEP, k8s_objs()["Deployment"]) == []
    assert run(RR.router_pinned, CONTAINER, router_container()) == []
    install = host_commands.install_router("/opt/vllm-router", "0.1.17")
    assert run(RR.router_pinned, CMD, {"create": install}) == []


@pytest.mark.parametrize("image", ["registry.example/vllm-router:0.1.17", "registry.example/vllm-router"])
def test_tag_or_no_tag_is_a_finding(image):
    (msg,) = run(RR.router_pinned, DEP, k8s_objs(image)["Deployment"])
    assert image in msg and "sha256" in msg
    assert len(run(RR.router_pinned, CONTAINER, router_container(image))) == 1


def test_tag_is_enough_when_digest_not_required():
    ctx = PolicyContext("prod", {"router-pinned": {"requireDigest": False}})
    assert run(RR.router_pinned, DEP, k8s_objs("registry.example/vllm-router:0.1.17")["Deployment"], ctx) == []
    assert len(run(RR.router_pinned, DEP, k8s_objs("registry.example/vllm-router:latest")["Deployment"], ctx)) == 1


def test_unpinned_pip_install_is_a_finding():
    bad = host_commands.install_router("/opt/vllm-router", "0.1.17").replace("vllm-router==0.1.17", "vllm-router")
    (msg,) = run(RR.router_pinned, CMD, {"create": bad})
    assert "vllm-router==0.1.17" in msg


def test_vllm_pods_are_not_router_pods():
    vllm_like = copy.deepcopy(k8s_objs("vllm/vllm-openai")["Deployment"])
    vllm_like["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "vllm"
    assert run(RR.router_pinned, DEP, vllm_like) == []


# --- router-not-exposed ----------------------------------------------------------------------


def test_rendered_router_is_not_exposed():
    objs = k8s_objs()
    for kind, typ in (("Deployment", DEP), ("Service", SVC)):
        assert run(RR.router_not_exposed, typ, objs[kind]) == []
    assert run(RR.router_not_exposed, CONTAINER, router_container()) == []
    cfg = host_cfg("systemd")
    unit = R.render_router_unit(cfg, build(cfg).routers[0])
    assert run(RR.router_not_exposed, CMD, {"create": "sudo install ...", "stdin": unit}) == []


def test_router_on_every_interface_is_a_finding():
    (msg,) = run(RR.router_not_exposed, CONTAINER, router_container(host="0.0.0.0"))
    assert "--host 0.0.0.0" in msg
    cfg = host_cfg("systemd")
    unit = R.render_router_unit(cfg, build(cfg).routers[0]).replace("--host 127.0.0.1", "--host 0.0.0.0")
    assert len(run(RR.router_not_exposed, CMD, {"stdin": unit})) == 1


def test_public_service_and_host_network_are_findings():
    objs = k8s_objs()
    svc = copy.deepcopy(objs["Service"])
    svc["spec"]["type"] = "LoadBalancer"
    assert "LoadBalancer" in run(RR.router_not_exposed, SVC, svc)[0]
    dep = copy.deepcopy(objs["Deployment"])
    dep["spec"]["template"]["spec"]["hostNetwork"] = True
    dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"] = 30000
    assert len(run(RR.router_not_exposed, DEP, dep)) == 2
    assert run(RR.router_not_exposed, DEP, dep, DEV)  # mandatory in dev as well (the rule reports alike)


def _stack(objs: list[dict]) -> list[Res]:
    types = {"Deployment": DEP, "Service": SVC, "NetworkPolicy": RR.NETWORK_POLICY}
    return [
        Res(types.get(o["kind"], o["kind"]), o, urn=f"urn:{o['kind']}", name=o["metadata"]["name"])
        for o in objs
        if o["kind"] in types
    ]


def test_network_policy_stack_rule():
    out: list[str] = []
    objs = list(k8s_objs().values())
    RR.router_network_policy(_stack(objs), PROD, lambda m, urn=None: out.append(m))
    assert out == []
    RR.router_network_policy(
        _stack([o for o in objs if o["kind"] != "NetworkPolicy"]), PROD, lambda m, urn=None: out.append(m)
    )
    assert len(out) == 1 and "no NetworkPolicy" in out[0]
    open_np = copy.deepcopy(objs)
    np = next(o for o in open_np if o["kind"] == "NetworkPolicy")
    del np["spec"]["ingress"][0]["from"]
    out.clear()
    RR.router_network_policy(_stack(open_np), PROD, lambda m, urn=None: out.append(m))
    assert len(out) == 1 and "admits every pod" in out[0]


def test_routing_rules_are_declared_with_their_levels():
    from policies.vllm_policy import checks

    assert checks.rule("router-pinned").levels == {"dev": "advisory", "prod": "mandatory"}
    assert checks.rule("router-not-exposed").levels == {"dev": "mandatory", "prod": "mandatory"}
    assert checks.rule("router-network-policy").scope == "stack"


def test_router_pod_and_container_are_no_vllm_workload():
    """The router image is named `vllm-router` (README recipe): the vLLM-pod rules (GPU limits,
    probes, preStop drain, container health check) must not judge it as a vLLM server. The prod
    stack (routing on both models) fired six mandatory findings on the router Deployments before."""
    from policies.vllm_policy import checks, shapes

    assert not shapes.image_is_vllm(DIGEST) and shapes.image_is_vllm("vllm/vllm-openai:v0.33.0")
    dep = k8s_objs()["Deployment"]
    assert shapes.vllm_containers(DEP, dep) == []
    assert shapes.container_argvs(router_container()) == []
    found: list[str] = []
    res = [Res(DEP, dep, urn="urn:router", name="router")]
    checks.gpu_limits_and_probes(res, PROD, lambda m, *a, **k: found.append(m))
    assert found == []
    assert run(checks.on_demand_floor, DEP, dep) == []


def test_router_is_told_from_vllm_by_its_labels_and_name_not_only_its_image():
    """An image called `vllmrouter` would look like vLLM by name; the router's component label
    (Kubernetes) and `vllm-router-<model>` container name (docker) still exclude it."""
    from policies.vllm_policy import shapes

    odd = "registry.example/vllmrouter@sha256:" + "b" * 64
    assert shapes.image_is_vllm(odd)
    assert shapes.vllm_containers(DEP, k8s_objs(odd)["Deployment"]) == []
    assert shapes.container_argvs(router_container(odd)) == []
    vllm_like = copy.deepcopy(k8s_objs(odd)["Deployment"])
    vllm_like["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "vllm"
    assert len(shapes.vllm_containers(DEP, vllm_like)) == 1
