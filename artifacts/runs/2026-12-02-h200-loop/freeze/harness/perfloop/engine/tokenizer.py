"""Tokenizers: HF `tokenizers` when the model folder has tokenizer.json, else a byte-level fallback.

Byte-level fallback (documented contract): token id b (0..255) is the byte b; ids from 256 up
are special tokens (256 = BOS, 257 = EOS in perfloop's tiny presets) and decode to nothing.
Text is encoded as its UTF-8 bytes, so any prompt works with any model of vocab >= 258.

Default chat template (no tokenizer_config.json chat_template): each message is rendered as
`<|ROLE|>\nCONTENT\n` and the prompt ends with `<|assistant|>\n` (unless add_generation_prompt
is false).

For other tools (HF `AutoTokenizer`, benchmark clients), `write_byte_tokenizer` writes an
equivalent `tokenizer.json` (byte-level BPE without merges; ids >= 256 as special tokens) into a
preset's folder, with a `perfloop_tokenizer.json` marker so perfloop itself keeps the fallback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import jinja2


class Tokenizer(Protocol):
    eos_token_id: int | None
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str: ...
    def token_str(self, token_id: int) -> str: ...


def _default_chat(messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    body = "".join(f"<|{m['role']}|>\n{m.get('content') or ''}\n" for m in messages)
    return body + ("<|assistant|>\n" if add_generation_prompt else "")


def _chat(
    template: _ChatTemplate | None, messages: list[dict[str, Any]], add_generation_prompt: bool, **kwargs: Any
) -> str:
    if template is None:
        if kwargs:
            raise ValueError(f"the default chat template takes no variables, got {sorted(kwargs)}")
        return _default_chat(messages, add_generation_prompt)
    return template.render(messages, add_generation_prompt, **kwargs)


MARKER = "perfloop_tokenizer.json"
MAX_NAMED_SPECIALS = 4096


def special_token_name(token_id: int) -> str:
    """The text form of a byte-level special id (>= 256), in logprobs and the written tokenizer.json."""
    return f"<|special_{token_id}|>"


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

    def render(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        variables = {**self._special, **kwargs}
        return self._template.render(
            messages=messages, add_generation_prompt=add_generation_prompt, **variables
        )


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

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        return _chat(self._chat, messages, add_generation_prompt, **kwargs)

    def token_str(self, token_id: int) -> str:
        """One token as text; a lone non-ASCII byte as `bytes:\\xNN` (vLLM's form)."""
        if token_id >= 256:
            return special_token_name(token_id)
        return chr(token_id) if token_id < 128 else f"bytes:\\x{token_id:02x}"


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

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        return _chat(self._chat, messages, add_generation_prompt, **kwargs)

    def token_str(self, token_id: int) -> str:
        """One token as text (special tokens by name)."""
        return self._tok.decode([token_id], skip_special_tokens=False)


def load_tokenizer(model_dir: Path, vocab_size: int, eos_token_id: int | None) -> Tokenizer:
    """The model folder's tokenizer, or the byte-level fallback."""
    chat = None
    config_path = model_dir / "tokenizer_config.json"
    if config_path.is_file():
        cfg = json.loads(config_path.read_text())
        if isinstance(cfg.get("chat_template"), str):
            special = {k: v for k, v in cfg.items() if k.endswith("_token") and isinstance(v, str)}
            chat = _ChatTemplate(cfg["chat_template"], special)
    if (model_dir / "tokenizer.json").is_file() and not (model_dir / MARKER).is_file():
        return HFTokenizer(model_dir / "tokenizer.json", eos_token_id, chat)
    return ByteTokenizer(vocab_size, eos_token_id, chat)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character map used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def write_byte_tokenizer(model_dir: Path, vocab_size: int, bos: int | None, eos: int | None) -> None:
    """Write an HF `tokenizer.json` + `tokenizer_config.json` equal to the byte-level fallback.

    Byte b is token b; every id from 256 to vocab_size - 1 is a special token that decodes to
    nothing, as in ByteTokenizer (past MAX_NAMED_SPECIALS only BOS and EOS are named; other ids
    decode to nothing either way). Files are written whole (rename), so readers never see a part.
    A marker file keeps perfloop on its own fallback.
    """
    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    added = [
        {"id": i, "content": special_token_name(i), "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True}
        for i in range(256, vocab_size)
        if vocab_size <= MAX_NAMED_SPECIALS or i in (bos, eos)
    ]  # fmt: skip
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                          "use_regex": False},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": []},
    }  # fmt: skip
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 30}
    if bos is not None and bos >= 256:
        config["bos_token"] = special_token_name(bos)
    if eos is not None and eos >= 256:
        config["eos_token"] = special_token_name(eos)
    for name, data in (
        ("tokenizer_config.json", config),
        (MARKER, {"kind": "byte-level", "vocab_size": vocab_size}),
        ("tokenizer.json", spec),  # last: its presence says the set is complete
    ):
        tmp = model_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, model_dir / name)
