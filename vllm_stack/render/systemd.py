"""systemd units and start wrappers for the docker platform's `systemd` host runtime.

One unit per replica, `vllm-<model>[-<n>].service` (`-<n>` only for replica index n > 0; a host
holds one capacity class, so the name is unique on its host). The unit runs a rendered wrapper,
`/usr/local/bin/vllm-start-<model>[-<n>]`, because vLLM does not speak sd_notify (seed 001): the
wrapper starts `vllm serve` in the background, polls /health with curl every
HEALTH_POLL_SECONDS, calls `systemd-notify --ready` only once /health answers 200, exits 1 if
vLLM dies while loading, then keeps polling and sends WATCHDOG=1 only while /health answers 200
(the unit's WatchdogSec= is models[].unhealthyRestartSeconds: a hung replica is restarted), and
forwards SIGTERM/SIGINT to vLLM and waits for it.

Secrets: the unit loads VLLM_ETC_DIR/<model>.env (0600 root, written by `vllm-write-secrets`)
with EnvironmentFile=; vLLM reads VLLM_API_KEY / HF_TOKEN from its environment. Neither the
unit (world-readable) nor the wrapper's argv ever holds a secret (vllm-facts.md "Secrets").

curl, not python, polls /health: it is one small Debian package the bootstrap checks for, and
a python poller would depend on whichever interpreter vLLM's venv brings.

Pure and deterministic: strings in, strings out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from .. import defaults as D
from .. import quoting
from ..placement import Replica
from ..startup import budget as startup_budget
from .vllm_args import SECRET_ENV, RenderError, public_env, serve_argv
from .weights import fetch_of, model_path

if TYPE_CHECKING:
    from ..config import ModelSpec, StackConfig

LOOPBACK = D.LOOPBACK
_CACHE_PREFIX = "/var/cache/"


# --- names and paths ---------------------------------------------------------------------


def unit_stem(model: str, replica: Replica) -> str:
    """`vllm-<model>` for replica 0, `vllm-<model>-<n>` for replica n."""
    return f"vllm-{model}" if replica.index == 0 else f"vllm-{model}-{replica.index}"


def unit_name(spec: ModelSpec, replica: Replica) -> str:
    return unit_stem(spec.name, replica) + ".service"


def wrapper_name(spec: ModelSpec, replica: Replica) -> str:
    return "vllm-start-" + unit_stem(spec.name, replica)[len("vllm-") :]


def wrapper_path(spec: ModelSpec, replica: Replica, bin_dir: str = D.HOST_BIN_DIR) -> str:
    return f"{bin_dir.rstrip('/')}/{wrapper_name(spec, replica)}"


def unit_path(spec: ModelSpec, replica: Replica) -> str:
    return f"{D.SYSTEMD_UNIT_DIR}/{unit_name(spec, replica)}"


def secret_env_path(model: str) -> str:
    """The model's 0600 EnvironmentFile (systemd) / --env-file (docker)."""
    return f"{D.VLLM_ETC_DIR}/{model}.env"


def vllm_bind_host(cfg: StackConfig, replica: Replica) -> str:
    """Where vLLM listens: loopback when the front and Prometheus run on the same host
    (vllm-facts: bind 127.0.0.1, expose only through the front), else the host's address
    so the front and Prometheus on other hosts can reach it (/v1 still needs the API key)."""
    local = [h for h in (cfg.front_host, cfg.monitoring_host) if h is not None]
    if local and all(h.name == replica.host for h in local):
        return LOOPBACK
    return replica.address or LOOPBACK


def health_url(bind: str, port: int) -> str:
    """Where the wrapper polls: the bind address, or loopback when vLLM binds every address."""
    if quoting.is_unspecified(bind):
        bind = LOOPBACK if ":" not in bind else "::1"
    return quoting.http_url(bind, port, D.HEALTH_PATH)


# --- unit file syntax --------------------------------------------------------------------


def unit_escape(value: str) -> str:
    """A value for a unit setting (`quoting.unit_value`: one line, `%` doubled)."""
    try:
        return quoting.unit_value(value)
    except quoting.QuotingError as exc:
        raise RenderError(str(exc)) from None


