"""The rendered nginx front on loopback, for the e2e tier (fake backends) and the real-vLLM tier.

`launch_front(pki, cfg, backends, ...)` renders the front for the given backends into a
world-traversable temp dir (nginx workers run as nobody: they must reach temp/ under it),
writes the key map, the upstream auth file, the TLS files and the drain script, and starts
nginx in the foreground (`-g 'daemon off;'`) under `Proc` on 127.0.0.1 and free ports, as
root without a `user` directive. `Front.stop()` sends QUIT to the pid in its pid file, then
stops the Proc (killing its process group), then stops every fake it holds by pid.

Who starts the backends is the caller's business: `tests.e2e.conftest.start_front` starts fakes
(and hands them over, so the front stops them), `tests.real_vllm.conftest.start_real_front`
points the front at the shared real vLLM servers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import httpx

from tests.fakes.harness import FakeHandle
from tests.support.procs import Proc, free_port, wait_port
from tests.support.tools import require
from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend
from vllm_stack.render.drain import render_drain_script
from vllm_stack.render.nginx import FrontListen, NginxPaths, render_api_keys_map, render_front, render_upstream_auth

__all__ = [
    "NGINX_QUIT_TIMEOUT",
    "NGINX_START_TIMEOUT",
    "Front",
    "Pki",
    "front_root",
    "launch_front",
    "make_pki",
    "new_key",
]

NGINX_START_TIMEOUT = 10.0
NGINX_QUIT_TIMEOUT = 5.0
FRONT_DIRS = ("logs", "temp", "upstreams", "tls")


def new_key(tag: str) -> str:
    """A bearer key in the token alphabet the front accepts, unique per run."""
    return f"sk-{tag}-{secrets.token_urlsafe(18)}"


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Pki:
    ca: Path  # CA certificate clients verify against
    cert: Path  # server certificate (SAN IP:127.0.0.1, DNS:localhost), signed by the CA
    key: Path


def make_pki(d: Path, *, days: int = 2) -> Pki:
    """Test CA + server certificate with `openssl req -x509` / `openssl x509 -req`, valid `days`."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=30)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
        "-days",
        str(days),
        "-subj",
        "/CN=vllm-stack test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj", "/CN=localhost")
    (d / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        str(d / "server.csr"),
        "-CA",
        str(d / "ca.pem"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-out",
        str(d / "server.pem"),
        "-days",
        str(days),
        "-extfile",
        str(d / "server.ext"),
    )
    return Pki(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key")


# --------------------------------------------------------------------------- the front


@dataclass
class Front:
    root: Path
    paths: NginxPaths
    listen: FrontListen
    proc: Proc
    keys: list[str]
    backend_key: str | None
    fakes: dict[str, list[FakeHandle]]  # model -> its fake backends (not the dead ones)
    pki: Pki
    files: dict[str, str] = field(default_factory=dict)
    drain_script: Path | None = None

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.listen.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.listen.http_port}"

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(verify=self.ssl_context(), timeout=kw.pop("timeout", 30.0), **kw)

    async def load(self, model: str, **kw: Any):
        """`bench.loadgen.run_load` through this front for `model`, with its first key and test CA."""
        from bench.loadgen import run_load

        return await run_load(
            f"{self.https}/{model}/v1", api_key=self.keys[0], model=model, ca_path=str(self.pki.ca), **kw
        )

    async def start_drain(self, model: str, target: str, seconds: int, stop_cmd: str) -> "asyncio.subprocess.Process":
        """Run the rendered drain script on `target` (host:port) with STOP_CMD, output piped."""
        return await asyncio.create_subprocess_exec(
            "sh",
            str(self.drain_script),
            model,
            target,
            str(seconds),
            env={**os.environ, "STOP_CMD": stop_cmd},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca))

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.keys[0]}"}

    def totals(self) -> dict[int, int]:
        """Backend port -> requests it has seen (control endpoints excluded)."""
        return {
            f.port: f.stats()["requests_total"] for fs in self.fakes.values() for f in fs if f.proc.popen.poll() is None
        }

    def logs(self) -> str:
        parts = []
        for p in (self.paths.access_log, self.paths.error_log, self.proc.log_path):
            try:
                parts.append(Path(p).read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def error_log(self) -> str:
        try:
            return Path(self.paths.error_log).read_text(errors="replace")
        except OSError:
            return ""

    def nginx_pid(self) -> int | None:
        try:
            return int(Path(self.paths.pid).read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.nginx_pid()
        if pid is not None and self.proc.popen.poll() is None:
            try:
                os.kill(pid, signal.SIGQUIT)
                self.proc.popen.wait(timeout=NGINX_QUIT_TIMEOUT)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.proc.stop()
        for fs in self.fakes.values():
            for f in fs:
                f.stop()


def front_root(root: Path | None = None, *, prefix: str = "vllm-front-") -> Path:
    """The front's directory (a new temp dir unless `root` is given), world-traversable, with
    the subdirectories the rendered paths use. Idempotent: callers that need logs/ before the
    front starts (for the fakes' logs) call it first and pass the result to `launch_front`."""
    root = Path(root or tempfile.mkdtemp(prefix=prefix))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # nginx workers run as nobody: they must reach temp/ under it
    for d in FRONT_DIRS:
        (root / d).mkdir(exist_ok=True)
    return root


def launch_front(
    pki: Pki,
    cfg,
    backends: Sequence[Backend],
    *,
    keys: Sequence[str],
    backend_key: str | None,
    root: Path | None = None,
    drain_seconds: int = D.DRAIN_SECONDS_MIN,
    fakes: dict[str, list[FakeHandle]] | None = None,
    prefix: str = "vllm-front-",
) -> Front:
    """Render the front of `cfg` for `backends` (TLS, key map, upstream auth when `backend_key`
    is set, drain script) under `root` (see `front_root`) and start nginx; returns once both
    ports listen and the pid file is written. `fakes` are handed to the `Front`, which stops
    them with itself (also when nginx fails to start)."""
    require("nginx")
    root = front_root(root, prefix=prefix)
    keys = list(keys)
    paths = NginxPaths.under(root, upstream_auth=backend_key is not None)
    listen = FrontListen(bind="127.0.0.1", http_port=free_port(), https_port=free_port(), status_port=free_port())
    files = render_front(cfg, list(backends), paths=paths, listen=listen, user=None)
    for name, text in files.items():
        (root / name).write_text(text)
    Path(paths.api_keys).write_text(render_api_keys_map(keys))
    os.chmod(paths.api_keys, D.SECRET_FILE_MODE)
    if backend_key:
        Path(paths.upstream_auth).write_text(render_upstream_auth(backend_key))
        os.chmod(paths.upstream_auth, D.SECRET_FILE_MODE)
    shutil.copy(pki.cert, paths.cert)
    shutil.copy(pki.key, paths.key)
    os.chmod(paths.key, D.SECRET_FILE_MODE)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    drain = root / "vllm-drain"
    drain.write_text(render_drain_script(paths, nginx_cmd=(nginx, "-e", "stderr"), drain_seconds=drain_seconds))
    drain.chmod(0o755)
    proc = Proc(
        "nginx", [nginx, "-e", "stderr", "-p", f"{root}/", "-c", paths.conf, "-g", "daemon off;"], root / "logs"
    )
    fr = Front(
        root=root,
        paths=paths,
        listen=listen,
        proc=proc,
        keys=keys,
        backend_key=backend_key,
        fakes=fakes if fakes is not None else {},
        pki=pki,
        files=files,
        drain_script=drain,
    )
    try:
        wait_port(listen.https_port, NGINX_START_TIMEOUT, proc=proc)
        wait_port(listen.http_port, NGINX_START_TIMEOUT, proc=proc)
        deadline = time.monotonic() + NGINX_START_TIMEOUT
        while fr.nginx_pid() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException:
        fr.stop()
        raise
    return fr
