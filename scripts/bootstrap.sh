#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine. Idempotent; fast when warm.
#   scripts/bootstrap.sh venv    -> .venv from requirements-dev.lock (plan + tests; hashed pins, `make lock`)
#   scripts/bootstrap.sh tools   -> Debian tools (nginx, prometheus/promtool, nginx and blackbox
#                                   exporters, shellcheck, debootstrap, systemd-nspawn) + npm tools
#                                   + the cached nspawn root of tests/systemd
# Under CI=true anything missing afterwards is an error, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
APT_PACKAGES=(nginx prometheus prometheus-alertmanager prometheus-nginx-exporter prometheus-blackbox-exporter shellcheck debootstrap systemd systemd-container openssl curl)
APT_BINARIES=(nginx promtool prometheus amtool prometheus-alertmanager prometheus-nginx-exporter prometheus-blackbox-exporter shellcheck debootstrap systemd-analyze systemd-nspawn openssl curl)

venv() {
  local stamp=.venv/.requirements.sha256
  local want
  want=$(cat requirements.txt requirements-dev.txt requirements.lock requirements-dev.lock | sha256sum | cut -d' ' -f1)
  if [[ -x .venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  "$PY" -m venv .venv
  # Every package, transitive ones included, at the locked version and checked against its hashes.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
  echo "$want" > "$stamp"
}

missing_binaries() {
  local b missing=()
  for b in "${APT_BINARIES[@]}"; do
    command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || missing+=("$b")
  done
  echo "${missing[@]}"
}

tools() {
  local missing
  missing=$(missing_binaries)
  if [[ -n $missing ]]; then
    local sudo=()
    if [[ $(id -u) -ne 0 ]] && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)   # e.g. a GitHub runner: not root, passwordless sudo
    fi
    if [[ $(id -u) -eq 0 || ${#sudo[@]} -gt 0 ]]; then
      echo "installing Debian packages for: $missing" >&2
      "${sudo[@]}" apt-get update -qq
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${APT_PACKAGES[@]}" >/dev/null
      # Debian starts services on install where it can; the tests start their own instances.
      "${sudo[@]}" pkill -x nginx 2>/dev/null || true
      "${sudo[@]}" pkill -x prometheus 2>/dev/null || true
      "${sudo[@]}" pkill -x prometheus-nginx-exporter 2>/dev/null || true
      "${sudo[@]}" pkill -x prometheus-blackbox-exporter 2>/dev/null || true
    else
      echo "not root: install these Debian packages yourself: ${APT_PACKAGES[*]}" >&2
    fi
  fi
  missing=$(missing_binaries)
  if [[ -n $missing && ${CI:-} == "true" ]]; then
    echo "error: missing tools under CI: $missing" >&2
    exit 1
  fi
  # The bootable Debian root tests/systemd runs the rendered units in (built once, cached
  # outside the repo; a second call only checks its stamp). Needs root, like debootstrap.
  if [[ $(id -u) -eq 0 ]]; then
    bash scripts/systemd_rootfs.sh ensure >/dev/null
  elif [[ ${CI:-} == "true" ]]; then
    echo "error: tests/systemd needs root (systemd-nspawn) under CI" >&2
    exit 1
  fi
  local lock_sum
  lock_sum=$(sha256sum tools/package-lock.json | cut -d' ' -f1)
  if [[ ! -f tools/node_modules/.lock.sha256 || "$(cat tools/node_modules/.lock.sha256)" != "$lock_sum" ]]; then
    npm ci --prefix tools --no-audit --no-fund --loglevel=error >/dev/null
    echo "$lock_sum" > tools/node_modules/.lock.sha256
  fi
}

case "${1:-all}" in
  venv) venv ;;
  tools) tools ;;
  all) venv; tools ;;
  *) echo "usage: $0 [venv|tools|all]" >&2; exit 2 ;;
esac
