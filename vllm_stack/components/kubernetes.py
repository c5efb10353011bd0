"""Components for a Kubernetes cluster with GPU nodes.

Each takes the rendered objects (plain dicts, `vllm_stack.render.k8s`) and the secret values as
Inputs, which replace the placeholders of the Secrets it creates; `k8s_objects.create` maps each
dict to its SDK class, so the plan, the schema validation and the applied object are one dict.
"""

from typing import Any, NotRequired, Sequence, TypedDict

import pulumi

from vllm_stack import defaults as D
from vllm_stack.placement import K8S_CAPACITY
from vllm_stack.render.k8s import API_KEYS_FILE, GRAFANA_PASSWORD_KEY, UPSTREAM_AUTH_FILE
from vllm_stack.render.k8s_common import TLS_CERT_KEY, TLS_KEY_KEY
from vllm_stack.render.vllm_args import ENV_API_KEY, ENV_HF_TOKEN

from . import k8s_objects
from .args import PoolArgs
from .base import Component
from .shared import Front, FrontArgs, Monitoring, MonitoringArgs, Pool
from .tls import front_certificate, front_key_files


def _create_all(
    owner: Component, objects: list[dict[str, Any]], depends_on: Sequence[pulumi.Resource]
) -> list[pulumi.Resource]:
    return [k8s_objects.create(obj, owner, depends_on=depends_on) for obj in objects]


class KubernetesGpuNodeArgs(TypedDict):
    namespace: str
    objects: list[dict[str, Any]]
    """Namespace (first), NVIDIA device plugin and DCGM DaemonSets, weights PVC."""
    model_secret: dict[str, Any]
    """The Secret every model pod reads (envFrom); its stringData is replaced by the secret inputs."""
    api_key: pulumi.Input[str]
    hf_token: NotRequired[pulumi.Input[str]]
    weights_claim: str


