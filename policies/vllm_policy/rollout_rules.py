"""Rollout rules (declared in checks.RULES; plain functions with the resource-rule signature).

rollout-timeout-covers-startup
    description: a vLLM server's rollout timeout (how long `pulumi up` waits for the Deployment to be
        Ready, or for the docker container to be healthy) is at least its startup budget: the larger of
        the budget the component declares, the startup probe's own budget (Kubernetes: failureThreshold x
        periodSeconds), and the budget `vllm_stack.startup` computes from the model and quantization on
        its argv (catalog models). Kubernetes: progressDeadlineSeconds is not shorter than the rollout
        timeout either (the Deployment would be marked failed first).
    enforcement: dev advisory (a slow first start only costs a retry), prod mandatory.
    thresholds: minRolloutOverStartup — rollout timeout / startup budget must be at least this
        (default `vllm_stack.defaults.ROLLOUT_MIN_OVER_STARTUP` = 1.0).
    sees: the component inputs `vllmstack:index:KubernetesVllmServer` (rolloutTimeout,
        startupBudgetSeconds, deployment) and `vllmstack:index:DockerVllmServer` (healthWaitSeconds,
        startupBudgetSeconds, argv); CrossGuard passes component inputs (docs/policies.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable, Sequence

from vllm_stack import defaults as D
from vllm_stack.catalog import lookup_model
from vllm_stack.sizing import WEIGHT_BYTES_PER_PARAM
from vllm_stack.startup import budget_for

from . import shapes as S

POLICY_ID = "rollout-timeout-covers-startup"
K8S_SERVER = f"{D.COMPONENT_PREFIX}:KubernetesVllmServer"
DOCKER_SERVER = f"{D.COMPONENT_PREFIX}:DockerVllmServer"
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")

Report = Callable[..., None]


def duration_seconds(text: Any) -> int | None:
    """A Pulumi custom timeout (`30m`, `1h30m`, `1800s`) in seconds; None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    m = _DURATION.fullmatch(text)
    if m is None or not any(m.groups()):
        return None
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def _computed_startup(args: Sequence[str]) -> int | None:
    model = S.model_of(args)
    info = lookup_model(model) if model else None
    quant = (S.last_value(list(args), "--quantization") or "none").lower()
    if info is None or quant not in WEIGHT_BYTES_PER_PARAM:
        return None
    return budget_for(info.architecture, quant).startup_seconds


def _threshold(ctx: Any) -> float:
    return float(ctx.threshold(POLICY_ID, "minRolloutOverStartup"))


def rollout_timeout_covers_startup(
    resource_type: str, props: Mapping, ctx: Any, report: Report, secret_keys: Any = None
) -> None:
    if resource_type not in (K8S_SERVER, DOCKER_SERVER):
        return
    declared = S.number(props.get("startupBudgetSeconds"))
    budgets: list[tuple[int, str]] = []
    if declared is not None:
        budgets.append((int(declared), "the declared startup budget"))
    if resource_type == K8S_SERVER:
        name = S.get(props, "deployment", "metadata", "name") or "?"
        raw = props.get("rolloutTimeout")
        timeout = duration_seconds(raw)
        if timeout is None:
            report(f"Deployment {name}: rolloutTimeout {raw!r} is not a Pulumi duration (e.g. `30m`)")
            return
        spec = S.get(props, "deployment", "spec") or {}
        pod = S.get(spec, "template", "spec")
        for c in S.containers(pod, init=False):
            probe = c.get("startupProbe")
            if isinstance(probe, Mapping):
                threshold = S.number(probe.get("failureThreshold")) or 3
                period = S.number(probe.get("periodSeconds")) or 10
                budgets.append((int(threshold * period), f"container {c.get('name')}'s startup probe budget"))
            for argv in S.k8s_container_argvs(c):
                computed = _computed_startup(argv.args)
                if computed is not None:
                    budgets.append((computed, f"the startup budget of {S.model_of(argv.args)}"))
        deadline = S.number(spec.get("progressDeadlineSeconds")) if isinstance(spec, Mapping) else None
        if deadline is not None and deadline < timeout:
            report(
                f"Deployment {name}: progressDeadlineSeconds {int(deadline)} is shorter than its rollout timeout "
                f"{raw} ({timeout} s): Kubernetes marks the rollout failed while vLLM may still be loading"
            )
        what = f"Deployment {name}: rollout timeout {raw} ({timeout} s)"
    else:
        name = props.get("containerName") or "?"
        timeout_num = S.number(props.get("healthWaitSeconds"))
        if timeout_num is None:
            report(f"container {name}: no healthWaitSeconds: `pulumi up` would not wait for the replica's health")
            return
        timeout = int(timeout_num)
        computed = _computed_startup(S.strings(props.get("argv")))
        if computed is not None:
            budgets.append((computed, f"the startup budget of {S.model_of(S.strings(props.get('argv')))}"))
        what = f"container {name}: health wait {timeout} s"
    if not budgets:
        return
    need, why = max(budgets)
    ratio = _threshold(ctx)
    if timeout < need * ratio:
        report(
            f"{what} is shorter than {why} ({need} s"
            + (f" x {ratio:g}" if ratio != 1 else "")
            + "): `pulumi up` would fail the first deploy while the model is still downloading or loading; "
            "use vllm_stack.startup.budget(...).rollout_timeout"
        )
