#!/usr/bin/env bash
# Build (once) a venv with the pinned vLLM router (PyPI `vllm-router`, a Rust binary in a wheel),
# used by the routing tests and bench/routing.py.
#
#   scripts/vllm_router_venv.sh            # prints the venv path on its last stdout line
#
# The venv lives outside the repo, keyed by version:
#   ${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}/vllm-router-<version>   (~60 MB)
# A marker file is written only after the install and the smoke check succeeded; without it the
# venv is deleted and rebuilt. With it, the script only prints the path.
# The version must match vllm_stack.defaults.ROUTER_VERSION (tests/unit/test_routing.py checks it).
set -euo pipefail

VLLM_ROUTER_VERSION=0.1.17
RECIPE=1

CACHE="${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}"
VENV="$CACHE/vllm-router-$VLLM_ROUTER_VERSION"
MARKER="$VENV/.vllm-stack-ready"
LOG="$CACHE/vllm-router-$VLLM_ROUTER_VERSION-install.log"
LOCK="$CACHE/vllm-router-$VLLM_ROUTER_VERSION.lock"
PYTHON="${VLLM_STACK_PYTHON:-python3.11}"
EXPECTED_MARKER="vllm-router==$VLLM_ROUTER_VERSION recipe=$RECIPE"

ready() {
    [[ -f "$MARKER" && -x "$VENV/bin/vllm-router" ]] && [[ "$(cat "$MARKER")" == "$EXPECTED_MARKER" ]]
}

log() { printf '[vllm_router_venv] %s\n' "$*" >&2; }

die() {
    log "FAILED: $*"
    if [[ -f "$LOG" ]]; then
        log "last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
    fi
    exit 1
}

quiet() {
    printf '\n$ %s\n' "$*" >>"$LOG"
    "$@" >>"$LOG" 2>&1 || die "$* (exit $?)"
}

if ready; then
    echo "$VENV"
    exit 0
fi

mkdir -p "$CACHE"
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if ready; then
    echo "$VENV"
    exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
start=$SECONDS
: >"$LOG"
log "building $VENV (pip output in $LOG)"
rm -rf "$VENV"
quiet "$PYTHON" -m venv "$VENV"
quiet "$VENV/bin/python" -m pip --disable-pip-version-check --no-input install "vllm-router==$VLLM_ROUTER_VERSION"
# Smoke check: the CLI starts and knows the policies the stack renders.
quiet "$VENV/bin/vllm-router" --help
grep -q cache_aware "$LOG" || die "vllm-router --help does not list the cache_aware policy"
printf '%s\n' "$EXPECTED_MARKER" >"$MARKER"
log "ready in $((SECONDS - start)) s"
echo "$VENV"