class KubernetesGpuNode(Component):
    """The GPU node-group conventions of a cluster: namespace, device plugin, DCGM, weights PVC, model Secret."""

    _previous_type = "GpuNode"
    namespace: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    weights_claim: pulumi.Output[str]

    def __init__(self, name: str, args: KubernetesGpuNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        objs = args["objects"]
        ns = [k8s_objects.create(o, self) for o in objs if o["kind"] == "Namespace"]
        _create_all(self, [o for o in objs if o["kind"] != "Namespace"], ns)
        hf = args.get("hf_token")
        values: dict[str, pulumi.Input[str]] = {
            ENV_API_KEY: args["api_key"],
            **({ENV_HF_TOKEN: hf} if hf is not None else {}),
        }
        k8s_objects.create(args["model_secret"], self, overrides={"stringData": values}, depends_on=ns)
        self.publish(
            namespace=args["namespace"],
            secret_name=args["model_secret"]["metadata"]["name"],
            weights_claim=args["weights_claim"],
        )


class KubernetesVllmServerArgs(TypedDict):
    model: str
    capacity: str
    """onDemand | spot"""
    argv: list[str]
    """`vllm serve` arguments of the Deployment's vLLM container; the policy pack's vLLM rules judge them."""
    gpu: str
    """GPU catalog id the pods are scheduled on (the fit and FP8 rules read it)."""
    deployment: dict[str, Any]
    autoscaled: bool
    """KEDA owns `spec.replicas` once deployed: `pulumi up` must not reset it."""
    rollout_timeout: str
    """How long `pulumi up` waits for the Deployment to be Ready (Pulumi duration, e.g. `30m`): the
    model's startup budget plus the image pull (`vllm_stack.startup`), never below the probes' budget."""
    startup_budget_seconds: int
    """The model's startup budget (what the startup probe allows); the policy compares the two."""


class KubernetesVllmServer(Component):
    """The Deployment of one model's capacity class (GPU limits, probes, /dev/shm, envFrom a Secret)."""

    _previous_type = "VllmServer"
    deployment_name: pulumi.Output[str]
    model: pulumi.Output[str]
    capacity: pulumi.Output[str]

    def __init__(self, name: str, args: KubernetesVllmServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        timeout = args["rollout_timeout"]
        self.workload = k8s_objects.create(
            args["deployment"],
            self,
            ignore_changes=["spec.replicas"] if args["autoscaled"] else None,
            custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout),
        )
        self.publish(
            deployment_name=args["deployment"]["metadata"]["name"], model=args["model"], capacity=args["capacity"]
        )


class KubernetesSpotOnDemandPoolArgs(PoolArgs):
    servers: list[KubernetesVllmServerArgs]
    """One per capacity class: the on-demand floor, the KEDA-scaled spot Deployment."""
    objects: list[dict[str, Any]]
    """Service over both, PDB on the floor, KEDA ScaledObject."""
    weights_job: NotRequired[dict[str, Any]]
    """The model's weights pre-fetch Job (`render.k8s_model.weights_job`): the Deployments are
    created only after it completed."""
    weights_timeout: NotRequired[str]
    """How long `pulumi up` waits for that Job (Pulumi duration; its activeDeadlineSeconds)."""


class KubernetesSpotOnDemandPool(Pool):
    """A model as an on-demand floor plus spot replicas on Kubernetes."""

    endpoints: pulumi.Output[list[str]]
    """host:port of every replica (Kubernetes: the model's Service)."""

    def __init__(
        self, name: str, args: KubernetesSpotOnDemandPoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        job, timeout = args.get("weights_job"), args.get("weights_timeout")
        self.weights_job: pulumi.Resource | None = None
        if job is not None:
            # A changed revision changes the Job's (immutable) template: delete it, then create the new one.
            self.weights_job = k8s_objects.create(
                job,
                self,
                custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout) if timeout else None,
                delete_before_replace=True,
            )
        fetched = [self.weights_job] if self.weights_job is not None else []
        self.servers = [
            KubernetesVllmServer(f"{args['model']}-{K8S_CAPACITY[s['capacity']]}", s, self.child(depends_on=fetched))
            for s in args["servers"]
        ]
        _create_all(self, args["objects"], [s.workload for s in self.servers])
        self.publish_pool(args)


class KubernetesNginxFrontArgs(FrontArgs):
    objects: list[dict[str, Any]]
    """ConfigMap, Deployment, Service, PDB of the front."""
    keys_secret: dict[str, Any]
    """The Secret with the key map and the upstream key include (placeholders replaced here)."""
    tls_secret: NotRequired[dict[str, Any]]
    api_key: pulumi.Input[str]
    extra_api_keys: NotRequired[pulumi.Input[str]]


class KubernetesNginxFront(Front):
    """nginx Deployment + Service in the cluster: TLS, API-key gate, per-model routes."""

    def __init__(self, name: str, args: KubernetesNginxFrontArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        keys_map, upstream_auth = front_key_files(args["api_key"], args.get("extra_api_keys"))
        secrets: list[pulumi.Resource] = [
            k8s_objects.create(
                args["keys_secret"],
                self,
                overrides={"stringData": {API_KEYS_FILE: keys_map, UPSTREAM_AUTH_FILE: upstream_auth}},
            )
        ]
        tls = front_certificate(self, name, args)
        tls_secret = args.get("tls_secret")
        if tls is not None and tls_secret is not None:
            secrets.append(
                k8s_objects.create(
                    tls_secret,
                    self,
                    overrides={"stringData": {TLS_CERT_KEY: tls[0], TLS_KEY_KEY: pulumi.Output.secret(tls[1])}},
                )
            )
        _create_all(self, args["objects"], secrets)
        self.publish_front(args)


class KubernetesMonitoringStackArgs(MonitoringArgs):
    objects: list[dict[str, Any]]
    """Own Prometheus/Grafana, or PrometheusRule/ServiceMonitors with the prometheus-operator."""
    grafana_secret: NotRequired[dict[str, Any]]
    alertmanager_secret: NotRequired[dict[str, Any]]
    """The Secret holding alertmanager.yml; its stringData becomes `alertmanager_config`."""
    alertmanager_config: NotRequired[pulumi.Input[str]]
    """alertmanager.yml rendered with the receivers' URLs and keys (secret)."""


class KubernetesMonitoringStack(Monitoring):
    """Prometheus scrape config, alert rules and Grafana in the cluster."""

    def __init__(
        self, name: str, args: KubernetesMonitoringStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        deps: list[pulumi.Resource] = []
        secret, password = args.get("grafana_secret"), args.get("grafana_admin_password")
        if secret is not None and password is not None:
            deps.append(k8s_objects.create(secret, self, overrides={"stringData": {GRAFANA_PASSWORD_KEY: password}}))
        am_secret, am_config = args.get("alertmanager_secret"), args.get("alertmanager_config")
        if am_secret is not None and am_config is not None:
            deps.append(
                k8s_objects.create(
                    am_secret,
                    self,
                    overrides={"stringData": {D.ALERTMANAGER_CONFIG_FILE: pulumi.Output.secret(am_config)}},
                )
            )
        _create_all(self, args["objects"], deps)
        self.publish_urls(args)


class KubernetesVllmRouterArgs(TypedDict):
    model: str
    objects: list[dict[str, Any]]
    """`render.router.router_objects(...)`: ServiceAccount, Role, RoleBinding, Deployment, Service, NetworkPolicy."""
    url: str
    """The router Service's URL (what the front's upstream for the model points at)."""


class KubernetesVllmRouter(Component):
    """vllm-router for one model: pod discovery with get/list/watch on pods of its namespace, reachable
    only from the front (NetworkPolicy)."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: KubernetesVllmRouterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, args, opts)
        _create_all(self, args["objects"], [])
        self.publish(url=args["url"])
