"""The OpenAI completions surface an eval needs: loglikelihood through `echo` + `logprobs`, greedy tokens.

Works against any server that implements the legacy completions logprobs (perfloop, vLLM, SGLang,
llama.cpp's server): the prompt is echoed with per-token logprobs and `text_offset`, and the tokens
that start at or after the end of the context are the continuation's.
"""

from __future__ import annotations

from typing import Any

import httpx


class EvalError(RuntimeError):
    """The server refused or failed a request the eval needs."""


class Completions:
    """POST /v1/completions of one served model."""

    def __init__(self, base_url: str, model: str, timeout: float = 300.0) -> None:
        self.url = base_url.rstrip("/") + "/v1/completions"
        self.model = model
        self.http = httpx.Client(timeout=timeout)

    def create(self, **body: Any) -> dict[str, Any]:
        """One completion request; EvalError names the server's reason on a non-200 answer."""
        resp = self.http.post(self.url, json={"model": self.model, **body})
        if resp.status_code != 200:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:200]
            raise EvalError(f"{self.url}: HTTP {resp.status_code}: {message}")
        return resp.json()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


def continuation_logprob(client: Completions, context: str, continuation: str) -> tuple[float, bool]:
    """log P(continuation | context) and whether every continuation token was the top choice."""
    out = client.create(prompt=context + continuation, max_tokens=1, echo=True, logprobs=1, temperature=0)
    lp = out["choices"][0]["logprobs"]
    end = len(context + continuation)
    total, greedy = 0.0, True
    for offset, logprob, top in zip(
        lp["text_offset"], lp["token_logprobs"], lp["top_logprobs"], strict=False
    ):
        if offset < len(context) or offset >= end:
            continue  # context tokens, and the one generated token after the echo
        if logprob is None:
            raise EvalError("the server returned no logprob for a continuation token")
        total += logprob
        greedy = greedy and (not top or logprob >= max(top.values()) - 1e-6)
    return total, greedy


def served_model(base_url: str) -> str:
    """The first model id a server lists at GET /v1/models (the name its completions answer to)."""
    resp = httpx.get(base_url.rstrip("/") + "/v1/models", timeout=30.0)
    try:
        return str(resp.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise EvalError(f"{base_url}/v1/models: no model listed (HTTP {resp.status_code})") from exc