def env_assignment(key: str, value: str) -> str:
    """`Environment=` line (`quoting.unit_env`)."""
    try:
        return quoting.unit_env(key, value)
    except quoting.QuotingError as exc:
        raise RenderError(str(exc)) from None


def _section(name: str, items: list[tuple[str, str]]) -> str:
    return f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in items)


def dynamic_user_unit(
    *,
    comment: str,
    unit: list[tuple[str, str]],
    argv: list[str],
    identifier: str,
    hardening: list[tuple[str, str]] | None = None,
) -> str:
    """A long-running service under a DynamicUser with the base sandbox every helper unit gets
    (the routers, the front's exporter); `hardening` adds settings before the address families."""
    exec_start = " ".join(quoting.sh(w) for w in argv)
    service = [
        ("Type", "simple"),
        ("DynamicUser", "yes"),
        ("ExecStart", unit_escape(exec_start)),
        ("Restart", "always"),
        ("RestartSec", str(D.SYSTEMD_RESTART_SEC)),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        *(hardening or []),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SyslogIdentifier", identifier),
    ]
    return (
        f"# Rendered by vllm-stack: do not edit, the next deploy overwrites it.\n# {comment}\n"
        + _section("Unit", unit)
        + "\n"
        + _section("Service", service)
        + "\n"
        + _section("Install", [("WantedBy", "multi-user.target")])
    )


def _check_replica(cfg: StackConfig, spec: ModelSpec, replica: Replica) -> None:
    if replica.model != spec.name:
        raise RenderError(f"replica {replica.name} belongs to model {replica.model}, not {spec.name}")
    if replica.host is None or not replica.gpu_indices:
        raise RenderError(f"replica {replica.name} has no host/GPU placement (docker platform only)")
    if len(replica.gpu_indices) != spec.tensor_parallel:
        raise RenderError(
            f"replica {replica.name} holds {len(replica.gpu_indices)} GPU(s); "
            f"models[{spec.name}].tensorParallel is {spec.tensor_parallel}"
        )


def unit_environment_base(spec: ModelSpec) -> dict[str, str]:
    """The public environment every unit of a model shares (vLLM units, the weights pre-fetch)."""
    env = public_env(weights_dir=D.VLLM_WEIGHTS_DIR, gated=spec.model_info().gated)
    # The vllm system user has no home; vLLM/torch/triton/hf caches go to the unit's CacheDirectory.
    env["HOME"] = D.VLLM_CACHE_DIR
    env["XDG_CACHE_HOME"] = D.VLLM_CACHE_DIR
    return env


def unit_environment(spec: ModelSpec, replica: Replica) -> dict[str, str]:
    """Public (non-secret) environment of a vLLM unit, in render order."""
    env: dict[str, str] = {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in replica.gpu_indices)}
    env.update(unit_environment_base(spec))
    leaked = set(env) & set(SECRET_ENV)
    if leaked:  # pragma: no cover - public_env never returns them; defence in depth
        raise RenderError(f"secret env var(s) {sorted(leaked)} may not be rendered into a unit")
    return env


def gpu_device_allow(cfg: StackConfig, replica: Replica) -> list[str]:
    """`DeviceAllow=` values under `DevicePolicy=closed`: the NVIDIA control and UVM nodes and
    every GPU of the host (NVML, which vLLM uses to map CUDA_VISIBLE_DEVICES to physical GPUs,
    enumerates all of them; CUDA_VISIBLE_DEVICES still picks the replica's own). `char-nvidia-uvm`
    covers a UVM node created after the unit started (nvidia-modprobe creates it on first use)."""
    host = cfg.host(replica.host) if replica.host is not None else None
    count = host.gpu_count if host is not None else max(replica.gpu_indices) + 1
    nodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    nodes += [f"/dev/nvidia{i}" for i in range(count)]
    return [f"{n} rw" for n in nodes] + ["char-nvidia-uvm rw"]


