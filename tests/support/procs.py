"""Background processes for loopback tests: own process group, bounded waits, stopped by pid.

Every test that starts a server goes through `Proc` so teardown can never leave a
listener behind (CI runs on a shared machine).
"""

from __future__ import annotations

import os
import signal as signals
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Callable, Mapping, Sequence


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, host: str = "127.0.0.1", proc: "Proc | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode} before listening on {port}:\n{proc.tail()}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s" + (f"\n{proc.tail()}" if proc else ""))


def poll(cond: Callable[[], object], timeout: float, what: str, log: Callable[[], str], interval: float = 0.1) -> float:
    """Seconds until `cond()` is truthy (an HTTP error counts as not yet); fails the test with
    `log()` after `timeout`."""
    import httpx
    import pytest

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if cond():
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{log()}")


class Proc:
    """A child started in its own session; output goes to a log file we can tail on failure."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
    ):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, sig: int = signals.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the process, wait, then kill its whole group: nothing outlives the test."""
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, sig)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.popen.pid, signals.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        return self.popen.returncode
