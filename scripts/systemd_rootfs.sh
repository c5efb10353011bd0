#!/bin/bash
# A cached Debian root that boots under systemd-nspawn, for tests/systemd/ (the rendered units
# under a real systemd; shared/notes/real-systemd.md).
#
#   scripts/systemd_rootfs.sh ensure        build once; print the cached root's path
#   scripts/systemd_rootfs.sh mount WORK    a throwaway overlay (or copy) of it at WORK/root
#   scripts/systemd_rootfs.sh release WORK  unmount and delete WORK
#
# Same machinery as scripts/test_chroot.sh (built in a temp sibling, renamed into place when
# complete, under a lock; tests never write into the cache), with systemd, systemd-sysv, dbus,
# curl, python3 and libnuma1 added: ${VLLM_STACK_CACHE:-$HOME/.cache/vllm-stack}/chroot-bookworm-systemd-r2.
# Needs root, debootstrap and (to boot it) systemd-nspawn from the systemd-container package.
set -euo pipefail
VLLM_STACK_CHROOT_FLAVOR=systemd exec "$(dirname "$0")/test_chroot.sh" "$@"