#: Sandboxing of the vLLM unit (issue 15: `systemd-analyze security` <= 3.5, measured under a
#: real systemd in tests/systemd/ with the fake and the real vLLM serving). What vLLM needs and
#: keeps: the network (AF_INET/AF_INET6; AF_UNIX for its ZMQ IPC and sd_notify; AF_NETLINK for
#: interface lookup), /dev/shm (ProtectSystem leaves /dev writable; no PrivateDevices, which
#: would hide the GPUs), the GPUs (DeviceAllow), its caches (CacheDirectory) and weights
#: (ReadWritePaths), /proc/cpuinfo and /proc/meminfo (so no ProcSubset=pid), JIT code (so no
#: MemoryDenyWriteExecute: torch/triton compile kernels at run time). No RemoveIPC: replicas on
#: one host share the vllm user, and one replica's stop would delete the others' shared memory.
#: The kernel-facing protections every sandboxed unit of the stack gets (the vLLM units, the front's exporter).
KERNEL_PROTECTIONS: tuple[tuple[str, str], ...] = (
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
)
#: The sandbox of the stack's helper services (the routers, the front's nginx exporter): DynamicUser
#: programs that need no device, no /proc of other processes, no W+X memory and no privileged or
#: resource-control system call. Each was run with it under a real systemd (tests/systemd).
HELPER_HARDENING: tuple[tuple[str, str], ...] = (
    ("PrivateDevices", "yes"),
    ("PrivateUsers", "yes"),
    *KERNEL_PROTECTIONS,
    ("ProcSubset", "pid"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources"),
    # Go's runtime (the exporter) raises its RLIMIT_NOFILE soft limit at start with setrlimit (in
    # @resources) and ignores a failure: refuse denied calls with EPERM, not the default SIGSYS kill.
    ("SystemCallErrorNumber", "EPERM"),
    ("CapabilityBoundingSet", ""),
    ("DevicePolicy", "closed"),
    ("UMask", "0077"),
)
HARDENING: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "yes"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    *KERNEL_PROTECTIONS,
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged"),
    ("SystemCallErrorNumber", "EPERM"),
    ("UMask", "0027"),
    ("DevicePolicy", "closed"),
)


def render_systemd_unit(
    cfg: StackConfig,
    spec: ModelSpec,
    replica: Replica,
    *,
    bin_dir: str = D.HOST_BIN_DIR,
    watchdog_sec: int | None = None,
) -> str:
    """`vllm-<model>[-<n>].service` for one replica (Type=notify; ExecStart is the wrapper).

    `bin_dir` is where the wrapper lives (tests point it at a temp dir for systemd-analyze);
    `watchdog_sec` defaults to `models[].unhealthyRestartSeconds` (tests shorten it).
    """
    _check_replica(cfg, spec, replica)
    watchdog = spec.unhealthy_restart_seconds if watchdog_sec is None else watchdog_sec
    if isinstance(watchdog, bool) or not isinstance(watchdog, int) or watchdog < 1:
        raise RenderError(f"watchdog_sec must be a whole number >= 1, got {watchdog!r}")
    if not D.VLLM_CACHE_DIR.startswith(_CACHE_PREFIX):
        raise RenderError(f"VLLM_CACHE_DIR must be under {_CACHE_PREFIX} (systemd CacheDirectory=)")
    gpus = ",".join(str(i) for i in replica.gpu_indices)
    unit = [
        (
            "Description",
            unit_escape(f"vLLM {spec.name} ({spec.model}) replica {replica.index}, GPU {gpus} on {replica.host}"),
        ),
        ("Wants", "network-online.target"),
        ("After", "network-online.target"),
    ]
    fetch = fetch_of(spec)
    if fetch is not None:
        # The weights are pre-fetched once per host by a oneshot unit; vLLM starts only after it
        # succeeded (once the weights are complete a rerun only finds the marker and exits 0).
        unit += [("Requires", fetch.unit), ("After", fetch.unit)]
    service = [
        ("Type", "notify"),
        ("NotifyAccess", "all"),
        ("User", D.VLLM_USER),
        ("Group", D.VLLM_USER),
        ("EnvironmentFile", unit_escape(secret_env_path(spec.name))),
    ]
    env_lines = [env_assignment(k, v) for k, v in unit_environment(spec, replica).items()]
    service_tail = [
        ("ExecStart", unit_escape(wrapper_path(spec, replica, bin_dir))),
        # The model's first-start budget (download + load + init, never below the probe's 900 s):
        # READY comes only when /health answers, so a 70B first start must not be killed at 900 s.
        ("TimeoutStartSec", str(startup_budget(spec).startup_seconds)),
        # SIGTERM goes to the wrapper only (KillMode=mixed); it forwards it to vLLM and waits
        # while vLLM drains; whatever is left after TimeoutStopSec gets SIGKILL.
        ("KillSignal", "SIGTERM"),
        ("KillMode", "mixed"),
        ("TimeoutStopSec", str(spec.pool.drain_seconds + D.TERMINATION_GRACE_EXTRA_SEC)),
        # Hosts heal: the wrapper sends WATCHDOG=1 only while /health answers 200, so a replica
        # that stays unhealthy this long is killed (SIGABRT, then the KillMode above) and
        # restarted. systemd arms the watchdog at READY and disarms it on stop: never in a drain.
        ("WatchdogSec", str(watchdog)),
        ("LimitNOFILE", str(D.VLLM_LIMIT_NOFILE)),
        ("Restart", "always"),
        ("RestartSec", str(D.SYSTEMD_RESTART_SEC)),
        ("SyslogIdentifier", unit_stem(spec.name, replica)),
        *_sandbox(gpu_device_allow(cfg, replica)),
    ]
    return _unit_file(unit, service, env_lines, service_tail)


