"""Incremental detokenization: split UTF-8 characters are held back, stop strings cut the text."""

from __future__ import annotations

import pytest

from perfloop.engine.async_engine import Histogram
from perfloop.engine.detokenizer import IncrementalDetokenizer
from perfloop.engine.tokenizer import ByteTokenizer

TOKENIZER = ByteTokenizer(vocab_size=512, eos_token_id=257)


def _stream(
    text: str, stop: list[str] | None = None, step: int = 1
) -> tuple[list[str], IncrementalDetokenizer]:
    detok = IncrementalDetokenizer(TOKENIZER, stop)
    ids = TOKENIZER.encode(text)
    deltas = [detok.push(ids[i : i + step]) for i in range(0, len(ids), step)]
    deltas.append(detok.flush())
    return deltas, detok


@pytest.mark.parametrize("text", ["plain ascii", "ümlaut", "漢字 and ✓", "emoji 🙂 here", "mixed é🙂x"])
def test_deltas_join_to_the_text_and_never_split_a_character(text: str) -> None:
    deltas, _ = _stream(text)
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)


def test_multibyte_character_arrives_whole() -> None:
    detok = IncrementalDetokenizer(TOKENIZER)
    euro = TOKENIZER.encode("€")  # three bytes, three tokens
    assert [detok.push([b]) for b in euro] == ["", "", "€"]


def test_special_tokens_add_no_text() -> None:
    detok = IncrementalDetokenizer(TOKENIZER)
    assert detok.push([104, 256, 105, 257]) == "hi"


def test_invalid_bytes_come_out_at_flush() -> None:
    detok = IncrementalDetokenizer(TOKENIZER)
    assert detok.push([104]) == "h"
    assert detok.push([0xE2]) == ""  # maybe the start of a character: wait
    assert detok.flush() == "\ufffd"  # it never completed


@pytest.mark.parametrize("step", [1, 2, 5])
def test_stop_string_cuts_text_across_token_boundaries(step: int) -> None:
    deltas, detok = _stream("hello STOP world", stop=["STOP"], step=step)
    assert "".join(deltas) == "hello "
    assert detok.stopped


def test_earliest_of_several_stop_strings_wins() -> None:
    deltas, detok = _stream("abc xyz def", stop=["def", "xyz"])
    assert "".join(deltas) == "abc "
    assert detok.stopped


def test_prefix_of_stop_string_is_released_when_it_does_not_complete() -> None:
    deltas, detok = _stream("a STO b", stop=["STOP"])
    assert "".join(deltas) == "a STO b"
    assert not detok.stopped


def test_nothing_after_stop() -> None:
    detok = IncrementalDetokenizer(TOKENIZER, ["!"])
    assert detok.push(TOKENIZER.encode("ok!")) == "ok"
    assert detok.push(TOKENIZER.encode("more")) == ""
    assert detok.flush() == ""


def test_histogram_is_cumulative() -> None:
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.5, 0.7, 3.0):
        hist.observe(value)
    assert hist.cumulative() == [(0.1, 1), (1.0, 3)]
    assert hist.count == 4
    assert hist.total == pytest.approx(4.25)
