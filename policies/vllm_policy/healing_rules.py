"""Rules of issue 15 "hosts heal, units hold" (declared in checks.RULES).

`vllm-replica-heals` (resource rule, same signature as the resource rules in checks.py)
    A vLLM replica on an SSH host must be restarted when it hangs, and its unit sandboxed:
    * the unit a `SystemdVllmServer` component installs (its `unit.content` input) needs
      `WatchdogSec=` (the start wrapper
      feeds it only while /health answers 200), at least `TimeoutStopSec=` + `marginSec`, so a
      replica being drained can never be killed as hung, and the sandbox settings of
      REQUIRED_SANDBOX (what `systemd-analyze security` <= 3.5 rests on, measured in tests/systemd);
    * a vLLM container (`docker:index/container:Container` running the vLLM image) needs a
      healthcheck (what the host's vllm-heal timer acts on; docker's restart policy ignores it).
    Enforcement: prod mandatory, dev advisory.
    Threshold: `marginSec` (default D.PROBE_PERIOD_SEC = 10 s: one probe period).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable

from vllm_stack import defaults as D

from . import shapes as S

Report = Callable[..., None]
POLICY_ID = "vllm-replica-heals"
SYSTEMD_SERVER = S.component_type("SystemdVllmServer")

#: Setting -> accepted values (the issue's bar: exposure <= 3.5 with vLLM still serving).
REQUIRED_SANDBOX: dict[str, tuple[str, ...]] = {
    "NoNewPrivileges": ("yes", "true"),
    "CapabilityBoundingSet": ("",),
    "ProtectSystem": ("strict",),
    "ProtectHome": ("yes", "true", "read-only", "tmpfs"),
    "PrivateTmp": ("yes", "true"),
    "ProtectKernelTunables": ("yes", "true"),
    "ProtectKernelModules": ("yes", "true"),
    "ProtectControlGroups": ("yes", "true"),
    "RestrictNamespaces": ("yes", "true"),
    "DevicePolicy": ("closed", "strict"),
    "SystemCallArchitectures": ("native",),
}


def _service_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep and section == "Service":
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _seconds(value: str | None) -> float | None:
    """systemd time span: plain seconds or `1min 30s`-style; None when unreadable or infinity."""
    if value is None:
        return None
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", value.strip()):
        return None
    for number, unit in parts:
        if unit not in units:
            return None
        total += float(number) * units[unit]
    return total


def _last(settings: Mapping[str, list[str]], key: str) -> str | None:
    values = settings.get(key)
    return values[-1] if values else None


def vllm_replica_heals(resource_type: str, props: Mapping, ctx: Any, report: Report, secret_keys=None) -> None:
    margin = float(ctx.threshold(POLICY_ID, "marginSec"))
    if resource_type == S.CONTAINER:
        if S.image_is_vllm(S.get(props, "image")) and not S.strings(S.get(props, "healthcheck", "tests")):
            report(
                "vLLM container without a healthcheck: a hung vLLM is never marked unhealthy, so the host's "
                f"{D.HEALER_NAME} timer cannot restart it (docker's restart policy ignores health)"
            )
        return
    if resource_type != SYSTEMD_SERVER:
        return
    text = S.get(props, "unit", "content")
    if not isinstance(text, str):
        return
    model = S.get_known(props, "model") or "?"
    svc = _service_settings(text)
    watchdog = _seconds(_last(svc, "WatchdogSec"))
    stop = _seconds(_last(svc, "TimeoutStopSec"))
    if not watchdog:
        report(
            f"vLLM unit of {model}: no WatchdogSec=: a replica whose /health hangs is never restarted "
            "(set models[].unhealthyRestartSeconds; the start wrapper feeds the watchdog while /health is 200)"
        )
    elif stop is not None and watchdog < stop + margin:
        report(
            f"vLLM unit of {model}: WatchdogSec={watchdog:g} is below TimeoutStopSec={stop:g} + {margin:g} s: "
            "a draining replica could be killed as hung; raise models[].unhealthyRestartSeconds"
        )
    for key, allowed in REQUIRED_SANDBOX.items():
        values = svc.get(key)
        if not values or values[-1] not in allowed:
            shown = "unset" if not values else f"{key}={values[-1]}"
            want = " or ".join(f"{key}={a}" for a in allowed)
            report(f"vLLM unit of {model}: {shown}; the sandbox needs {want} (systemd-analyze security <= 3.5)")
