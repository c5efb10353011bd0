"""GPU node plumbing: Namespace, NVIDIA device plugin, DCGM exporter, weights PVC.

Node conventions (the cluster's node pools must follow them; the stack does not label nodes):

* every GPU node is labelled `vllm-stack/capacity=on-demand` or `vllm-stack/capacity=spot`
  and tainted `nvidia.com/gpu=present:NoSchedule`, so only pods that tolerate the GPU taint
  (vLLM, device plugin, DCGM exporter) land there;
* spot GPU nodes are also tainted `vllm-stack/capacity=spot:NoSchedule`, so only the spot
  Deployment (which tolerates it) accepts preemptible capacity: the on-demand floor never
  lands on a spot node by accident (seed 000: keep >= 1 on-demand replica);
* the GPU driver and the NVIDIA container runtime are installed on the node image (as on
  GKE/EKS/AKS GPU images); the stack ships the device plugin that advertises
  `nvidia.com/gpu` and the DCGM exporter for GPU metrics.

The device plugin and the DCGM exporter select GPU nodes with node affinity
`vllm-stack/capacity In (on-demand, spot)` (the GPU node label above; one label, two values,
which a plain nodeSelector cannot express) and tolerate BOTH taints: a device plugin that
skipped spot nodes would leave them with zero allocatable GPUs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from .. import defaults as D
from .k8s_common import (
    CAPACITY_VALUES,
    DCGM_EXPORTER,
    DEVICE_PLUGIN,
    WEIGHTS_PVC,
    Obj,
    container_security,
    labels,
    metadata,
    pod_security,
    selector,
)

if TYPE_CHECKING:
    from ..config import StackConfig

DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
POD_RESOURCES_DIR = "/var/lib/kubelet/pod-resources"
DCGM_PORT_NAME = "metrics"


def gpu_tolerations(*, spot: bool) -> list[Obj]:
    """The GPU taint (any value, so clouds that use another value still match), plus spot's."""
    out: list[Obj] = [{"key": D.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    if spot:
        out.append({"key": D.LABEL_CAPACITY, "operator": "Equal", "value": "spot", "effect": "NoSchedule"})
    return out


def gpu_node_affinity() -> Obj:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": D.LABEL_CAPACITY, "operator": "In", "values": list(CAPACITY_VALUES)}]}
                ]
            }
        }
    }


def max_vllm_pods(cfg: StackConfig) -> int:
    """Most vLLM pods the stack can run at once (on-demand + the spot ceiling of every model)."""
    return sum(m.pool.on_demand + (m.pool.spot_ceiling if m.pool.spot_ceiling > 0 else 0) for m in cfg.models)


def weights_access_mode(cfg: StackConfig) -> str:
    """ReadWriteMany whenever more than one vLLM pod can exist, else ReadWriteOnce.

    ReadWriteOnce binds the volume to ONE node: a second replica (another on-demand pod, a
    spot pod KEDA adds, a surge pod of a rollout, another model) scheduled elsewhere would
    hang in ContainerCreating. Shared weights therefore need RWX (NFS / EFS / Filestore /
    Azure Files / CephFS storage class). A stack that can only ever run a single vLLM pod
    (a dev cluster, often with a local-path provisioner that offers RWO only) gets RWO.
    Access modes are immutable: changing the pool across the 1-pod boundary replaces the PVC.
    """
    return "ReadWriteMany" if max_vllm_pods(cfg) > 1 else "ReadWriteOnce"


def namespace_object(cfg: StackConfig) -> Obj:
    lbls = labels(cfg, "namespace", name=cfg.kubernetes.namespace)
    # Pod Security Admission: the device plugin needs a hostPath and the DCGM exporter
    # SYS_ADMIN, which `baseline` forbids; vLLM pods themselves run with dropped capabilities.
    lbls["pod-security.kubernetes.io/enforce"] = "privileged"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(cfg, cfg.kubernetes.namespace, lbls, namespaced=False),
    }


def weights_pvc(cfg: StackConfig) -> Obj:
    spec: Obj = {
        "accessModes": [weights_access_mode(cfg)],
        "resources": {"requests": {"storage": cfg.kubernetes.weights_pvc_size}},
    }
    if cfg.kubernetes.storage_class:
        spec["storageClassName"] = cfg.kubernetes.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(cfg, WEIGHTS_PVC, labels(cfg, "weights")),
        "spec": spec,
    }


