"""Scripts that prepare an existing GPU host (docker platform) and put secrets on it.

* `render_bootstrap_script(cfg, host_name)`: bash, run as root over SSH. Checks first, changes
  after: the NVIDIA driver (`nvidia-smi -L` lists >= hosts[].gpuCount GPUs) and, for
  hostRuntime `docker`, Docker plus the NVIDIA Container Toolkit; then the `vllm` system user
  (render/video groups where they exist), VLLM_ETC_DIR (0750 root:vllm), the weights dir
  (0750 vllm:vllm), the secret writer, and the DCGM exporter (docker: a `--restart always`
  container, replaced only when its image/ports changed; systemd: `dcgm-exporter.service`
  running the same container, skipped with a warning when Docker/the toolkit are absent).
  Idempotent: every step compares before it writes; a second run prints "nothing changed".
* `render_secret_writer_script()`: `vllm-write-secrets MODEL` reads `KEY=value` lines on stdin
  and atomically writes VLLM_ETC_DIR/MODEL.env (0600 root). The deployer runs it with the
  secret as the command's stdin, so secrets never reach argv, a command string or a log.
* `render_host_files(cfg, host_name, placements)`: every file that lands on a host, with modes.

Pure and deterministic: strings in, strings out. No secret value ever passes through here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from .. import defaults as D
from .. import quoting
from ..config import NAME_RE, HostSpec, StackConfig
from ..placement import Replica
from . import healer as H
from . import systemd as S
from .host_commands import SECRET_WRITER_PATH
from .vllm_args import SECRET_ENV, RenderError

BOOTSTRAP_PATH = f"{D.HOST_SBIN_DIR}/{D.BOOTSTRAP_NAME}"
DCGM_UNIT_PATH = f"{D.SYSTEMD_UNIT_DIR}/{D.DCGM_EXPORTER_CONTAINER}.service"
NOTHING_CHANGED = "nothing changed"
_HEREDOC_END = "VLLM_STACK_FILE_END"


@dataclass(frozen=True)
class FileSpec:
    """One file to put on a host: absolute path, content, numeric mode, `user:group`."""

    path: str
    content: str
    mode: int
    owner: str = "root:root"


_q = quoting.sh


def _heredoc_function(fn: str, content: str) -> str:
    """A bash function that prints `content` verbatim (quoted heredoc: no expansion)."""
    if any(line == _HEREDOC_END for line in content.splitlines()):
        raise RenderError(f"embedded file contains the heredoc delimiter {_HEREDOC_END}")
    if not content.endswith("\n"):
        content += "\n"
    return f"{fn}() {{\n    cat <<'{_HEREDOC_END}'\n{content}{_HEREDOC_END}\n}}\n"


# --- secret writer -------------------------------------------------------------------------

_WRITER_BODY = r"""
die() { echo "$ME: $*" >&2; exit 1; }   # messages never include the input

