"""A minimal OpenAI-compatible server that streams instantly: a yardstick for the client.

`python -m perfloop.bench.echo_server --port 8000 [--ttft-ms 0] [--itl-ms 0]` serves
`/health`, `/v1/models` and streaming `/v1/completions`: `max_tokens` chunks of one
token each, then a usage chunk and `[DONE]`. With zero delays it measures how many
SSE chunks per second the benchmark client sustains; with delays it is a fake engine
with known latencies (handy for A/A runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json

_MODEL = "echo"


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _chunk(data: str) -> bytes:
    payload = f"data: {data}\n\n".encode()
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return method, path, body


async def _stream(writer: asyncio.StreamWriter, body: bytes, ttft_s: float, itl_s: float) -> None:
    req = json.loads(body or b"{}")
    n = int(req.get("max_tokens") or 16)
    prompt = req.get("prompt", "")
    prompt_len = len(prompt) if isinstance(prompt, list) else len(str(prompt).encode())
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    if ttft_s:
        await asyncio.sleep(ttft_s)
    token = json.dumps(
        {
            "id": "cmpl-echo",
            "object": "text_completion",
            "model": _MODEL,
            "choices": [{"index": 0, "text": "x", "finish_reason": None}],
        }
    )
    for i in range(n):
        if i and itl_s:
            await asyncio.sleep(itl_s)
        writer.write(_chunk(token))
        if itl_s or i % 64 == 63:
            await writer.drain()
    usage = {"prompt_tokens": prompt_len, "completion_tokens": n, "total_tokens": prompt_len + n}
    writer.write(_chunk(json.dumps({"id": "cmpl-echo", "choices": [], "usage": usage})))
    writer.write(_chunk("[DONE]") + b"0\r\n\r\n")
    await writer.drain()


def make_handler(ttft_s: float, itl_s: float):  # noqa: ANN201 - asyncio callback
    """The connection handler for `asyncio.start_server`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                method, path, body = request
                if path == "/health":
                    writer.write(_response("200 OK", b"{}"))
                elif path == "/v1/models":
                    writer.write(_response("200 OK", json.dumps({"data": [{"id": _MODEL}]}).encode()))
                elif path == "/v1/completions" and method == "POST":
                    await _stream(writer, body, ttft_s, itl_s)
                else:
                    writer.write(_response("404 Not Found", b'{"error": "not found"}'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


async def serve(host: str, port: int, ttft_ms: float, itl_ms: float) -> None:
    """Serve until cancelled."""
    server = await asyncio.start_server(make_handler(ttft_ms / 1000, itl_ms / 1000), host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first chunk")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="delay between chunks")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.ttft_ms, args.itl_ms))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
