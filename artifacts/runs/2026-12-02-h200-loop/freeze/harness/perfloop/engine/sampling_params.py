"""Per-request sampling parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

from perfloop.engine.errors import EngineInputError

MAX_LOGPROBS = 20  # as OpenAI and vLLM's default max_logprobs


@dataclass
class SamplingParams:
    """How one request samples and when it stops. temperature 0 (or top_k 1) is greedy."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    min_p: float = 0.0  # drop tokens below min_p * the top token's probability
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    min_tokens: int = 0  # EOS and stop_token_ids cannot be sampled before this many tokens
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    allowed_token_ids: list[int] | None = None
    logprobs: int | None = None  # per sampled token: its logprob and this many top alternatives
    prompt_logprobs: int | None = None  # the same for every prompt token after the first

    @property
    def greedy(self) -> bool:
        # Temperatures this small overflow logits / T; like vLLM, treat them as greedy.
        return self.temperature < 1e-5 or self.top_k == 1

    @property
    def needs_history(self) -> bool:
        """Penalties read the tokens so far, so the previous step's token must be on the host."""
        return self.presence_penalty != 0 or self.frequency_penalty != 0 or self.repetition_penalty != 1

    @property
    def processes_logits(self) -> bool:
        """Anything that changes logits before top-k/top-p (requests without it keep the plain path)."""
        return (
            self.needs_history
            or bool(self.logit_bias)
            or self.min_tokens > 0
            or self.allowed_token_ids is not None
        )

    def validate(self, vocab_size: int | None = None) -> None:
        """Raise EngineInputError naming the first out-of-range field."""
        checks = [
            (self.max_tokens >= 1, "max_tokens", f"must be at least 1, got {self.max_tokens}"),
            (self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}"),
            (0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}"),
            (self.top_k >= -1, "top_k", f"must be -1, 0 (off) or positive, got {self.top_k}"),
            (0 <= self.min_p <= 1, "min_p", f"must be in [0, 1], got {self.min_p}"),
            (0 <= self.min_tokens <= self.max_tokens, "min_tokens", "must be in [0, max_tokens]"),
            (-2 <= self.presence_penalty <= 2, "presence_penalty", "must be in [-2, 2]"),
            (-2 <= self.frequency_penalty <= 2, "frequency_penalty", "must be in [-2, 2]"),
            (0 < self.repetition_penalty <= 2, "repetition_penalty", "must be in (0, 2]"),
            (all(-100 <= v <= 100 for v in self.logit_bias.values()), "logit_bias", "values in [-100, 100]"),
            (self.allowed_token_ids != [], "allowed_token_ids", "must not be empty"),
        ]
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            checks.append(
                (value is None or 0 <= value <= MAX_LOGPROBS, name, f"must be in [0, {MAX_LOGPROBS}]")
            )
        for ok, name, message in checks:
            if not ok:
                raise EngineInputError(f"{name} {message}", name)
        if vocab_size is not None:
            self._check_ids(vocab_size)

    def _check_ids(self, vocab: int) -> None:
        for name, ids in (
            ("stop_token_ids", self.stop_token_ids),
            ("logit_bias", list(self.logit_bias)),
            ("allowed_token_ids", self.allowed_token_ids or []),
        ):
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise EngineInputError(f"{name}: token id {bad} is outside the vocabulary [0, {vocab})", name)