def _gpu_daemonset(cfg: StackConfig, name: str, component: str, container: Obj, volume: str, host_path: str) -> Obj:
    """A DaemonSet on every GPU node (both capacity classes) with one hostPath volume."""
    lbls = labels(cfg, component, name=name)
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata(cfg, name, lbls),
        "spec": {
            "selector": {"matchLabels": selector(component)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": lbls},
                "spec": {
                    "affinity": gpu_node_affinity(),
                    "tolerations": gpu_tolerations(spot=True),
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": [{"name": volume, "hostPath": {"path": host_path, "type": "Directory"}}],
                },
            },
        },
    }


def device_plugin(cfg: StackConfig) -> Obj:
    """NVIDIA k8s-device-plugin (shape of NVIDIA's static nvidia-device-plugin.yml)."""
    return _gpu_daemonset(
        cfg,
        DEVICE_PLUGIN,
        "gpu-device-plugin",
        {
            "name": "nvidia-device-plugin",
            "image": D.NVIDIA_DEVICE_PLUGIN_IMAGE,
            # NVIDIA's manifest: do not crash-loop on a node whose driver is not up yet.
            "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
            "securityContext": container_security(),
            "volumeMounts": [{"name": "device-plugin", "mountPath": DEVICE_PLUGIN_DIR}],
        },
        "device-plugin",
        DEVICE_PLUGIN_DIR,
    )


def dcgm_exporter(cfg: StackConfig) -> Obj:
    """DCGM exporter (NVIDIA's dcgm-exporter.yaml shape): GPU temperature, memory, XID errors.

    Runs as root with SYS_ADMIN only, as NVIDIA's manifest does (the embedded DCGM host engine
    needs it for profiling fields); every other capability is dropped. It requests no GPU
    (that would take one away from vLLM): the NVIDIA runtime exposes all GPUs to it.
    """
    return _gpu_daemonset(
        cfg,
        DCGM_EXPORTER,
        "dcgm-exporter",
        {
            "name": "dcgm-exporter",
            "image": D.DCGM_EXPORTER_IMAGE,
            "env": [
                {"name": "DCGM_EXPORTER_LISTEN", "value": f":{D.DCGM_EXPORTER_PORT}"},
                {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"},
            ],
            "ports": [{"name": DCGM_PORT_NAME, "containerPort": D.DCGM_EXPORTER_PORT, "protocol": "TCP"}],
            "readinessProbe": {
                "httpGet": {"path": D.HEALTH_PATH, "port": DCGM_PORT_NAME},
                "periodSeconds": D.PROBE_PERIOD_SEC,
                "timeoutSeconds": D.K8S_PROBE_TIMEOUT_SEC,
            },
            # a hung exporter (DCGM host engine wedged after an XID) is restarted instead of
            # silently leaving the GPU alerts without data; NVIDIA's chart probes /health too
            "livenessProbe": {
                "httpGet": {"path": D.HEALTH_PATH, "port": DCGM_PORT_NAME},
                "initialDelaySeconds": D.DCGM_LIVENESS_DELAY_SEC,
                "periodSeconds": D.PROBE_PERIOD_SEC,
                "timeoutSeconds": D.K8S_PROBE_TIMEOUT_SEC,
                "failureThreshold": D.LIVENESS_FAILURE_THRESHOLD,
            },
            "securityContext": {**container_security(add=["SYS_ADMIN"]), "runAsUser": 0},
            "volumeMounts": [{"name": "pod-resources", "mountPath": POD_RESOURCES_DIR, "readOnly": True}],
        },
        "pod-resources",
        POD_RESOURCES_DIR,
    )


def dcgm_service(cfg: StackConfig) -> Obj:
    """Headless: one endpoint per GPU node, so Prometheus scrapes every exporter, not one at random."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cfg, DCGM_EXPORTER, labels(cfg, "dcgm-exporter", name=DCGM_EXPORTER)),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "None",
            "selector": selector("dcgm-exporter"),
            "ports": [
                {"name": DCGM_PORT_NAME, "port": D.DCGM_EXPORTER_PORT, "targetPort": DCGM_PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def gpu_node_objects(cfg: StackConfig) -> list[Obj]:
    """Namespace, device plugin, DCGM exporter (+ Service) and the weights PVC."""
    return [namespace_object(cfg), device_plugin(cfg), dcgm_exporter(cfg), dcgm_service(cfg), weights_pvc(cfg)]
