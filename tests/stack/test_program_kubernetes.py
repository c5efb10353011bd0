"""The prod stack (kubernetes) under the mock engine."""

from __future__ import annotations

from vllm_stack import defaults as D

from .conftest import SCAN_SECRETS, by_type, one, unwrap
from .test_program_docker import _assert_secret_containment

DEP = "kubernetes:apps/v1:Deployment"


def _container(dep):
    return dep["inputs"]["spec"]["template"]["spec"]["containers"][0]


def test_70b_on_demand_deployment(prod):
    dep = one(prod, DEP, "deployment-llama-70b-on-demand")
    spec = dep["inputs"]["spec"]
    assert spec["replicas"] == 1
    c = _container(dep)
    assert c["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert c["args"][c["args"].index("--quantization") + 1] == "fp8"
    assert c["args"][c["args"].index("--kv-cache-dtype") + 1] == "fp8"
    assert D.READINESS_DELAY_MIN_SEC <= c["readinessProbe"]["initialDelaySeconds"] <= D.READINESS_DELAY_MAX_SEC
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["envFrom"][0]["secretRef"]["name"]
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 30
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])


def test_spot_deployment_and_scaling(prod):
    spot = one(prod, DEP, "deployment-llama-70b-spot")
    assert spot["inputs"]["spec"]["template"]["spec"]["tolerations"]
    so = [r for r in prod["resources"] if r["type"] == "kubernetes:keda.sh/v1alpha1:ScaledObject"]
    assert len(so) == 1
    s = so[0]["inputs"]["spec"]
    assert s["minReplicaCount"] == 1 and s["maxReplicaCount"] == 4
    kinds = {t["type"] for t in s["triggers"]}
    assert kinds == {"prometheus", "cron"}
    pdbs = [p for p in by_type(prod, "kubernetes:policy/v1:PodDisruptionBudget") if p["name"].endswith("-on-demand")]
    assert {p["inputs"]["spec"]["minAvailable"] for p in pdbs} == {1} and len(pdbs) == 2


def test_model_secret_is_secret_and_only_place_with_key(prod):
    secrets = by_type(prod, "kubernetes:core/v1:Secret")
    assert secrets
    for s in secrets:
        assert "stringData" in s["secretKeys"]
    model = [s for s in secrets if "VLLM_API_KEY" in unwrap(s["inputs"]["stringData"])]
    assert unwrap(model[0]["inputs"]["stringData"])["VLLM_API_KEY"] == SCAN_SECRETS["apiKey"]
    for cm in by_type(prod, "kubernetes:core/v1:ConfigMap"):
        assert "VLLM_API_KEY" not in str(cm["inputs"].get("data"))


def test_vllm_services_are_cluster_ip(prod):
    for svc in by_type(prod, "kubernetes:core/v1:Service"):
        name = svc["inputs"]["metadata"]["name"]
        if name in ("llama-70b", "mistral-7b"):
            assert svc["inputs"]["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_no_secret_leaks(prod):
    _assert_secret_containment(prod)


def test_outputs_cost(prod):
    # 70B: 1 on-demand H100 $2.50 + 1 spot $1.03; Mistral: 2 on-demand L40S $0.72 — x 720 h
    assert prod["outputs"]["monthlyCostUsd"] == round((2.50 + 1.03 + 2 * 0.72) * 720, 2)


def test_grafana_url_names_the_rendered_service(prod):
    """The exported grafanaUrl named `vllm-grafana`, a Service the stack never created."""
    services = {r["inputs"]["metadata"]["name"] for r in prod["resources"] if r["type"] == "kubernetes:core/v1:Service"}
    url = prod["outputs"]["grafanaUrl"]
    host = url.split("//", 1)[1].split(".", 1)[0]
    assert host in services, (url, sorted(services))


def test_alertmanager_deployment_service_and_secret_with_the_receivers(prod):
    """Prometheus notifies the Alertmanager Service the stack creates; its config (PagerDuty key,
    Slack URL) lives only in a Secret whose stringData is the secret input."""
    import yaml

    from vllm_stack.render import k8s_common as KC

    (dep,) = [d for d in by_type(prod, DEP) if d["inputs"]["metadata"]["name"] == KC.ALERTMANAGER]
    c = _container(dep)
    assert c["image"] == D.ALERTMANAGER_IMAGE and "--cluster.listen-address=" in c["args"]
    services = {s["inputs"]["metadata"]["name"]: s for s in by_type(prod, "kubernetes:core/v1:Service")}
    assert services[KC.ALERTMANAGER]["inputs"]["spec"]["ports"][0]["port"] == D.ALERTMANAGER_PORT
    prom = yaml.safe_load(prod["artifacts"]["k8s/configmap-vllm-stack-prometheus-config.yaml"]["content"])
    prom_yml = yaml.safe_load(prom["data"]["prometheus.yml"])
    assert prom_yml["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"{KC.ALERTMANAGER}.vllm.svc:{D.ALERTMANAGER_PORT}"
    ]
    (secret,) = [
        s
        for s in by_type(prod, "kubernetes:core/v1:Secret")
        if s["inputs"]["metadata"]["name"] == KC.ALERTMANAGER_CONFIG
    ]
    assert "stringData" in secret["secretKeys"]
    am = yaml.safe_load(unwrap(unwrap(secret["inputs"]["stringData"])["alertmanager.yml"]))
    rx = {r["name"]: r for r in am["receivers"]}
    assert rx["oncall"]["pagerduty_configs"][0]["routing_key"] == SCAN_SECRETS["alertPagerdutyKey"]
    assert rx["team-slack"]["slack_configs"][0]["api_url"] == SCAN_SECRETS["alertSlackUrl"]
    routes = [(r["receiver"], r["matchers"]) for r in am["route"]["routes"]]
    assert routes == [
        ("oncall", ['severity="critical"']),
        ("team-slack", ['severity="critical"']),
        ("team-slack", ['severity="warning"']),
    ]


def test_deployments_get_custom_timeouts_from_the_startup_budget(prod):
    """pulumi-kubernetes gives up on a Deployment after 10 minutes; the 70B's first start needs 45."""
    got = {r["name"]: r["customTimeouts"] for r in by_type(prod, DEP) if "vllm-stack" not in r["name"]}
    assert got == {
        "deployment-llama-70b-on-demand": ["50m", "50m", ""],
        "deployment-llama-70b-spot": ["50m", "50m", ""],
        "deployment-mistral-7b-on-demand": ["20m", "20m", ""],
        # the routers start in seconds: pulumi-kubernetes' 10-minute default holds
        "deployment-vllm-router-llama-70b": None,
        "deployment-vllm-router-mistral-7b": None,
    }
    server = one(prod, "vllmstack:index:KubernetesVllmServer", "llama-70b-on-demand")
    assert server["inputs"]["rolloutTimeout"] == "50m" and server["inputs"]["startupBudgetSeconds"] == 2696