def _sandbox(devices: list[str] | None = None) -> list[tuple[str, str]]:
    """HARDENING, the devices allowed, and what the vllm user may write: the weights dir and its CacheDirectory."""
    return [
        *HARDENING,
        *(("DeviceAllow", v) for v in devices or []),
        ("ReadWritePaths", unit_escape(D.VLLM_WEIGHTS_DIR)),
        ("CacheDirectory", D.VLLM_CACHE_DIR[len(_CACHE_PREFIX) :]),
        ("CacheDirectoryMode", f"{D.VLLM_DIR_MODE:04o}"),
    ]


def _unit_file(
    unit: list[tuple[str, str]], service: list[tuple[str, str]], env_lines: list[str], tail: list[tuple[str, str]]
) -> str:
    header = (
        "# Rendered by vllm-stack: do not edit, the next deploy overwrites it.\n"
        "# Secrets live in the EnvironmentFile (0600 root), never in this world-readable file.\n"
    )
    return (
        header
        + _section("Unit", unit)
        + "\n"
        + _section("Service", service)
        + "".join(line + "\n" for line in env_lines)
        + "".join(f"{k}={v}\n" for k, v in tail)
        + "\n"
        + _section("Install", [("WantedBy", "multi-user.target")])
    )


def render_weights_unit(spec: ModelSpec, *, bin_dir: str = D.HOST_BIN_DIR) -> str:
    """`vllm-weights-<model>.service`: the host's one pre-fetch of the model's weights (Type=oneshot),
    as the vllm user with the model's 0600 EnvironmentFile (HF_TOKEN), sandboxed
    like the vLLM unit; the model's vLLM units Require it and start After it. TimeoutStartSec is the
    download's share of the startup budget (`StartupBudget.fetch_seconds`)."""
    fetch = fetch_of(spec)
    if fetch is None:
        raise RenderError(f"models[{spec.name}].model is a local path: there is nothing to pre-fetch")
    script = f"{bin_dir.rstrip('/')}/{fetch.script.rsplit('/', 1)[-1]}"
    env = unit_environment_base(spec)
    unit = [
        ("Description", unit_escape(f"Pre-fetch {fetch.repo}@{fetch.revision} into {fetch.path} (vLLM {spec.name})")),
        ("Wants", "network-online.target"),
        ("After", "network-online.target"),
    ]
    service = [
        # No RemainAfterExit: the unit is inactive again once the fetch exited, so every start
        # (each vLLM unit's start pulls it in; the deploy starts it) reruns the script, which
        # returns at once when the marker is there, and a changed revision is fetched on the
        # next start without restarting the serving replicas (Requires= propagates restarts).
        ("Type", "oneshot"),
        ("User", D.VLLM_USER),
        ("Group", D.VLLM_USER),
        ("EnvironmentFile", unit_escape(secret_env_path(spec.name))),
    ]
    env_lines = [env_assignment(k, v) for k, v in env.items()]
    service_tail = [
        ("ExecStart", unit_escape(script)),
        ("TimeoutStartSec", str(startup_budget(spec).fetch_seconds)),
        ("SyslogIdentifier", fetch.name),
        *_sandbox(),
    ]
    return _unit_file(unit, service, env_lines, service_tail)


