"""A local fake of the Anthropic Messages API, driven by scripted replies.

A real HTTP server (http.server in a thread) on 127.0.0.1 that speaks `POST /v1/messages`
as the API does: JSON message bodies with content blocks, `tool_use` ids, `stop_reason`,
`usage` with cache fields, and `{"type": "error", ...}` bodies with `retry-after` headers
for 429/5xx. It checks what a real server would refuse (missing key or version header, a
`tool_use` not answered by `tool_result` blocks at the start of the next user turn, more
than four cache breakpoints) and answers 400 `invalid_request_error` then. Tests point the
real SDK at `FakeMessagesAPI.url` and read back every request and the usage it served.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = dict[str, Any]
Step = Reply | Callable[[dict[str, Any]], Reply]

_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": value}


def tool(name: str, **tool_input: Any) -> dict[str, Any]:
    """A tool_use content block with a fresh id."""
    return {"type": "tool_use", "id": f"toolu_fake{next(_ids):05d}", "name": name, "input": tool_input}


def usage(
    input_tokens: int = 120, output_tokens: int = 60, cache_write: int = 0, cache_read: int = 0
) -> dict[str, int]:
    """A `usage` object as the API reports it."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }


def message(
    *content: dict[str, Any], stop_reason: str | None = None, use: dict[str, int] | None = None
) -> Reply:
    """A scripted assistant message; stop_reason defaults to tool_use when a tool is called."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return {"kind": "message", "content": list(content), "stop_reason": stop_reason, "usage": use or usage()}


def error(status: int, retry_after_ms: int = 20) -> Reply:
    """A scripted API error (429 rate limit, 500 api error, 529 overloaded) with retry headers."""
    kinds = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error", 401: "authentication_error"}
    return {
        "kind": "error",
        "status": status,
        "type": kinds.get(status, "api_error"),
        "retry_after_ms": retry_after_ms,
    }


@dataclass
class FakeMessagesAPI:
    """The server and its script; `requests` and `served_usage` record what happened."""

    script: list[Step] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    served_usage: list[dict[str, int]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    url: str = ""

    def next_reply(self, body: dict[str, Any]) -> Reply:
        if not self.script:
            return {
                "kind": "error",
                "status": 400,
                "type": "invalid_request_error",
                "retry_after_ms": 0,
                "message": "fake: the script has no reply left",
            }
        step = self.script.pop(0)
        return step(body) if callable(step) else step


def credential(headers: dict[str, str]) -> str:
    """The API key a request carried (`x-api-key`, or `authorization: Bearer` as SDK 2.x sends it)."""
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")


def protocol_problem(body: dict[str, Any], headers: dict[str, str]) -> str | None:
    """What a real Messages API would answer 400/401 for, or None."""
    if not credential(headers):
        return "x-api-key or authorization header is required"
    if not headers.get("anthropic-version"):
        return "anthropic-version header is required"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return "max_tokens: must be a positive integer"
    messages = body["messages"]
    if not messages or messages[0]["role"] != "user":
        return "messages: the first message must use the user role"
    for i, m in enumerate(messages[:-1]):
        blocks = m["content"] if isinstance(m["content"], list) else []
        ids = [b["id"] for b in blocks if m["role"] == "assistant" and b.get("type") == "tool_use"]
        if not ids:
            continue
        nxt = messages[i + 1]
        results = (
            [b for b in nxt["content"] if isinstance(b, dict)] if isinstance(nxt["content"], list) else []
        )
        leading = list(itertools.takewhile(lambda b: b.get("type") == "tool_result", results))
        answered = {b["tool_use_id"] for b in leading}
        if nxt["role"] != "user" or set(ids) - answered:
            return (
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {sorted(set(ids) - answered)}"
            )
    marks = json.dumps([body.get("system"), body.get("tools"), messages]).count('"cache_control"')
    if marks > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {marks}."
    return None


def _handler(api: FakeMessagesAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            return

        def _send(self, status: int, doc: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            data = json.dumps(doc).encode()
            api.statuses.append(status)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_fake{len(api.statuses):05d}")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, kind: str, msg: str, extra: dict[str, str] | None = None) -> None:
            self._send(status, {"type": "error", "error": {"type": kind, "message": msg}}, extra)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path.split("?")[0] != "/v1/messages":
                self._error(404, "not_found_error", f"Not found: {self.path}")
                return
            api.requests.append(body)
            api.headers.append(headers)
            problem = protocol_problem(body, headers)
            if problem:
                status = 401 if "authorization" in problem else 400
                kind = "authentication_error" if status == 401 else "invalid_request_error"
                self._error(status, kind, problem)
                return
            reply = api.next_reply(body)
            if reply["kind"] == "error":
                retry = {"retry-after-ms": str(reply["retry_after_ms"]), "retry-after": "0"}
                self._error(reply["status"], reply["type"], reply.get("message", "scripted error"), retry)
                return
            used, stop = dict(reply["usage"]), reply["stop_reason"]
            if used["output_tokens"] > body["max_tokens"]:
                # As the real API does: a reply never runs past max_tokens.
                used["output_tokens"], stop = body["max_tokens"], "max_tokens"
            api.served_usage.append(used)
            self._send(
                200,
                {
                    "id": f"msg_fake{len(api.served_usage):05d}",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": reply["content"],
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": used,
                },
            )

    return Handler


@contextmanager
def serve(script: list[Step]) -> Iterator[FakeMessagesAPI]:
    """Run a fake API with `script` on a free local port for the duration of the block."""
    api = FakeMessagesAPI(script=list(script))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
