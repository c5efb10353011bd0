"""A booted Debian systemd in a systemd-nspawn container, for running the rendered units.

`Container.boot(work, binds)` mounts a throwaway overlay of the cached root
(`scripts/systemd_rootfs.sh`), boots it with `systemd-nspawn --boot --private-network` (its own
loopback: the rendered ports never collide with anything on the host), and finds the container's
systemd (the child whose cmdline is /usr/lib/systemd/systemd). `run(...)` executes a command in
it with `nsenter -t PID -a`. `shutdown()` powers it off, then stops the nspawn process by pid
(SIGTERM: nspawn shuts the container down; then SIGKILL to its process group), and releases the
overlay. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

import pytest

from tests.support.procs import Proc

REPO = Path(__file__).resolve().parents[2]
ROOTFS_SCRIPT = REPO / "scripts" / "systemd_rootfs.sh"
BOOT_TIMEOUT = 60.0
SYSTEMD_CMDLINE = b"/usr/lib/systemd/systemd"


def prerequisites() -> str | None:
    """Why the tier cannot run here, or None."""
    if os.geteuid() != 0:
        return "tests/systemd needs root (systemd-nspawn, overlay mounts)"
    for tool in ("systemd-nspawn", "nsenter", "debootstrap"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is missing (make tools: apt-get install systemd-container debootstrap)"
    return None


def require_prerequisites() -> None:
    """Skip when the machine cannot boot a container; under CI=true fail instead."""
    reason = prerequisites()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required for tests/systemd in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


class Container:
    def __init__(self, work: Path, proc: Proc, pid: int):
        self.work = work
        self.root = work / "root"
        self.proc = proc
        self.pid = pid

    @classmethod
    def boot(cls, work: Path, binds_ro: Sequence[tuple[str, str]] = (), name: str = "vllmstack") -> "Container":
        work.mkdir(parents=True, exist_ok=True)
        ovl = work / "ovl"
        r = subprocess.run(["bash", str(ROOTFS_SCRIPT), "mount", str(ovl)], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"systemd_rootfs.sh mount failed:\n{r.stderr}")
        root = Path(r.stdout.strip().splitlines()[-1])
        argv = [
            "systemd-nspawn",
            "-D",
            str(root),
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            f"--machine={name}",
            *[f"--bind-ro={src}:{dst}" for src, dst in binds_ro],
        ]
        proc = Proc("nspawn", argv, work)
        try:
            deadline = time.monotonic() + BOOT_TIMEOUT
            pid = None
            while time.monotonic() < deadline and pid is None:
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"systemd-nspawn exited {proc.popen.returncode}:\n{proc.tail(40)}")
                for c in _children(proc.pid):
                    try:
                        if Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")[0] == SYSTEMD_CMDLINE:
                            pid = c
                    except OSError:
                        pass
                time.sleep(0.1)
            if pid is None:
                raise TimeoutError(f"no systemd in the container after {BOOT_TIMEOUT}s:\n{proc.tail(40)}")
            c = cls(work, proc, pid)
            c.root = root
            while time.monotonic() < deadline:
                state = c.run(["systemctl", "is-system-running"], check=False, timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    return c
                time.sleep(0.2)
            raise TimeoutError(f"container systemd not up after {BOOT_TIMEOUT}s (state {state!r})")
        except BaseException:
            proc.stop(timeout=20)
            subprocess.run(["bash", str(ROOTFS_SCRIPT), "release", str(ovl)], capture_output=True, timeout=120)
            raise

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess:
        r = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def put(self, path: str, content: str, mode: int) -> None:
        """Write a file into the container's root (through the overlay, as root)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, "-p", ",".join(props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def http_code(self, url: str, timeout: float = 2) -> str:
        r = self.run(
            [
                "curl",
                "--silent",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
                "--max-time",
                str(timeout),
                url,
            ],
            check=False,
            timeout=timeout + 10,
        )
        return r.stdout.strip()

    def wait(self, pred: Callable[[], bool], timeout: float, what: str, unit: str) -> float:
        """Poll `pred` until true; returns the seconds waited, else fails with `unit`'s journal."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return time.monotonic() - t0
            time.sleep(0.2)
        raise AssertionError(f"{what} not within {timeout}s:\n{self.journal(unit)}")

    def exposure(self, unit: str) -> tuple[float, str]:
        """`systemd-analyze security UNIT`'s overall exposure level and its word (OK, MEDIUM, EXPOSED...)."""
        out = self.run(["systemd-analyze", "security", unit], check=False).stdout
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", out)
        assert m, out
        return float(m.group(1)), m.group(2)

    def journal(self, unit: str, lines: int = 80) -> str:
        return self.run(["journalctl", "-u", unit, "--no-pager", "-n", str(lines)], check=False).stdout

    def shutdown(self) -> None:
        try:
            self.run(["systemctl", "poweroff"], check=False, timeout=15)
        except (subprocess.TimeoutExpired, OSError):
            pass
        try:
            self.proc.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.proc.stop(timeout=20)
        subprocess.run(
            ["bash", str(ROOTFS_SCRIPT), "release", str(self.work / "ovl")], capture_output=True, timeout=120
        )
