"""One served model on Kubernetes: Deployments per capacity class, Service, PDB, KEDA.

Pod shape (per replica = one vLLM server on `tensorParallel` GPUs of one node):

* args come from `serve_argv` (the image's entrypoint is `vllm serve`); vLLM binds 0.0.0.0
  inside the pod's network namespace, and exposure is decided by the ClusterIP Service: only
  the front (and Prometheus) reach it, never the internet.
* secrets (VLLM_API_KEY, HF_TOKEN) arrive through `envFrom: secretRef`; argv and plain `env`
  carry none (vllm-facts "Secrets").
* `enableServiceLinks: false`: otherwise kubelet injects `<SERVICE>_PORT=tcp://...` for every
  Service in the namespace, and a Service named `vllm` yields `VLLM_PORT=tcp://10.x:8000`,
  which vLLM reads as its own setting and crashes on.
* root, but harmless root: the official vllm/vllm-openai image runs as root and writes its
  caches under /root/.cache; torch inductor and triton call `getpass.getuser()`, which
  raises for a UID without a passwd entry. Forcing runAsUser would risk a pod that dies
  minutes into loading, so the stack does NOT set runAsNonRoot; it drops ALL capabilities
  (root without CAP_DAC_OVERRIDE/CAP_CHOWN/... cannot touch files it does not own),
  forbids privilege escalation, applies the RuntimeDefault seccomp profile and does not
  mount a service-account token. An image rebuilt with a numbered user can tighten this.
* drain: `preStop: sleep drainSeconds` keeps serving in-flight requests while the endpoint
  removal propagates to the front, then SIGTERM; terminationGracePeriodSeconds leaves
  TERMINATION_GRACE_EXTRA_SEC for vLLM's own shutdown.

Spot replicas: a separate Deployment (spot nodeSelector + the spot toleration) scaled by a
KEDA ScaledObject on queue depth (`vllm:num_requests_waiting`), warm minimum `pool.spot`,
ceiling `pool.spotMax`, 5-minute scale-down stabilisation, and a cron trigger for the
configured peak window (seed 003 "predictive scaling" + "warm standby"). The spot
Deployment's `replicas` is only the initial value: once KEDA's HPA owns it the deploying
program must ignore changes to `spec.replicas` (Pulumi `ignoreChanges`), or every update
resets the autoscaler's choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import defaults as D
from ..placement import K8S_CAPACITY
from ..sizing import readiness_delay_seconds
from ..startup import budget
from .k8s_common import (
    WEIGHTS_PVC,
    K8sRenderError,
    Obj,
    container_security,
    http_probe,
    labels,
    metadata,
    model_name_problem,
    pod_security,
    prometheus_service_url,
    selector,
)
from .k8s_nodes import gpu_node_affinity, gpu_tolerations, weights_access_mode
from .vllm_args import ENV_HF_TOKEN, public_env, serve_argv
from .weights import fetch_of, model_path, render_fetch_script

if TYPE_CHECKING:
    from ..config import ModelSpec, StackConfig

COMPONENT = "vllm"
PORT_NAME = "http"
SHM_VOLUME = "dshm"
WEIGHTS_VOLUME = "weights"
#: Inside the pod: the weights PVC mount (HF_HOME; the pre-fetched directories live under it).
WEIGHTS_MOUNT = D.VLLM_WEIGHTS_DIR
HOSTNAME_KEY = "kubernetes.io/hostname"
KEDA_API = "keda.sh/v1alpha1"


def deployment_name(spec: ModelSpec, capacity: str) -> str:
    return f"{spec.name}-{capacity}"


def queue_query(spec: ModelSpec) -> str:
    """Waiting requests of one model across all its replicas (KEDA divides by replicas)."""
    return f'sum({D.METRIC_REQUESTS_WAITING}{{{D.LABEL_VLLM_MODEL_NAME}="{spec.name}"}})'


def _check_name(spec: ModelSpec) -> None:
    problem = model_name_problem(spec.name)
    if problem is not None:
        raise K8sRenderError(f"models[{spec.name}].name: {problem}")


def _container(spec: ModelSpec, *, secret_name: str) -> Obj:
    params = spec.model_info().architecture.params
    env = public_env(weights_dir=WEIGHTS_MOUNT, gated=spec.model_info().gated)
    gpus = spec.tensor_parallel
    return {
        "name": COMPONENT,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        # the directory the model's weights Job pre-fetched into the PVC (render/weights.py)
        "args": serve_argv(spec, host="0.0.0.0", port=D.VLLM_PORT, model_path=model_path(spec)),
        "ports": [{"name": PORT_NAME, "containerPort": D.VLLM_PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": env[k]} for k in sorted(env)],
        "envFrom": [{"secretRef": {"name": secret_name}}],
        "resources": {
            "requests": {
                "cpu": str(D.VLLM_CPU_REQUEST_PER_GPU * gpus),
                "memory": f"{D.VLLM_MEMORY_REQUEST_GIB_PER_GPU * gpus}Gi",
                D.GPU_RESOURCE: gpus,
            },
            "limits": {D.GPU_RESOURCE: gpus},
        },
        # /health refuses connections while weights load: the startup probe holds liveness off
        # for the whole load budget, readiness waits a size-scaled delay (seed 003: 120-300 s).
        # ... whose length is the model's startup budget (download + load + init + margin, >= 900 s)
        "startupProbe": http_probe(
            D.HEALTH_PATH, PORT_NAME, failure_threshold=budget(spec).startup_probe_failure_threshold
        ),
        "readinessProbe": http_probe(D.HEALTH_PATH, PORT_NAME, initial_delay=readiness_delay_seconds(params)),
        "livenessProbe": http_probe(D.HEALTH_PATH, PORT_NAME, failure_threshold=D.LIVENESS_FAILURE_THRESHOLD),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(spec.pool.drain_seconds)]}}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
            {"name": WEIGHTS_VOLUME, "mountPath": WEIGHTS_MOUNT},
        ],
    }


WEIGHTS_COMPONENT = "weights"
FETCH_CONTAINER = "fetch"


def weights_job(cfg: StackConfig, spec: ModelSpec, *, secret_name: str) -> Obj | None:
    """The model's one pre-fetch into the weights PVC (render/weights.py), or None for a local path.

    Runs the model's own vLLM image (it ships `hf`) with its command replaced by the fetch script,
    on a GPU node without requesting a GPU (the image pulled there is the one the replicas need),
    HF_TOKEN alone from the model Secret (`secretKeyRef`, optional: public models have none; never
    VLLM_API_KEY). `restartPolicy: OnFailure` retries in the same pod, resuming the partial
    download; `activeDeadlineSeconds` is the image pull + the download's share of the startup
    budget. The model's Deployments are created only after this Job completed (Pulumi dependsOn;
    pulumi-kubernetes waits for a Job's Complete condition). With a ReadWriteOnce PVC (a stack that
    can run one vLLM pod) the Job prefers the node of a running vLLM pod, the only node where a
    second pod can mount the volume.
    """
    fetch = fetch_of(spec)
    if fetch is None:
        return None
    lbls = labels(cfg, WEIGHTS_COMPONENT, name=fetch.name, model=spec.name)
    env = public_env(weights_dir=WEIGHTS_MOUNT, gated=spec.model_info().gated)
    container: Obj = {
        "name": FETCH_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["bash", "-c", render_fetch_script(fetch, hf_bin=D.HF_BIN_IMAGE)],
        "env": [{"name": k, "value": env[k]} for k in sorted(env)]
        + [
            {
                "name": ENV_HF_TOKEN,
                "valueFrom": {"secretKeyRef": {"name": secret_name, "key": ENV_HF_TOKEN, "optional": True}},
            }
        ],
        "resources": {
            "requests": {"cpu": D.WEIGHTS_JOB_CPU_REQUEST, "memory": D.WEIGHTS_JOB_MEMORY_REQUEST},
            "limits": {"memory": D.WEIGHTS_JOB_MEMORY_REQUEST},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": WEIGHTS_VOLUME, "mountPath": WEIGHTS_MOUNT}],
    }
    affinity: Obj = gpu_node_affinity()
    if weights_access_mode(cfg) == "ReadWriteOnce":
        affinity["podAffinity"] = {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": selector(COMPONENT)},
                        "topologyKey": HOSTNAME_KEY,
                    },
                }
            ]
        }
    pod: Obj = {
        "restartPolicy": "OnFailure",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "affinity": affinity,
        "tolerations": gpu_tolerations(spot=True),
        "containers": [container],
        "volumes": [{"name": WEIGHTS_VOLUME, "persistentVolumeClaim": {"claimName": WEIGHTS_PVC}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(cfg, fetch.name, lbls),
        "spec": {
            "backoffLimit": D.WEIGHTS_JOB_BACKOFF_LIMIT,
            "activeDeadlineSeconds": budget(spec).fetch_deadline_seconds,
            "template": {"metadata": {"labels": lbls}, "spec": pod},
        },
    }


def vllm_container(deployment: Obj) -> Obj:
    """The vLLM container of a rendered model Deployment (its `args` are what the server registers)."""
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == COMPONENT)


def deployment(cfg: StackConfig, spec: ModelSpec, capacity: str, replicas: int, *, secret_name: str) -> Obj:
    name = deployment_name(spec, capacity)
    sel = selector(COMPONENT, model=spec.name, capacity=capacity)
    lbls = {**labels(cfg, COMPONENT, model=spec.name, capacity=capacity), D.LABEL_GPU: spec.gpu}
    pod: Obj = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": spec.pool.drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC,
        "securityContext": pod_security(),
        "nodeSelector": {D.LABEL_CAPACITY: capacity},
        "tolerations": gpu_tolerations(spot=capacity == "spot"),
        # Soft spread: GPUs are scarce, a pending replica is worse than two on one node.
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": HOSTNAME_KEY,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(sel)},
            }
        ],
        "containers": [_container(spec, secret_name=secret_name)],
        "volumes": [
            # vLLM/NCCL exchange tensors through shared memory; the container default is 64 MiB.
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": D.SHM_SIZE}},
            {"name": WEIGHTS_VOLUME, "persistentVolumeClaim": {"claimName": WEIGHTS_PVC}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cfg, name, lbls),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": sel},
            # Surge, never drop below the current count: a replaced replica is back only
            # after minutes of loading. Needs a spare GPU (or a cluster autoscaler).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": budget(spec).progress_deadline_seconds,
            "template": {"metadata": {"labels": lbls}, "spec": pod},
        },
    }


def service(cfg: StackConfig, spec: ModelSpec) -> Obj:
    """ClusterIP on the vLLM port selecting BOTH capacity classes of the model."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, spec.name, labels(cfg, COMPONENT, model=spec.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(COMPONENT, model=spec.name),
            "ports": [{"name": PORT_NAME, "port": D.VLLM_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(cfg: StackConfig, spec: ModelSpec) -> Obj:
    """minAvailable 1 on the on-demand pods: a drain never takes the floor away.

    With a single on-demand replica this blocks `kubectl drain` of its node until another
    on-demand replica is ready (seed 003: plan maintenance windows). AlwaysAllow lets a
    drain evict a pod that is not ready anyway (crash-looping, still loading).
    """
    name = deployment_name(spec, "on-demand")
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cfg, name, labels(cfg, COMPONENT, model=spec.name, capacity="on-demand")),
        "spec": {
            "minAvailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": selector(COMPONENT, model=spec.name, capacity="on-demand")},
        },
    }


