"""The engine's torch CPU threads: a default that never oversubscribes, and the flag that sets them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from perfloop.engine import threads
from perfloop.engine.config import EngineConfig
from perfloop.engine.llm_engine import LLMEngine


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cpus", "current", "expected"), [(16, 16, 8), (16, 3, 3), (2, 2, 1), (1, 1, 1), (3, 8, 1)]
)
def test_default_is_half_the_usable_cpus_and_never_more_than_set(
    monkeypatch: pytest.MonkeyPatch, cpus: int, current: int, expected: int
) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(torch, "get_num_threads", lambda: current)
    assert threads.default_threads() == expected


def test_the_engine_applies_its_flag_and_otherwise_the_default() -> None:
    engine = LLMEngine(EngineConfig(model="preset:tiny-qwen3", torch_threads=1, num_kv_blocks=8))
    assert engine.torch_threads == torch.get_num_threads() == 1
    expected = threads.default_threads()
    engine = LLMEngine(EngineConfig(model="preset:tiny-qwen3", num_kv_blocks=8))
    assert engine.torch_threads == torch.get_num_threads() == expected
