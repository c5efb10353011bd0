"""Shared e2e fixtures: a test CA and server certificate, fake vLLM backends, the rendered nginx front.

Everything binds 127.0.0.1 on free high ports. nginx runs in the foreground (`-g 'daemon off;'`)
under `Proc`, as root without a `user` directive (workers run as nobody), with every path under a
world-traversable temp dir; teardown sends QUIT to the pid in its pid file, then stops the Proc
(killing its process group), then stops every fake by pid.
"""
from __future__ import annotations

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
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.fakes.harness import FakeHandle, start_fake
from tests.support.procs import Proc, free_port, wait_port
from tests.support.tools import require
from vllm_stack import defaults as D
from vllm_stack.endpoints import Backend
from vllm_stack.loader import parse_config
from vllm_stack.render.drain import render_drain_script
from vllm_stack.render.nginx import (FrontListen, NginxPaths, render_api_keys_map, render_front,
                                     render_upstream_auth)

NGINX_START_TIMEOUT = 10.0
NGINX_QUIT_TIMEOUT = 5.0
FAKE_GRACE_SECONDS = "1"


def new_key(tag: str) -> str:
    """A bearer key in the token alphabet the front accepts, unique per run."""
    return f"sk-{tag}-{secrets.token_urlsafe(18)}"


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Pki:
    ca: Path        # CA certificate clients verify against
    cert: Path      # server certificate (SAN IP:127.0.0.1, DNS:localhost), signed by the CA
    key: Path


def make_pki(d: Path) -> Pki:
    """Test CA + server certificate with `openssl req -x509` / `openssl x509 -req`."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=30)

    run("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-days", "2",
        "-subj", "/CN=vllm-stack test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj", "/CN=localhost")
    (d / "server.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-out", str(d / "server.pem"), "-days", "2", "-extfile", str(d / "server.ext"))
    return Pki(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------- the front


@dataclass
class Front:
    root: Path
    paths: NginxPaths
    listen: FrontListen
    proc: Proc
    keys: list[str]
    backend_key: str | None
    fakes: dict[str, list[FakeHandle]]          # model -> its fake backends (not the dead ones)
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

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca))

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.keys[0]}"}

    def totals(self) -> dict[int, int]:
        """Backend port -> requests it has seen (control endpoints excluded)."""
        return {f.port: f.stats()["requests_total"] for fs in self.fakes.values() for f in fs
                if f.proc.popen.poll() is None}

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


def start_front(pki: Pki, models: dict[str, list[dict]], *, default: str | None = None, front: dict | None = None,
                upstream_auth: bool = True, n_keys: int = 3, fake_args: tuple[str, ...] = (),
                drain_seconds: int = D.DRAIN_SECONDS_MIN) -> Front:
    """Start fakes, render the front for them and start nginx.

    `models`: name -> backend specs, each {"capacity": ..., "state": ..., "dead": bool}; a dead
    backend gets a free port nobody listens on (connection refused).
    """
    require("nginx")
    root = Path(tempfile.mkdtemp(prefix="vllm-front-"))
    root.chmod(0o755)  # nginx workers run as nobody: they must reach temp/ under it
    started: list[FakeHandle] = []
    try:
        paths = NginxPaths.under(root, upstream_auth=upstream_auth)
        for d in ("logs", "temp", "upstreams", "tls"):
            (root / d).mkdir()
        keys = [new_key(f"front{i}") for i in range(n_keys)]
        backend_key = new_key("backend") if upstream_auth else None
        fakes: dict[str, list[FakeHandle]] = {}
        backends: list[Backend] = []
        for model, specs in models.items():
            fakes[model] = []
            for i, spec in enumerate(specs):
                if spec.get("dead"):
                    port = free_port()
                else:
                    h = start_fake(root / "logs", "--grace-seconds", FAKE_GRACE_SECONDS, *fake_args,
                                   *spec.get("args", ()), model=model,
                                   api_key=backend_key if upstream_auth else keys[0],
                                   name=f"fake_vllm_{model}_{i}")
                    started.append(h)
                    fakes[model].append(h)
                    port = h.port
                backends.append(Backend(model, "127.0.0.1", port, spec.get("capacity", "onDemand"),
                                        spec.get("state", "up")))
        specs = [{"name": m, "model": "mistralai/Mistral-7B-v0.3", "gpu": "L40S", "default": m == default}
                 for m in models]
        cfg = parse_config({"environment": "dev", "platform": "kubernetes", "models": specs, "front": front or {}})
        listen = FrontListen(bind="127.0.0.1", http_port=free_port(), https_port=free_port())
        files = render_front(cfg, backends, paths=paths, listen=listen, user=None)
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
        proc = Proc("nginx", [nginx, "-e", "stderr", "-p", f"{root}/", "-c", paths.conf, "-g", "daemon off;"],
                    root / "logs")
        fr = Front(root=root, paths=paths, listen=listen, proc=proc, keys=keys, backend_key=backend_key,
                   fakes=fakes, pki=pki, files=files, drain_script=drain)
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
    except BaseException:
        for h in started:
            h.stop()
        raise


@pytest.fixture
def front_factory(pki) -> Iterator[Callable[..., Front]]:
    """Function-scoped: every front started through it is stopped and its temp dir removed."""
    fronts: list[Front] = []

    def make(models: dict[str, list[dict]], **kw: Any) -> Front:
        fr = start_front(pki, models, **kw)
        fronts.append(fr)
        return fr

    yield make
    for fr in fronts:
        fr.stop()
        shutil.rmtree(fr.root, ignore_errors=True)
