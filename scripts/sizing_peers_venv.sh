#!/usr/bin/env bash
# Build (once) the venv of the sizing peers that bench/sizing_peers.py runs side by side with ours:
# llm-d's capacity planner (PyPI llm-d-planner, with its [estimation] extra: transformers for the model
# config) and vllm-wizard. Both are pinned; neither is a dependency of vllm-stack itself.
#
#   scripts/sizing_peers_venv.sh        # prints the venv path on its last stdout line
#
# Lives outside the repo: ${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}/sizing-peers-1 (~200 MB).
# A marker is written only after the install and an import check; without it the venv is rebuilt.
set -euo pipefail

PLANNER_VERSION=0.3.3
WIZARD_VERSION=0.2.0
RECIPE=1

CACHE="${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}"
VENV="$CACHE/sizing-peers-$RECIPE"
MARKER="$VENV/.vllm-stack-ready"
LOG="$CACHE/sizing-peers-$RECIPE-install.log"
LOCK="$CACHE/sizing-peers-$RECIPE.lock"
PYTHON="${VLLM_STACK_PYTHON:-python3.11}"
EXPECTED_MARKER="llm-d-planner==$PLANNER_VERSION vllm-wizard==$WIZARD_VERSION recipe=$RECIPE"

ready() { [[ -f "$MARKER" && -x "$VENV/bin/python" && "$(cat "$MARKER")" == "$EXPECTED_MARKER" ]]; }
log() { printf '[sizing_peers_venv] %s\n' "$*" >&2; }
die() {
    log "FAILED: $*"
    [[ -f "$LOG" ]] && tail -n 30 "$LOG" >&2
    exit 1
}

if ready; then
    echo "$VENV"
    exit 0
fi
mkdir -p "$CACHE"
exec 9>"$LOCK"
command -v flock >/dev/null 2>&1 && flock 9
if ready; then
    echo "$VENV"
    exit 0
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set VLLM_STACK_PYTHON)"
: >"$LOG"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >>"$LOG" 2>&1 || die "venv"
"$VENV/bin/python" -m pip --disable-pip-version-check --no-input install \
    "llm-d-planner[estimation]==$PLANNER_VERSION" "vllm-wizard==$WIZARD_VERSION" >>"$LOG" 2>&1 || die "pip install"
"$VENV/bin/python" -c 'import planner.capacity_planner, vllm_wizard.planning.memory, transformers' >>"$LOG" 2>&1 ||
    die "import check"
printf '%s\n' "$EXPECTED_MARKER" >"$MARKER"
echo "$VENV"
