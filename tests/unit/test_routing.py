"""The routing tier: config, deployment model entries, the router's command line, unit, drain hook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vllm_stack import defaults as D
from vllm_stack.config import StackConfig
from vllm_stack.deployment import ROUTER_PREFIX, build
from vllm_stack.loader import ConfigError, parse_config
from vllm_stack.render import host_commands
from vllm_stack.render import nginx as N
from vllm_stack.render import router as R
from vllm_stack.render.k8s_front import front_backends

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "registry.example/vllm-router@sha256:" + "a" * 64
MODEL = {"model": "meta-llama/Llama-3.1-8B", "gpu": "L40S"}


def host_cfg(runtime: str = "systemd", policy: str | None = None, image: str | None = None) -> StackConfig:
    routing: dict = {"enabled": True}
    if policy:
        routing["policy"] = policy
    raw: dict = {
        "environment": "dev",
        "platform": "docker",
        "hostRuntime": runtime,
        "hosts": [
            {"name": "gpu-a", "address": "10.0.0.5", "gpu": "L40S", "gpuCount": 3},
            {"name": "gpu-b", "address": "10.0.0.6", "gpu": "L40S", "gpuCount": 1, "capacity": "spot"},
        ],
        "models": [
            {"name": "llama", **MODEL, "pool": {"onDemand": 2, "spot": 1}, "routing": routing},
            {"name": "plain", **MODEL, "pool": {"onDemand": 1}},
        ],
    }
    if image:
        raw["router"] = {"image": image}
    return parse_config(raw)


def k8s_cfg(**router) -> StackConfig:
    return parse_config(
        {
            "environment": "prod",
            "platform": "kubernetes",
            "models": [{"name": "llama", **MODEL, "routing": {"enabled": True}}, {"name": "plain", **MODEL}],
            "router": router or {"image": DIGEST},
        }
    )


# --- config ------------------------------------------------------------------------------


def test_defaults_routing_off_policy_prefix_version_pinned():
    cfg = parse_config({"environment": "dev", "platform": "kubernetes", "models": [{"name": "m", **MODEL}]})
    assert cfg.models[0].routing.enabled is False
    assert cfg.models[0].routing.policy == "prefix" == D.ROUTER_POLICY_DEFAULT
    assert cfg.router.version == "0.1.17" and cfg.router.image is None
    assert build(cfg).routers == ()


def test_bad_policy_names_the_key_and_the_allowed_values():
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "environment": "dev",
                "platform": "kubernetes",
                "models": [{"name": "m", **MODEL, "routing": {"enabled": True, "policy": "roundrobin"}}],
                "router": {"image": DIGEST},
            }
        )
    msg = str(e.value)
    assert "models[0].routing.policy" in msg and "'prefix'" in msg and "'session'" in msg and "'least_conn'" in msg


def test_unpinned_version_is_refused():
    with pytest.raises(ConfigError) as e:
        k8s_cfg(image=DIGEST, version="0.1.16")
    assert "router.version" in str(e.value) and "0.1.17" in str(e.value)


@pytest.mark.parametrize("make", [lambda: k8s_cfg(version="0.1.17"), lambda: host_cfg("docker")])
def test_image_required_where_the_router_runs_as_a_container(make):
    with pytest.raises(ConfigError) as e:
        make()
    assert "router" in str(e.value) and "sha256" in str(e.value)


def test_systemd_runtime_needs_no_image():
    assert host_cfg("systemd").router.image is None


# --- deployment model ----------------------------------------------------------------------


def test_host_router_entries():
    cfg = host_cfg("systemd")
    dep = build(cfg)
    (r,) = dep.routers
    assert r.name == f"{ROUTER_PREFIX}llama" == "vllm-router-llama"
    assert (r.bind, r.address, r.port, r.metrics_port) == ("127.0.0.1", "127.0.0.1", 30000, 29000)
    assert r.url == r.admin_url == "http://127.0.0.1:30000"
    assert r.unit == "vllm-router-llama.service" and r.container is None and r.host == "gpu-a"
    replicas = {f"http://{s.backend.hostport}" for s in dep.servers_of("llama")}
    assert set(r.workers) == replicas and len(replicas) == 3
    assert r.policy == "cache_aware"


def test_front_backends_point_routed_models_at_the_router_only():
    dep = build(host_cfg("systemd"))
    fb = dep.front_backends()
    llama = [b for b in fb if b.model == "llama"]
    assert [(b.address, b.port) for b in llama] == [("127.0.0.1", 30000)]
    assert [b.hostport for b in fb if b.model == "plain"] == [s.backend.hostport for s in dep.servers_of("plain")]
    conf = N.render_upstream("llama", llama)
    assert re.findall(r"^\s*server (\S+)", conf, re.MULTILINE) == ["127.0.0.1:30000"]


def test_docker_runtime_router_is_a_container():
    (r,) = build(host_cfg("docker", image=DIGEST)).routers
    assert r.container == "vllm-router-llama" and r.unit is None


def test_k8s_router_entries_and_front_backend():
    cfg = k8s_cfg()
    (r,) = build(cfg).routers
    assert r.address == "vllm-router-llama.vllm.svc" and r.bind == "0.0.0.0" and r.workers == ()
    assert dict(r.selector) == {D.LABEL_MODEL: "llama", "app.kubernetes.io/component": "vllm"}
    fb = {b.model: b.hostport for b in front_backends(cfg)}
    assert fb == {"llama": "vllm-router-llama.vllm.svc:30000", "plain": "plain.vllm.svc:8000"}


# --- command line -------------------------------------------------------------------------


def _opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize(
    ("policy", "flag"), [("prefix", "cache_aware"), ("session", "consistent_hash"), ("least_conn", "power_of_two")]
)
def test_policy_mapping(policy, flag):
    cfg = host_cfg("systemd", policy)
    argv = R.router_argv(cfg, build(cfg).routers[0])
    assert _opt(argv, "--policy") == flag


def test_host_argv_static_workers_and_health():
    cfg = host_cfg("systemd")
    r = build(cfg).routers[0]
    argv = R.router_argv(cfg, r)
    assert _opt(argv, "--host") == "127.0.0.1" and _opt(argv, "--port") == "30000"
    assert _opt(argv, "--prometheus-host") == "127.0.0.1" and _opt(argv, "--prometheus-port") == "29000"
    assert _opt(argv, "--health-check-endpoint") == "/health"
    assert _opt(argv, "--health-failure-threshold") == str(D.UPSTREAM_MAX_FAILS)
    assert _opt(argv, "--retry-max-retries") == str(D.PROXY_NEXT_UPSTREAM_TRIES)
    assert _opt(argv, "--cb-failure-threshold") == "1" == str(D.ROUTER_CB_FAILURES)
    i = argv.index("--worker-urls")
    assert argv[i + 1 : i + 4] == list(r.workers)
    assert "--service-discovery" not in argv and "--api-key" not in argv


def test_k8s_argv_discovers_pods():
    cfg = k8s_cfg()
    argv = R.router_argv(cfg, build(cfg).routers[0])
    assert "--service-discovery" in argv and "--worker-urls" not in argv
    i = argv.index("--selector")
    assert argv[i + 1 : i + 3] == ["vllm-stack/model=llama", "app.kubernetes.io/component=vllm"]
    assert _opt(argv, "--service-discovery-namespace") == "vllm"
    assert _opt(argv, "--service-discovery-port") == str(D.VLLM_PORT)


def test_unit_runs_the_pinned_venv_without_secrets():
    cfg = host_cfg("systemd")
    unit = R.render_router_unit(cfg, build(cfg).routers[0])
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith(f"ExecStart={D.ROUTER_INSTALL_DIR}/bin/vllm-router --host 127.0.0.1 --port 30000")
    assert "DynamicUser=yes" in unit and "EnvironmentFile" not in unit and "api-key" not in unit
    # the helper sandbox (exposure 1.1 under a real systemd, 7.7 without it: tests/systemd)
    from vllm_stack.render.systemd import HELPER_HARDENING

    for k, v in HELPER_HARDENING:
        assert f"\n{k}={v}\n" in unit, (k, v)


def test_router_venv_script_pins_the_same_version():
    text = (ROOT / "scripts" / "vllm_router_venv.sh").read_text()
    assert re.search(r"^VLLM_ROUTER_VERSION=(\S+)$", text, re.MULTILINE).group(1) == D.ROUTER_VERSION


# --- drain and install ---------------------------------------------------------------------


def test_router_drain_hook_removes_the_worker_then_waits():
    cmd = host_commands.router_drain_hook("http://127.0.0.1:30000", "http://10.0.0.6:8000", 20)
    assert cmd == (
        "/usr/bin/curl -fsS -X POST 'http://127.0.0.1:30000/remove_worker?url=http://10.0.0.6:8000' && sleep 20"
    )


def test_install_command_pins_the_version():
    cmd = host_commands.install_router(D.ROUTER_INSTALL_DIR, "0.1.17")
    assert cmd.endswith("vllm-router==0.1.17") and cmd.startswith("sudo python3 -m venv /opt/vllm-router &&")


# --- kubernetes objects ------------------------------------------------------------------


def test_k8s_objects_least_privilege_and_front_only():
    cfg = k8s_cfg()
    objs = {o["kind"]: o for o in R.router_objects(cfg, build(cfg).routers[0], DIGEST)}
    assert set(objs) == {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "NetworkPolicy"}
    assert objs["Role"]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert objs["RoleBinding"]["subjects"][0]["name"] == "vllm-router-llama"
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "vllm-router-llama" and pod["containers"][0]["image"] == DIGEST
    assert objs["Service"]["spec"]["type"] == "ClusterIP"
    ing = objs["NetworkPolicy"]["spec"]["ingress"]
    assert ing[0]["from"] == [
        {"podSelector": {"matchLabels": {D.LABEL_PART_OF: D.PROJECT, "app.kubernetes.io/component": "front"}}}
    ]
    assert ing[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ing[1]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "prometheus"