def scaled_object(cfg: StackConfig, spec: ModelSpec, *, prometheus_url: str) -> Obj:
    pool = spec.pool
    name = deployment_name(spec, "spot")
    triggers: list[Obj] = [
        {
            "type": "prometheus",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": queue_query(spec),
                "threshold": str(D.KEDA_QUEUE_TARGET),
            },
        }
    ]
    if pool.peak_schedule is not None:
        ps = pool.peak_schedule
        triggers.append(
            {
                "type": "cron",
                "metadata": {
                    "timezone": ps.timezone,
                    "start": ps.start,
                    "end": ps.end,
                    "desiredReplicas": str(ps.replicas),
                },
            }
        )
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": metadata(cfg, name, labels(cfg, COMPONENT, model=spec.name, capacity="spot")),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "pollingInterval": D.KEDA_POLLING_INTERVAL_SEC,
            # cooldownPeriod only governs the last step to zero; the HPA scale-down window
            # below is what damps 4 -> 1 thrashing (seed 003: 5-minute cooldown).
            "cooldownPeriod": D.KEDA_COOLDOWN_SEC,
            "minReplicaCount": pool.spot,
            "maxReplicaCount": pool.spot_ceiling,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": D.KEDA_COOLDOWN_SEC}}
                }
            },
            "triggers": triggers,
        },
    }


