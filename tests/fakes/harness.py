"""Start/stop the fake vLLM as a subprocess (through tests.support.procs.Proc) and talk to it.

with running_fake(tmp_path, "--max-num-seqs", "2", api_key="k") as fake:
    httpx.get(fake.url("/v1/models"), headers=fake.auth_headers())
    fake.stats()["by_path"]; fake.set_state(waiting_override=25); fake.metric("vllm:num_requests_waiting")
"""

from __future__ import annotations

import re
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from tests.support.procs import Proc, free_port, wait_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_counter = 0


@dataclass
class FakeHandle:
    proc: Proc
    port: int
    api_key: str | None
    model: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def stats(self) -> dict:
        r = httpx.get(self.url("/_fake/stats"), timeout=5)
        r.raise_for_status()
        return r.json()

    def set_state(self, **state) -> dict:
        r = httpx.post(self.url("/_fake/state"), json=state, timeout=5)
        r.raise_for_status()
        return r.json()

    def metrics_text(self) -> str:
        r = httpx.get(self.url("/metrics"), timeout=5)
        r.raise_for_status()
        return r.text

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics_text(), name, **labels)

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        return self.proc.stop(sig, timeout)


def start_fake(
    log_dir: Path,
    *args: str,
    api_key: str | None = None,
    model: str = "tiny",
    name: str | None = None,
    wait: bool = True,
    wait_timeout: float = 10.0,
    port: int | None = None,
) -> FakeHandle:
    """The fake on `port` (a free one by default); by default returns once it listens.

    With `wait=False` it returns at once (a backend still loading its model refuses
    connections on that port); if the wait fails, the fake is killed."""
    global _counter
    _counter += 1
    port = port or free_port()
    argv = [sys.executable, "-m", "tests.fakes.fake_vllm", "--port", str(port), "--served-model-name", model, *args]
    # Empty VLLM_API_KEY = auth off, even if the test runner's environment has one set.
    proc = Proc(
        name or f"fake_vllm_{port}_{_counter}",
        argv,
        Path(log_dir),
        env={"VLLM_API_KEY": api_key or ""},
        cwd=str(REPO_ROOT),
    )
    handle = FakeHandle(proc, port, api_key, model)
    if wait:
        try:
            wait_port(port, wait_timeout, proc=proc)
        except BaseException:
            proc.stop(signal.SIGKILL)
            raise
    return handle


@contextmanager
def running_fake(log_dir: Path, *args: str, **kwargs) -> Iterator[FakeHandle]:
    h = start_fake(log_dir, *args, **kwargs)
    try:
        yield h
    finally:
        h.stop()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparseable sample line: {line!r}")
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_value(text: str, name: str, **labels: str) -> float:
    """The single sample `name` whose labels include `labels`; KeyError if none, ValueError if ambiguous."""
    hits = [v for n, ls, v in parse_samples(text) if n == name and all(ls.get(k) == w for k, w in labels.items())]
    if not hits:
        raise KeyError(f"no sample {name}{labels}")
    if len(hits) > 1:
        raise ValueError(f"{len(hits)} samples match {name}{labels}")
    return hits[0]
