"""A fake of vLLM's OpenAI-compatible HTTP server, for loopback tests.

Stdlib only (asyncio), starts in well under half a second, binds loopback only.

Run:    python -m tests.fakes.fake_vllm --port 8000 --served-model-name tiny --max-num-seqs 4
Import: ``async with FakeVllm(FakeConfig(port=0)) as fake: ... fake.port ...``
        or ``asyncio.run(serve(FakeConfig(...)))`` (installs SIGTERM/SIGINT handlers).

What it imitates (vLLM's OpenAI server, FastAPI/uvicorn):
  GET  /v1/models, POST /v1/chat/completions, POST /v1/completions (JSON and SSE streaming)
  GET  /health (200 empty body; 503 when "dead"), GET /metrics (Prometheus text 0.0.4,
       names/labels as vLLM's prometheus_client registry emits them), GET /version
  auth: env VLLM_API_KEY (never argv) guards /v1/*; 401 {"error":"Unauthorized"}
  scheduling: --max-num-seqs running slots, FIFO waiting queue beyond that
  loading: the port is bound but not listening for --load-seconds (connection refused)
  SIGTERM: stop listening, let in-flight requests finish within --shutdown-timeout (alias
  --grace-seconds; default 0 = abort them at once, as vLLM 0.32 does), exit 0

Test-only control endpoints (not in vLLM), no auth:
  POST /_fake/state  {"dead": bool, "waiting_override": int|null, "kv_usage_override": float|null,
                      "running_override": int|null, "ttft_ms": float, "itl_ms": float}
  GET  /_fake/state  current control state
  GET  /_fake/stats  counters: requests_total, in_flight, running, waiting, by_path, by_status, ...
  POST /_fake/reset  zero the /_fake/stats counters (not the Prometheus metrics)

Every request is logged to stdout as one line: method, path (no query string), status and
whether an Authorization header was present (auth=yes/no). Header values are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import math
import os
import random
import signal
import socket
import sys
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import AsyncIterator, Callable

FAKE_VERSION = "0.33.0+fake"
API_KEY_ENV = "VLLM_API_KEY"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

_VOCAB = (
    "the of and to in is was for on that with as by at from his an were are which this be has or "
    "had not but first one their its new after who they have her she two been other when there all "
    "during into school time may years more most only over city some world would where later up "
    "such used many can state about national out known university united then made team"
).split()

# Buckets as in vllm/v1/metrics/loggers.py
_TTFT_BUCKETS = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
]
_ITL_BUCKETS = [
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
]
_REQUEST_LATENCY_BUCKETS = [
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
]
_FINISH_REASONS = ("stop", "length", "abort")


def _log(msg: str) -> None:
    print(f"fake_vllm: {msg}", flush=True)


# --------------------------------------------------------------------------- config


@dataclass
class FakeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "fake/model"
    served_model_names: list[str] = field(default_factory=list)  # default: [model]
    max_num_seqs: int = 256
    max_model_len: int = 4096
    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    heavy_tail: bool = False
    tail_median_tokens: float = 48.0
    tail_sigma: float = 1.0
    output_tokens: int | None = None  # "natural" output length when not heavy-tailed; None = max_tokens
    seed: int = 0
    load_seconds: float = 0.0
    grace_seconds: float = 0.0  # --shutdown-timeout: vLLM 0.32 aborts in-flight requests by default
    log_requests: bool = True
    api_key: str | None = None  # in-process use only; the CLI reads VLLM_API_KEY from the environment

    @property
    def served_name(self) -> str:
        return (self.served_model_names or [self.model])[0]

    @property
    def all_names(self) -> list[str]:
        return list(self.served_model_names or [self.model])


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"fake_vllm only binds loopback addresses, not {host!r}")


# --------------------------------------------------------------------------- metrics


def _fmt(v: float) -> str:
    """Float formatting as prometheus_client's floatToGoString."""
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v != v:
        return "NaN"
    s = repr(float(v))
    if "e" in s:
        mant, exp = s.split("e")
        sign = "-" if exp.startswith("-") else "+"
        exp = exp.lstrip("+-").lstrip("0") or "0"
        return f"{mant}e{sign}{exp.zfill(2)}"
    return s


