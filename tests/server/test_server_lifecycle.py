"""Client disconnects free KV blocks, a full queue answers 429, and SIGTERM/SIGINT stop the server cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import threading

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "preset:tiny-qwen3"


@pytest.fixture(scope="module")
def long_server(start):
    """A server with room for long generations; the SIGTERM test (last in this file) stops it."""
    # a generous drain: under load, the in-flight request of the SIGTERM test needs a while
    return start("--max-model-len", "2048", "--shutdown-timeout", "300")


@pytest.fixture(scope="module")
def queue_server(start):
    """One running sequence at a time and at most 2 waiting; the SIGINT test (last) stops it."""
    return start("--max-num-seqs", "1", "--max-queue", "2")


def _busy_metrics_then_drop(server, body: dict, n: int) -> dict[str, float]:  # noqa: ANN001
    """Open a stream, read n data lines, read /metrics while it streams, then drop the connection."""
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen >= n:
                    return server.metrics()
    raise AssertionError(f"the stream ended after {seen} chunks")


def test_disconnect_aborts_and_frees_blocks(long_server, poll) -> None:
    server = long_server
    body = {"model": MODEL, "prompt": "x" * 200, "max_tokens": 1800, "stream": True, "ignore_eos": True}
    busy = _busy_metrics_then_drop(server, body, 5)
    assert busy["perfloop:num_requests_running"] == 1
    assert busy["perfloop:kv_cache_blocks_used"] >= 13  # 200 prompt tokens / 16
    # The abort frees everything; poll returns as soon as it has, the limit only bounds a hang.
    assert poll(lambda: server.metrics()["perfloop:kv_cache_blocks_used"] == 0, timeout=120)
    metrics = server.metrics()
    assert metrics["perfloop:num_requests_running"] == 0
    assert metrics["perfloop:generation_tokens_total"] < 1800


def test_full_queue_answers_429_with_retry_after(queue_server) -> None:
    server = queue_server

    async def one(client: openai.AsyncOpenAI) -> int | openai.RateLimitError:
        try:
            result = await client.completions.create(
                model=MODEL, prompt="queue", max_tokens=200, extra_body={"ignore_eos": True}
            )
        except openai.RateLimitError as exc:
            return exc
        return result.usage.completion_tokens

    async def run_all() -> list[int | openai.RateLimitError]:
        client = server.async_client()
        return await asyncio.gather(*(one(client) for _ in range(8)))

    results = asyncio.run(run_all())
    rejected = [r for r in results if isinstance(r, openai.RateLimitError)]
    served = [r for r in results if isinstance(r, int)]
    assert rejected and served
    assert all(r == 200 for r in served)
    for exc in rejected:
        assert exc.status_code == 429
        assert int(exc.response.headers["retry-after"]) >= 1
        assert "queue" in exc.body["message"]
    assert server.metrics()["perfloop:request_rejected_queue_full_total"] == len(rejected)
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_sigterm_finishes_in_flight_then_exits_0(long_server, stop) -> None:
    server = long_server
    body = {"model": MODEL, "prompt": "bye", "max_tokens": 150, "stream": True, "ignore_eos": True}
    events: list[dict] = []
    got_first = threading.Event()

    def stream() -> None:
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line[6:]))
                    got_first.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert got_first.wait(timeout=300)  # liveness only
    server.proc.send_signal(signal.SIGTERM)
    reader.join(timeout=300)
    assert stop(server, timeout=300) == 0  # the drain of a busy host may take a while
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=2)


def test_sigint_exits_0(queue_server) -> None:
    server = queue_server
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=120) == 0
    assert "Traceback" not in server.log()
