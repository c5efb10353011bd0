"""Pulumi components for self-hosted vLLM, one class per platform variant.

SSH hosts (`host`): SshGpuNode, DockerVllmServer, SystemdVllmServer, HostSpotOnDemandPool,
HostNginxFront, HostMonitoringStack, SystemdVllmRouter, DockerVllmRouter, SystemdNginxExporter,
DockerNginxExporter. Kubernetes (`kubernetes`): KubernetesGpuNode,
KubernetesVllmServer, KubernetesSpotOnDemandPool, KubernetesNginxFront, KubernetesMonitoringStack,
KubernetesVllmRouter.
They share the pure renderers of `vllm_stack.render` and take no stack config: `vllm_stack.stack`
is the stack's own composition, `examples/` shows another. `provider/` hosts the same classes for
programs in other languages (`pulumi package add`).
"""

from .host import (
    DockerNginxExporter,
    DockerVllmRouter,
    DockerVllmServer,
    HostMonitoringStack,
    HostNginxFront,
    HostSpotOnDemandPool,
    SshGpuNode,
    SystemdNginxExporter,
    SystemdVllmRouter,
    SystemdVllmServer,
)
from .kubernetes import (
    KubernetesGpuNode,
    KubernetesMonitoringStack,
    KubernetesNginxFront,
    KubernetesSpotOnDemandPool,
    KubernetesVllmRouter,
    KubernetesVllmServer,
)

#: Every component, in the order the schema lists them.
COMPONENTS = [
    SshGpuNode,
    DockerVllmServer,
    SystemdVllmServer,
    HostSpotOnDemandPool,
    HostNginxFront,
    HostMonitoringStack,
    KubernetesGpuNode,
    KubernetesVllmServer,
    KubernetesSpotOnDemandPool,
    KubernetesNginxFront,
    KubernetesMonitoringStack,
    SystemdVllmRouter,
    DockerVllmRouter,
    KubernetesVllmRouter,
    SystemdNginxExporter,
    DockerNginxExporter,
]

__all__ = [
    "COMPONENTS",
    "DockerNginxExporter",
    "DockerVllmRouter",
    "DockerVllmServer",
    "HostMonitoringStack",
    "HostNginxFront",
    "HostSpotOnDemandPool",
    "KubernetesGpuNode",
    "KubernetesMonitoringStack",
    "KubernetesNginxFront",
    "KubernetesSpotOnDemandPool",
    "KubernetesVllmRouter",
    "KubernetesVllmServer",
    "SshGpuNode",
    "SystemdNginxExporter",
    "SystemdVllmRouter",
    "SystemdVllmServer",
]