# --- start wrapper -------------------------------------------------------------------------

_WRAPPER_BODY = r"""
vllm_pid=""
stopping=0

log() { echo "$NAME: $*" >&2; }

# shellcheck disable=SC2317  # invoked by the traps below
on_signal() {
    stopping=1
    if [[ -n "$vllm_pid" ]]; then
        log "received SIG$1; forwarding it to vLLM (pid $vllm_pid) and waiting"
        kill -s "$1" "$vllm_pid" 2>/dev/null || true
    fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

healthy() {
    local code
    code="$("$CURL" --silent --noproxy '*' --output /dev/null --write-out '%{http_code}' \
        --max-time "$POLL_SECONDS" "$HEALTH_URL" 2>/dev/null)" || true
    [[ "$code" == 200 ]]
}

[[ -x "$VLLM" ]] || { log "vLLM not found at $VLLM (install vLLM there)"; exit 1; }
[[ -x "$CURL" ]] || { log "curl not found at $CURL (apt-get install curl)"; exit 1; }

"$VLLM" serve "${SERVE_ARGS[@]}" &
vllm_pid=$!
log "started vLLM (pid $vllm_pid); polling $HEALTH_URL every ${POLL_SECONDS}s"

# Startup: READY only after /health answers 200; vLLM dying first is a failed start.
while ! healthy; do
    if (( stopping )); then
        break
    fi
    if ! kill -0 "$vllm_pid" 2>/dev/null; then
        status=0
        wait "$vllm_pid" || status=$?
        log "vLLM exited with status $status during startup"
        exit 1
    fi
    sleep "$POLL_SECONDS" &
    wait "$!" || true   # a trapped signal interrupts the wait at once
done

if (( ! stopping )); then
    if systemd-notify --ready --status="serving $HEALTH_URL"; then
        log "vLLM is healthy; notified systemd (READY=1)"
    else
        log "systemd-notify failed (not started by systemd with Type=notify?)"
    fi
fi

# Serving: feed the unit's watchdog (WatchdogSec=) only while /health answers 200, so a hung
# or unhealthy vLLM is restarted by systemd; stop feeding at once when asked to stop.
while (( ! stopping )) && kill -0 "$vllm_pid" 2>/dev/null; do
    if healthy; then
        systemd-notify WATCHDOG=1 || true
    else
        log "$HEALTH_URL is not answering 200; the watchdog is not fed"
    fi
    sleep "$POLL_SECONDS" &
    wait "$!" || true   # a trapped signal interrupts the wait at once
done

# Until vLLM exits; `wait` returns early when a trapped signal arrives.
status=0
while :; do
    if wait "$vllm_pid"; then status=0; else status=$?; fi
    kill -0 "$vllm_pid" 2>/dev/null || break
done
log "vLLM exited with status $status"
exit "$status"
"""


def _argv_lines(words: list[str]) -> list[str]:
    """`--flag value` pairs on one line each (readability only; bash sees the same array)."""
    lines: list[str] = []
    i = 0
    while i < len(words):
        if words[i].startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            lines.append(f"{words[i]} {words[i + 1]}")
            i += 2
        else:
            lines.append(words[i])
            i += 1
    return lines