def _esc_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Histogram:
    def __init__(self, name: str, doc: str, buckets: list[float]):
        self.name, self.doc = name, doc
        self.buckets = sorted(float(b) for b in buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # last = +Inf overflow
        self.sum = 0.0
        self.count = 0
        self.created = time.time()

    def observe(self, v: float) -> None:
        v = max(0.0, float(v))
        self.sum += v
        self.count += 1
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


def _one_two_five(max_value: int) -> list[float]:
    out: list[float] = []
    exp = 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return out
            out.append(float(v))
        exp += 1


class Metrics:
    def __init__(self, model_name: str, max_model_len: int):
        self.model_name = model_name
        self.created = time.time()
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.num_preemptions = 0
        self.request_success = {r: 0 for r in _FINISH_REASONS}
        self.ttft = _Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", _TTFT_BUCKETS
        )
        self.itl = _Histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", _ITL_BUCKETS
        )
        self.e2e = _Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", _REQUEST_LATENCY_BUCKETS
        )
        self.queue = _Histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            _REQUEST_LATENCY_BUCKETS,
        )
        self.req_prompt = _Histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", _one_two_five(max_model_len)
        )
        self.req_gen = _Histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", _one_two_five(max_model_len)
        )

    def render(self, running: int, waiting: int, kv_usage: float) -> str:
        base = f'model_name="{_esc_label(self.model_name)}",engine="0"'
        out: list[str] = []

        def family(name: str, doc: str, typ: str) -> None:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {typ}")

        def gauge(name: str, doc: str, value: float) -> None:
            family(name, doc, "gauge")
            out.append(f"{name}{{{base}}} {_fmt(value)}")

        def counter(name: str, doc: str, samples: list[tuple[str, float]]) -> None:
            # prometheus_client's 0.0.4 exposition: the family is named <name>_total, plus a
            # separate <name>_created gauge family.
            family(f"{name}_total", doc, "counter")
            for extra, v in samples:
                out.append(f"{name}_total{{{base}{extra}}} {_fmt(v)}")
            family(f"{name}_created", doc, "gauge")
            for extra, _ in samples:
                out.append(f"{name}_created{{{base}{extra}}} {_fmt(self.created)}")

        def histogram(h: _Histogram) -> None:
            family(h.name, h.doc, "histogram")
            cum = 0
            for b, c in zip(h.buckets, h.counts):
                cum += c
                out.append(f'{h.name}_bucket{{{base},le="{_fmt(b)}"}} {_fmt(cum)}')
            cum += h.counts[-1]
            out.append(f'{h.name}_bucket{{{base},le="+Inf"}} {_fmt(cum)}')
            out.append(f"{h.name}_count{{{base}}} {_fmt(h.count)}")
            out.append(f"{h.name}_sum{{{base}}} {_fmt(h.sum)}")
            family(f"{h.name}_created", h.doc, "gauge")
            out.append(f"{h.name}_created{{{base}}} {_fmt(h.created)}")

        gauge("vllm:num_requests_running", "Number of requests in model execution batches.", running)
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv_usage)
        counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.", [("", self.num_preemptions)]
        )
        counter("vllm:prompt_tokens", "Number of prefill tokens processed.", [("", self.prompt_tokens)])
        counter("vllm:generation_tokens", "Number of generation tokens processed.", [("", self.generation_tokens)])
        counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [(f',finished_reason="{r}"', self.request_success[r]) for r in _FINISH_REASONS],
        )
        for h in (self.req_prompt, self.req_gen, self.ttft, self.itl, self.e2e, self.queue):
            histogram(h)
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- scheduler


class Scheduler:
    """max_num_seqs running slots; a FIFO of waiters beyond that."""

    def __init__(self, max_num_seqs: int):
        self.max_num_seqs = max(1, int(max_num_seqs))
        self.running = 0
        self.waiting: deque[asyncio.Future] = deque()

    async def acquire(self) -> None:
        if self.running < self.max_num_seqs and not self.waiting:
            self.running += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot had been handed over to us already
            else:
                try:
                    self.waiting.remove(fut)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(None)  # hand our slot to the oldest waiter
                return
        self.running -= 1


class ClientGone(Exception):
    pass


# --------------------------------------------------------------------------- HTTP plumbing


class HttpError(Exception):
    def __init__(self, status: int, payload: object):
        super().__init__(status)
        self.status = status
        self.payload = payload


def _openai_error(status: int, message: str, typ: str, param: str | None = None) -> HttpError:
    # vLLM's ErrorResponse: {"error": {"message", "type", "param", "code"}}
    return HttpError(status, {"error": {"message": message, "type": typ, "param": param, "code": status}})


@dataclass
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def has_auth(self) -> bool:
        return "authorization" in self.headers

    def json(self) -> dict:
        try:
            data = json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise _openai_error(400, f"Invalid JSON body: {e}", "BadRequestError")
        if not isinstance(data, dict):
            raise _openai_error(400, "Request body must be a JSON object", "BadRequestError")
        return data


