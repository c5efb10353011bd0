"""Debian's Prometheus on loopback, for the monitoring tests (fake vLLM in tests/e2e, real vLLM
in tests/real_vllm).

`start_prometheus(root, config_text, rules)` writes prometheus.yml and the rule files into
`root`, checks them with `promtool check config`, starts `prometheus` on 127.0.0.1:<free port>
under `Proc` (TSDB and log under `root`) and returns once /-/ready answers 200. Stop it with
`Prometheus.stop()` (SIGTERM, then the process group).
"""

from __future__ import annotations

import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import httpx

from tests.support import tools
from tests.support.procs import Proc, free_port, wait_port

__all__ = ["READY_TIMEOUT", "Prometheus", "start_prometheus"]

READY_TIMEOUT = 20.0


@dataclass
class Prometheus:
    proc: Proc
    port: int
    root: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector (asserts the query succeeded)."""
        r = httpx.get(self.url("/api/v1/query"), params={"query": expr}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body.get("status") == "success", (expr, r.status_code, r.text[:500])
        return body["data"]["result"]

    def up(self, job: str) -> dict[str, float]:
        """instance -> value of `up` for every target of `job`."""
        return {s["metric"]["instance"]: float(s["value"][1]) for s in self.query(f'up{{job="{job}"}}')}

    def alerts(self) -> list[dict]:
        r = httpx.get(self.url("/api/v1/alerts"), timeout=10)
        r.raise_for_status()
        return r.json()["data"]["alerts"]

    def stop(self) -> None:
        self.proc.stop(signal.SIGTERM, timeout=10)


def start_prometheus(root: Path, config_text: str, rules: Mapping[str, str]) -> Prometheus:
    """Prometheus on 127.0.0.1:<free port> with the given prometheus.yml text and rule files
    (file name -> text, written next to it: the config names them relative to `root`)."""
    tools.require("promtool")
    tools.require("prometheus")
    root.mkdir(parents=True, exist_ok=True)
    for name, text in rules.items():
        (root / name).write_text(text)
    conf = root / "prometheus.yml"
    conf.write_text(config_text)
    checked = tools.promtool_check_config(conf)
    assert checked.ok, str(checked)
    port = free_port()
    prom = shutil.which("prometheus") or "/usr/bin/prometheus"
    proc = Proc(
        "prometheus",
        [
            prom,
            f"--config.file={conf}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        root,
        cwd=root,
    )
    p = Prometheus(proc, port, root)
    try:
        wait_port(port, READY_TIMEOUT, proc=proc)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(p.url("/-/ready"), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise TimeoutError(f"prometheus not ready within {READY_TIMEOUT}s:\n{proc.tail()}")
    except BaseException:
        p.stop()
        raise
    return p
