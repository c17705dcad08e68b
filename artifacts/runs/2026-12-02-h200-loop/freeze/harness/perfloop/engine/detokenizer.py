"""Incremental detokenization with stop strings, for streaming one request's text."""

from __future__ import annotations

from typing import Protocol

# What a byte-level decoder yields for a byte sequence that is not yet complete UTF-8.
_INCOMPLETE = "\ufffd"
# Tokens decoded together with the new ones so that merges at the boundary come out right.
_CONTEXT_TOKENS = 6


class Decoder(Protocol):
    """The one tokenizer method the detokenizer needs."""

    def decode(self, ids: list[int]) -> str: ...


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that are safe to send.

    A token may hold only part of a multi-byte character; its text is held back until the
    character completes. Text that could be the start of a stop string is held back too,
    and once a stop string appears the text is cut before it and `stopped` turns true.
    """

    def __init__(self, tokenizer: Decoder, stop: list[str] | None = None) -> None:
        self._tokenizer = tokenizer
        self._stop = [s for s in (stop or []) if s]
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the context window
        self._read_offset = 0  # tokens before this are already turned into text
        self._text = ""  # all decoded text so far
        self._sent = 0  # characters of _text already returned
        self.stopped = False

    def push(self, token_ids: list[int]) -> str:
        """Add new tokens; return the text that may be sent now (possibly empty)."""
        if self.stopped:
            return ""
        self._ids.extend(token_ids)
        self._decode_new()
        return self._release(final=False)

    def flush(self) -> str:
        """The request finished: return whatever text is still held back."""
        if self.stopped:
            return ""
        self._decode_new(force=True)
        return self._release(final=True)

    def _decode_new(self, force: bool = False) -> None:
        if self._read_offset == len(self._ids):
            return
        prefix = self._tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._tokenizer.decode(self._ids[self._prefix_offset :])
        if not force and (full.endswith(_INCOMPLETE) or len(full) < len(prefix)):
            return  # wait for the rest of the character
        self._text += full[len(prefix) :]
        self._read_offset = len(self._ids)
        self._prefix_offset = max(0, self._read_offset - _CONTEXT_TOKENS)

    def _release(self, final: bool) -> str:
        cut = self._find_stop()
        if cut is not None:
            self.stopped = True
            self._text = self._text[:cut]
            end = cut
        else:
            end = len(self._text) if final else max(self._sent, len(self._text) - self._hold)
        delta = self._text[self._sent : end]
        self._sent = end
        return delta

    def _find_stop(self) -> int | None:
        # A stop string may straddle the already-sent text, so search from where it could start.
        start = max(0, self._sent - self._hold)
        hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
        return min(hits) if hits else None
