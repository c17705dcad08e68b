"""The OpenAPI document describes the API, and fuzzing /v1/completions from it finds no 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

MODEL = "preset:tiny-qwen3"


@pytest.fixture(scope="module")
def short_server(start):
    """A 64-token context keeps every valid fuzz case short."""
    return start("--max-model-len", "64")


def test_openapi_document_describes_endpoints(short_server) -> None:
    doc = httpx.get(f"{short_server.url}/openapi.json", timeout=10).json()
    paths = doc["paths"]
    for path, method in [
        ("/v1/completions", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/start_profile", "post"),
        ("/stop_profile", "post"),
    ]:
        assert method in paths[path], f"{method.upper()} {path} missing from the OpenAPI document"
    completion = doc["components"]["schemas"]["CompletionRequest"]["properties"]
    assert {"prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream"} <= set(
        completion
    )
    assert "400" in paths["/v1/completions"]["post"]["responses"]
    assert "429" in paths["/v1/completions"]["post"]["responses"]


@pytest.mark.parametrize(("mode", "examples"), [("positive", 200), ("negative", 100)])
def test_fuzzed_completions_never_5xx(short_server, mode: str, examples: int) -> None:
    schema = schemathesis.openapi.from_url(f"{short_server.url}/openapi.json")
    operation = schema["/v1/completions"]["POST"]
    generation_mode = schemathesis.GenerationMode(mode)
    served = st.sampled_from([True] * 9 + [False])

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=generation_mode), served_name=served)
    def check(case: schemathesis.Case, served_name: bool) -> None:
        # Mostly use the served name, so cases get past the model check into the engine.
        if served_name and isinstance(case.body, dict):
            case.body["model"] = MODEL
        response = case.call(timeout=60)
        assert response.status_code < 500, f"{response.status_code} for {case.body!r}: {response.text}"

    check()
    assert httpx.get(f"{short_server.url}/health", timeout=10).status_code == 200
