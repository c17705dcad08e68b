"""Per-request sampling parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

from perfloop.engine.errors import EngineInputError


@dataclass
class SamplingParams:
    """How one request samples and when it stops. temperature 0 (or top_k 1) is greedy."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        # Temperatures this small overflow logits / T; like vLLM, treat them as greedy.
        return self.temperature < 1e-5 or self.top_k == 1

    def validate(self) -> None:
        """Raise EngineInputError naming the first out-of-range field."""
        if self.max_tokens < 1:
            raise EngineInputError(f"max_tokens must be at least 1, got {self.max_tokens}", "max_tokens")
        if self.temperature < 0:
            raise EngineInputError(f"temperature must be >= 0, got {self.temperature}", "temperature")
        if not 0 < self.top_p <= 1:
            raise EngineInputError(f"top_p must be in (0, 1], got {self.top_p}", "top_p")
        if self.top_k < -1:
            raise EngineInputError(f"top_k must be -1, 0 (off) or positive, got {self.top_k}", "top_k")
