"""Bounded async load client for OpenAI-compatible endpoints (vLLM, the router, the fake).

Bounded twice: at most ``n_requests`` requests are ever sent, and nothing runs past ``deadline_s``
of wall-clock time (requests still in flight at the deadline are cancelled and counted as failures;
requests never started are reported as ``not_started``).

Library use::

    from bench.loadgen import run_load, run_load_sync
    result = await run_load("http://127.0.0.1:8000", n_requests=50, concurrency=8, deadline_s=20,
                            api_key=key, model="tiny", stream=True)
    result.successes, result.failures, result.latency_p95, result.ttft_p50, result.throughput_rps
    result.records[i].status / .error / .ttft_s / .latency_s / .tokens / .backend

CLI (the key comes from an environment variable, never from argv)::

    VLLM_API_KEY=... python -m bench.loadgen --url http://127.0.0.1:8000 -n 100 -c 8 --deadline 60

Prompts are generated from ``seed`` and the request index, so a run sends the same prompts in
the same order every time. HTTP/2 is off (vLLM and most routers speak HTTP/1.1). Every response is
read to the end of its body (a stream past ``data: [DONE]``), so connections are kept alive and
reused, as with SDK clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu cluster router backend token "
    "stream latency replica gateway shard cache prefix decode prefill batch queue"
).split()


@dataclass
class RequestRecord:
    index: int
    started_s: float = 0.0  # offset from the start of the run
    status: int | None = None  # HTTP status, None if no response arrived
    error: str | None = None  # None means success
    ttft_s: float | None = None  # first SSE data event (streaming) / first body bytes (non-streaming)
    latency_s: float | None = None  # request start to last byte
    tokens: int = 0  # content-bearing chunks (streaming) / usage.completion_tokens (non-streaming)
    backend: str | None = None  # X-Backend response header, if any
    retried: bool = False  # reconnected once after the connection died before any response

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no data."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * (q / 100.0)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class LoadResult:
    requested: int
    concurrency: int
    stream: bool
    wall_s: float
    deadline_hit: bool
    records: list[RequestRecord] = field(default_factory=list)

    @property
    def started(self) -> int:
        return len(self.records)

    @property
    def not_started(self) -> int:
        return self.requested - self.started

    @property
    def successes(self) -> int:
        return sum(1 for r in self.records if r.ok)

    @property
    def failures(self) -> int:
        return self.started - self.successes

    @property
    def retried(self) -> int:
        """Requests that reconnected once because their connection died before any response."""
        return sum(1 for r in self.records if r.retried)

    def _ok_values(self, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.records if r.ok and getattr(r, attr) is not None]

    @property
    def latency_p50(self) -> float | None:
        return percentile(self._ok_values("latency_s"), 50)

    @property
    def latency_p95(self) -> float | None:
        return percentile(self._ok_values("latency_s"), 95)

    @property
    def latency_p99(self) -> float | None:
        return percentile(self._ok_values("latency_s"), 99)

    @property
    def ttft_p50(self) -> float | None:
        return percentile(self._ok_values("ttft_s"), 50)

    @property
    def ttft_p95(self) -> float | None:
        return percentile(self._ok_values("ttft_s"), 95)

    @property
    def throughput_rps(self) -> float:
        return self.successes / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tokens_total(self) -> int:
        return sum(r.tokens for r in self.records if r.ok)

    @property
    def backends(self) -> dict[str, int]:
        return dict(Counter(r.backend for r in self.records if r.backend is not None))

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(Counter(str(r.status) for r in self.records))

    @property
    def errors(self) -> dict[str, int]:
        return dict(Counter(r.error.split(":", 1)[0] for r in self.records if r.error))

    def summary(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "started": self.started,
            "not_started": self.not_started,
            "successes": self.successes,
            "failures": self.failures,
            "concurrency": self.concurrency,
            "stream": self.stream,
            "wall_s": self.wall_s,
            "deadline_hit": self.deadline_hit,
            "throughput_rps": self.throughput_rps,
            "tokens_total": self.tokens_total,
            "latency_p50_s": self.latency_p50,
            "latency_p95_s": self.latency_p95,
            "latency_p99_s": self.latency_p99,
            "ttft_p50_s": self.ttft_p50,
            "ttft_p95_s": self.ttft_p95,
            "status_counts": self.status_counts,
            "errors": self.errors,
            "backends": self.backends,
        }

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary(), "records": [asdict(r) for r in self.records]}, indent=2)

    def table(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.1f} ms"

        rows = [
            ("requests (sent/cap)", f"{self.started}/{self.requested}"),
            ("successes", str(self.successes)),
            ("failures", str(self.failures)),
            ("not started", str(self.not_started)),
            ("concurrency", str(self.concurrency)),
            ("mode", "stream" if self.stream else "non-stream"),
            ("wall time", f"{self.wall_s:.2f} s" + (" (deadline hit)" if self.deadline_hit else "")),
            ("throughput", f"{self.throughput_rps:.2f} req/s"),
            ("tokens", str(self.tokens_total)),
            ("latency p50", ms(self.latency_p50)),
            ("latency p95", ms(self.latency_p95)),
            ("latency p99", ms(self.latency_p99)),
            ("TTFT p50", ms(self.ttft_p50)),
            ("TTFT p95", ms(self.ttft_p95)),
            ("status", ", ".join(f"{k}={v}" for k, v in sorted(self.status_counts.items())) or "-"),
            ("errors", ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "-"),
            ("backends", ", ".join(f"{k}={v}" for k, v in sorted(self.backends.items())) or "-"),
        ]
        w = max(len(k) for k, _ in rows)
        line = "+" + "-" * (w + 2) + "+" + "-" * 32 + "+"
        out = [line] + [f"| {k.ljust(w)} | {v[:30].ljust(30)} |" for k, v in rows] + [line]
        return "\n".join(out)


def make_prompt(seed: int, index: int, words: int = 24) -> str:
    rnd = random.Random(seed * 1_000_003 + index)
    return " ".join(rnd.choice(_WORDS) for _ in range(words))


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _verify(verify: bool, ca_path: str | None) -> bool | ssl.SSLContext:
    if ca_path:
        return ssl.create_default_context(cafile=ca_path)
    return bool(verify)


async def discover_model(client: httpx.AsyncClient, base: str, headers: dict[str, str]) -> str:
    r = await client.get(f"{base}/v1/models", headers=headers)
    r.raise_for_status()
    return r.json()["data"][0]["id"]


#: Errors where the request provably got no response: a kept-alive connection closed under us
#: (e.g. an nginx worker retiring on a graceful reload) or a refused connect. The OpenAI SDKs
#: retry these (APIConnectionError); so does loadgen, once, and records it.
_NO_RESPONSE_ERRORS = (httpx.RemoteProtocolError, httpx.ConnectError)


async def _one(
    client: httpx.AsyncClient,
    url: str,
    body: dict,
    headers: dict[str, str],
    stream: bool,
    chat: bool,
    rec: RequestRecord,
    t_run: float,
) -> None:
    t0 = time.perf_counter()
    rec.started_s = t0 - t_run
    try:
        await _attempt(client, url, body, headers, stream, chat, rec, t0)
    except _NO_RESPONSE_ERRORS:
        rec.retried = True
        await _attempt(client, url, body, headers, stream, chat, rec, t0)
    finally:
        rec.latency_s = time.perf_counter() - t0


async def _attempt(
    client: httpx.AsyncClient,
    url: str,
    body: dict,
    headers: dict[str, str],
    stream: bool,
    chat: bool,
    rec: RequestRecord,
    t0: float,
) -> None:
    """One HTTP exchange; raises only the no-response errors `_one` may retry."""
    try:
        async with client.stream("POST", url, json=body, headers=headers) as r:
            rec.status = r.status_code
            rec.backend = r.headers.get("x-backend")
            if r.status_code != 200:
                text = (await r.aread())[:300].decode("utf-8", "replace")
                rec.error = f"HTTP {r.status_code}: {text}"
                return
            if not stream:
                buf = bytearray()
                async for b in r.aiter_bytes():
                    if rec.ttft_s is None and b:
                        rec.ttft_s = time.perf_counter() - t0
                    buf += b
                try:
                    usage = json.loads(bytes(buf)).get("usage") or {}
                    rec.tokens = int(usage.get("completion_tokens") or 0)
                except (ValueError, AttributeError, TypeError) as e:
                    rec.error = f"BadBody: {e}"
                return
            done = False
            async for line in r.aiter_lines():
                # after [DONE], read on to the end of the body (unprocessed), as SDK clients do:
                # a response read to its end returns its connection to the pool for reuse
                if done or not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if rec.ttft_s is None:
                    rec.ttft_s = time.perf_counter() - t0
                if data == "[DONE]":
                    done = True
                    continue
                try:
                    obj = json.loads(data)
                except ValueError:
                    rec.error = f"BadChunk: {data[:80]}"
                    return
                if isinstance(obj, dict) and obj.get("error"):
                    rec.error = f"StreamError: {json.dumps(obj['error'])[:200]}"
                    return
                for ch in obj.get("choices") or []:
                    piece = (ch.get("delta") or {}).get("content") if chat else ch.get("text")
                    if piece:
                        rec.tokens += 1
            if not done:
                rec.error = "Truncated: stream ended without [DONE]"
    except asyncio.CancelledError:
        rec.error = rec.error or "Deadline: cancelled at run deadline"
        raise
    except _NO_RESPONSE_ERRORS as e:
        if rec.status is None and not rec.retried:
            raise
        rec.error = f"{type(e).__name__}: {e}"
    except httpx.HTTPError as e:
        rec.error = f"{type(e).__name__}: {e}"


async def run_load(
    base_url: str,
    *,
    n_requests: int,
    concurrency: int,
    deadline_s: float,
    api_key: str | None = None,
    model: str | None = None,
    stream: bool = True,
    endpoint: str = "chat",
    max_tokens: int = 16,
    seed: int = 0,
    verify: bool = True,
    ca_path: str | None = None,
    request_timeout_s: float = 60.0,
    headers: dict[str, str] | None = None,
    extra_body: dict[str, Any] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LoadResult:
    """Send at most n_requests at the given concurrency, stopping at deadline_s; see module doc."""
    if n_requests < 0 or concurrency < 1 or deadline_s <= 0:
        raise ValueError("need n_requests >= 0, concurrency >= 1, deadline_s > 0")
    if endpoint not in ("chat", "completions"):
        raise ValueError("endpoint must be 'chat' or 'completions'")
    base = _base(base_url)
    hdrs = dict(headers or {})
    if api_key:
        hdrs["Authorization"] = f"Bearer {api_key}"
    conc = max(1, min(concurrency, n_requests or 1))
    t_run = time.perf_counter()
    deadline = t_run + deadline_s
    records: list[RequestRecord] = []
    client = httpx.AsyncClient(
        http2=False,
        verify=_verify(verify, ca_path),
        transport=transport,
        timeout=httpx.Timeout(request_timeout_s, connect=min(10.0, request_timeout_s)),
        limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
    )
    deadline_hit = False
    try:
        if model is None:
            model = await asyncio.wait_for(discover_model(client, base, hdrs), timeout=max(0.01, deadline_s))
        chat = endpoint == "chat"
        url = f"{base}/v1/chat/completions" if chat else f"{base}/v1/completions"
        next_index = 0

        def body_for(i: int) -> dict[str, Any]:
            prompt = make_prompt(seed, i)
            b: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": stream}
            if chat:
                b["messages"] = [{"role": "user", "content": prompt}]
            else:
                b["prompt"] = prompt
            if stream:
                b["stream_options"] = {"include_usage": True}
            if extra_body:
                b.update(extra_body)
            return b

        async def worker() -> None:
            nonlocal next_index
            while next_index < n_requests and time.perf_counter() < deadline:
                i = next_index
                next_index += 1
                rec = RequestRecord(index=i)
                records.append(rec)
                await _one(client, url, body_for(i), hdrs, stream, chat, rec, t_run)

        tasks = [asyncio.create_task(worker()) for _ in range(conc)]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
        if pending:
            deadline_hit = True
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if next_index < n_requests:
            deadline_hit = True
    except asyncio.TimeoutError:
        deadline_hit = True
    finally:
        await client.aclose()
    wall = time.perf_counter() - t_run
    records.sort(key=lambda r: r.index)
    return LoadResult(
        requested=n_requests, concurrency=conc, stream=stream, wall_s=wall, deadline_hit=deadline_hit, records=records
    )


def run_load_sync(base_url: str, **kwargs: Any) -> LoadResult:
    return asyncio.run(run_load(base_url, **kwargs))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine)")
    p.add_argument("-n", "--requests", type=int, default=100, help="hard cap on requests sent")
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("--deadline", type=float, default=60.0, help="wall-clock limit for the whole run, seconds")
    p.add_argument("--model", default=None, help="model name (default: first of GET /v1/models)")
    p.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    p.add_argument("--no-stream", dest="stream", action="store_false")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--api-key-env",
        default="VLLM_API_KEY",
        help="environment variable holding the API key (default VLLM_API_KEY; unset = no auth)",
    )
    p.add_argument("--insecure", action="store_true", help="TLS: don't verify the server certificate")
    p.add_argument("--ca", default=None, help="TLS: CA bundle to verify the server with")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    p.add_argument("--json", dest="json_out", default=None, help="also write summary+records JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    res = run_load_sync(
        a.url,
        n_requests=a.requests,
        concurrency=a.concurrency,
        deadline_s=a.deadline,
        api_key=os.environ.get(a.api_key_env) or None,
        model=a.model,
        stream=a.stream,
        endpoint=a.endpoint,
        max_tokens=a.max_tokens,
        seed=a.seed,
        verify=not a.insecure,
        ca_path=a.ca,
        request_timeout_s=a.timeout,
    )
    print(res.table())
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(res.to_json())
    return 0 if res.failures == 0 and res.not_started == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
