"""Every request parameter is honoured (with an assertion on its effect) or refused with a 400 naming it.

Through the official `openai` client wherever it has the field (vLLM extensions go in extra_body).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
import transformers

pytestmark = pytest.mark.slow

MODEL = "preset:tiny-qwen3"
PROMPT = "The quick brown fox jumps over the lazy dog, again and again."
SPECIAL = 300  # a byte-level special id: decodes to no text
EOS = 257
GREEDY = {"model": MODEL, "prompt": PROMPT, "max_tokens": 24, "temperature": 0}
NO_EOS = {"ignore_eos": True}


def _complete(server, **kw: Any) -> Any:
    extra = kw.pop("extra_body", {})
    return server.client().completions.create(**{**GREEDY, **kw}, extra_body={**NO_EOS, **extra})


def _tokens(choice: Any) -> list[str]:
    return choice.logprobs.tokens


def _base(server) -> list[str]:
    return _tokens(_complete(server, logprobs=0).choices[0])


# ---- honoured: (case id, check(server)) -----------------------------------------------------------


def check_logit_bias(server) -> None:
    out = _complete(server, logprobs=0, logit_bias={str(SPECIAL): 100})
    assert _tokens(out.choices[0]) == [f"<|special_{SPECIAL}|>"] * 24
    assert out.choices[0].text == ""


def check_stop_token_ids(server) -> None:
    out = _complete(server, logit_bias={str(SPECIAL): 100}, extra_body={"stop_token_ids": [SPECIAL]})
    assert out.choices[0].finish_reason == "stop" and out.usage.completion_tokens == 1


def check_n(server) -> None:
    before = server.metrics()["perfloop:prefix_cache_hits_total"]
    out = _complete(server, n=3, temperature=1.0, seed=4, prompt=PROMPT * 2)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert out.usage.completion_tokens == 3 * 24
    assert out.usage.prompt_tokens == len((PROMPT * 2).encode())  # the prompt counts once
    # Siblings 1 and 2 found the first one's full prompt blocks in the prefix cache.
    assert server.metrics()["perfloop:prefix_cache_hits_total"] - before >= 2 * 16


def check_prompt_list(server) -> None:
    for prompt in (["hello", "hi!"], [[104, 101], [104, 105, 33]]):
        out = _complete(server, prompt=prompt, n=2)
        assert [c.index for c in out.choices] == [0, 1, 2, 3]
        for k, single in enumerate(prompt):
            alone = _complete(server, prompt=single).choices[0].text
            assert out.choices[2 * k].text == out.choices[2 * k + 1].text == alone


def check_echo_logprobs_match_hf(server) -> None:
    """lm-eval's loglikelihood request: echo, logprobs, max_tokens 0 or 1."""
    root = Path(server.client().models.list().data[0].model_dump()["root"])
    ids = list(PROMPT.encode())
    hf = transformers.AutoModelForCausalLM.from_pretrained(root, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    want = torch.tensor([ref[j - 1, ids[j]].item() for j in range(1, len(ids))])
    for max_tokens in (0, 1):
        out = _complete(server, prompt=PROMPT, echo=True, logprobs=2, max_tokens=max_tokens)
        choice = out.choices[0]
        assert choice.text.startswith(PROMPT) and (max_tokens == 1 or choice.text == PROMPT)
        lp = choice.logprobs
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        got = torch.tensor(lp.token_logprobs[1 : len(ids)])
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        assert len(lp.tokens) == len(ids) + max_tokens
        assert out.usage.completion_tokens == max_tokens
        top = lp.top_logprobs[1]
        assert len(top) == 2 and max(top.values()) == pytest.approx(ref[0].max().item(), abs=1e-4)


def check_completion_logprobs(server) -> None:
    out = _complete(server, logprobs=3)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 24
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 3 and chosen == pytest.approx(max(top.values()))  # greedy takes the top token


def check_chat_logprobs(server) -> None:
    out = server.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        extra_body=NO_EOS,
    )
    content = out.choices[0].logprobs.content
    assert len(content) == 6
    assert all(
        len(c.top_logprobs) == 2 and c.logprob == pytest.approx(c.top_logprobs[0].logprob) for c in content
    )


def _differs(**kw: Any) -> Callable[[Any], None]:
    def check(server) -> None:
        base = _base(server)
        assert len(set(base)) < len(base), "greedy output repeats tokens, so penalties can act"
        assert _tokens(_complete(server, logprobs=0, **kw).choices[0]) != base

    return check


def check_min_tokens(server) -> None:
    forced = {"logit_bias": {str(EOS): 100}}
    early = server.client().completions.create(**GREEDY, **forced)
    held = server.client().completions.create(**GREEDY, **forced, extra_body={"min_tokens": 5})
    assert early.usage.completion_tokens == 1 and early.choices[0].finish_reason == "stop"
    assert held.usage.completion_tokens == 6 and held.choices[0].finish_reason == "stop"


def check_min_p(server) -> None:
    sampled = _complete(server, logprobs=0, temperature=1.5, seed=9, extra_body={"min_p": 1.0})
    assert _tokens(sampled.choices[0]) == _base(server)  # min_p 1 keeps only the top token


