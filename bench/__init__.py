"""Benchmarks of the stack on loopback (`make bench` → `python -m bench.run_all`).

Each benchmark module (front_overhead, balancing, drain, plan_scaling) has a `run()` that
measures its variants side by side in one run and returns a `BenchResult`; `run_all`
writes `bench/results/<name>.json` and prints the markdown tables. `loadgen` is the
bounded load client they all use. The pure helpers below (ratios, verdicts, markdown)
are unit-tested in tests/unit/test_bench_smoke.py.

Two artifacts of the test tools would distort streaming measurements; the benchmarks that
stream work around them here, in the open (see bench/README.md):
  * the fake vLLM's sockets lack TCP_NODELAY (its listening socket is created without
    IPPROTO_TCP, so asyncio skips it), unlike uvicorn's: Nagle holds its first SSE chunks
    until the peer's delayed ACK (~40 ms) on kept-alive connections. `serve_nodelay_fake`
    runs the same fake with TCP_NODELAY (`python -m bench.front_overhead fake-nodelay ...`),
    `start_nodelay_fakes` puts it behind a front;
  * `bench.loadgen` stops reading a stream at `[DONE]`, before the terminating chunk, so
    httpx closes the connection and each streaming request pays a new (TLS) connection.
    `ReadToEndTransport` reads the rest of an already complete body on close, as SDK
    clients do, so connections are reused.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Sequence

import httpx

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PASS, MISS, INFO = "pass", "MISS", "-"


@dataclass
class BenchResult:
    name: str
    title: str
    table: str                      # markdown, ready to paste
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = [f"### {self.title}", "", self.table]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "machine": machine(), "table_md": self.table,
                "notes": self.notes, **self.data}


@dataclass
class Pooled:
    """Records of several load runs (one arm, one policy...), pooled."""
    successes: int
    failures: int
    wall_s: float
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    latency_p99: float | None = None
    latency_mean: float | None = None

    @property
    def throughput_rps(self) -> float | None:
        return self.successes / self.wall_s if self.wall_s > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "throughput_rps": self.throughput_rps}


def pool(results: Iterable[Any]) -> Pooled:
    """Pool `bench.loadgen.LoadResult`s: percentiles over all successful records, throughput over summed wall time."""
    from bench.loadgen import percentile

    results = list(results)
    ok = [r for res in results for r in res.records if r.ok]
    lat = [r.latency_s for r in ok if r.latency_s is not None]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    return Pooled(successes=len(ok), failures=sum(res.failures + res.not_started for res in results),
                  wall_s=sum(res.wall_s for res in results), latency_p50=percentile(lat, 50),
                  latency_p95=percentile(lat, 95), latency_p99=percentile(lat, 99),
                  latency_mean=sum(lat) / len(lat) if lat else None, ttft_p50=percentile(ttft, 50),
                  ttft_p95=percentile(ttft, 95))


# --------------------------------------------------------------------------- test-tool artifacts


class ReadToEndStream(httpx.AsyncByteStream):
    """On close, read what is left of the body (bounded) so the connection can be reused."""

    def __init__(self, inner: httpx.AsyncByteStream, drain_timeout_s: float = 2.0):
        self._inner = inner
        self._it: AsyncIterator[bytes] | None = None
        self._timeout = drain_timeout_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._it = self._inner.__aiter__()
        async for chunk in self._it:
            yield chunk

    async def _drain(self) -> None:
        if self._it is not None:
            async for _ in self._it:
                pass

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(self._drain(), self._timeout)
        except Exception:
            pass
        await self._inner.aclose()


class ReadToEndTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await super().handle_async_request(request)
        resp.stream = ReadToEndStream(resp.stream)  # type: ignore[arg-type]
        return resp


def _set_nodelay(sock: socket.socket) -> None:
    """asyncio's `_set_nodelay` without its `sock.proto == IPPROTO_TCP` condition."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: How to run the TCP_NODELAY fake (same arguments as `python -m tests.fakes.fake_vllm`).
NODELAY_FAKE_ARGV = (sys.executable, "-m", "bench.front_overhead", "fake-nodelay")


def serve_nodelay_fake(argv: list[str]) -> int:
    """The fake vLLM, with TCP_NODELAY on every connection (uvicorn's behaviour)."""
    import asyncio.base_events as base_events

    base_events._set_nodelay = _set_nodelay  # type: ignore[assignment]  # looked up at call time
    from tests.fakes import fake_vllm
    return fake_vllm.main(argv)

def upstream_ports(upstream_conf: str) -> list[int]:
    """Ports of the `server` lines of a rendered upstream file (loopback backends)."""
    return [int(ln.split()[1].rsplit(":", 1)[1].rstrip(";")) for ln in upstream_conf.splitlines()
            if ln.strip().startswith("server ")]


def start_nodelay_fakes(fr: Any, model: str, *args: str) -> list[Any]:
    """Start a TCP_NODELAY fake on every port of `model`'s upstream nobody serves yet.

    Render those backends `dead` (`start_front(..., {"dead": True})`: a free port), then call
    this: the fakes are added to `fr.fakes[model]`, so `Front.stop` stops them.
    """
    from tests.support.frontlab import start_fake_at

    taken = {f.port for f in fr.fakes[model]}
    started = []
    for i, port in enumerate(p for p in upstream_ports(fr.files[f"upstreams/{model}.conf"]) if p not in taken):
        h = start_fake_at(fr.root / "logs", port, "--grace-seconds", "1", *args, api_key=fr.backend_key or fr.keys[0],
                          model=model, name=f"fake_vllm_nodelay_{model}_{i}", wait=True,
                          module_argv=NODELAY_FAKE_ARGV)
        fr.fakes[model].append(h)
        started.append(h)
    return started


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def ratio(new: float | None, base: float | None) -> float | None:
    """new / base, None when either is missing or base is 0."""
    if new is None or base is None or base == 0:
        return None
    return new / base


def loss_pct(new: float | None, base: float | None) -> float | None:
    """How much lower `new` is than `base`, in percent (negative: higher)."""
    r = ratio(new, base)
    return None if r is None else (1.0 - r) * 100.0


def verdict(value: float | None, limit: float) -> str:
    """`pass` when value <= limit, `MISS` otherwise (a missing value is a miss)."""
    return PASS if value is not None and value <= limit else MISS


def fmt_ms(seconds: float | None, digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def fmt_delta_ms(seconds: float | None, digits: int = 2) -> str:
    return "-" if seconds is None else f"{seconds * 1000:+.{digits}f} ms"


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}"


def fmt_num(v: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are str()-ed and `|` escaped."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    if any(len(r) != len(headers) for r in rows):
        raise ValueError("every row needs one cell per header")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_result(result: BenchResult, results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(result.to_json(), indent=2, sort_keys=False, default=str) + "\n")
    return path
