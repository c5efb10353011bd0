"""Pulumi components for self-hosted vLLM, one class per platform variant.

SSH hosts (`host`): SshGpuNode, DockerVllmServer, SystemdVllmServer, HostSpotOnDemandPool,
HostNginxFront, HostMonitoringStack. Kubernetes (`kubernetes`): KubernetesGpuNode,
KubernetesVllmServer, KubernetesSpotOnDemandPool, KubernetesNginxFront, KubernetesMonitoringStack.
They share the pure renderers of `vllm_stack.render` and take no stack config: `vllm_stack.stack`
is the stack's own composition, `examples/` shows another. `provider/` hosts the same classes for
programs in other languages (`pulumi package add`).
"""

from .host import (
    DockerVllmServer,
    HostMonitoringStack,
    HostNginxFront,
    HostSpotOnDemandPool,
    SshGpuNode,
    SystemdVllmServer,
)
from .kubernetes import (
    KubernetesGpuNode,
    KubernetesMonitoringStack,
    KubernetesNginxFront,
    KubernetesSpotOnDemandPool,
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
]

__all__ = [
    "COMPONENTS",
    "DockerVllmServer",
    "HostMonitoringStack",
    "HostNginxFront",
    "HostSpotOnDemandPool",
    "KubernetesGpuNode",
    "KubernetesMonitoringStack",
    "KubernetesNginxFront",
    "KubernetesSpotOnDemandPool",
    "KubernetesVllmServer",
    "SshGpuNode",
    "SystemdVllmServer",
]
