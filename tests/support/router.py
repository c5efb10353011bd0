"""The pinned vllm-router for tests and `bench/`: its venv (`scripts/vllm_router_venv.sh`, cached
outside the repo) and a router process on 127.0.0.1 stopped by pid.

Missing venv: skip, or fail under CI=true (like every other tool, `tests/support/tools.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Sequence

from tests.support.procs import Proc, free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
VENV_SCRIPT = REPO / "scripts" / "vllm_router_venv.sh"
INSTALL_TIMEOUT_S = 10 * 60

_venv: Path | None = None
_error: str | None = None


def router_venv() -> Path:
    """The venv path (built on first use, ~10 s from PyPI; then well under a second)."""
    global _venv, _error
    if _venv is not None:
        return _venv
    if _error is None:
        try:
            r = subprocess.run(
                ["bash", str(VENV_SCRIPT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, cwd=REPO
            )
            if r.returncode == 0:
                _venv = Path(r.stdout.strip().splitlines()[-1])
                return _venv
            _error = r.stderr[-2000:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            _error = str(exc)
    import pytest

    msg = f"vllm-router unavailable ({VENV_SCRIPT.relative_to(REPO)} failed): {_error}"
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def router_bin() -> Path:
    return router_venv() / "bin" / "vllm-router"


class RouterProc:
    """A vllm-router on 127.0.0.1 with the given arguments (as `render.router.router_argv` renders them)."""

    def __init__(self, argv: Sequence[str], log_dir: Path, name: str = "vllm_router") -> None:
        self.argv = list(argv)
        self.port = int(self.argv[self.argv.index("--port") + 1])
        self.metrics_port = int(self.argv[self.argv.index("--prometheus-port") + 1])
        self.proc = Proc(name, [str(router_bin()), *self.argv], Path(log_dir), env={"RUST_LOG": "warn"})
        try:
            wait_port(self.port, 20, proc=self.proc)
            self.wait_workers(len(self._workers_in_argv()), timeout=30)
        except BaseException:
            self.proc.stop()
            raise

    def _workers_in_argv(self) -> list[str]:
        if "--worker-urls" not in self.argv:
            return []
        i = self.argv.index("--worker-urls") + 1
        out = []
        while i < len(self.argv) and not self.argv[i].startswith("--"):
            out.append(self.argv[i])
            i += 1
        return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/list_workers", timeout=5) as r:
            return list(json.load(r)["urls"])

    def wait_workers(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self.workers()) >= n:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"router has not {n} workers after {timeout}s:\n{self.proc.tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        self.proc.stop()


def router_ports() -> tuple[int, int]:
    return free_port(), free_port()


# --- nginx -> router -> backends, on loopback ------------------------------------------------


class RoutedFront:
    """The rendered front whose `routed` model goes through a real vllm-router to `backends`
    (any OpenAI-compatible servers on 127.0.0.1), plus `direct` models straight to their servers.
    `stop()` stops nginx (and the fakes it holds), then the router, by pid."""

    def __init__(self, front, router: RouterProc, workers: list[str]) -> None:
        self.front = front
        self.router = router
        self.workers = workers

    def stop(self) -> None:
        try:
            self.front.stop()
        finally:
            self.router.stop()


def start_routed_front(
    pki,
    *,
    routed: str,
    workers: Sequence[str],
    policy: str,
    keys: Sequence[str],
    backend_key: str | None,
    direct: dict[str, list] | None = None,
    fakes: dict | None = None,
    root: Path | None = None,
    front: dict | None = None,
) -> RoutedFront:
    """Render the router's argv for `workers` (`render.router.router_argv`), start it, then the front
    with the router as `routed`'s only upstream server (`Deployment.front_backends` on SSH hosts)."""
    from tests.support.front import front_root, launch_front
    from vllm_stack import defaults as D
    from vllm_stack.deployment import ROUTER_PREFIX, Router
    from vllm_stack.endpoints import Backend
    from vllm_stack.loader import parse_config
    from vllm_stack.render.router import router_argv

    models = [routed, *(direct or {})]
    specs = [{"name": m, "model": "mistralai/Mistral-7B-v0.3", "gpu": "L40S", "default": m == routed} for m in models]
    cfg = parse_config({"environment": "dev", "platform": "kubernetes", "models": specs, "front": front or {}})
    port, metrics = router_ports()
    r = Router(
        name=f"{ROUTER_PREFIX}{routed}",
        model=routed,
        policy=D.ROUTER_POLICIES[policy],
        bind=D.LOOPBACK,
        address=D.LOOPBACK,
        port=port,
        metrics_port=metrics,
        url=f"http://{D.LOOPBACK}:{port}",
        admin_url=f"http://{D.LOOPBACK}:{port}",
        workers=tuple(workers),
        selector=(),
    )
    root = front_root(root)
    router = RouterProc(router_argv(cfg, r), root / "logs")
    try:
        backends = [r.backend] + [b for bs in (direct or {}).values() for b in bs if isinstance(b, Backend)]
        front = launch_front(pki, cfg, backends, keys=keys, backend_key=backend_key, root=root, fakes=fakes)
    except BaseException:
        router.stop()
        raise
    return RoutedFront(front, router, list(workers))


def remove_worker(router: RouterProc, worker: str) -> int:
    """What the rendered drain hook does (`host_commands.router_drain_hook`), minus the sleep."""
    req = urllib.request.Request(f"{router.url}/remove_worker?url={worker}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status)
