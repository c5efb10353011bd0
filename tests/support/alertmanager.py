"""Debian's Alertmanager on loopback and a webhook receiver that records what it is sent.

`start_alertmanager(root, config_text)` writes alertmanager.yml into `root`, checks it with
`amtool check-config`, starts `alertmanager` on 127.0.0.1:<free port> (HA gossip off, storage
under `root`) under `Proc` and returns once /-/ready answers 200. `Webhook` is an HTTP server in
a thread of the test process on 127.0.0.1:<free port>; `close()` stops it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.support import tools
from tests.support.procs import Proc, free_port, wait_port
from vllm_stack.render import alertmanager as AM

__all__ = ["Alertmanager", "Webhook", "start_alertmanager"]

READY_TIMEOUT = 20.0


@dataclass
class Alertmanager:
    proc: Proc
    port: int
    root: Path

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.hostport}{path}"

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        r = httpx.post(self.url("/api/v2/alerts"), json=alerts, timeout=5)
        assert r.status_code == 200, r.text

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        r = httpx.get(self.url("/api/v2/alerts"), params=params, timeout=5)
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out

    def stop(self) -> None:
        self.proc.stop(signal.SIGTERM, timeout=10)


def start_alertmanager(root: Path, config_text: str) -> Alertmanager:
    tools.require("amtool")
    tools.require("alertmanager")
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "alertmanager.yml"
    conf.write_text(config_text)
    conf.chmod(0o600)
    checked = tools.amtool_check_config(conf)
    assert checked.ok, str(checked)
    port = free_port()
    binary = tools.alertmanager_binary() or "prometheus-alertmanager"
    argv = [binary, *AM.command(str(conf), str(root / "am-data"), f"127.0.0.1:{port}"), "--log.level=warn"]
    proc = Proc("alertmanager", argv, root, cwd=root)
    am = Alertmanager(proc, port, root)
    try:
        wait_port(port, READY_TIMEOUT, proc=proc)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(am.url("/-/ready"), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise TimeoutError(f"alertmanager not ready within {READY_TIMEOUT}s:\n{proc.tail()}")
    except BaseException:
        am.stop()
        raise
    return am


@dataclass
class Webhook:
    """Records every notification (monotonic receive time, parsed body)."""

    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def notifications(self, alertname: str, status: str) -> list[tuple[float, dict[str, Any]]]:
        """(time, alert) for every alert of that name and status in the received notifications."""
        return [
            (t, a)
            for t, body in list(self.received)
            for a in body.get("alerts", [])
            if a["labels"].get("alertname") == alertname and a["status"] == status
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
