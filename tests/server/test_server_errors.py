"""Bad input gets OpenAI-shaped errors with the right status and a message naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "preset:tiny-qwen3"
KEY = "sk-test-key"
OK = {"model": MODEL, "prompt": "hello", "max_tokens": 4}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def secured(start):
    """A server that requires an API key."""
    return start(api_key=KEY)


# (case id, path, JSON body or raw bytes, headers, status, error.param, words the message must contain)
CASES: list[tuple[str, str, Any, dict[str, str] | None, int, str | None, str]] = [
    ("missing-model", "/v1/completions", {"prompt": "hi"}, None, 400, "model", "model"),
    ("unknown-model", "/v1/completions", {**OK, "model": "gpt-9"}, None, 404, "model", "gpt-9"),
    ("n-too-many", "/v1/completions", {**OK, "n": 99}, None, 400, "n", "16"),
    ("negative-temp", "/v1/completions", {**OK, "temperature": -1}, None, 400, "temperature", "equal to 0"),
    ("top-p-zero", "/v1/completions", {**OK, "top_p": 0}, None, 400, "top_p", "top_p"),
    ("top-k-below-minus-one", "/v1/completions", {**OK, "top_k": -5}, None, 400, "top_k", "top_k"),
    ("max-tokens-zero", "/v1/completions", {**OK, "max_tokens": 0}, None, 400, "max_tokens", "echo"),
    ("max-tokens-text", "/v1/completions", {**OK, "max_tokens": "ten"}, None, 400, "max_tokens", "integer"),
    ("empty-prompt", "/v1/completions", {**OK, "prompt": ""}, None, 400, "prompt", "at least 1"),
    ("empty-id-list", "/v1/completions", {**OK, "prompt": []}, None, 400, "prompt", "at least 1"),
    ("empty-in-prompt-list", "/v1/completions", {**OK, "prompt": ["a", ""]}, None, 400, "prompt", "prompt"),
    ("token-outside-vocab", "/v1/completions", {**OK, "prompt": [1, 99999]}, None, 400, "prompt", "99999"),
    ("prompt-over-context", "/v1/completions", {**OK, "prompt": "a" * 300}, None, 400, "prompt", "context"),
    ("output-over-context", "/v1/completions", {**OK, "max_tokens": 300}, None, 400, "max_tokens", "context"),
    ("five-stop-strings", "/v1/completions", {**OK, "stop": list("abcde")}, None, 400, "stop", "4"),
    ("echo-stream", "/v1/completions", {**OK, "echo": True, "stream": True}, None, 400, "echo", "stream"),
    ("logprobs-over-20", "/v1/completions", {**OK, "logprobs": 21}, None, 400, "logprobs", "20"),
    ("seed-text", "/v1/completions", {**OK, "seed": "abc"}, None, 400, "seed", "seed"),
    ("stream-options-no-stream", "/v1/completions", {**OK, "stream_options": {"include_usage": False}}, None,
     400, "stream_options", "stream"),
    ("not-json", "/v1/completions", b"{not json", None, 400, None, "JSON"),
    ("json-array", "/v1/completions", [1, 2], None, 400, None, "object"),
    ("no-messages", "/v1/chat/completions", {**CHAT, "messages": []}, None, 400, "messages", "messages"),
    ("bad-role", "/v1/chat/completions", {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, None, 400,
     "messages.0.role", "role"),
    ("chat-n-zero", "/v1/chat/completions", {**CHAT, "n": 0}, None, 400, "n", "n"),
    ("missing-key", "/v1/completions", OK, {"Authorization": ""}, 401, None, "API key"),
    ("wrong-key", "/v1/completions", OK, {"Authorization": "Bearer nope"}, 401, None, "API key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "param", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_openai_error(secured, path, body, headers, status, param, words) -> None:
    sent_headers = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    if isinstance(body, bytes):
        sent_headers["Content-Type"] = "application/json"
        response = httpx.post(secured.url + path, content=body, headers=sent_headers, timeout=30)
    else:
        response = httpx.post(secured.url + path, json=body, headers=sent_headers, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert words.lower() in error["message"].lower()


def test_server_healthy_after_bad_inputs(secured) -> None:
    assert httpx.get(f"{secured.url}/health", timeout=10).status_code == 200
    result = secured.client().completions.create(model=MODEL, prompt="still fine", max_tokens=3)
    assert result.usage.completion_tokens >= 1


def test_openai_client_sees_typed_errors(secured) -> None:
    client = secured.client()
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2, best_of=2)
    assert bad.value.body["param"] == "best_of"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{secured.url}/v1", api_key="wrong", max_retries=0).models.list()


def test_unknown_route_and_method(secured) -> None:
    assert httpx.get(f"{secured.url}/v1/nothing", timeout=10).json()["error"]["type"] == "not_found_error"
    response = httpx.get(f"{secured.url}/v1/completions", timeout=10)
    assert response.status_code == 405
    assert "error" in response.json()
