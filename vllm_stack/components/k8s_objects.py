"""Create pulumi-kubernetes resources from the plain dicts `vllm_stack.render.k8s` returns.

The renderer owns every field; this module only maps apiVersion/kind to the SDK class,
so the plan, the schema validation and the deployed object are the same dict.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from .base import Component

_CLASSES = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}
_FIELDS = {
    "metadata": "metadata",
    "spec": "spec",
    "data": "data",
    "stringData": "string_data",
    "type": "type",
    "rules": "rules",
    "roleRef": "role_ref",
    "subjects": "subjects",
    "automountServiceAccountToken": "automount_service_account_token",
}


def resource_name(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}"


def create(
    obj: Mapping[str, Any],
    parent: Component,
    *,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    depends_on: Sequence[pulumi.Resource] | None = None,
    ignore_changes: list[str] | None = None,
    custom_timeouts: pulumi.CustomTimeouts | None = None,
    delete_before_replace: bool | None = None,
) -> pulumi.CustomResource:
    """One SDK resource for one rendered object; `overrides` swaps in secret Outputs."""
    fields = {**obj, **(overrides or {})}
    opts = parent.child(
        depends_on=depends_on,
        ignore_changes=ignore_changes,
        custom_timeouts=custom_timeouts,
        delete_before_replace=delete_before_replace,
    )
    rname = name or resource_name(obj)
    cls = _CLASSES.get((obj["apiVersion"], obj["kind"]))
    if cls is None:  # CRDs: KEDA ScaledObject, PrometheusRule, ServiceMonitor
        extra = {k: v for k, v in fields.items() if k not in ("apiVersion", "kind", "metadata")}
        return k8s.apiextensions.CustomResource(
            rname, api_version=obj["apiVersion"], kind=obj["kind"], metadata=fields["metadata"], opts=opts, **extra
        )
    kwargs = {_FIELDS[k]: v for k, v in fields.items() if k in _FIELDS}
    unknown = set(fields) - set(_FIELDS) - {"apiVersion", "kind"}
    if unknown:
        raise ValueError(f"{obj['kind']} field(s) {sorted(unknown)} have no SDK mapping")
    resource: pulumi.CustomResource = cls(rname, opts=opts, **kwargs)
    return resource
