"""The docker runtime's healer: restarts vLLM containers that stay `unhealthy` (issue 15).

Docker's restart policy ignores the health status, so a hung vLLM container stays hung. Each
container has a HEALTHCHECK (`DockerVllmServer`: GET /health every PROBE_PERIOD_SEC); the host
bootstrap installs `vllm-heal` (this script), `vllm-heal.service` (oneshot) and `vllm-heal.timer`
(every HEALER_PERIOD_SEC). Each run lists the stack's containers (label `vllm-stack/model`)
that docker reports unhealthy, and restarts one when its failing streak x probe interval has
reached its model's `unhealthyRestartSeconds`.

Never fighting a drain: a container only fails its probes after SIGTERM (the drain itself keeps
/health at 200), and is killed stop_timeout = drain + TERMINATION_GRACE_EXTRA_SEC later; the
config refuses an `unhealthyRestartSeconds` below that plus one probe period, so a stopping
container never reaches it. An operator's hold: a file named after the container in
HEALER_HOLD_DIR (e.g. while debugging it) keeps the healer away.

Pure: strings in, strings out.
"""

from __future__ import annotations

import re
from typing import Mapping

from .. import defaults as D
from .. import quoting
from ..config import NAME_RE
from .systemd import _section, unit_escape
from .vllm_args import RenderError

HEALER_PATH = f"{D.HOST_SBIN_DIR}/{D.HEALER_NAME}"
HEALER_SERVICE = f"{D.HEALER_NAME}.service"
HEALER_TIMER = f"{D.HEALER_NAME}.timer"
HEALER_SERVICE_PATH = f"{D.SYSTEMD_UNIT_DIR}/{HEALER_SERVICE}"
HEALER_TIMER_PATH = f"{D.SYSTEMD_UNIT_DIR}/{HEALER_TIMER}"

_BODY = r"""
log() { echo "$ME: $*"; }
rc=0

names="$("$DOCKER" ps --filter "label=$LABEL_MODEL" --filter health=unhealthy --format '{{.Names}}')" || {
    log "docker ps failed"; exit 1; }
while IFS= read -r name; do
    [[ -n "$name" ]] || continue
    if [[ -e "$HOLD_DIR/$name" ]]; then
        log "$name is unhealthy; held by $HOLD_DIR/$name, not restarting"
        continue
    fi
    info="$("$DOCKER" inspect --format "$INSPECT_FORMAT" "$name" 2>/dev/null)" || continue
    IFS='|' read -r status health streak interval_ns model <<<"$info"
    [[ "$status" == running && "$health" == unhealthy ]] || continue
    [[ "$streak" =~ ^[0-9]+$ ]] || streak=0
    [[ "$interval_ns" =~ ^[0-9]+$ && "$interval_ns" -gt 0 ]] || interval_ns=$DOCKER_DEFAULT_INTERVAL_NS
    after="${AFTER[$model]:-$DEFAULT_AFTER}"
    failing=$(( streak * interval_ns / NS_PER_S ))
    if (( failing < after )); then
        log "$name ($model) unhealthy for ~${failing}s; restart at ${after}s"
        continue
    fi
    if "$DOCKER" restart "$name" >/dev/null; then
        log "restarted $name ($model): /health failing for ~${failing}s (limit ${after}s)"
    else
        log "could not restart $name"
        rc=1
    fi
done <<<"$names"
exit "$rc"
"""


def render_healer_script(
    heal_after: Mapping[str, int], *, docker_bin: str = D.DOCKER_BIN, hold_dir: str = D.HEALER_HOLD_DIR
) -> str:
    """`vllm-heal` (bash, shellcheck-clean). `heal_after`: model name -> unhealthyRestartSeconds
    (models not listed get D.UNHEALTHY_RESTART_SEC)."""
    for model, seconds in heal_after.items():
        if not re.fullmatch(NAME_RE, model):
            raise RenderError(f"model name {model!r} is not allowed (allowed: {NAME_RE})")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise RenderError(f"unhealthyRestartSeconds of {model} must be a whole number >= 1, got {seconds!r}")
    q = quoting.sh
    fmt = (
        "{{.State.Status}}|{{.State.Health.Status}}|{{.State.Health.FailingStreak}}|"
        "{{json .Config.Healthcheck.Interval}}|{{index .Config.Labels " + f'"{D.LABEL_MODEL}"' + "}}"
    )
    after = " ".join(f"[{q(m)}]={s}" for m, s in sorted(heal_after.items()))
    return (
        "#!/bin/bash\n"
        f"# {D.HEALER_NAME}: rendered by vllm-stack (bootstrap), do not edit. Run by {HEALER_TIMER}.\n"
        "# Restarts vllm-stack containers docker reports unhealthy for longer than their model's\n"
        "# unhealthyRestartSeconds (docker's restart policy ignores health). Hold: touch HOLD_DIR/NAME.\n"
        "set -euo pipefail\n"
        "export LC_ALL=C\n\n"
        f"readonly ME={q(D.HEALER_NAME)}\n"
        f"readonly DOCKER={q(docker_bin)}\n"
        f"readonly LABEL_MODEL={q(D.LABEL_MODEL)}\n"
        f"readonly HOLD_DIR={q(hold_dir)}\n"
        f"readonly DEFAULT_AFTER={D.UNHEALTHY_RESTART_SEC}\n"
        f"readonly DOCKER_DEFAULT_INTERVAL_NS={D.DOCKER_DEFAULT_HEALTH_INTERVAL_SEC * 10**9}  # docker's default\n"
        f"readonly NS_PER_S={10**9}\n"
        f"readonly INSPECT_FORMAT={q(fmt)}\n"
        f"declare -rA AFTER=({after})\n" + _BODY
    )


def render_healer_service(*, script: str = HEALER_PATH) -> str:
    unit = [
        ("Description", "vllm-stack: restart vLLM containers that stay unhealthy"),
        ("Wants", "docker.service"),
        ("After", "docker.service"),
    ]
    service = [("Type", "oneshot"), ("ExecStart", unit_escape(script))]
    return (
        "# Rendered by vllm-stack (bootstrap): do not edit.\n"
        + _section("Unit", unit)
        + "\n"
        + _section("Service", service)
    )


def render_healer_timer() -> str:
    timer = [
        ("OnBootSec", str(D.HEALER_PERIOD_SEC)),
        ("OnUnitActiveSec", str(D.HEALER_PERIOD_SEC)),
        ("AccuracySec", "1s"),
        ("Unit", HEALER_SERVICE),
    ]
    return (
        "# Rendered by vllm-stack (bootstrap): do not edit.\n"
        + _section("Unit", [("Description", f"vllm-stack: run {HEALER_SERVICE} every {D.HEALER_PERIOD_SEC} s")])
        + "\n"
        + _section("Timer", timer)
        + "\n"
        + _section("Install", [("WantedBy", "timers.target")])
    )