def wrapper_argv(cfg: StackConfig, spec: ModelSpec, replica: Replica, *, bind_host: str | None = None) -> list[str]:
    """The `vllm serve` arguments the wrapper runs (the SystemdVllmServer registers the same list)."""
    return serve_argv(
        spec, host=bind_host or vllm_bind_host(cfg, replica), port=replica.port, model_path=model_path(spec)
    )


def render_start_wrapper(
    cfg: StackConfig,
    spec: ModelSpec,
    replica: Replica,
    *,
    vllm_bin: str = D.VLLM_BIN,
    curl_bin: str = D.CURL_BIN,
    bind_host: str | None = None,
    poll_seconds: float = D.HEALTH_POLL_SECONDS,
) -> str:
    """bash wrapper run by the unit's ExecStart (shellcheck-clean; see module docstring).

    `vllm_bin` / `curl_bin` default to the production paths; tests point them at stubs (and
    shorten `poll_seconds`). `bind_host` defaults to `vllm_bind_host(cfg, replica)`.
    """
    if not poll_seconds > 0:
        raise RenderError(f"poll_seconds must be > 0, got {poll_seconds}")
    _check_replica(cfg, spec, replica)
    bind = bind_host or vllm_bind_host(cfg, replica)
    argv = wrapper_argv(cfg, spec, replica, bind_host=bind)
    q = quoting.sh
    args = "".join(f"    {line}\n" for line in _argv_lines([q(a) for a in argv]))
    return (
        "#!/bin/bash\n"
        f"# {wrapper_name(spec, replica)}: rendered by vllm-stack, do not edit. ExecStart of "
        f"{unit_name(spec, replica)} (Type=notify).\n"
        "# Starts `vllm serve`, notifies systemd only once /health answers 200, forwards SIGTERM.\n"
        "# No secret here: vLLM reads VLLM_API_KEY/HF_TOKEN from the unit's EnvironmentFile.\n"
        + "set -euo pipefail\n\n"
        f"readonly NAME={q(wrapper_name(spec, replica))}\n"
        f"readonly VLLM={q(vllm_bin)}\n"
        f"readonly CURL={q(curl_bin)}\n"
        f"readonly HEALTH_URL={q(health_url(bind, replica.port))}\n"
        f"readonly POLL_SECONDS={poll_seconds:g}\n"
        "# Arguments after `vllm serve` (vllm_stack.render.vllm_args.serve_argv).\n"
        "readonly -a SERVE_ARGS=(\n"
        f"{args}"
        ")\n" + _WRAPPER_BODY
    )


# --- DCGM exporter (systemd runtime) -------------------------------------------------------


def render_dcgm_unit(*, image: str = D.DCGM_EXPORTER_IMAGE, publish: str, docker_bin: str = D.DOCKER_BIN) -> str:
    """`dcgm-exporter.service`: the same pinned container the docker runtime runs, supervised by
    systemd on hosts whose vLLM runs as units (the exporter only ships as a container image)."""
    q = quoting.sh
    name = D.DCGM_EXPORTER_CONTAINER
    run = " ".join([q(docker_bin), "run", "--rm", "--name", name, "--gpus", "all", "-p", q(publish), q(image)])
    unit = [
        ("Description", unit_escape(f"NVIDIA DCGM exporter for vllm-stack (GPU metrics on {publish})")),
        ("Wants", "docker.service"),
        ("After", "docker.service"),
    ]
    service = [
        ("ExecStartPre", f"-{q(docker_bin)} rm -f {name}"),
        ("ExecStart", unit_escape(run)),
        ("ExecStop", f"{q(docker_bin)} stop {name}"),
        ("Restart", "always"),
        ("RestartSec", str(D.SYSTEMD_RESTART_SEC)),
    ]
    return (
        "# Rendered by vllm-stack (bootstrap): do not edit.\n"
        + _section("Unit", unit)
        + "\n"
        + _section("Service", service)
        + "\n"
        + _section("Install", [("WantedBy", "multi-user.target")])
    )