def check_allowed_token_ids(server) -> None:
    out = _complete(server, extra_body={"allowed_token_ids": [65, 66]})
    assert out.choices[0].text and set(out.choices[0].text) <= {"A", "B"}


def check_add_generation_prompt(server) -> None:
    messages = [{"role": "user", "content": "hi"}]
    client = server.client()
    with_turn = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
    without = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=1, extra_body={"add_generation_prompt": False}
    )
    assert with_turn.usage.prompt_tokens - without.usage.prompt_tokens == len("<|assistant|>\n")


def check_streamed_n(server) -> None:
    stream = server.client().completions.create(
        **GREEDY, n=2, stream=True, stream_options={"include_usage": True}, extra_body=NO_EOS
    )
    chunks = list(stream)
    per_index = [sum(1 for c in chunks if c.choices and c.choices[0].index == i) for i in (0, 1)]
    assert per_index == [24, 24] and chunks[-1].usage.completion_tokens == 48


HONOURED: list[tuple[str, Callable[[Any], None]]] = [
    ("logit_bias", check_logit_bias),
    ("stop_token_ids", check_stop_token_ids),
    ("n", check_n),
    ("prompt_list", check_prompt_list),
    ("echo_logprobs_hf", check_echo_logprobs_match_hf),
    ("logprobs", check_completion_logprobs),
    ("chat_logprobs_top_logprobs", check_chat_logprobs),
    ("presence_penalty", _differs(presence_penalty=2.0)),
    ("frequency_penalty", _differs(frequency_penalty=2.0)),
    ("repetition_penalty", _differs(extra_body={"repetition_penalty": 2.0})),
    ("min_tokens", check_min_tokens),
    ("min_p", check_min_p),
    ("allowed_token_ids", check_allowed_token_ids),
    ("add_generation_prompt", check_add_generation_prompt),
    ("stream_n", check_streamed_n),
]


@pytest.mark.parametrize("check", [c for _, c in HONOURED], ids=[name for name, _ in HONOURED])
def test_parameter_is_honoured(server, check: Callable[[Any], None]) -> None:
    check(server)


# ---- refused: (case id, path, extra fields, the param the 400 names) ---------------------------------

CHAT_PATH = "/v1/chat/completions"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
REFUSED: list[tuple[str, str, dict[str, Any], str]] = [
    ("best_of", "/v1/completions", {"best_of": 2}, "best_of"),
    ("suffix", "/v1/completions", {"suffix": "end"}, "suffix"),
    ("response_format", CHAT_PATH, {"response_format": {"type": "json_object"}}, "response_format"),
    ("tools", "/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("tool_choice", "/v1/chat/completions", {"tool_choice": "auto"}, "tool_choice"),
    ("chat_template_kwargs", CHAT_PATH, {"chat_template_kwargs": {"x": 1}}, "chat_template_kwargs"),
    ("top_logprobs_alone", "/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("unknown_field", "/v1/completions", {"guided_json": {}}, "guided_json"),
    ("use_beam_search", "/v1/completions", {"use_beam_search": True}, "use_beam_search"),
    ("logit_bias_key", "/v1/completions", {"logit_bias": {"hello": 1}}, "logit_bias"),
    ("logit_bias_outside_vocab", "/v1/completions", {"logit_bias": {"99999": 1}}, "logit_bias"),
    ("min_tokens_over_max", "/v1/completions", {"min_tokens": 50}, "min_tokens"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "fields", "param"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_unsupported_parameter_is_refused_by_name(
    server, path: str, fields: dict[str, Any], param: str
) -> None:
    base = CHAT if "chat" in path else {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    response = httpx.post(server.url + path, json={**base, **fields}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]


def test_openai_client_gets_bad_request_for_best_of(server) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        server.client().completions.create(model=MODEL, prompt="x", max_tokens=2, best_of=3)
    assert bad.value.body["param"] == "best_of"


def test_tokenize_detokenize_version(server) -> None:
    tokens = httpx.post(f"{server.url}/tokenize", json={"model": MODEL, "prompt": "hé"}, timeout=10).json()
    assert tokens["tokens"] == list("hé".encode()) and tokens["count"] == 3 and tokens["max_model_len"] == 256
    chat = httpx.post(
        f"{server.url}/tokenize", json={"messages": [{"role": "user", "content": "x"}]}, timeout=10
    )
    assert bytes(chat.json()["tokens"]).decode() == "<|user|>\nx\n<|assistant|>\n"
    text = httpx.post(f"{server.url}/detokenize", json={"tokens": [104, SPECIAL, 105]}, timeout=10).json()
    assert text == {"prompt": "hi"}
    assert httpx.get(f"{server.url}/version", timeout=10).json()["version"]


def test_model_root_loads_with_hf_autotokenizer(server) -> None:
    root = server.client().models.list().data[0].model_dump()["root"]
    hf = transformers.AutoTokenizer.from_pretrained(root)
    text = "ümlaut ✓ and 漢字"
    ids = httpx.post(f"{server.url}/tokenize", json={"prompt": text}, timeout=10).json()["tokens"]
    assert hf.encode(text, add_special_tokens=False) == ids
    assert hf.decode([*ids, SPECIAL, EOS], skip_special_tokens=True) == text
    assert hf.eos_token_id == EOS