[[ $# -eq 1 ]] || die "usage: $ME MODEL < KEY=value lines"
model=$1
[[ "$model" =~ $NAME_RE ]] || die "invalid model name (allowed: $NAME_RE)"
[[ "$(id -u)" -eq 0 ]] || die "must run as root"
[[ ! -t 0 ]] || die "pipe the KEY=value lines on stdin"
[[ -d "$ETC_DIR" ]] || die "$ETC_DIR is missing: run $BOOTSTRAP first"

# Read stdin once, into memory only (the trailing x keeps trailing newlines). printf is a
# builtin: the pipelines below never put the content on a command line.
content="$(cat; printf x)"
content="${content%x}"
[[ -n "$content" ]] || die "nothing on stdin"
[[ "$content" == *$'\n' ]] || content+=$'\n'

bad="$(printf '%s' "$content" | grep -nvE "$LINE_RE" | cut -d: -f1 | paste -sd, - || true)"
[[ -z "$bad" ]] || die "line(s) $bad: expected KEY=value with KEY one of: $KEYS (values are not shown)"
count="$(printf '%s' "$content" | grep -cE "$KEY_RE" || true)"
[[ "$count" -gt 0 ]] || die "no KEY=value line on stdin (KEY one of: $KEYS)"
dupes="$(printf '%s' "$content" | grep -E "$KEY_RE" | cut -d= -f1 | sort | uniq -d | paste -sd, - || true)"
[[ -z "$dupes" ]] || die "repeated key(s): $dupes"

target="$ETC_DIR/$model.env"
if [[ -f "$target" && ! -L "$target" ]] \
        && [[ "$(stat -c '%u:%g %a' "$target")" == "0:0 $FILE_MODE" ]] \
        && printf '%s' "$content" | cmp -s - "$target"; then
    echo "$ME: $target unchanged"
    exit 0
fi

tmp="$(mktemp "$ETC_DIR/.$model.env.XXXXXX")"
trap 'rm -f -- "$tmp"' EXIT
printf '%s' "$content" >"$tmp"
chown 0:0 "$tmp"
chmod "$FILE_MODE" "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$target"
trap - EXIT
sync -- "$ETC_DIR" 2>/dev/null || true
echo "$ME: wrote $target ($count key(s), mode $FILE_MODE root:root)"
"""


def render_secret_writer_script() -> str:
    """`vllm-write-secrets MODEL` (see module docstring). Never `set -x`; xtrace is forced off."""
    keys = "|".join(re.escape(k) for k in SECRET_ENV)
    return (
        "#!/bin/bash\n"
        f"# {D.SECRET_WRITER_NAME} MODEL: rendered by vllm-stack, do not edit.\n"
        f"# Reads KEY=value lines ({', '.join(SECRET_ENV)}) on STDIN and atomically writes\n"
        f"# {D.VLLM_ETC_DIR}/MODEL.env, mode {D.SECRET_FILE_MODE:04o} root:root: the EnvironmentFile of the\n"
        "# model's units / --env-file of its containers. The content never reaches argv or output;\n"
        "# identical content is not rewritten (reruns are no-ops).\n"
        "set +o xtrace\n"
        "set -euo pipefail\n"
        "umask 077\n"
        "export LC_ALL=C\n\n"
        f"readonly ME={_q(D.SECRET_WRITER_NAME)}\n"
        f"readonly ETC_DIR={_q(D.VLLM_ETC_DIR)}\n"
        f"readonly BOOTSTRAP={_q(BOOTSTRAP_PATH)}\n"
        f"readonly FILE_MODE={D.SECRET_FILE_MODE:o}\n"
        f"readonly NAME_RE={_q(NAME_RE)}\n"
        f"readonly KEYS={_q(' '.join(SECRET_ENV))}\n"
        f"readonly KEY_RE={_q(f'^({keys})=')}\n"
        f"readonly LINE_RE={_q(f'^(#.*|({keys})=[^[:cntrl:]]*)?$')}\n" + _WRITER_BODY
    )


# --- bootstrap -----------------------------------------------------------------------------


def dcgm_bind(cfg: StackConfig, host: HostSpec) -> str:
    """Host address the DCGM exporter publishes on: loopback on the monitoring host, else the
    host's IP (Prometheus scrapes it from the monitoring host); 0.0.0.0 when the address is a
    DNS name (docker -p needs an IP) - firewall DCGM_EXPORTER_PORT to the monitoring host."""
    mon = cfg.monitoring_host
    if mon is not None and mon.name == host.name:
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host.address)
    except ValueError:
        return "0.0.0.0"
    return host.address


def _publish(bind: str) -> str:
    shown = f"[{bind}]" if ":" in bind else bind
    return f"{shown}:{D.DCGM_EXPORTER_PORT}:{D.DCGM_EXPORTER_PORT}"


_BOOTSTRAP_BODY = r"""
changes=0
put_changed=0
tmp_file=""
trap '[[ -z "$tmp_file" ]] || rm -f -- "$tmp_file"' EXIT

say() { echo "bootstrap[$HOST_NAME]: $*"; }
changed() { changes=$((changes + 1)); say "changed: $*"; }
warn() { echo "bootstrap[$HOST_NAME]: WARNING: $*" >&2; }
die() { echo "bootstrap[$HOST_NAME]: ERROR: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- checks (nothing is changed before they all pass) ----------------------------------
check_driver() {
    local out n
    have nvidia-smi || die "nvidia-smi not found on host $HOST_NAME: install the NVIDIA driver" \
        "(Debian: apt-get install nvidia-driver; Ubuntu: ubuntu-drivers install), reboot, rerun"
    if ! out="$(nvidia-smi -L 2>&1)"; then
        die "'nvidia-smi -L' failed on host $HOST_NAME: the NVIDIA driver is not installed or not loaded;" \
            "install/repair the NVIDIA driver and reboot. nvidia-smi said: ${out:0:300}"
    fi
    n="$(printf '%s\n' "$out" | grep -cE '^GPU [0-9]+:' || true)"
    if (( n < GPU_COUNT )); then
        die "host $HOST_NAME: nvidia-smi -L lists $n GPU(s) but $GPU_KEY is $GPU_COUNT;" \
            "fix the driver (all GPUs visible in nvidia-smi) or the config"
    fi
    say "ok: NVIDIA driver, $n GPU(s) (need $GPU_COUNT)"
}

toolkit_ok() {
    local version runtimes
    if version="$(nvidia-ctk --version 2>/dev/null)"; then
        say "ok: NVIDIA Container Toolkit (${version%%$'\n'*})"
        return 0
    fi
    runtimes="$(docker info --format '{{json .Runtimes}}' 2>/dev/null || true)"
    if [[ "$runtimes" == *'"nvidia"'* ]]; then
        say "ok: docker has the nvidia runtime"
        return 0
    fi
    return 1
}

docker_problem=""
check_docker() {  # 0 when Docker and the NVIDIA Container Toolkit are usable; else sets docker_problem
    docker_problem=""
    if ! have docker; then
        docker_problem="docker is not installed"
    elif ! docker info >/dev/null 2>&1; then
        docker_problem="the docker daemon is not reachable (systemctl start docker)"
    elif ! toolkit_ok; then
        docker_problem="the NVIDIA Container Toolkit is missing (neither 'nvidia-ctk --version' works nor does 'docker info' list an nvidia runtime)"
    fi
    [[ -z "$docker_problem" ]]
}

# --- idempotent changes ----------------------------------------------------------------------
ensure_user() {
    local g groups=() missing=() args
    for g in "${GPU_GROUPS[@]}"; do
        if getent group "$g" >/dev/null; then groups+=("$g"); else missing+=("$g"); fi
    done
    if (( ${#missing[@]} )); then
        say "note: group(s) ${missing[*]} do not exist here; $VLLM_USER is not added to them"
    fi
    if ! getent passwd "$VLLM_USER" >/dev/null; then
        args=(--system --no-create-home --shell /usr/sbin/nologin)
        if getent group "$VLLM_USER" >/dev/null; then args+=(--gid "$VLLM_USER"); else args+=(--user-group); fi
        if (( ${#groups[@]} )); then args+=(--groups "$(IFS=,; echo "${groups[*]}")"); fi
        useradd "${args[@]}" "$VLLM_USER"
        changed "created system user $VLLM_USER (groups: ${groups[*]:-none})"
        return
    fi
    for g in "${groups[@]}"; do
        if ! id -nG "$VLLM_USER" | tr ' ' '\n' | grep -qxF "$g"; then
            usermod -aG "$g" "$VLLM_USER"
            changed "added $VLLM_USER to group $g"
        fi
    done
    say "ok: user $VLLM_USER"
}

ensure_dir() {  # path owner group mode
    local path=$1 owner=$2 group=$3 mode=$4 cur
    if [[ ! -d "$path" ]]; then
        install -d -o "$owner" -g "$group" -m "$mode" "$path"
        changed "created $path ($owner:$group $mode)"
        return
    fi
    cur="$(stat -c '%U:%G %a' "$path")"
    if [[ "$cur" != "$owner:$group $mode" ]]; then
        chown "$owner:$group" "$path"
        chmod "$mode" "$path"
        changed "fixed $path ($cur -> $owner:$group $mode)"
        return
    fi
    say "ok: $path ($cur)"
}

put_file() {  # path mode owner group content-function; sets put_changed
    local path=$1 mode=$2 owner=$3 group=$4 content=$5 dir
    put_changed=0
    if [[ -f "$path" && ! -L "$path" ]] && "$content" | cmp -s - "$path"; then
        if [[ "$(stat -c '%U:%G %a' "$path")" == "$owner:$group $mode" ]]; then
            say "ok: $path"
            return
        fi
    fi
    dir="$(dirname "$path")"
    [[ -d "$dir" ]] || install -d -m 755 "$dir"
    tmp_file="$(mktemp "$dir/.vllm-stack.XXXXXX")"
    "$content" >"$tmp_file"
    chown "$owner:$group" "$tmp_file"
    chmod "$mode" "$tmp_file"
    mv -f -- "$tmp_file" "$path"
    tmp_file=""
    put_changed=1
    changed "wrote $path ($owner:$group $mode)"
}

ensure_dcgm_container() {
    local cur want="$DCGM_IMAGE|$DCGM_FINGERPRINT|true"
    cur="$(docker inspect --format \
        '{{.Config.Image}}|{{index .Config.Labels "vllm-stack.dcgm"}}|{{.State.Running}}' \
        "$DCGM_NAME" 2>/dev/null || true)"
    if [[ "$cur" == "$want" ]]; then
        say "ok: container $DCGM_NAME runs $DCGM_IMAGE on $DCGM_PUBLISH"
        return
    fi
    if [[ -n "$cur" ]]; then
        docker rm -f "$DCGM_NAME" >/dev/null
    fi
    docker run -d --restart always --name "$DCGM_NAME" --label "vllm-stack.dcgm=$DCGM_FINGERPRINT" \
        --gpus all -p "$DCGM_PUBLISH" "$DCGM_IMAGE" >/dev/null \
        || die "could not start $DCGM_NAME ($DCGM_IMAGE) on host $HOST_NAME (see docker's error above)"
    changed "started container $DCGM_NAME ($DCGM_IMAGE on $DCGM_PUBLISH)"
}

ensure_dcgm_unit() {
    local unit
    unit="$(basename "$DCGM_UNIT")"
    if ! check_docker; then
        warn "GPU metrics: $docker_problem on host $HOST_NAME; the DCGM exporter ($DCGM_IMAGE) runs as a" \
            "container, so $unit is not installed and GPU alerts stay silent for this host"
        return
    fi
    put_file "$DCGM_UNIT" 644 root root dcgm_unit_content
    if (( put_changed )); then
        systemctl daemon-reload
        systemctl enable "$unit" >/dev/null 2>&1
        systemctl restart "$unit"
        changed "(re)started $unit"
        return
    fi
    if ! systemctl is-enabled --quiet "$unit"; then
        systemctl enable "$unit" >/dev/null 2>&1
        changed "enabled $unit"
    fi
    if ! systemctl is-active --quiet "$unit"; then
        systemctl start "$unit"
        changed "started $unit"
    fi
}

ensure_healer() {  # docker runtime: restart containers that stay unhealthy (render/healer.py)
    local reload=0
    put_file "$HEALER" 755 root root healer_content; (( put_changed )) && reload=1
    put_file "$HEALER_SERVICE" 644 root root healer_service_content; (( put_changed )) && reload=1
    put_file "$HEALER_TIMER" 644 root root healer_timer_content; (( put_changed )) && reload=1
    if ! have systemctl || [[ ! -d /run/systemd/system ]]; then
        warn "systemd is not running here: $(basename "$HEALER_TIMER") is installed but not started;" \
            "unhealthy vLLM containers on host $HOST_NAME are not restarted until it runs"
        return
    fi
    if (( reload )); then
        systemctl daemon-reload
    fi
    if ! systemctl is-enabled --quiet "$(basename "$HEALER_TIMER")" \
            || ! systemctl is-active --quiet "$(basename "$HEALER_TIMER")"; then
        systemctl enable --now "$(basename "$HEALER_TIMER")" >/dev/null 2>&1
        changed "enabled and started $(basename "$HEALER_TIMER")"
    fi
}

# --- main ----------------------------------------------------------------------------------
main() {
    [[ "$(id -u)" -eq 0 ]] || die "run as root (sudo)"
    check_driver
    if [[ "$RUNTIME" == docker ]]; then
        if ! check_docker; then
            die "host $HOST_NAME (hostRuntime docker): $docker_problem. Install Docker Engine and the NVIDIA" \
                "Container Toolkit (apt-get install nvidia-container-toolkit; nvidia-ctk runtime" \
                "configure --runtime=docker; systemctl restart docker), then rerun"
        fi
    else
        have curl || die "curl not found on host $HOST_NAME: the vLLM start wrappers poll /health with it" \
            "(apt-get install curl)"
        [[ -x "$VLLM_BIN" ]] || warn "vLLM is not installed at $VLLM_BIN yet; the vllm-* units cannot start until it is"
    fi

    ensure_user
    ensure_dir "$ETC_DIR" root "$VLLM_USER" "$DIR_MODE"
    ensure_dir "$WEIGHTS_DIR" "$VLLM_USER" "$VLLM_USER" "$DIR_MODE"
    put_file "$SECRET_WRITER" 755 root root secret_writer_content
    if [[ "$RUNTIME" == docker ]]; then
        ensure_dcgm_container
        ensure_healer
    else
        ensure_dcgm_unit
    fi

    if (( changes == 0 )); then
        say "nothing changed: host $HOST_NAME is already bootstrapped"
    else
        say "$changes change(s) applied"
    fi
}

# Last line: nothing runs before the whole script has arrived (`ssh HOST sudo bash -s < script`),
# and no command can swallow the rest of a script that bash is reading from stdin.
main "$@" </dev/null
"""


def render_bootstrap_script(
    cfg: StackConfig, host_name: str, *, dcgm_bind_address: str | None = None, docker_bin: str = D.DOCKER_BIN
) -> str:
    """bash bootstrap for `hosts[<host_name>]` (see module docstring).

    `dcgm_bind_address` overrides `dcgm_bind(cfg, host)`; `docker_bin` is the absolute docker
    path written into `dcgm-exporter.service` (systemd runtime only).
    """
    index = next((i for i, h in enumerate(cfg.hosts) if h.name == host_name), None)
    if index is None:
        raise RenderError(f"no host named {host_name!r} in `hosts`")
    host = cfg.hosts[index]
    return render_host_bootstrap(
        host,
        runtime=cfg.host_runtime,
        dcgm_bind_address=dcgm_bind_address or dcgm_bind(cfg, host),
        gpu_key=f"hosts[{index}].gpuCount",
        docker_bin=docker_bin,
        heal_after={m.name: m.unhealthy_restart_seconds for m in cfg.models},
    )


def render_host_bootstrap(
    host: HostSpec,
    *,
    runtime: str,
    dcgm_bind_address: str,
    gpu_key: str = "gpuCount",
    docker_bin: str = D.DOCKER_BIN,
    heal_after: Mapping[str, int] | None = None,
) -> str:
    """The bootstrap of one host without a stack config: `runtime` docker | systemd, DCGM's bind
    address, and `gpu_key`, the setting the GPU-count check names when the host has fewer GPUs.
    `heal_after` (docker runtime): model -> unhealthyRestartSeconds for the `vllm-heal` timer."""
    publish = _publish(dcgm_bind_address)
    fingerprint = hashlib.sha256(
        "\0".join([D.DCGM_EXPORTER_IMAGE, publish, "--gpus all", "--restart always"]).encode()
    ).hexdigest()[:16]
    header = [
        "#!/bin/bash",
        f"# vllm-stack bootstrap for host {host.name} ({host.address}): rendered, do not edit.",
        "# Run as root on the GPU host (e.g. `ssh HOST sudo bash -s < this-file`). Idempotent: a second",
        f'# run changes nothing and says "{NOTHING_CHANGED}". It never reads or writes a secret value.',
        "set -euo pipefail",
        "umask 022",
        "export LC_ALL=C",
        "",
        f"readonly HOST_NAME={_q(host.name)}",
        f"readonly GPU_COUNT={int(host.gpu_count)}",
        f"readonly GPU_KEY={_q(gpu_key)}",
        f"readonly RUNTIME={_q(runtime)}",
        f"readonly VLLM_USER={_q(D.VLLM_USER)}",
        "readonly -a GPU_GROUPS=(" + " ".join(_q(g) for g in D.HOST_GPU_GROUPS) + ")",
        f"readonly ETC_DIR={_q(D.VLLM_ETC_DIR)}",
        f"readonly WEIGHTS_DIR={_q(D.VLLM_WEIGHTS_DIR)}",
        f"readonly DIR_MODE={D.VLLM_DIR_MODE:o}",
        f"readonly SECRET_WRITER={_q(SECRET_WRITER_PATH)}",
        f"readonly VLLM_BIN={_q(D.VLLM_BIN)}",
        f"readonly DCGM_NAME={_q(D.DCGM_EXPORTER_CONTAINER)}",
        f"readonly DCGM_IMAGE={_q(D.DCGM_EXPORTER_IMAGE)}",
        f"readonly DCGM_PUBLISH={_q(publish)}",
        f"readonly DCGM_FINGERPRINT={_q(fingerprint)}",
        f"readonly DCGM_UNIT={_q(DCGM_UNIT_PATH)}",
        f"readonly HEALER={_q(H.HEALER_PATH)}",
        f"readonly HEALER_SERVICE={_q(H.HEALER_SERVICE_PATH)}",
        f"readonly HEALER_TIMER={_q(H.HEALER_TIMER_PATH)}",
        "",
    ]
    files = _heredoc_function("secret_writer_content", render_secret_writer_script())
    if runtime == "docker":
        files += _heredoc_function("healer_content", H.render_healer_script(heal_after or {}, docker_bin=docker_bin))
        files += _heredoc_function("healer_service_content", H.render_healer_service())
        files += _heredoc_function("healer_timer_content", H.render_healer_timer())
    if runtime == "systemd":
        files += _heredoc_function("dcgm_unit_content", S.render_dcgm_unit(publish=publish, docker_bin=docker_bin))
    return "\n".join(header) + "\n" + files + _BOOTSTRAP_BODY


# --- everything for one host ---------------------------------------------------------------


def render_host_files(
    cfg: StackConfig, host_name: str, placements: Mapping[str, Sequence[Replica]]
) -> dict[str, FileSpec]:
    """Files for `hosts[<host_name>]`, keyed by absolute path.

    Always: the bootstrap (root-only) and the secret writer (the bootstrap installs the same
    bytes, so whichever lands first the other is a no-op). hostRuntime `systemd`: one unit and
    one start wrapper per replica placed on the host. Secret env files are NOT here: they are
    written on the host by the secret writer from the deployer's stdin.
    """
    out: dict[str, FileSpec] = {}

    def add(spec: FileSpec) -> None:
        if spec.path in out:
            raise RenderError(f"two files for {spec.path} on host {host_name}")
        out[spec.path] = spec

    add(FileSpec(BOOTSTRAP_PATH, render_bootstrap_script(cfg, host_name), D.ROOT_EXECUTABLE_MODE))
    add(FileSpec(SECRET_WRITER_PATH, render_secret_writer_script(), D.EXECUTABLE_MODE))
    if cfg.host_runtime == "systemd":
        specs = {m.name: m for m in cfg.models}
        for model, replicas in placements.items():
            for r in replicas:
                if r.host != host_name:
                    continue
                spec = specs[model]
                add(FileSpec(S.unit_path(spec, r), S.render_systemd_unit(cfg, spec, r), D.UNIT_FILE_MODE))
                add(FileSpec(S.wrapper_path(spec, r), S.render_start_wrapper(cfg, spec, r), D.EXECUTABLE_MODE))
    return out
