"""Rendered Kubernetes objects through the real validators.

Built-in kinds: kubernetes-validate --strict against the pinned Kubernetes version (unknown
fields, wrong types and missing required fields fail). KEDA ScaledObject and
prometheus-operator PrometheusRule / ServiceMonitor: tools/validate-crd.mjs (their CRD
schemas plus unknown-field detection). Mutated copies prove both validators bite. The
in-cluster prometheus.yml goes through promtool, and the front's pod filesystem (ConfigMap
items + Secret keys at their mount paths) through `nginx -t`.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import tools  # noqa: E402
from tests.unit import test_render_k8s as fx  # noqa: E402  (the stacks the unit tests render)
from vllm_stack import defaults as D  # noqa: E402
from vllm_stack.render import k8s  # noqa: E402
from vllm_stack.render.k8s_front import FRONT_DIR, RUN_DIR, TEMP_DIR  # noqa: E402

CRD_API_VERSIONS = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}

STACKS = {
    "prod": lambda: fx.prod_config(),
    "prod-operator": lambda: fx.prod_config(operator=True),
    "dev": lambda: fx.dev_config(),
}


def split_write(objs, out: Path) -> tuple[Path, Path | None]:
    builtin = [o for o in objs if o["apiVersion"] not in CRD_API_VERSIONS]
    crds = [o for o in objs if o["apiVersion"] in CRD_API_VERSIONS]
    out.mkdir(parents=True, exist_ok=True)
    b = out / "builtin.yaml"
    b.write_text(k8s.dump_yaml(builtin))
    c = None
    if crds:
        c = out / "crds.yaml"
        c.write_text(k8s.dump_yaml(crds))
    return b, c


@pytest.fixture(scope="module", params=sorted(STACKS))
def rendered(request, tmp_path_factory):
    tools.require("kubernetes-validate")
    tools.require("validate-crd")
    cfg = STACKS[request.param]()
    objs = fx.render_all(cfg)
    b, c = split_write(objs, tmp_path_factory.mktemp(request.param))
    return request.param, cfg, objs, b, c


def test_builtin_kinds_pass_kubernetes_validate_strict(rendered):
    name, cfg, objs, builtin, _ = rendered
    res = tools.kubernetes_validate(builtin, D.K8S_VERSION)
    assert res.ok, str(res)
    n_builtin = sum(o["apiVersion"] not in CRD_API_VERSIONS for o in objs)
    assert len(re.findall(r"passed for resource", res.output)) == n_builtin, res.output


def test_crd_kinds_pass_their_schemas(rendered):
    name, cfg, objs, _, crds = rendered
    expected = {o["kind"] for o in objs if o["apiVersion"] in CRD_API_VERSIONS}
    if name == "prod":
        assert expected == {"ScaledObject"}
    elif name == "prod-operator":
        assert expected == {"ScaledObject", "PrometheusRule", "ServiceMonitor"}
    else:
        assert expected == set() and crds is None  # dev: no spot pool, own Prometheus
        return
    res = tools.validate_crd(crds)
    assert res.ok, str(res)
    n_crd = sum(o["apiVersion"] in CRD_API_VERSIONS for o in objs)
    assert len(re.findall(r": ok$", res.output, re.M)) == n_crd, res.output


def test_every_object_is_in_one_of_the_two_files(rendered):
    _, _, objs, builtin, crds = rendered
    docs = list(yaml.safe_load_all(builtin.read_text())) + (list(yaml.safe_load_all(crds.read_text())) if crds else [])
    key = lambda o: (o["apiVersion"], o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(docs, key=key) == sorted(objs, key=key)
    assert len({key(o) for o in objs}) == len(objs)  # no two objects share kind and name


# ------------------------------------------------------------------ the validators bite


def _mutated(objs, kind, mutate):
    out = copy.deepcopy(objs)
    target = next(o for o in out if o["kind"] == kind)
    mutate(target)
    return out


@pytest.mark.parametrize(
    "kind,mutate",
    [
        ("Deployment", lambda o: o["spec"].__setitem__("replica", 2)),  # unknown field
        (
            "Deployment",
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].__setitem__(
                "nvidia.com/gpu", [1]
            ),
        ),  # wrong type
        ("PodDisruptionBudget", lambda o: o["spec"].__setitem__("minAvailable", {"n": 1})),  # wrong type
        ("Service", lambda o: o["spec"]["ports"][0].pop("port")),  # required
    ],
)
def test_kubernetes_validate_rejects_broken_objects(tmp_path, kind, mutate):
    tools.require("kubernetes-validate")
    objs = _mutated(fx.render_all(fx.prod_config()), kind, mutate)
    builtin, _ = split_write(objs, tmp_path)
    res = tools.kubernetes_validate(builtin, D.K8S_VERSION)
    assert not res.ok and res.rc != 0, str(res)


@pytest.mark.parametrize(
    "kind,mutate",
    [
        ("ScaledObject", lambda o: o["spec"].__setitem__("minReplicaCunt", 1)),  # unknown field
        ("ScaledObject", lambda o: o["spec"].__setitem__("maxReplicaCount", "four")),  # wrong type
        ("ScaledObject", lambda o: o["spec"].pop("scaleTargetRef")),  # required
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].__setitem__("intervall", "10s")),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0].pop("name")),
    ],
)
def test_validate_crd_rejects_broken_objects(tmp_path, kind, mutate):
    tools.require("validate-crd")
    objs = _mutated(fx.render_all(fx.prod_config(operator=True)), kind, mutate)
    _, crds = split_write(objs, tmp_path)
    res = tools.validate_crd(crds)
    assert not res.ok, str(res)


# ------------------------------------------------------------------ configs inside the pods


def test_in_cluster_prometheus_config_passes_promtool(tmp_path):
    """Debian's promtool is built without Kubernetes service discovery ("field
    kubernetes_sd_configs not found"), so the SD block (asserted value by value in the unit
    tests) is swapped for an equivalent static target; everything else, the relabel rules
    (actions, regexes, label names) and the alert rules, goes through promtool as rendered."""
    tools.require("promtool")
    cfg = fx.prod_config()
    objs = fx.render_all(cfg)
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "vllm-stack-prometheus-config")
    for key, text in cm["data"].items():
        (tmp_path / key).write_text(text)
    prom = yaml.safe_load(cm["data"]["prometheus.yml"])
    assert prom["rule_files"] == [k8s.PROMETHEUS_RULES_PATH]
    prom["rule_files"] = [str(tmp_path / Path(k8s.PROMETHEUS_RULES_PATH).name)]  # where the pod mounts it
    probes = [j for j in prom["scrape_configs"] if j["job_name"] == D.JOB_BLACKBOX]
    assert len(probes) == 1 and "kubernetes_sd_configs" not in probes[0]  # static: the front's Service URL
    for job in prom["scrape_configs"]:
        if job in probes:
            continue
        assert job.pop("kubernetes_sd_configs") == [
            {"role": "endpointslice", "namespaces": {"names": [cfg.kubernetes.namespace]}}
        ]
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom, sort_keys=False))
    res = tools.promtool_check_config(tmp_path / "prometheus.yml")
    assert res.ok, str(res)
    assert "SUCCESS" in res.output and "rules found" in res.output


def _self_signed(dir_: Path) -> tuple[str, str]:
    key, crt = dir_ / "k.pem", dir_ / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=llm.example.com",
        ],
        check=True,
        capture_output=True,
    )
    return crt.read_text(), key.read_text()


def _materialize_pod_files(objs, deploy, root: Path) -> None:
    """Write ConfigMap items and Secret keys where the nginx container mounts them."""
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    spec = deploy["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    for vm in spec["containers"][0]["volumeMounts"]:
        v = vols[vm["name"]]
        base = root / vm["mountPath"].lstrip("/")
        base.mkdir(parents=True, exist_ok=True)
        if "configMap" in v:
            data = by_name[("ConfigMap", v["configMap"]["name"])]["data"]
            for item in v["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                (base / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (base / item["path"]).write_text(data[item["key"]])
        elif "secret" in v:
            data = by_name[("Secret", v["secret"]["secretName"])]["stringData"]
            for key, text in data.items():
                (base / key).write_text(text)


def test_front_pod_filesystem_passes_nginx_t(tmp_path):
    """nginx.conf + upstreams from the ConfigMap, cert/key and API-key map from the Secrets,
    each at its mount path (re-rooted under tmp): nginx parses it all, certificates included."""
    tools.require("nginx")
    cfg = fx.prod_config()
    crt, key = _self_signed(tmp_path)
    objs = [o for o in fx.render_all(cfg) if not (o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls")]
    objs.append(k8s.tls_secret_object(cfg, fx.TLS_SECRET, crt, key))
    deploy = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "vllm-stack-front")
    root = tmp_path / "pod"
    _materialize_pod_files(objs, deploy, root)
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    conf_path = root / args[args.index("-c") + 1].lstrip("/")
    text = conf_path.read_text()
    for d in (FRONT_DIR, RUN_DIR, TEMP_DIR, "/var/log/nginx"):
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        text = text.replace(d + "/", f"{root}{d}/")
    text = re.sub(r"^user .*;\n", "", text, flags=re.M)  # the image's `nginx` user does not exist here
    conf_path.write_text(text)
    for up in (root / FRONT_DIR.lstrip("/")).rglob("upstreams/*.conf"):  # Service DNS -> loopback for -t
        up.write_text(re.sub(r"server [a-z0-9.-]+\.svc:", "server 127.0.0.1:", up.read_text()))
    assert f"{root}{FRONT_DIR}/tls/tls.crt" in text and f"{root}{FRONT_DIR}/keys/api-keys.map" in text
    res = tools.nginx_t(conf_path, root / "etc/nginx")
    assert res.ok, str(res) + "\n" + text