def capacity_classes(spec: ModelSpec) -> list[tuple[str, int]]:
    """(capacity class, replicas) of the Deployments a model gets: the on-demand floor when it has
    replicas, spot whenever the autoscaler may add some (even at 0 replicas now)."""
    pool = spec.pool
    return [
        (c, n)
        for c, n, present in (
            ("onDemand", pool.on_demand, pool.on_demand > 0),
            ("spot", pool.spot, pool.spot_ceiling > 0),
        )
        if present
    ]


def model_objects(
    cfg: StackConfig, spec: ModelSpec, *, secret_name: str, prometheus_url: str | None = None
) -> list[Obj]:
    """The weights Job (`vllm-weights-<name>`, for a Hub model), Deployments (`<name>-on-demand`,
    `<name>-spot`), Service `<name>`, PDB, ScaledObject.

    `secret_name`: the Opaque Secret holding VLLM_API_KEY (and HF_TOKEN for gated models),
    imported whole with envFrom, so it must hold nothing else. `prometheus_url`: where KEDA
    queries queue depth; defaults to `prometheus_service_url(cfg)`.
    """
    _check_name(spec)
    pool = spec.pool
    job = weights_job(cfg, spec, secret_name=secret_name)
    objs: list[Obj] = [] if job is None else [job]
    objs += [deployment(cfg, spec, K8S_CAPACITY[c], n, secret_name=secret_name) for c, n in capacity_classes(spec)]
    objs.append(service(cfg, spec))
    if pool.on_demand >= 1:
        objs.append(pod_disruption_budget(cfg, spec))
    if pool.spot_ceiling > 0:
        if prometheus_url is None:
            prometheus_url = prometheus_service_url(cfg)
        objs.append(scaled_object(cfg, spec, prometheus_url=prometheus_url))
    return objs