class _Conn:
    __slots__ = ("task", "busy", "writer")

    def __init__(self, task: asyncio.Task | None, writer: asyncio.StreamWriter):
        self.task = task
        self.writer = writer
        self.busy = False


class _Responder:
    """Writes one HTTP/1.1 response (plain or chunked) and logs it."""

    def __init__(self, server: "FakeVllm", req: Request, writer: asyncio.StreamWriter, keep_alive: bool):
        self.server = server
        self.req = req
        self.writer = writer
        self.keep_alive = keep_alive
        self.status: int | None = None

    def _head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        self.status = status
        self.server._record_status(self.req, status)
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            f"date: {formatdate(usegmt=True)}",
            "server: uvicorn",
        ]
        lines += [f"{k}: {v}" for k, v in headers]
        if not self.keep_alive:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(self, status: int, body: bytes = b"", content_type: str | None = "application/json") -> None:
        headers = [("content-length", str(len(body)))]
        if content_type:
            headers.append(("content-type", content_type))
        self.writer.write(self._head(status, headers) + body)
        await self.writer.drain()

    async def send_json(self, status: int, payload: object) -> None:
        await self.send(status, json.dumps(payload, separators=(",", ":")).encode())

    async def start_stream(self) -> None:
        self.writer.write(
            self._head(200, [("content-type", "text/event-stream; charset=utf-8"), ("transfer-encoding", "chunked")])
        )
        await self.writer.drain()

    async def chunk(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            raise ClientGone()
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise ClientGone() from e

    async def end_stream(self) -> None:
        if self.writer.transport.is_closing():
            raise ClientGone()
        self.writer.write(b"0\r\n\r\n")
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise ClientGone() from e


def _sse(obj: object) -> bytes:
    if isinstance(obj, str):
        return f"data: {obj}\n\n".encode()
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


# --------------------------------------------------------------------------- the server


@dataclass
class _Plan:
    n_tokens: int
    finish_reason: str
    ttft_s: float
    itl_s: float
    prompt_tokens: int
    tokens: list[str]


class FakeVllm:
    def __init__(self, config: FakeConfig | None = None):
        self.cfg = config or FakeConfig()
        _check_loopback(self.cfg.host)
        self.api_key = self.cfg.api_key
        self.sched = Scheduler(self.cfg.max_num_seqs)
        self.metrics = Metrics(self.cfg.served_name, self.cfg.max_model_len)
        self.rng = random.Random(self.cfg.seed)
        self.state: dict[str, object] = {
            "dead": False,
            "waiting_override": None,
            "kv_usage_override": None,
            "running_override": None,
        }
        self.ttft_ms = float(self.cfg.ttft_ms)
        self.itl_ms = float(self.cfg.itl_ms)
        self._reset_stats()
        self._sock: socket.socket | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = asyncio.Event()
        self._load_task: asyncio.Task | None = None
        self._conns: set[_Conn] = set()
        self._shutting_down = False
        self._started_at = time.monotonic()
        self.port = self.cfg.port

    # ---- lifecycle

    async def start(self) -> None:
        """Bind now (port reserved, connections refused), listen after --load-seconds."""
        fam = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host = "127.0.0.1" if self.cfg.host == "localhost" else self.cfg.host
        sock.bind((host, self.cfg.port))
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._started_at = time.monotonic()
        self._load_task = asyncio.create_task(self._load_then_listen())

    async def _load_then_listen(self) -> None:
        if self.cfg.load_seconds > 0:
            _log(
                f"loading model {self.cfg.served_name!r} for {self.cfg.load_seconds:g}s "
                f"(port {self.port} bound, not listening)"
            )
            await asyncio.sleep(self.cfg.load_seconds)
        self._server = await asyncio.start_server(
            self._handle_conn, sock=self._sock, limit=MAX_HEADER_BYTES, backlog=512
        )
        self._ready.set()
        _log(
            f"listening on {self.cfg.host}:{self.port} model={self.cfg.served_name!r} "
            f"max_num_seqs={self.sched.max_num_seqs} auth={'on' if self.api_key else 'off'}"
        )

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def in_flight(self) -> int:
        return sum(1 for c in self._conns if c.busy)

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop listening; let busy connections finish for up to `grace` seconds; then cut the rest."""
        grace = self.cfg.grace_seconds if grace is None else grace
        self._shutting_down = True
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            try:
                await self._load_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        for c in list(self._conns):
            if not c.busy and c.task is not None:
                c.task.cancel()
        deadline = time.monotonic() + max(0.0, grace)
        n = self.in_flight()
        if n:
            _log(f"shutting down: waiting up to {grace:g}s for {n} in-flight request(s)")
        while self.in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left = [c for c in self._conns if c.task is not None]
        if self.in_flight():
            _log(f"grace period over; cutting {self.in_flight()} request(s)")
        for c in left:
            c.task.cancel()
        if left:
            await asyncio.gather(*(c.task for c in left), return_exceptions=True)
        _log("shutdown complete")

    async def __aenter__(self) -> "FakeVllm":
        await self.start()
        await self.wait_ready()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.shutdown(grace=0.0)

    # ---- stats

    def _reset_stats(self) -> None:
        self.stats: dict[str, object] = {
            "requests_total": 0,
            "by_path": {},
            "by_status": {},
            "with_auth": 0,
            "without_auth": 0,
            "unauthorized": 0,
            "completed": 0,
            "aborted": 0,
            "control_requests": 0,
        }

    def _record_arrival(self, req: Request) -> None:
        """Counted as soon as the request is read, so a test can tell it reached this backend."""
        if req.path.startswith("/_fake/"):
            self.stats["control_requests"] += 1  # type: ignore[operator]
            return
        self.stats["requests_total"] += 1  # type: ignore[operator]
        bp: dict = self.stats["by_path"]  # type: ignore[assignment]
        bp[req.path] = bp.get(req.path, 0) + 1
        self.stats["with_auth" if req.has_auth else "without_auth"] += 1  # type: ignore[operator]

    def _record_status(self, req: Request, status: int) -> None:
        if not req.path.startswith("/_fake/"):
            bs: dict = self.stats["by_status"]  # type: ignore[assignment]
            bs[str(status)] = bs.get(str(status), 0) + 1
        if self.cfg.log_requests:
            _log(f"{req.method} {req.path} status={status} auth={'yes' if req.has_auth else 'no'}")

    def _gauges(self) -> tuple[int, int, float]:
        running = self.state["running_override"]
        running = self.sched.running if running is None else int(running)  # type: ignore[arg-type]
        waiting = self.state["waiting_override"]
        waiting = len(self.sched.waiting) if waiting is None else int(waiting)  # type: ignore[arg-type]
        kv = self.state["kv_usage_override"]
        kv = min(1.0, self.sched.running / self.sched.max_num_seqs) if kv is None else float(kv)  # type: ignore
        return running, waiting, kv

    # ---- connection loop

    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(asyncio.current_task(), writer)
        self._conns.add(conn)
        try:
            while not self._shutting_down:
                conn.busy = False
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                except asyncio.LimitOverrunError:
                    writer.write(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
                        b"connection: close\r\n\r\n"
                    )
                    break
                conn.busy = True
                keep = await self._one_request(head, reader, writer)
                if not keep:
                    break
        except asyncio.CancelledError:
            pass
        except (ConnectionError, OSError):
            pass
        finally:
            conn.busy = False
            self._conns.discard(conn)
            try:
                writer.close()
            except Exception:
                pass

    async def _one_request(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            text = head.decode("latin-1")
            lines = text.split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if not line:
                    continue
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        except ValueError:
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            return False
        path, _, query = target.partition("?")
        conn_hdr = headers.get("connection", "").lower()
        keep_alive = ("close" not in conn_hdr) if version == "HTTP/1.1" else ("keep-alive" in conn_hdr)
        req = Request(method.upper(), path, query, version, headers, b"")
        self._record_arrival(req)
        resp = _Responder(self, req, writer, keep_alive)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            resp.keep_alive = False
            await resp.send_json(501, {"detail": "chunked request bodies are not supported by fake_vllm"})
            return False
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            resp.keep_alive = False
            await resp.send_json(413 if length > 0 else 400, {"detail": "bad content-length"})
            return False
        if length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl sends this for bodies > 1 KiB
        if length:
            try:
                req.body = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                return False

        def disconnected() -> bool:
            return reader.at_eof() or writer.transport.is_closing()

        try:
            await self._route(req, resp, disconnected)
        except HttpError as e:
            if resp.status is None:
                await resp.send_json(e.status, e.payload)
            else:
                return False
        except ClientGone:
            if resp.status is None:
                self._record_status(req, 499)  # nginx's "client closed request"; nothing is sent
            return False
        return resp.keep_alive and not self._shutting_down

    # ---- routing

    def _check_auth(self, req: Request) -> None:
        if not self.api_key:
            return
        got = req.headers.get("authorization", "").encode("utf-8", "surrogateescape")
        want = f"Bearer {self.api_key}".encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(got, want):
            self.stats["unauthorized"] += 1  # type: ignore[operator]
            raise HttpError(401, {"error": "Unauthorized"})

    async def _route(self, req: Request, resp: _Responder, disconnected: Callable[[], bool]) -> None:
        p, m = req.path, req.method
        routes: dict[str, dict[str, Callable]] = {
            "/health": {"GET": self._health},
            "/metrics": {"GET": self._metrics},
            "/version": {"GET": self._version},
            "/v1/models": {"GET": self._models},
            "/v1/chat/completions": {"POST": self._chat},
            "/v1/completions": {"POST": self._completions},
            "/_fake/state": {"GET": self._get_state, "POST": self._set_state},
            "/_fake/stats": {"GET": self._get_stats},
            "/_fake/reset": {"POST": self._reset},
        }
        if p.startswith("/v1"):  # vLLM's auth middleware runs before routing, for /v1 paths only
            self._check_auth(req)
        handlers = routes.get(p)
        if handlers is None:
            raise HttpError(404, {"detail": "Not Found"})
        h = handlers.get(m)
        if h is None:
            raise HttpError(405, {"detail": "Method Not Allowed"})
        await h(req, resp, disconnected)

    async def _health(self, req, resp, _d) -> None:
        await resp.send(503 if self.state["dead"] else 200, b"", content_type=None)

    async def _metrics(self, req, resp, _d) -> None:
        running, waiting, kv = self._gauges()
        body = self.metrics.render(running, waiting, kv).encode()
        await resp.send(200, body, content_type="text/plain; version=0.0.4; charset=utf-8")

    async def _version(self, req, resp, _d) -> None:
        await resp.send_json(200, {"version": FAKE_VERSION})

    async def _models(self, req, resp, _d) -> None:
        now = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": now,
                "owned_by": "vllm",
                "root": self.cfg.model,
                "parent": None,
                "max_model_len": self.cfg.max_model_len,
                "permission": [
                    {
                        "id": f"modelperm-{uuid.uuid4().hex}",
                        "object": "model_permission",
                        "created": now,
                        "allow_create_engine": False,
                        "allow_sampling": True,
                        "allow_logprobs": True,
                        "allow_search_indices": False,
                        "allow_view": True,
                        "allow_fine_tuning": False,
                        "organization": "*",
                        "group": None,
                        "is_blocking": False,
                    }
                ],
            }
            for name in self.cfg.all_names
        ]
        await resp.send_json(200, {"object": "list", "data": data})

    async def _get_state(self, req, resp, _d) -> None:
        await resp.send_json(200, {**self.state, "ttft_ms": self.ttft_ms, "itl_ms": self.itl_ms})

    async def _set_state(self, req, resp, _d) -> None:
        body = req.json()
        allowed = {"dead", "waiting_override", "kv_usage_override", "running_override", "ttft_ms", "itl_ms"}
        unknown = set(body) - allowed
        if unknown:
            raise HttpError(400, {"detail": f"unknown state keys: {sorted(unknown)}"})
        try:
            if "dead" in body:
                self.state["dead"] = bool(body["dead"])
            for k in ("waiting_override", "running_override"):
                if k in body:
                    self.state[k] = None if body[k] is None else int(body[k])
            if "kv_usage_override" in body:
                v = body["kv_usage_override"]
                self.state["kv_usage_override"] = None if v is None else float(v)
            if "ttft_ms" in body:
                self.ttft_ms = max(0.0, float(body["ttft_ms"]))
            if "itl_ms" in body:
                self.itl_ms = max(0.0, float(body["itl_ms"]))
        except (TypeError, ValueError) as e:
            raise HttpError(400, {"detail": f"bad state value: {e}"})
        _log(f"state set: {json.dumps({k: body[k] for k in sorted(body)})}")
        await self._get_state(req, resp, _d)

    def stats_snapshot(self) -> dict:
        running, waiting, kv = self._gauges()
        return {
            **self.stats,
            "by_path": dict(self.stats["by_path"]),  # type: ignore[arg-type]
            "by_status": dict(self.stats["by_status"]),  # type: ignore[arg-type]
            "in_flight": self.sched.running + len(self.sched.waiting),
            "running": self.sched.running,
            "waiting": len(self.sched.waiting),
            "reported_running": running,
            "reported_waiting": waiting,
            "reported_kv_usage": kv,
            "open_connections": len(self._conns),
            "busy_connections": self.in_flight(),
            "uptime_s": round(time.monotonic() - self._started_at, 3),
        }

    async def _get_stats(self, req, resp, _d) -> None:
        await resp.send_json(200, self.stats_snapshot())

    async def _reset(self, req, resp, _d) -> None:
        self._reset_stats()
        await resp.send_json(200, {"reset": True})

    # ---- inference

    def _validate_common(self, body: dict) -> tuple[str, int, int, bool]:
        model = body.get("model")
        if model is None:
            model = self.cfg.served_name  # vLLM falls back to the first served model name
        if model not in self.cfg.all_names:
            raise _openai_error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        mt = body.get("max_completion_tokens", body.get("max_tokens"))
        if mt is None:
            mt = 16
        if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
            raise _openai_error(400, f"max_tokens must be at least 1, got {mt}.", "BadRequestError", "max_tokens")
        mn = body.get("min_tokens", 0) or 0
        if isinstance(mn, bool) or not isinstance(mn, int) or mn < 0 or mn > mt:
            raise _openai_error(
                400, f"min_tokens must be in [0, max_tokens], got {mn}.", "BadRequestError", "min_tokens"
            )
        n = body.get("n", 1)
        if n not in (1, None):
            raise _openai_error(400, "fake_vllm supports only n=1", "BadRequestError", "n")
        if self.state["dead"]:
            raise _openai_error(
                500,
                "EngineCore encountered an issue. See stack trace (above) for the root cause.",
                "InternalServerError",
            )
        return model, mt, mn, bool(body.get("ignore_eos", False))

    def _plan(self, prompt_text: str, prompt_tokens: int, max_tokens: int, min_tokens: int, ignore_eos: bool) -> _Plan:
        mml = self.cfg.max_model_len
        if prompt_tokens >= mml:
            raise _openai_error(
                400,
                f"This model's maximum context length is {mml} tokens. However, your request "
                f"has {prompt_tokens} input tokens. Please reduce the length of the input "
                "messages.",
                "BadRequestError",
                "input_tokens",
            )
        if prompt_tokens + max_tokens > mml:
            raise _openai_error(
                400,
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
                f"model's maximum context length is {mml} tokens and your request has "
                f"{prompt_tokens} input tokens ({max_tokens} > {mml} - {prompt_tokens}).",
                "BadRequestError",
                "max_tokens",
            )
        ttft_f = itl_f = 1.0
        natural = self.cfg.output_tokens
        if self.cfg.heavy_tail:
            r = self.rng
            natural = max(
                1, int(round(r.lognormvariate(math.log(max(1.0, self.cfg.tail_median_tokens)), self.cfg.tail_sigma)))
            )
            ttft_f = r.lognormvariate(0.0, 0.5)
            itl_f = r.lognormvariate(0.0, 0.25)
        if ignore_eos or natural is None:
            n, reason = max_tokens, "length"
        else:
            n = max(min_tokens, min(natural, max_tokens))
            reason = "length" if n >= max_tokens else "stop"
        h = zlib.crc32(prompt_text.encode()) ^ (self.cfg.seed * 0x9E3779B1)
        tokens = [" " + _VOCAB[(h + i * 2654435761) % len(_VOCAB)] for i in range(n)]
        return _Plan(n, reason, self.ttft_ms * ttft_f / 1000.0, self.itl_ms * itl_f / 1000.0, prompt_tokens, tokens)

    async def _sleep(self, seconds: float, disconnected: Callable[[], bool]) -> None:
        end = time.monotonic() + seconds
        while True:
            if disconnected():
                raise ClientGone()
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def _generate(self, plan: _Plan, disconnected: Callable[[], bool]) -> AsyncIterator[str]:
        """Queue, prefill, decode: yields token strings; records vLLM-like metrics."""
        arrival = time.monotonic()
        acquired = False
        finished = False
        emitted = 0
        m = self.metrics
        try:
            acq = asyncio.ensure_future(self.sched.acquire())
            try:
                while not acq.done():
                    if disconnected():
                        raise ClientGone()
                    await asyncio.wait([acq], timeout=0.05)
            except BaseException:
                acq.cancel()
                try:
                    await acq
                except (asyncio.CancelledError, Exception):
                    pass
                if acq.done() and not acq.cancelled() and acq.exception() is None:
                    self.sched.release()
                raise
            acq.result()
            acquired = True
            scheduled = time.monotonic()
            await self._sleep(plan.ttft_s, disconnected)
            first = last = time.monotonic()
            m.prompt_tokens += plan.prompt_tokens
            m.ttft.observe(first - arrival)
            for i, tok in enumerate(plan.tokens):
                if i:
                    await self._sleep(plan.itl_s, disconnected)
                    now = time.monotonic()
                    m.itl.observe(now - last)
                    last = now
                m.generation_tokens += 1
                emitted += 1
                yield tok
            finished = True
            end = time.monotonic()
            m.request_success[plan.finish_reason] += 1
            m.e2e.observe(end - arrival)
            m.queue.observe(scheduled - arrival)
            m.req_prompt.observe(plan.prompt_tokens)
            m.req_gen.observe(emitted)
            self.stats["completed"] += 1  # type: ignore[operator]
        finally:
            if acquired:
                self.sched.release()
            if not finished:
                m.request_success["abort"] += 1
                self.stats["aborted"] += 1  # type: ignore[operator]

    @staticmethod
    def _estimate_tokens(text: str) -> int:
        return max(1, (len(text) + 3) // 4)

    @staticmethod
    def _usage(prompt: int, completion: int) -> dict:
        return {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": None,
        }

    async def _chat(self, req: Request, resp: _Responder, disconnected) -> None:
        body = req.json()
        model, max_tokens, min_tokens, ignore_eos = self._validate_common(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _openai_error(400, "messages must be a non-empty list", "BadRequestError", "messages")
        parts: list[str] = []
        for msg in messages:
            if not isinstance(msg, dict):
                raise _openai_error(400, "each message must be an object", "BadRequestError", "messages")
            c = msg.get("content")
            if isinstance(c, str):
                parts.append(c)
            elif isinstance(c, list):
                parts += [p.get("text", "") for p in c if isinstance(p, dict)]
        prompt_text = "\n".join(parts)
        prompt_tokens = self._estimate_tokens(prompt_text) + 4 * len(messages)  # chat template overhead
        plan = self._plan(prompt_text, prompt_tokens, max_tokens, min_tokens, ignore_eos)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        stream = bool(body.get("stream", False))
        so = body.get("stream_options") or {}
        include_usage = bool(so.get("include_usage", False)) if isinstance(so, dict) else False

        def chunk(choices: list, usage: dict | None = None) -> dict:
            d = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
            if usage is not None:
                d["usage"] = usage
            return d

        if not stream:
            text = "".join([t async for t in self._generate(plan, disconnected)])
            await resp.send_json(
                200,
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": text,
                                "refusal": None,
                                "annotations": None,
                                "audio": None,
                                "function_call": None,
                                "tool_calls": [],
                                "reasoning_content": None,
                            },
                            "logprobs": None,
                            "finish_reason": plan.finish_reason,
                            "stop_reason": None,
                        }
                    ],
                    "service_tier": None,
                    "system_fingerprint": None,
                    "usage": self._usage(plan.prompt_tokens, plan.n_tokens),
                    "prompt_logprobs": None,
                    "kv_transfer_params": None,
                },
            )
            return
        gen = self._generate(plan, disconnected)
        try:
            first = True
            i = 0
            async for tok in gen:
                i += 1
                if first:
                    await resp.start_stream()
                    await resp.chunk(
                        _sse(
                            chunk(
                                [
                                    {
                                        "index": 0,
                                        "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None,
                                        "finish_reason": None,
                                    }
                                ]
                            )
                        )
                    )
                    first = False
                last = i == plan.n_tokens
                await resp.chunk(
                    _sse(
                        chunk(
                            [
                                {
                                    "index": 0,
                                    "delta": {"content": tok},
                                    "logprobs": None,
                                    "finish_reason": plan.finish_reason if last else None,
                                    **({"stop_reason": None} if last else {}),
                                }
                            ]
                        )
                    )
                )
            if include_usage:
                await resp.chunk(_sse(chunk([], self._usage(plan.prompt_tokens, plan.n_tokens))))
            await resp.chunk(_sse("[DONE]"))
            await resp.end_stream()
        finally:
            await gen.aclose()

    async def _completions(self, req: Request, resp: _Responder, disconnected) -> None:
        body = req.json()
        model, max_tokens, min_tokens, ignore_eos = self._validate_common(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            prompt_text, prompt_tokens = prompt, self._estimate_tokens(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompt_text, prompt_tokens = " ".join(map(str, prompt)), len(prompt)
        else:
            raise _openai_error(
                400,
                "prompt must be a string or a list of token ids (batches are not supported by fake_vllm)",
                "BadRequestError",
                "prompt",
            )
        plan = self._plan(prompt_text, prompt_tokens, max_tokens, min_tokens, ignore_eos)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        stream = bool(body.get("stream", False))
        so = body.get("stream_options") or {}
        include_usage = bool(so.get("include_usage", False)) if isinstance(so, dict) else False
        if not stream:
            text = "".join([t async for t in self._generate(plan, disconnected)])
            await resp.send_json(
                200,
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "text": text,
                            "logprobs": None,
                            "finish_reason": plan.finish_reason,
                            "stop_reason": None,
                            "prompt_logprobs": None,
                        }
                    ],
                    "service_tier": None,
                    "system_fingerprint": None,
                    "usage": self._usage(plan.prompt_tokens, plan.n_tokens),
                    "kv_transfer_params": None,
                },
            )
            return
        gen = self._generate(plan, disconnected)
        try:
            i = 0
            async for tok in gen:
                i += 1
                if i == 1:
                    await resp.start_stream()
                last = i == plan.n_tokens
                await resp.chunk(
                    _sse(
                        {
                            "id": rid,
                            "object": "text_completion",
                            "created": created,
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "text": tok,
                                    "logprobs": None,
                                    "finish_reason": plan.finish_reason if last else None,
                                    "stop_reason": None,
                                }
                            ],
                        }
                    )
                )
            if include_usage:
                await resp.chunk(
                    _sse(
                        {
                            "id": rid,
                            "object": "text_completion",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": self._usage(plan.prompt_tokens, plan.n_tokens),
                        }
                    )
                )
            await resp.chunk(_sse("[DONE]"))
            await resp.end_stream()
        finally:
            await gen.aclose()


# --------------------------------------------------------------------------- entry points


async def serve(config: FakeConfig, install_signal_handlers: bool = True) -> int:
    """Run until SIGTERM/SIGINT, then drain for config.grace_seconds. Returns the exit code (0)."""
    fake = FakeVllm(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    await fake.start()
    await stop.wait()
    _log("received shutdown signal; no longer accepting connections")
    await fake.shutdown(config.grace_seconds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.fakes.fake_vllm",
        description="Fake vLLM OpenAI-compatible server (tests only). "
        f"API key comes from the {API_KEY_ENV} environment variable.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="fake/model", help="model 'path' (default served name)")
    p.add_argument(
        "--served-model-name",
        nargs="+",
        default=None,
        help="name(s) the API accepts; the first is used in metrics labels",
    )
    p.add_argument("--max-num-seqs", type=int, default=256, help="concurrent running requests")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--ttft-ms", type=float, default=50.0, help="base time to first token")
    p.add_argument("--itl-ms", type=float, default=10.0, help="base inter-token latency")
    p.add_argument(
        "--heavy-tail",
        action="store_true",
        help="draw output length (lognormal) and TTFT/ITL factors per request from --seed",
    )
    p.add_argument("--tail-median-tokens", type=float, default=48.0, help="median output length with --heavy-tail")
    p.add_argument("--tail-sigma", type=float, default=1.0, help="lognormal sigma of output length")
    p.add_argument(
        "--output-tokens",
        type=int,
        default=None,
        help="without --heavy-tail: natural output length (finish 'stop' if < max_tokens); "
        "default: always generate max_tokens",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--load-seconds", type=float, default=0.0, help="refuse connections this long after start")
    p.add_argument(
        "--shutdown-timeout",
        "--grace-seconds",
        dest="grace_seconds",
        type=float,
        default=0.0,
        help="SIGTERM drain time for in-flight requests; 0 (vLLM 0.32's default) aborts them at once",
    )
    p.add_argument(
        "--no-log-requests", dest="log_requests", action="store_false", help="don't log one line per request"
    )
    return p


def config_from_args(argv: list[str] | None = None) -> FakeConfig:
    a = build_parser().parse_args(argv)
    return FakeConfig(
        host=a.host,
        port=a.port,
        model=a.model,
        served_model_names=a.served_model_name or [],
        max_num_seqs=a.max_num_seqs,
        max_model_len=a.max_model_len,
        ttft_ms=a.ttft_ms,
        itl_ms=a.itl_ms,
        heavy_tail=a.heavy_tail,
        tail_median_tokens=a.tail_median_tokens,
        tail_sigma=a.tail_sigma,
        output_tokens=a.output_tokens,
        seed=a.seed,
        load_seconds=a.load_seconds,
        grace_seconds=a.grace_seconds,
        log_requests=a.log_requests,
        api_key=os.environ.get(API_KEY_ENV) or None,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
    try:
        _check_loopback(cfg.host)
    except ValueError as e:
        print(f"fake_vllm: error: {e}", file=sys.stderr)
        return 2
    return asyncio.run(serve(cfg))


if __name__ == "__main__":
    sys.exit(main())
