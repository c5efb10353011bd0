"""Hand-built resources in the mock engine's shape, and offline plans of whole stack files
(one program per subprocess, run concurrently) for the policy tier."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policies"
CASES_DIR = Path(__file__).resolve().parent / "cases"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

from vllm_stack import defaults as D  # noqa: E402
from vllm_stack.offline.engine import RecordedResource  # noqa: E402

# --- hand-built resources -------------------------------------------------------------------------

LABEL_GPU = "vllm-stack/gpu"
VLLM_ARGV = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "--served-model-name",
    "llama-8b",
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--tensor-parallel-size",
    "1",
    "--gpu-memory-utilization",
    "0.9",
    "--max-model-len",
    "8192",
    "--max-num-seqs",
    "64",
]
CONTAINER_ENTRYPOINT = ["/bin/sh", "-c", 'set -a; . /run/secrets/vllm.env; set +a; exec vllm serve "$@"', "vllm-serve"]


def res(typ: str, name: str, inputs: dict, secret_keys: Iterable[str] = (), *, custom: bool = True) -> RecordedResource:
    return RecordedResource(
        urn=f"urn:pulumi:test::vllm-stack::{typ}::{name}",
        type=typ,
        name=name,
        parent=None,
        custom=custom,
        inputs=inputs,
        secret_keys=frozenset(secret_keys),
    )


def container(
    name: str = "llama-8b-od-0",
    *,
    command: list[str] | None = None,
    labels: dict | None = None,
    ports: list[dict] | None = None,
    envs: list[str] | None = None,
    image: str | None = None,
    entrypoints: list[str] | None = None,
    **extra: Any,
) -> RecordedResource:
    lbl = {
        D.LABEL_MODEL: "llama-8b",
        D.LABEL_CAPACITY: "on-demand",
        D.LABEL_ENVIRONMENT: "prod",
        LABEL_GPU: "L40S",
        **(labels or {}),
    }
    lbl = {k: v for k, v in lbl.items() if v is not None}  # labels={KEY: None} drops a default
    inputs = {
        "name": f"vllm-{name}",
        "image": image or f"{D.VLLM_IMAGE}@sha256:{'0' * 64}",
        "entrypoints": CONTAINER_ENTRYPOINT if entrypoints is None else entrypoints,
        "command": list(VLLM_ARGV if command is None else command),
        "envs": ["HF_HOME=/var/lib/vllm/models"] if envs is None else envs,
        "ports": [{"internal": 8000.0, "external": 8000.0, "ip": "127.0.0.1"}] if ports is None else ports,
        "labels": [{"label": k, "value": v} for k, v in sorted(lbl.items())],
        "healthcheck": {"tests": ["CMD", "curl", "-fsS", "http://127.0.0.1:8000/health"]},
        **extra,
    }
    return res("docker:index/container:Container", name, inputs)


def _startup_budget(argv: list[str]):
    from vllm_stack.catalog import lookup_model
    from vllm_stack.startup import budget_for

    quant = argv[argv.index("--quantization") + 1] if "--quantization" in argv else "none"
    info = lookup_model(argv[0]) if argv and not argv[0].startswith("-") else None
    info = info or lookup_model("meta-llama/Llama-3.1-8B-Instruct")
    assert info is not None
    return budget_for(info.architecture, quant if quant in ("none", "fp8", "awq", "gptq") else "none")


def server(
    name: str = "llama-8b-od-0",
    *,
    kind: str = "DockerVllmServer",
    argv: list[str] | None = None,
    gpu: str | None = "L40S",
    capacity: str = "onDemand",
    address: str = "127.0.0.1",
    drain_seconds: float | None = None,
    model: str = "llama-8b",
) -> RecordedResource:
    """A vLLM server component as the stack registers it (camelCased top-level inputs)."""
    inputs: dict[str, Any] = {
        "model": model,
        "capacity": capacity,
        "argv": list(VLLM_ARGV if argv is None else argv),
        "address": address,
        "port": 8000.0,
    }
    if gpu is not None:
        inputs["gpu"] = gpu
    # what the stack gives every server for its first start (vllm_stack.startup, from the argv's model)
    budget = _startup_budget(inputs["argv"])
    inputs["startupBudgetSeconds"] = float(budget.startup_seconds)
    if kind == "DockerVllmServer":
        inputs["healthWaitSeconds"] = float(budget.rollout_seconds)
    elif kind == "KubernetesVllmServer":
        inputs["rolloutTimeout"] = budget.rollout_timeout
    if drain_seconds is not None:
        inputs["drain"] = {
            "ssh": {"host": "10.0.0.10", "user": "ubuntu"},
            "command": f"vllm-drain {model} 10.0.0.11:8000 {drain_seconds:g}",
            "seconds": drain_seconds,
        }
    return res(f"{D.COMPONENT_PREFIX}:{kind}", name, inputs, custom=False)


def pool(model: str = "llama-8b", *, on_demand: float = 1.0, spot: float = 0.0, kind: str = "HostSpotOnDemandPool"):
    """A pool component as the stack registers it."""
    inputs = {"model": model, "onDemand": on_demand, "spot": spot, "spotMax": spot, "gpus": 1.0, "backends": []}
    return res(f"{D.COMPONENT_PREFIX}:{kind}", model, inputs, custom=False)


def vllm_container_spec(
    *,
    args: list[str] | None = None,
    gpus: Any = 1.0,
    readiness_delay: Any = 120.0,
    prestop: list[str] | None = None,
    image: str = D.VLLM_IMAGE,
    **extra: Any,
) -> dict:
    c = {
        "name": "vllm",
        "image": image,
        "args": list(VLLM_ARGV if args is None else args),
        "env": [{"name": "HF_HOME", "value": "/var/lib/vllm/models"}],
        "envFrom": [{"secretRef": {"name": "vllm-model-secrets"}}],
        "resources": {"limits": {D.GPU_RESOURCE: gpus}, "requests": {D.GPU_RESOURCE: gpus}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "initialDelaySeconds": readiness_delay},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "20"] if prestop is None else prestop}}},
        "ports": [{"name": "http", "containerPort": 8000.0}],
    }
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def deployment(
    name: str = "llama-8b-on-demand",
    *,
    capacity: str = "on-demand",
    replicas: float = 1.0,
    env: str = "prod",
    model: str = "llama-8b",
    container_spec: dict | None = None,
    extra_labels: dict | None = None,
    grace: float = 35.0,
    pod_extra: dict | None = None,
) -> RecordedResource:
    sel = {
        D.LABEL_PART_OF: D.PROJECT,
        "app.kubernetes.io/component": "vllm",
        D.LABEL_MODEL: model,
        D.LABEL_CAPACITY: capacity,
    }
    labels = {**sel, D.LABEL_ENVIRONMENT: env, LABEL_GPU: "L40S", **(extra_labels or {})}
    pod = {
        "containers": [container_spec or vllm_container_spec()],
        "terminationGracePeriodSeconds": grace,
        "nodeSelector": {D.LABEL_CAPACITY: capacity},
        **(pod_extra or {}),
    }
    inputs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "vllm", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": sel},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return res("kubernetes:apps/v1:Deployment", f"deployment-{name}", inputs)


def pdb(name: str = "llama-8b-on-demand", *, model: str = "llama-8b") -> RecordedResource:
    sel = {
        D.LABEL_PART_OF: D.PROJECT,
        "app.kubernetes.io/component": "vllm",
        D.LABEL_MODEL: model,
        D.LABEL_CAPACITY: "on-demand",
    }
    return res(
        "kubernetes:policy/v1:PodDisruptionBudget",
        f"poddisruptionbudget-{name}",
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "vllm", "labels": dict(sel)},
            "spec": {"minAvailable": 1.0, "selector": {"matchLabels": sel}},
        },
    )


def command(
    name: str,
    *,
    create: str = "true",
    stdin: str | None = None,
    delete: str | None = None,
    secret_stdin: bool = False,
    **extra: Any,
) -> RecordedResource:
    inputs = {"connection": {"host": "10.0.0.10", "user": "ubuntu"}, "create": create, **extra}
    if stdin is not None:
        inputs["stdin"] = stdin
    if delete is not None:
        inputs["delete"] = delete
    return res("command:remote:Command", name, inputs, ["connection"] + (["stdin"] if secret_stdin else []))


def config_map(name: str, data: dict, env: str = "prod") -> RecordedResource:
    return res(
        "kubernetes:core/v1:ConfigMap",
        f"configmap-{name}",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "vllm", "labels": {D.LABEL_ENVIRONMENT: env}},
            "data": data,
        },
    )


def service(name: str, *, selector: dict, typ: str | None = "ClusterIP") -> RecordedResource:
    spec = {"selector": selector, "ports": [{"port": 8000.0}]}
    if typ:
        spec["type"] = typ
    return res(
        "kubernetes:core/v1:Service",
        f"service-{name}",
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "vllm"}, "spec": spec},
    )


def evaluate(resources: list, environment: str = "prod", pack_config: dict | None = None) -> list[dict]:
    from vllm_policy import offline

    return offline.evaluate(resources, environment=environment, pack_config=pack_config or {})


def ids(violations: list[dict], level: str | None = None) -> set[str]:
    return {v["policy"] for v in violations if level is None or v["enforcement"] == level}


def messages(violations: list[dict], policy: str) -> str:
    return "\n".join(v["message"] for v in violations if v["policy"] == policy)


# --- whole-stack plans (subprocess, one program per process) ----------------------------------------


def good_stack_files() -> list[Path]:
    return sorted(ROOT.glob("Pulumi.*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))


def case_files() -> list[Path]:
    return sorted(CASES_DIR.glob("*.yaml"))


def expected_policy(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no `# expect: <policy-id>` header")


def _run_plan(path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "vllm_stack", "plan", str(path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode not in (0, 1):
        return {"error": f"plan {path.name} exited {proc.returncode}: {proc.stderr[-2000:]}"}
    doc = json.loads(proc.stdout)
    doc["returncode"] = proc.returncode
    return doc


@lru_cache(maxsize=1)
def all_plans() -> dict[str, dict]:
    paths = good_stack_files() + case_files()
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip((str(p) for p in paths), pool.map(_run_plan, paths)))


def _unwrap(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"__secret__"}:
        return _unwrap(v["__secret__"])
    if isinstance(v, dict):
        return {k: _unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unwrap(x) for x in v]
    return v


def _dump(path: Path) -> list[RecordedResource] | str:
    """The program's resources with real-looking secret values (tests/stack/program_dump)."""
    from tests.stack.conftest import SCAN_SECRETS

    proc = subprocess.run(
        [sys.executable, "-m", "tests.stack.program_dump", str(path), json.dumps(SCAN_SECRETS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    if proc.returncode:
        return f"program_dump {path.name} exited {proc.returncode}: {proc.stderr[-2000:]}"
    doc = json.loads(proc.stdout)
    return [
        RecordedResource(
            urn=r["urn"],
            type=r["type"],
            name=r["name"],
            parent=r["parent"],
            custom=not r["type"].startswith(D.COMPONENT_PREFIX),
            inputs=_unwrap(r["inputs"]),
            secret_keys=frozenset(r["secretKeys"]),
        )
        for r in doc["resources"]
    ]


@lru_cache(maxsize=1)
def all_dumps() -> dict[str, list[RecordedResource] | str]:
    paths = good_stack_files()
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip((str(p) for p in paths), pool.map(_dump, paths)))
