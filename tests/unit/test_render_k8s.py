"""Kubernetes renderers: values that matter for GPUs, secrets, draining and autoscaling.

Every test asserts concrete values taken from the config or from `vllm_stack.defaults`, so
a renderer that drops a field, mixes up capacity classes or leaks a secret fails here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vllm_stack import defaults as D  # noqa: E402
from vllm_stack.config import ModelSpec  # noqa: E402
from vllm_stack.loader import ConfigError, parse_config  # noqa: E402
from vllm_stack.render import k8s  # noqa: E402
from vllm_stack.render.vllm_args import ENV_API_KEY, ENV_HF_TOKEN, serve_argv  # noqa: E402
from vllm_stack.sizing import readiness_delay_seconds  # noqa: E402

# --------------------------------------------------------------------------- shared fixtures
# (tests/artifacts/test_k8s_artifacts.py renders the same stacks)

SMALL, LARGE = "llama8b", "llama70b"
SMALL_DRAIN = 25
VLLM_SECRET, TLS_SECRET = "vllm-stack-vllm", "vllm-stack-tls"
KEYS_SECRET, GRAFANA_SECRET = "vllm-stack-api-keys", "vllm-stack-grafana"
#: Distinctive secret values: the scan asserts each shows up in Secret objects and nowhere else.
CANARIES = {
    "api_key": "sk-CANARY-apikey-7f3a91",
    "extra_api_key": "sk-CANARY-extra-c3d9e2",
    "hf_token": "hf_CANARYtoken9b2c44",
    "grafana": "CANARY-grafana-pw-41d0aa",
    "tls_key": "CANARY-tls-private-key-55e1bb",
}
PEAK = {"start": "45 8 * * 1-5", "end": "0 19 * * 1-5", "timezone": "Europe/Paris", "replicas": 3}


OPERATOR_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"


def prod_config(*, operator: bool = False, grafana: bool = True):
    return parse_config(
        {
            "environment": "prod",
            "platform": "kubernetes",
            "models": [
                {
                    "name": SMALL,
                    "model": "meta-llama/Llama-3.1-8B",
                    "gpu": "L40S",
                    "pool": {"onDemand": 1, "spot": 1, "spotMax": 4, "drainSeconds": SMALL_DRAIN, "peakSchedule": PEAK},
                },
                {
                    "name": LARGE,
                    "model": "meta-llama/Llama-3.1-70B",
                    "gpu": "H100-SXM5-80GB",
                    "tensorParallel": 2,
                    "quantization": "fp8",
                },
            ],
            "front": {"domain": "llm.example.com", "serviceType": "LoadBalancer"},
            "monitoring": {
                "prometheusOperator": operator,
                "grafana": {"enabled": grafana},
                **({"prometheusUrl": OPERATOR_PROMETHEUS} if operator else {}),
            },
            "kubernetes": {"namespace": "llm-prod", "storageClass": "efs-sc", "weightsPvcSize": "800Gi"},
        }
    )


def dev_config():
    return parse_config(
        {
            "environment": "dev",
            "platform": "kubernetes",
            "models": [{"name": "qwen7b", "model": "Qwen/Qwen2.5-7B", "gpu": "L40S"}],
            "front": {"serviceType": "NodePort"},
        }
    )


def model(cfg, name, model_id, gpu, pool=None):
    return ModelSpec.model_validate({"name": name, "model": model_id, "gpu": gpu, **({"pool": pool} if pool else {})})


def model_by_name(cfg, name):
    return next(m for m in cfg.models if m.name == name)


def nginx_files(cfg) -> dict:
    return k8s.render_front_files(cfg)


def api_keys_map(keys) -> str:
    from vllm_stack.render import nginx

    return nginx.render_api_keys_map(keys)


def rules_yml(cfg) -> str:
    from vllm_stack.render.alerts import render_alert_rules

    return render_alert_rules(cfg)


def grafana_files(cfg) -> dict:
    from vllm_stack.render.grafana import render_grafana

    return render_grafana(cfg, prometheus_url=k8s.prometheus_service_url(cfg))


def secrets(cfg, values=CANARIES) -> list:
    out = [
        k8s.secret_object(cfg, VLLM_SECRET, {ENV_API_KEY: values["api_key"], ENV_HF_TOKEN: values["hf_token"]}),
        k8s.tls_secret_object(
            cfg,
            TLS_SECRET,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            f"-----BEGIN PRIVATE KEY-----\n{values['tls_key']}\n-----END PRIVATE KEY-----\n",
        ),
        k8s.secret_object(
            cfg, KEYS_SECRET, {k8s.API_KEYS_FILE: api_keys_map([values["api_key"], values["extra_api_key"]])}
        ),
    ]
    if cfg.monitoring.grafana.enabled and not cfg.monitoring.prometheus_operator:
        out.append(k8s.secret_object(cfg, GRAFANA_SECRET, {k8s.GRAFANA_PASSWORD_KEY: values["grafana"]}))
    return out


def front(cfg) -> list:
    return k8s.front_objects(cfg, nginx_files(cfg), keys_secret=KEYS_SECRET, tls_secret=TLS_SECRET)


def render_all(cfg, secret_values=CANARIES) -> list:
    """Every object of a stack, in apply order."""
    objs = k8s.gpu_node_objects(cfg) + secrets(cfg, secret_values)
    prom_url = "http://prometheus-operated.monitoring.svc:9090" if cfg.monitoring.prometheus_operator else None
    for m in cfg.models:
        objs += k8s.model_objects(cfg, m, secret_name=VLLM_SECRET, prometheus_url=prom_url)
    objs += front(cfg)
    objs += k8s.monitoring_objects(
        cfg, k8s.render_prometheus_yml_k8s(cfg), rules_yml(cfg), grafana_files(cfg), grafana_secret=GRAFANA_SECRET
    )
    return objs


@pytest.fixture(scope="module")
def prod():
    return prod_config()


@pytest.fixture(scope="module")
def dev():
    return dev_config()


@pytest.fixture(scope="module")
def prod_objs(prod):
    return render_all(prod)


def kinds(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def get(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def vllm_deployments(objs):
    return [o for o in kinds(objs, "Deployment") if D.LABEL_MODEL in o["metadata"]["labels"]]


def container(deploy, name=None):
    cs = deploy["spec"]["template"]["spec"]["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


def pod(deploy):
    return deploy["spec"]["template"]["spec"]


def matches(selector: dict, lbls: dict) -> bool:
    return all(lbls.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------- vLLM pods


def test_gpu_limit_and_request_equal_tensor_parallel(prod, prod_objs):
    seen = {}
    for m in prod.models:
        for cap in ("on-demand", "spot"):
            if cap == "spot" and m.pool.spot_ceiling == 0:
                continue
            res = container(get(prod_objs, "Deployment", f"{m.name}-{cap}"))["resources"]
            assert res["limits"][D.GPU_RESOURCE] == m.tensor_parallel
            assert res["requests"][D.GPU_RESOURCE] == m.tensor_parallel
            seen[m.name] = m.tensor_parallel
    assert seen == {SMALL: 1, LARGE: 2}  # the fixture really exercises TP > 1


def test_readiness_delay_in_seed_range_and_scaled_by_size(prod, prod_objs):
    delays = {}
    for m in prod.models:
        c = container(get(prod_objs, "Deployment", f"{m.name}-on-demand"))
        delay = c["readinessProbe"]["initialDelaySeconds"]
        assert D.READINESS_DELAY_MIN_SEC <= delay <= D.READINESS_DELAY_MAX_SEC
        assert delay == readiness_delay_seconds(m.model_info().architecture.params)
        assert c["readinessProbe"]["httpGet"]["path"] == D.HEALTH_PATH
        delays[m.name] = delay
    assert delays[SMALL] < delays[LARGE]


def test_startup_and_liveness_probes(prod, prod_objs):
    from vllm_stack.startup import budget as startup_budget

    def model_of(d):
        return next(m for m in prod.models if m.name == d["metadata"]["labels"][D.LABEL_MODEL])

    for d in vllm_deployments(prod_objs):
        c = container(d)
        sp = c["startupProbe"]
        assert sp["httpGet"]["path"] == D.HEALTH_PATH
        budget = sp["failureThreshold"] * sp["periodSeconds"]
        # the model's startup budget (vllm_stack/startup.py), never below the fixed probe budget
        need = max(D.STARTUP_PROBE_BUDGET_SEC, startup_budget(model_of(d)).startup_seconds)
        assert need <= budget < need + sp["periodSeconds"]
        assert D.STARTUP_PROBE_BUDGET_SEC <= budget
        assert c["livenessProbe"]["failureThreshold"] == D.LIVENESS_FAILURE_THRESHOLD
        # a rollout must not be declared failed while a big model is still within its startup budget
        assert d["spec"]["progressDeadlineSeconds"] >= startup_budget(model_of(d)).rollout_seconds > need


def test_args_come_from_serve_argv_bound_inside_the_pod(prod, prod_objs):
    for m in prod.models:
        d = get(prod_objs, "Deployment", f"{m.name}-on-demand")
        c = container(d)
        mounts = {vm["name"]: vm["mountPath"] for vm in c["volumeMounts"]}
        path = f"{mounts['weights']}/{m.model.replace('/', '--')}/main"  # the weights Job's directory
        assert c["args"] == serve_argv(m, host="0.0.0.0", port=D.VLLM_PORT, model_path=path)
        assert c["args"][0] == path and c["args"][1:3] == ["--served-model-name", m.name]
        assert c["args"][c["args"].index("--host") + 1] == "0.0.0.0"
        assert "--download-dir" not in c["args"]
        assert "command" not in c  # the image's entrypoint is `vllm serve`
        assert c["image"] == m.image
        claim = {v["name"]: v for v in pod(d)["volumes"]}["weights"]["persistentVolumeClaim"]["claimName"]
        assert claim == get(prod_objs, "PersistentVolumeClaim", claim)["metadata"]["name"]


def test_secrets_only_via_secret_ref(prod_objs):
    secret_names = {ENV_API_KEY, ENV_HF_TOKEN}
    for d in vllm_deployments(prod_objs):
        c = container(d)
        assert c["envFrom"] == [{"secretRef": {"name": VLLM_SECRET}}]
        assert not secret_names & {e["name"] for e in c["env"]}
        assert all("value" in e and "valueFrom" not in e for e in c["env"])
        assert not any(a.startswith(("--api-key", "--hf-token")) for a in c["args"])
    for cm in kinds(prod_objs, "ConfigMap"):
        for key, text in cm["data"].items():
            for n in secret_names:
                assert n not in key and n not in text, (cm["metadata"]["name"], key, n)
    # and plain env of EVERY container in the stack
    for o in prod_objs:
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            for e in c.get("env", []):
                # a secret name only as a reference to the model Secret (the weights Job's HF_TOKEN)
                assert e["name"] not in secret_names or set(e) == {"name", "valueFrom"}, (o["metadata"]["name"], e)
                if e["name"] in secret_names:
                    assert e["valueFrom"] == {
                        "secretKeyRef": {"name": VLLM_SECRET, "key": e["name"], "optional": True}
                    }, o["metadata"]["name"]


def test_dev_shm_is_memory_backed(prod_objs):
    for d in vllm_deployments(prod_objs):
        c = container(d)
        shm_mount = next(vm for vm in c["volumeMounts"] if vm["mountPath"] == "/dev/shm")
        vol = next(v for v in pod(d)["volumes"] if v["name"] == shm_mount["name"])
        assert vol["emptyDir"] == {"medium": "Memory", "sizeLimit": D.SHM_SIZE}


def test_prestop_sleep_is_drain_and_shorter_than_grace(prod, prod_objs):
    for m in prod.models:
        d = get(prod_objs, "Deployment", f"{m.name}-on-demand")
        cmd = container(d)["lifecycle"]["preStop"]["exec"]["command"]
        assert cmd == ["sleep", str(m.pool.drain_seconds)]
        grace = pod(d)["terminationGracePeriodSeconds"]
        assert m.pool.drain_seconds < grace == m.pool.drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC
    assert {m.pool.drain_seconds for m in prod.models} == {SMALL_DRAIN, D.DRAIN_SECONDS_DEFAULT}


def test_pod_hardening(prod_objs):
    for d in vllm_deployments(prod_objs):
        p, c = pod(d), container(d)
        assert p["enableServiceLinks"] is False  # no VLLM_PORT=tcp://... from a Service named vllm
        assert p["automountServiceAccountToken"] is False
        assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in c["securityContext"]


def test_pdb_min_available_one_on_on_demand_pods_only(prod, dev, prod_objs):
    for cfg, objs in ((prod, prod_objs), (dev, render_all(dev))):
        for m in cfg.models:
            pdb = get(objs, "PodDisruptionBudget", f"{m.name}-on-demand")
            assert pdb["spec"]["minAvailable"] == 1
            sel = pdb["spec"]["selector"]["matchLabels"]
            od = get(objs, "Deployment", f"{m.name}-on-demand")["spec"]["template"]["metadata"]["labels"]
            assert matches(sel, od)
            spot = [d for d in vllm_deployments(objs) if d["metadata"]["name"] == f"{m.name}-spot"]
            for d in spot:
                assert not matches(sel, d["spec"]["template"]["metadata"]["labels"])


def test_no_pdb_and_no_on_demand_deployment_without_on_demand_replicas(prod):
    spec = model(prod, "spotonly", "Qwen/Qwen2.5-7B", "L40S", pool={"onDemand": 0, "spot": 1, "spotMax": 2})
    objs = k8s.model_objects(prod, spec, secret_name=VLLM_SECRET)
    assert [o["kind"] for o in objs] == ["Job", "Deployment", "Service", "ScaledObject"]
    assert objs[1]["metadata"]["name"] == "spotonly-spot"


def test_scaled_object_targets_spot_deployment(prod, prod_objs):
    m = model_by_name(prod, SMALL)
    so = get(prod_objs, "ScaledObject", f"{m.name}-spot")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    s = so["spec"]
    assert s["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{m.name}-spot"}
    assert s["minReplicaCount"] == m.pool.spot == 1
    assert s["maxReplicaCount"] == m.pool.spot_ceiling == 4
    assert s["pollingInterval"] == D.KEDA_POLLING_INTERVAL_SEC
    assert s["cooldownPeriod"] == D.KEDA_COOLDOWN_SEC
    assert (
        s["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        == D.KEDA_COOLDOWN_SEC
    )
    prom = next(t for t in s["triggers"] if t["type"] == "prometheus")["metadata"]
    assert prom["query"] == f'sum(vllm:num_requests_waiting{{model_name="{m.name}"}})'
    assert prom["threshold"] == str(D.KEDA_QUEUE_TARGET)
    assert prom["serverAddress"] == f"http://vllm-stack-prometheus.{prod.kubernetes.namespace}.svc:{D.PROMETHEUS_PORT}"
    # the warm minimum is also the Deployment's initial size
    assert get(prod_objs, "Deployment", f"{m.name}-spot")["spec"]["replicas"] == m.pool.spot


def test_prometheus_url_parameter_and_operator_requirement(prod):
    m = model_by_name(prod, SMALL)
    objs = k8s.model_objects(prod, m, secret_name="s", prometheus_url="http://prom.example:9090")
    so = next(o for o in objs if o["kind"] == "ScaledObject")
    assert so["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prom.example:9090"
    op = prod_config(operator=True)
    so = next(
        o for o in k8s.model_objects(op, model_by_name(op, SMALL), secret_name="s") if o["kind"] == "ScaledObject"
    )
    assert so["spec"]["triggers"][0]["metadata"]["serverAddress"] == OPERATOR_PROMETHEUS
    raw = {**prod_config(operator=True).model_dump(by_alias=True, exclude={"secrets"}, mode="json")}
    raw["monitoring"] = {**raw["monitoring"], "prometheusUrl": None}
    with pytest.raises(ConfigError, match=r"^monitoring\.prometheusUrl: required key is missing"):
        parse_config(raw)


def test_cron_trigger_only_with_peak_schedule(prod, prod_objs):
    m = model_by_name(prod, SMALL)
    so = get(prod_objs, "ScaledObject", f"{m.name}-spot")
    cron = [t for t in so["spec"]["triggers"] if t["type"] == "cron"]
    ps = m.pool.peak_schedule
    assert cron == [
        {
            "type": "cron",
            "metadata": {
                "timezone": ps.timezone,
                "start": ps.start,
                "end": ps.end,
                "desiredReplicas": str(ps.replicas),
            },
        }
    ]
    no_peak = model(prod, "nopeak", "Qwen/Qwen2.5-7B", "L40S", pool={"onDemand": 1, "spot": 0, "spotMax": 3})
    so2 = next(o for o in k8s.model_objects(prod, no_peak, secret_name="s") if o["kind"] == "ScaledObject")
    assert [t["type"] for t in so2["spec"]["triggers"]] == ["prometheus"]
    assert so2["spec"]["minReplicaCount"] == 0 and so2["spec"]["maxReplicaCount"] == 3


def test_no_spot_objects_without_spot_capacity(prod_objs):
    names = {(o["kind"], o["metadata"]["name"]) for o in prod_objs}
    assert ("Deployment", f"{LARGE}-spot") not in names
    assert ("ScaledObject", f"{LARGE}-spot") not in names


def test_spot_tolerations_and_node_selector_only_on_spot(prod_objs):
    spot_tol = {"key": D.LABEL_CAPACITY, "operator": "Equal", "value": "spot", "effect": "NoSchedule"}
    gpu_tol = {"key": D.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
    checked = set()
    for d in vllm_deployments(prod_objs):
        cap = d["metadata"]["labels"][D.LABEL_CAPACITY]
        p = pod(d)
        assert p["nodeSelector"] == {D.LABEL_CAPACITY: cap}
        assert gpu_tol in p["tolerations"]
        assert (spot_tol in p["tolerations"]) is (cap == "spot")
        assert all(t["key"] != D.LABEL_CAPACITY for t in p["tolerations"]) is (cap == "on-demand")
        tsc = p["topologySpreadConstraints"][0]
        assert tsc["topologyKey"] == "kubernetes.io/hostname"
        assert matches(tsc["labelSelector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
        checked.add(cap)
    assert checked == {"on-demand", "spot"}


def test_vllm_service_is_cluster_ip_over_both_classes(prod, prod_objs):
    for m in prod.models:
        svc = get(prod_objs, "Service", m.name)
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["ports"] == [{"name": "http", "port": D.VLLM_PORT, "targetPort": "http", "protocol": "TCP"}]
        ds = [d for d in vllm_deployments(prod_objs) if d["metadata"]["labels"][D.LABEL_MODEL] == m.name]
        assert ds and all(matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]) for d in ds)
        others = [d for d in vllm_deployments(prod_objs) if d not in ds]
        assert not any(matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]) for d in others)
        port = container(ds[0])["ports"][0]
        assert port == {"name": "http", "containerPort": D.VLLM_PORT, "protocol": "TCP"}


def test_images_pinned(prod_objs):
    images = []
    for o in prod_objs:
        for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            images.append(c["image"])
    assert {
        D.VLLM_IMAGE,
        D.NGINX_IMAGE,
        D.PROMETHEUS_IMAGE,
        D.GRAFANA_IMAGE,
        D.DCGM_EXPORTER_IMAGE,
        D.NVIDIA_DEVICE_PLUGIN_IMAGE,
    } <= set(images)
    for img in images:
        name, _, tag = img.rpartition(":")
        assert name and "/" not in tag and tag and tag != "latest", img


def test_labels_and_namespace_on_every_object(prod, prod_objs):
    ns = prod.kubernetes.namespace
    for o in prod_objs:
        meta = o["metadata"]
        assert meta["labels"][D.LABEL_PART_OF] == D.PROJECT, meta["name"]
        assert meta["labels"][D.LABEL_ENVIRONMENT] == "prod", meta["name"]
        if o["kind"] == "Namespace":
            assert meta["name"] == ns and "namespace" not in meta
        else:
            assert meta["namespace"] == ns, (o["kind"], meta["name"])
    for d in vllm_deployments(prod_objs):
        t = d["spec"]["template"]["metadata"]["labels"]
        assert t[D.LABEL_CAPACITY] in ("on-demand", "spot") and t[D.LABEL_MODEL]
        assert matches(d["spec"]["selector"]["matchLabels"], t)


def test_rendering_is_deterministic(prod):
    assert k8s.dump_yaml(render_all(prod)) == k8s.dump_yaml(render_all(prod_config()))
    assert "&id" not in k8s.dump_yaml(render_all(prod))  # no YAML anchors


def test_secret_values_appear_only_in_secret_objects(prod):
    objs = render_all(prod, secret_values=CANARIES)
    hits: dict[str, set[str]] = {c: set() for c in CANARIES.values()}
    for o in objs:
        text = yaml.safe_dump(o)
        for canary in hits:
            if canary in text:
                hits[canary].add(o["kind"])
    for canary, where in hits.items():
        assert where == {"Secret"}, (canary, where)  # present (so the scan is real) and only in Secrets


# --------------------------------------------------------------------------- GPU nodes


def test_gpu_node_objects(prod, dev):
    objs = k8s.gpu_node_objects(prod)
    assert [o["kind"] for o in objs] == ["Namespace", "DaemonSet", "DaemonSet", "Service", "PersistentVolumeClaim"]
    both = {"key": D.LABEL_CAPACITY, "operator": "In", "values": ["on-demand", "spot"]}
    for ds in kinds(objs, "DaemonSet"):
        p = pod(ds)
        terms = p["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [both]}]
        tol_keys = {t["key"] for t in p["tolerations"]}
        assert tol_keys == {D.GPU_TAINT_KEY, D.LABEL_CAPACITY}  # spot GPU nodes need the plugin too
    plugin = get(objs, "DaemonSet", "vllm-stack-nvidia-device-plugin")
    assert container(plugin)["image"] == D.NVIDIA_DEVICE_PLUGIN_IMAGE
    dcgm = get(objs, "DaemonSet", "vllm-stack-dcgm-exporter")
    assert container(dcgm)["ports"][0]["containerPort"] == D.DCGM_EXPORTER_PORT
    assert "resources" not in container(dcgm)  # never takes a GPU away from vLLM
    svc = get(objs, "Service", "vllm-stack-dcgm-exporter")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["ports"][0]["port"] == D.DCGM_EXPORTER_PORT
    assert matches(svc["spec"]["selector"], dcgm["spec"]["template"]["metadata"]["labels"])
    pvc = get(objs, "PersistentVolumeClaim", "vllm-stack-weights")
    assert pvc["spec"]["resources"]["requests"]["storage"] == prod.kubernetes.weights_pvc_size == "800Gi"
    assert pvc["spec"]["storageClassName"] == "efs-sc"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # several pods on several nodes
    dev_pvc = get(k8s.gpu_node_objects(dev), "PersistentVolumeClaim", "vllm-stack-weights")
    assert dev_pvc["spec"]["accessModes"] == ["ReadWriteOnce"]  # one pod can ever exist
    assert "storageClassName" not in dev_pvc["spec"]
    assert dev_pvc["spec"]["resources"]["requests"]["storage"] == D.WEIGHTS_PVC_SIZE


def test_model_names_kubernetes_cannot_use_are_refused(prod):
    with pytest.raises(k8s.K8sRenderError, match="DNS-1035"):
        k8s.model_objects(prod, model(prod, "7b", "Qwen/Qwen2.5-7B", "L40S"), secret_name="s")
    with pytest.raises(k8s.K8sRenderError, match="reserved"):
        k8s.model_objects(prod, model(prod, "vllm-stack-front", "Qwen/Qwen2.5-7B", "L40S"), secret_name="s")


# --------------------------------------------------------------------------- secrets


def test_secret_objects(prod):
    s = k8s.secret_object(prod, "x", {ENV_API_KEY: "a", ENV_HF_TOKEN: "b"})
    assert s["type"] == "Opaque" and s["stringData"] == {ENV_API_KEY: "a", ENV_HF_TOKEN: "b"}
    t = k8s.tls_secret_object(prod, "tls", "CERT", "KEY")
    assert t["type"] == "kubernetes.io/tls" and t["stringData"] == {"tls.crt": "CERT", "tls.key": "KEY"}
    with pytest.raises(k8s.K8sRenderError):
        k8s.secret_object(prod, "x", {"bad/key": "v"})


# --------------------------------------------------------------------------- front


def test_front(prod, dev):
    for cfg, replicas in ((prod, D.FRONT_REPLICAS_PROD), (dev, D.FRONT_REPLICAS_DEV)):
        objs = front(cfg)
        d = get(objs, "Deployment", "vllm-stack-front")
        assert d["spec"]["replicas"] == replicas
        c = container(d)
        assert c["image"] == D.NGINX_IMAGE
        assert "readinessProbe" in c
        vols = {v["name"]: v for v in pod(d)["volumes"]}
        secret_vols = {v["secret"]["secretName"]: v["secret"] for v in vols.values() if "secret" in v}
        assert set(secret_vols) == {TLS_SECRET, KEYS_SECRET}
        assert all(s["defaultMode"] == D.SECRET_VOLUME_MODE for s in secret_vols.values())
        mounted = {vm["name"] for vm in c["volumeMounts"]}
        assert {n for n, v in vols.items() if "secret" in v} <= mounted
        svc = get(objs, "Service", "vllm-stack-front")
        assert svc["spec"]["type"] == cfg.front.service_type
        assert sorted(p["port"] for p in svc["spec"]["ports"]) == [D.HTTP_PORT, D.HTTPS_PORT]
        cm = get(objs, "ConfigMap", "vllm-stack-front-config")
        files = nginx_files(cfg)
        items = vols["config"]["configMap"]["items"]
        assert {i["path"]: cm["data"][i["key"]] for i in items} == files  # every file back at its path
        conf_mount = next(vm["mountPath"] for vm in c["volumeMounts"] if vm["name"] == "config")
        assert c["args"][c["args"].index("-c") + 1] == f"{conf_mount}/nginx.conf"
        for vm in c["volumeMounts"]:  # nginx.conf names the files where the pod mounts them
            if vm["name"] in ("tls", "api-keys"):
                assert f"{vm['mountPath']}/" in files["nginx.conf"], vm
        assert matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        pdbs = kinds(objs, "PodDisruptionBudget")
        assert len(pdbs) == (1 if replicas > 1 else 0)
    assert get(front(dev), "Service", "vllm-stack-front")["spec"]["type"] == "NodePort"


def test_front_refuses_secret_material_in_configmap(prod):
    files = {**nginx_files(prod), "server.key": "-----BEGIN PRIVATE KEY-----\nx\n"}
    with pytest.raises(k8s.K8sRenderError, match="secret"):
        k8s.front_objects(prod, files, keys_secret=KEYS_SECRET, tls_secret=TLS_SECRET)
    files = nginx_files(prod)
    up = next(k for k in files if k.startswith("upstreams/"))
    smuggled = {**files, up: files[up] + '"~^Bearer sk-abcdefghijklmnop$" 1;\n'}
    with pytest.raises(k8s.K8sRenderError, match="secret material"):
        k8s.front_objects(prod, smuggled, keys_secret=KEYS_SECRET, tls_secret=TLS_SECRET)
    with pytest.raises(k8s.K8sRenderError, match="front_paths"):  # rendered for another layout
        from vllm_stack.render.nginx import render_front

        k8s.front_objects(
            prod, render_front(prod, k8s.front_backends(prod)), keys_secret=KEYS_SECRET, tls_secret=TLS_SECRET
        )


def test_front_without_tls_serves_plain_http_only():
    cfg = parse_config(
        {
            "environment": "dev",
            "platform": "kubernetes",
            "front": {"tls": "none"},
            "models": [{"name": "qwen7b", "model": "Qwen/Qwen2.5-7B", "gpu": "L40S"}],
        }
    )
    objs = k8s.front_objects(cfg, nginx_files(cfg), keys_secret=KEYS_SECRET, tls_secret=None)
    d = get(objs, "Deployment", "vllm-stack-front")
    c = container(d)
    assert [p["containerPort"] for p in c["ports"]] == [D.HTTP_PORT]
    assert c["readinessProbe"]["httpGet"] == {"path": D.HEALTH_PATH, "port": "http", "scheme": "HTTP"}
    assert [v["secret"]["secretName"] for v in pod(d)["volumes"] if "secret" in v] == [KEYS_SECRET]
    assert [p["port"] for p in get(objs, "Service", "vllm-stack-front")["spec"]["ports"]] == [D.HTTP_PORT]
    with pytest.raises(k8s.K8sRenderError, match="tls_secret"):
        k8s.front_objects(dev_config(), nginx_files(dev_config()), keys_secret=KEYS_SECRET, tls_secret=None)


# --------------------------------------------------------------------------- monitoring


def test_own_prometheus_and_grafana(prod, prod_objs):
    prom = get(prod_objs, "Deployment", "vllm-stack-prometheus")
    assert container(prom)["image"] == D.PROMETHEUS_IMAGE
    assert get(prod_objs, "Service", "vllm-stack-prometheus")["spec"]["type"] == "ClusterIP"
    cm = get(prod_objs, "ConfigMap", "vllm-stack-prometheus-config")
    assert set(cm["data"]) == {"prometheus.yml", "vllm-alerts.yml", D.BLACKBOX_CONFIG_FILE}  # TLS front: probed
    assert k8s.PROMETHEUS_RULES_PATH in yaml.safe_load(cm["data"]["prometheus.yml"])["rule_files"]
    assert not kinds(prod_objs, "PrometheusRule") and not kinds(prod_objs, "ServiceMonitor")
    g = get(prod_objs, "Deployment", "vllm-stack-grafana")
    env = {e["name"]: e["value"] for e in container(g)["env"]}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == D.GRAFANA_ADMIN_PASSWORD_FILE
    secret_vol = next(v["secret"] for v in pod(g)["volumes"] if "secret" in v)
    assert secret_vol["secretName"] == GRAFANA_SECRET and secret_vol["defaultMode"] == D.SECRET_VOLUME_MODE
    mount = next(vm for vm in container(g)["volumeMounts"] if vm["name"] == "admin-password")
    assert f"{mount['mountPath']}/{secret_vol['items'][0]['path']}" == D.GRAFANA_ADMIN_PASSWORD_FILE
    assert get(prod_objs, "Service", "vllm-stack-grafana")["spec"]["type"] == "ClusterIP"


def test_grafana_disabled(prod):
    cfg = prod_config(grafana=False)
    objs = render_all(cfg)
    assert not [o for o in objs if "grafana" in o["metadata"]["name"]]


def test_prometheus_operator_mode(prod):
    cfg = prod_config(operator=True)
    objs = render_all(cfg)
    assert not [o for o in objs if o["metadata"]["name"] == "vllm-stack-prometheus"]
    rule = get(objs, "PrometheusRule", "vllm-stack-rules")
    assert rule["spec"]["groups"] == yaml.safe_load(rules_yml(cfg))["groups"]
    sms = kinds(objs, "ServiceMonitor")
    assert sorted(s["metadata"]["name"] for s in sms) == sorted(
        [m.name for m in cfg.models] + ["vllm-stack-dcgm-exporter", "vllm-stack-front-metrics"]
    )
    for m in cfg.models:
        sm = get(objs, "ServiceMonitor", m.name)
        svc = get(objs, "Service", m.name)
        assert matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
        ep = sm["spec"]["endpoints"][0]
        assert ep["port"] == svc["spec"]["ports"][0]["name"] and ep["path"] == D.METRICS_PATH
        assert ep["interval"] == f"{cfg.monitoring.scrape_interval_seconds}s"
        relabel = {r["targetLabel"]: r for r in ep["relabelings"] if r.get("regex") == "on-demand"}
        assert relabel[D.SCRAPE_LABEL_CAPACITY]["replacement"] == "onDemand"
    other_sms = [s for s in sms if s["metadata"]["name"] != SMALL]
    assert not any(
        matches(s["spec"]["selector"]["matchLabels"], get(objs, "Service", SMALL)["metadata"]["labels"])
        for s in other_sms
    )
    dash = get(objs, "ConfigMap", "vllm-stack-grafana-dashboards")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1" and list(dash["data"]) == ["vllm.json"]


def test_kubernetes_scrape_configs_label_like_the_docker_platform(prod):
    jobs = {j["job_name"]: j for j in k8s.kubernetes_scrape_configs(prod)}
    assert set(jobs) == {D.JOB_VLLM, D.JOB_DCGM, D.JOB_NGINX, D.JOB_BLACKBOX}
    v = jobs[D.JOB_VLLM]
    assert v["kubernetes_sd_configs"] == [
        {"role": "endpointslice", "namespaces": {"names": [prod.kubernetes.namespace]}}
    ]
    targets = {r.get("target_label"): r for r in v["relabel_configs"] if r.get("regex") in ("on-demand", None)}
    assert targets[D.SCRAPE_LABEL_MODEL]["source_labels"] == ["__meta_kubernetes_pod_label_vllm_stack_model"]
    assert targets[D.SCRAPE_LABEL_HOST]["source_labels"] == ["__meta_kubernetes_pod_node_name"]
    cap = [r for r in v["relabel_configs"] if r.get("target_label") == D.SCRAPE_LABEL_CAPACITY]
    assert {(r["regex"], r["replacement"]) for r in cap} == {("on-demand", "onDemand"), ("spot", "spot")}
    keep = [r for r in v["relabel_configs"] if r["action"] == "keep"]
    assert keep[0]["regex"] == "vllm-stack;vllm" and keep[1]["regex"] == "http"
