"""bench.loadgen against the fake vLLM (subprocess on 127.0.0.1) and an in-memory transport."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from bench.loadgen import main, make_prompt, percentile, run_load, run_load_sync
from tests.fakes.harness import FakeHandle, running_fake, start_fake

pytestmark = pytest.mark.timeout(10)

KEY = "loadgen-test-key-77"
TTFT_MS, ITL_MS, MAX_TOKENS = 60, 10, 8


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> FakeHandle:
    h = start_fake(
        tmp_path_factory.mktemp("loadgen"),
        "--ttft-ms",
        str(TTFT_MS),
        "--itl-ms",
        str(ITL_MS),
        "--max-num-seqs",
        "4",
        api_key=KEY,
        name="fake_vllm_loadgen",
    )
    yield h
    h.stop()


def _chat_count(fake: FakeHandle) -> int:
    return fake.stats()["by_path"].get("/v1/chat/completions", 0)


def test_percentile_interpolates():
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_prompts_are_seeded():
    assert make_prompt(1, 5) == make_prompt(1, 5)
    assert make_prompt(1, 5) != make_prompt(2, 5)
    assert make_prompt(1, 5) != make_prompt(1, 6)


def test_streaming_run_counts_and_percentiles(fake):
    before = _chat_count(fake)
    res = run_load_sync(
        fake.base_url,
        n_requests=20,
        concurrency=4,
        deadline_s=8,
        api_key=KEY,
        model="tiny",
        stream=True,
        max_tokens=MAX_TOKENS,
    )
    assert (res.started, res.successes, res.failures, res.not_started) == (20, 20, 0, 0)
    assert not res.deadline_hit
    assert _chat_count(fake) == before + 20  # hard cap: exactly n requests reached the server
    assert sorted(r.index for r in res.records) == list(range(20))
    assert all(r.status == 200 and r.tokens == MAX_TOKENS and r.backend is None for r in res.records)
    assert all(r.ttft_s is not None and r.ttft_s <= r.latency_s for r in res.records)
    # the fake's TTFT floor is 60 ms and each request needs >= 7 more 10 ms token gaps
    assert res.ttft_p50 >= TTFT_MS / 1000
    assert res.latency_p50 >= (TTFT_MS + (MAX_TOKENS - 1) * ITL_MS) / 1000
    assert res.ttft_p50 <= res.ttft_p95 <= res.latency_p95
    assert res.latency_p50 <= res.latency_p95 <= res.latency_p99 < 3.0
    # 20 requests, 4 at a time, ~0.13 s each: 5 waves -> >= 0.65 s, so <= ~31 req/s
    assert 3.0 < res.throughput_rps < 35.0
    assert res.tokens_total == 20 * MAX_TOKENS


def test_non_streaming_completions_run(fake):
    res = run_load_sync(
        fake.base_url + "/v1",
        n_requests=6,
        concurrency=3,
        deadline_s=8,
        api_key=KEY,
        stream=False,
        endpoint="completions",
        max_tokens=3,
    )  # model discovered from /v1/models
    assert (res.successes, res.failures) == (6, 0)
    assert all(r.tokens == 3 for r in res.records)
    assert all(r.ttft_s <= r.latency_s for r in res.records)
    assert res.latency_p50 >= (TTFT_MS + 2 * ITL_MS) / 1000


def test_wrong_key_all_fail_with_401(fake):
    res = run_load_sync(fake.base_url, n_requests=5, concurrency=5, deadline_s=5, api_key="nope", model="tiny")
    assert (res.successes, res.failures) == (0, 5)
    assert res.status_counts == {"401": 5}
    assert res.latency_p50 is None and res.throughput_rps == 0.0
    assert all(r.error.startswith("HTTP 401") for r in res.records)


def test_deadline_bounds_the_run(tmp_path):
    with running_fake(tmp_path, "--ttft-ms", "50", "--itl-ms", "100", "--max-num-seqs", "2") as f:
        res = run_load_sync(
            f.base_url, n_requests=1000, concurrency=4, deadline_s=1.0, model="tiny", max_tokens=30
        )  # each request would take ~3 s
        assert res.deadline_hit
        assert res.wall_s < 2.0
        assert res.started == 4 and res.not_started == 996
        assert res.successes == 0 and res.failures == 4
        assert all(r.error.startswith("Deadline") for r in res.records)
        assert f.stats()["by_path"].get("/v1/chat/completions", 0) == 4


def test_count_cap_below_concurrency(fake):
    before = _chat_count(fake)
    res = run_load_sync(
        fake.base_url, n_requests=3, concurrency=16, deadline_s=5, api_key=KEY, model="tiny", max_tokens=2
    )
    assert res.successes == 3 and res.concurrency == 3
    assert _chat_count(fake) == before + 3


def test_records_x_backend_and_truncated_streams():
    calls = {"n": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        body = json.loads(request.content)
        assert request.headers["authorization"] == "Bearer k"
        assert body["messages"][0]["content"] == make_prompt(3, calls["n"] - 1)  # seeded, in order
        n = calls["n"]
        chunks = [f'data: {{"choices":[{{"index":0,"delta":{{"content":"t{i}"}}}}]}}\n\n' for i in range(4)]
        if n % 3 != 0:
            chunks.append("data: [DONE]\n\n")  # every third stream is cut short
            chunks.append('data: {"choices":[{"index":0,"delta":{"content":"late"}}]}\n\nnot JSON\n\n')  # read, ignored
        headers = {"content-type": "text/event-stream"}
        if n % 2:
            headers["x-backend"] = f"vllm-{n % 4}"
        return httpx.Response(200, headers=headers, content="".join(chunks).encode())

    res = asyncio.run(
        run_load(
            "http://backend.invalid",
            n_requests=6,
            concurrency=1,
            deadline_s=5,
            api_key="k",
            model="m",
            seed=3,
            transport=httpx.MockTransport(handler),
        )
    )
    assert [r.backend for r in res.records] == ["vllm-1", None, "vllm-3", None, "vllm-1", None]
    assert res.backends == {"vllm-1": 2, "vllm-3": 1}
    assert [r.ok for r in res.records] == [True, True, False, True, True, False]
    assert res.failures == 2 and res.errors == {"Truncated": 2}
    assert all(r.tokens == 4 for r in res.records)


def test_result_table_and_cli(fake, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LG_KEY", KEY)
    out_json = tmp_path / "r.json"
    rc = main(
        [
            "--url",
            fake.base_url,
            "-n",
            "4",
            "-c",
            "2",
            "--deadline",
            "5",
            "--max-tokens",
            "2",
            "--api-key-env",
            "LG_KEY",
            "--json",
            str(out_json),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| successes" in printed and "| 4 " in printed.split("| successes", 1)[1].splitlines()[0]
    assert "latency p99" in printed and "TTFT p95" in printed
    assert KEY not in printed
    data = json.loads(out_json.read_text())
    assert data["summary"]["successes"] == 4 and len(data["records"]) == 4
    rc = main(
        [
            "--url",
            fake.base_url,
            "-n",
            "2",
            "-c",
            "1",
            "--deadline",
            "5",
            "--model",
            "tiny",
            "--api-key-env",
            "LG_KEY_UNSET",
        ]
    )
    assert rc == 1  # 401s are failures


def test_streams_reuse_one_connection(fake):
    """Each stream is read to the end of its body (past `[DONE]`), so httpx keeps the connection:
    5 streams one after another reach the fake over a single TCP connection. A TCP proxy in front
    of the fake records the client port of every connection the client opens."""

    async def go():
        client_ports: list[int] = []
        handlers: list[asyncio.Task] = []

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.append(asyncio.current_task())
            client_ports.append(writer.get_extra_info("peername")[1])
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", fake.port)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

        proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with proxy:
            port = proxy.sockets[0].getsockname()[1]
            res = await run_load(
                f"http://127.0.0.1:{port}",
                n_requests=5,
                concurrency=1,
                deadline_s=8,
                api_key=KEY,
                model="tiny",
                stream=True,
                max_tokens=2,
            )
            await asyncio.wait_for(asyncio.gather(*handlers), 5)  # the client closed its connection(s)
        return client_ports, res

    client_ports, res = asyncio.run(go())
    assert (res.successes, res.failures) == (5, 0)
    assert all(r.tokens == 2 for r in res.records)
    assert len(client_ports) == 1


def test_connection_closed_before_any_response_is_retried_once():
    """A kept-alive connection that dies before the response (nginx reload) is retried, like the SDKs do."""
    import asyncio

    import httpx

    from bench.loadgen import run_load

    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        body = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n'
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    res = asyncio.run(
        run_load(
            "http://127.0.0.1:9/v1",
            n_requests=1,
            concurrency=1,
            deadline_s=5,
            model="m",
            transport=httpx.MockTransport(handler),
        )
    )
    assert res.successes == 1 and res.failures == 0 and res.retried == 1 and calls["n"] == 2


def test_failure_after_response_started_is_not_retried():
    import asyncio

    import httpx

    from bench.loadgen import run_load

    calls = {"n": 0}

    class Cut(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(200, stream=Cut(), headers={"content-type": "text/event-stream"})

    res = asyncio.run(
        run_load(
            "http://127.0.0.1:9/v1",
            n_requests=1,
            concurrency=1,
            deadline_s=5,
            model="m",
            transport=httpx.MockTransport(handler),
        )
    )
    assert res.failures == 1 and res.retried == 0 and calls["n"] == 1
    assert "RemoteProtocolError" in res.records[0].error
