"""Tokenizers: HF `tokenizers` when the model folder has tokenizer.json, else a byte-level fallback.

Byte-level fallback (documented contract): token id b (0..255) is the byte b; ids from 256 up
are special tokens (256 = BOS, 257 = EOS in perfloop's tiny presets) and decode to nothing.
Text is encoded as its UTF-8 bytes, so any prompt works with any model of vocab >= 258.

Default chat template (no tokenizer_config.json chat_template): each message is rendered as
`<|ROLE|>\nCONTENT\n` and the prompt ends with `<|assistant|>\n`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import jinja2


class Tokenizer(Protocol):
    eos_token_id: int | None
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def apply_chat_template(self, messages: list[dict[str, Any]]) -> str: ...


def _default_chat(messages: list[dict[str, Any]]) -> str:
    body = "".join(f"<|{m['role']}|>\n{m.get('content') or ''}\n" for m in messages)
    return body + "<|assistant|>\n"


class _ChatTemplate:
    """A Jinja chat template from tokenizer_config.json, rendered with the HF conventions."""

    def __init__(self, source: str, special: dict[str, Any]) -> None:
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = self._raise
        self._template = env.from_string(source)
        self._special = special

    @staticmethod
    def _raise(message: str) -> None:
        raise ValueError(f"chat template: {message}")

    def render(self, messages: list[dict[str, Any]]) -> str:
        return self._template.render(messages=messages, add_generation_prompt=True, **self._special)


class ByteTokenizer:
    """UTF-8 bytes as token ids; ids >= 256 are specials."""

    def __init__(self, vocab_size: int, eos_token_id: int | None, chat: _ChatTemplate | None = None) -> None:
        if vocab_size < 256:
            raise ValueError(f"byte-level fallback tokenizer needs vocab_size >= 256, model has {vocab_size}")
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self._chat = chat

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict[str, Any]]) -> str:
        return self._chat.render(messages) if self._chat else _default_chat(messages)


class HFTokenizer:
    """A `tokenizers.Tokenizer` loaded from tokenizer.json."""

    def __init__(self, path: Path, eos_token_id: int | None, chat: _ChatTemplate | None) -> None:
        from tokenizers import Tokenizer as _Tok

        self._tok = _Tok.from_file(str(path))
        self.vocab_size = self._tok.get_vocab_size()
        self.eos_token_id = eos_token_id
        self._chat = chat

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def apply_chat_template(self, messages: list[dict[str, Any]]) -> str:
        return self._chat.render(messages) if self._chat else _default_chat(messages)


def load_tokenizer(model_dir: Path, vocab_size: int, eos_token_id: int | None) -> Tokenizer:
    """The model folder's tokenizer, or the byte-level fallback."""
    chat = None
    config_path = model_dir / "tokenizer_config.json"
    if config_path.is_file():
        cfg = json.loads(config_path.read_text())
        if isinstance(cfg.get("chat_template"), str):
            special = {k: v for k, v in cfg.items() if k.endswith("_token") and isinstance(v, str)}
            chat = _ChatTemplate(cfg["chat_template"], special)
    if (model_dir / "tokenizer.json").is_file():
        return HFTokenizer(model_dir / "tokenizer.json", eos_token_id, chat)
    return ByteTokenizer(vocab_size, eos_token_id, chat)
