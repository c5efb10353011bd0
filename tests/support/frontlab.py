"""Small public helpers around the e2e front fixtures, for the reliability tests and `bench/`.

The front itself is started by `tests.e2e.conftest.start_front` (fakes behind
`tests.support.front.launch_front`; re-exported here with `make_pki`, `Front`, `Pki`): these
helpers only add what those modules keep private or do not offer:

* `lab_front(...)`: a context manager for code outside pytest (the benchmarks): its own test
  CA in a temp dir, the front, and a teardown that stops nginx and every fake by pid;
* `start_fake_at(port, ...)`: a fake vLLM on a port chosen by the caller, without waiting for
  it to listen (a backend still loading its model refuses connections on that port);
* `reload_front` / `rewrite_upstream`: graceful nginx reload (SIGHUP to the master from the
  pid file), bounded wait until every worker has been replaced;
* `access_log` / `error_lines`: the front's JSON access log and its error-log lines about one
  backend.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from tests.e2e.conftest import start_front
from tests.fakes.harness import FakeHandle, start_fake
from tests.support.front import Front, Pki, make_pki, new_key

__all__ = [
    "NO_RATE_LIMIT",
    "Front",
    "Pki",
    "access_log",
    "error_lines",
    "lab_front",
    "make_pki",
    "new_key",
    "nginx_workers",
    "reload_front",
    "rewrite_upstream",
    "start_fake_at",
    "start_front",
]

#: Per-key rate limit for load runs: high enough that the limiter never answers 429 (what is
#: measured is proxying, not the limiter; the limiter has its own e2e test).
NO_RATE_LIMIT = {"rateLimitRps": 100_000, "rateLimitBurst": 100_000}


@contextmanager
def lab_front(models: dict[str, list[dict]], **kw) -> Iterator[Front]:
    """`start_front` with a throw-away CA, for use outside pytest; everything stopped on exit."""
    pki_dir = Path(tempfile.mkdtemp(prefix="vllm-lab-pki-"))
    fr = None
    try:
        fr = start_front(make_pki(pki_dir), models, **kw)
        yield fr
    finally:
        if fr is not None:
            fr.stop()
            shutil.rmtree(fr.root, ignore_errors=True)
        shutil.rmtree(pki_dir, ignore_errors=True)


def start_fake_at(
    log_dir: Path,
    port: int,
    *args: str,
    api_key: str | None = None,
    model: str = "tiny",
    name: str | None = None,
    wait: bool = False,
    wait_timeout: float = 10.0,
) -> FakeHandle:
    """`tests.fakes.harness.start_fake` on `port` and by default without waiting."""
    return start_fake(
        log_dir,
        *args,
        api_key=api_key,
        model=model,
        name=name or f"fake_vllm_at_{port}",
        wait=wait,
        wait_timeout=wait_timeout,
        port=port,
    )


def nginx_workers(master_pid: int) -> set[int]:
    """Pids of the master's children (its worker processes), from /proc."""
    out: set[int] = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        if len(fields) > 1 and int(fields[1]) == master_pid:
            out.add(int(d))
    return out


def reload_front(fr: Front, timeout: float = 10.0) -> None:
    """Graceful reload (what `nginx -s reload` does); returns once no old worker is left."""
    master = fr.nginx_pid()
    if master is None:
        raise RuntimeError("nginx has no pid file")
    old = nginx_workers(master)
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = nginx_workers(master)
        if now and not (now & old):
            return
        if fr.proc.popen.poll() is not None:
            raise RuntimeError(f"nginx exited during reload:\n{fr.error_log()[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"nginx workers not replaced within {timeout}s:\n{fr.error_log()[-2000:]}")


def rewrite_upstream(fr: Front, model: str, transform: Callable[[str], str], timeout: float = 10.0) -> str:
    """Apply `transform` to `upstreams/<model>.conf`, reload nginx, return the new text."""
    path = Path(fr.paths.upstream_file(model))
    text = transform(path.read_text())
    path.write_text(text)
    reload_front(fr, timeout)
    return text


def access_log(fr: Front) -> list[dict]:
    """The front's access log (one JSON object per line, `log_format vllm_front`)."""
    try:
        lines = Path(fr.paths.access_log).read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [json.loads(ln) for ln in lines if ln.strip()]


def error_lines(fr: Front, port: int, *needles: str) -> list[str]:
    """Error-log lines that name backend 127.0.0.1:`port` (and contain any of `needles`, if given)."""
    target = f"127.0.0.1:{port}"
    return [ln for ln in fr.error_log().splitlines() if target in ln and (not needles or any(n in ln for n in needles))]
