"""Rules for the routing tier (vllm-router between the front and the replicas; issue 14).

Plain functions with the rule signatures of `checks.py`, declared there (`checks.RULES`).

* `router-pinned` — dev: advisory, prod: mandatory. The router has no official image, so a tag can
  be pushed again under the same name: a router container image (docker runtime, Kubernetes
  Deployment) must be pinned by digest (`repo@sha256:...`) when `requireDigest` (default true);
  otherwise a tag other than `latest`. The systemd runtime's install command must pin the pip
  version (`vllm-router==X.Y.Z`).
* `router-not-exposed` — dev: mandatory, prod: mandatory. The router's admin endpoints
  (`/add_worker`, `/remove_worker`) and its metrics have no authentication: on a host it listens on
  loopback only (its `--host`, for a host-network container and for the systemd unit's ExecStart);
  on Kubernetes its Service is ClusterIP without externalIPs, its pods use neither hostNetwork nor
  hostPort.
* `router-network-policy` — dev: mandatory, prod: mandatory (a stack rule): a NetworkPolicy admits
  only the front on the routing port of every router Deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable

from vllm_stack import defaults as D
from vllm_stack.deployment import ROUTER_COMPONENT, ROUTER_PORT_NAME, ROUTER_PREFIX

from . import shapes as S

Report = Callable[..., None]
_COMPONENT = "app.kubernetes.io/component"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"

#: The package word of a pip command line (not a path such as /opt/vllm-router/bin/python).
_PIP_PIN = re.compile(rf"(?<![/\w.-]){re.escape(D.ROUTER_PACKAGE)}(==[0-9][0-9A-Za-z.+-]*)?(?![/\w.-])")


def _is_router_pod(resource_type: str, props: Mapping) -> bool:
    spec = S.pod_spec(resource_type, props)
    if spec is None:
        return False
    labels = S.get(props, "spec", "template", "metadata", "labels") or {}
    return isinstance(labels, Mapping) and labels.get(_COMPONENT) == ROUTER_COMPONENT


def _router_container(props: Mapping) -> bool:
    name = S.get(props, "name")
    return isinstance(name, str) and name.startswith(ROUTER_PREFIX)


def _exec_lines(text: str) -> list[list[str]]:
    """ExecStart= lines of a unit text that start the router."""
    out = []
    for line in text.splitlines():
        if line.startswith("ExecStart=") and "vllm-router" in line:
            out.append(line[len("ExecStart=") :].split())
    return out


def router_pinned(resource_type: str, props: Mapping, ctx: Any, report: Report, secret_keys=None) -> None:
    refs: list[tuple[str, Any]] = []
    if resource_type == S.CONTAINER and _router_container(props):
        refs.append(("image", S.get(props, "image")))
    elif _is_router_pod(resource_type, props):
        for c in S.containers(S.pod_spec(resource_type, props)):
            refs.append((f"containers[{c.get('name') or '?'}].image", c.get("image")))
    elif resource_type in S.COMMAND_TYPES:
        create = S.get(props, "create")
        if isinstance(create, str) and "pip" in create:
            for m in _PIP_PIN.finditer(create):
                if not m.group(1):
                    report(
                        f"the router install runs `pip install {D.ROUTER_PACKAGE}` without a version: pin "
                        f"`{D.ROUTER_PACKAGE}=={D.ROUTER_VERSION}` (router.version)"
                    )
    digest = bool(ctx.threshold("router-pinned", "requireDigest"))
    for where, ref in refs:
        if not isinstance(ref, str) or not ref:
            continue
        problem = S.image_problem(ref)
        if problem is None and digest and "@sha256:" not in ref:
            problem = "is pinned by tag only (the router has no official image: a tag can be pushed again)"
        if problem:
            report(f"router {where} {ref} {problem}: give router.image as repo@sha256:<digest>")


def _host_problem(host: Any) -> str | None:
    kind = S.address_kind(host)
    if kind == "loopback":
        return None
    return f"--host {host or '(unset)'} is not loopback"


def router_not_exposed(resource_type: str, props: Mapping, ctx: Any, report: Report, secret_keys=None) -> None:
    tail = "the router's admin endpoints are unauthenticated: only nginx on the same host may reach it"
    if resource_type == S.CONTAINER and _router_container(props):
        cmd = [str(w) for w in S.as_list(S.get(props, "command"))]
        if S.get(props, "networkMode") == "host":
            problem = _host_problem(S.last_value(cmd, "--host"))
            if problem:
                report(f"host-network router container: {problem}; {tail}")
        if S.as_list(S.get(props, "ports")):
            report(f"router container publishes ports {S.get(props, 'ports')}; {tail}")
    elif resource_type in S.COMMAND_TYPES:
        stdin = S.get(props, "stdin")
        if isinstance(stdin, str):
            for argv in _exec_lines(stdin):
                problem = _host_problem(S.last_value(argv, "--host"))
                if problem:
                    report(f"router unit ExecStart: {problem}; {tail}")
    elif resource_type == S.SERVICE:
        sel = S.get(props, "spec", "selector")
        if not isinstance(sel, Mapping) or sel.get(_COMPONENT) != ROUTER_COMPONENT:
            return
        typ = S.get(props, "spec", "type") or "ClusterIP"
        if typ != "ClusterIP":
            report(f"router Service has spec.type {typ}; it must be ClusterIP (only the front is public)")
        if S.as_list(S.get(props, "spec", "externalIPs")):
            report(f"router Service sets spec.externalIPs {list(S.get(props, 'spec', 'externalIPs'))}")
    elif _is_router_pod(resource_type, props):
        spec = S.pod_spec(resource_type, props) or {}
        if spec.get("hostNetwork") is True:
            report(f"router pod uses hostNetwork; {tail}")
        for c in S.containers(spec):
            for p in S.as_list(c.get("ports")):
                if isinstance(p, Mapping) and p.get("hostPort"):
                    report(f"router container {c.get('name')} sets hostPort {p['hostPort']}; {tail}")


def router_network_policy(resources: list, ctx: Any, report: Report) -> None:
    """Stack rule (part of `router-not-exposed`): every router Deployment has a NetworkPolicy selecting
    its pods whose ingress rules all name a `from` peer for the routing port (no open ingress)."""
    pols = [r for r in resources if r.type == NETWORK_POLICY]
    for r in resources:
        if not _is_router_pod(r.type, r.props):
            continue
        labels = S.get(r.props, "spec", "template", "metadata", "labels") or {}
        covering = [
            p
            for p in pols
            if all(labels.get(k) == v for k, v in (S.get(p.props, "spec", "podSelector", "matchLabels") or {}).items())
            and (S.get(p.props, "spec", "podSelector", "matchLabels") or {})
        ]
        if not covering:
            report(f"router Deployment {r.name}: no NetworkPolicy selects its pods; admit only the front", r.urn)
            continue
        for p in covering:
            for i, rule in enumerate(S.as_list(S.get(p.props, "spec", "ingress"))):
                ports = [q.get("port") for q in S.as_list(rule.get("ports")) if isinstance(q, Mapping)]
                if not rule.get("from") and (not ports or ROUTER_PORT_NAME in ports):
                    report(f"NetworkPolicy {p.name} ingress[{i}] admits every pod to the router's routing port", r.urn)


__all__ = ["router_network_policy", "router_not_exposed", "router_pinned"]
