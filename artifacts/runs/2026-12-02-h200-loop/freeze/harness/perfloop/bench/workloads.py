"""Seeded, deterministic benchmark workloads.

Public API (the loop calls these directly):

- `WorkloadSpec`: pydantic description of a workload; `.fingerprint()` hashes the spec
  and any dataset file, so two results are comparable only when fingerprints match.
- `build_requests(spec) -> list[BenchRequest]`: the requests, in submission order.

Kinds:

- `random`: vLLM's convention; input and output lengths uniform in
  [len*(1-r), len*(1+r)], token ids drawn from [0, vocab_size), an optional shared
  random prefix of `prefix_len` tokens.
- `shared-prefix`: `num_groups` groups of `prompts_per_group` prompts; each group shares
  a system prompt of `system_prompt_len` tokens, each prompt adds a `question_len`
  question; `output_len` tokens out (SGLang's generated-shared-prefix defaults).
- `sharegpt`: the first human turn of conversations in a local ShareGPT-format JSON
  file, sampled with the seed; text prompts, `output_len` tokens out.
- `standard`: nano-vllm's benchmark workload, exactly (256 requests, 142,827 prompt and
  133,966 output tokens); ids up to 10000, so it needs a real-vocabulary model.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

WorkloadKind = Literal["random", "shared-prefix", "sharegpt", "standard"]


class WorkloadError(ValueError):
    """A workload spec that cannot produce requests; `field` names the bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"workload.{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class BenchRequest:
    """One request to send: token ids (or text for sharegpt) and the output length asked for."""

    index: int
    prompt: list[int] | str
    prompt_len: int | None  # None for text prompts until the backend tokenizes them
    output_len: int


class WorkloadSpec(BaseModel):
    """Everything that decides which requests a benchmark sends; hashed into the fingerprint."""

    model_config = ConfigDict(extra="forbid")

    kind: WorkloadKind = Field("random", description="random, shared-prefix, sharegpt or standard.")
    seed: int = Field(0, description="Seed of the prompt and length draws.")
    num_prompts: int = Field(100, ge=1, description="random/sharegpt: number of requests.")
    input_len: int = Field(1024, ge=1, description="random: mean input length.")
    output_len: int = Field(128, ge=1, description="random/shared-prefix/sharegpt: output length.")
    range_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="random: lengths in [len*(1-r), len*(1+r)].")
    prefix_len: int = Field(0, ge=0, description="random: tokens of one random prefix shared by all.")
    vocab_size: int | None = Field(None, ge=2, description="Token ids are drawn from [0, vocab_size).")
    num_groups: int = Field(64, ge=1, description="shared-prefix: groups.")
    prompts_per_group: int = Field(16, ge=1, description="shared-prefix: prompts per group.")
    system_prompt_len: int = Field(2048, ge=1, description="shared-prefix: shared system prompt tokens.")
    question_len: int = Field(128, ge=1, description="shared-prefix: per-prompt question tokens.")
    dataset_path: str | None = Field(None, description="sharegpt: local ShareGPT-format JSON file.")
    ignore_eos: bool = Field(True, description="Generate exactly output_len tokens, past EOS.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0: greedy).")

    def total_requests(self) -> int:
        """How many requests this workload sends."""
        if self.kind == "shared-prefix":
            return self.num_groups * self.prompts_per_group
        if self.kind == "standard":
            return 256
        return self.num_prompts

    def fingerprint(self) -> str:
        """sha256 over the canonical spec and, for sharegpt, the dataset file's bytes."""
        digest = hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode())
        if self.dataset_path is not None:
            digest.update(file_sha256(Path(self.dataset_path)).encode())
        return "sha256:" + digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_requests(spec: WorkloadSpec) -> list[BenchRequest]:
    """The workload's requests, deterministic for a given spec."""
    builders = {
        "random": _random,
        "shared-prefix": _shared_prefix,
        "sharegpt": _sharegpt,
        "standard": _standard,
    }
    return builders[spec.kind](spec)


def _vocab(spec: WorkloadSpec) -> int:
    if spec.vocab_size is None:
        raise WorkloadError("vocab_size", f"the {spec.kind} workload draws token ids and needs a vocab size")
    return spec.vocab_size


def _uniform_lens(rng: np.random.Generator, length: int, ratio: float, n: int) -> np.ndarray:
    low = max(int(length * (1 - ratio)), 1)
    high = max(int(length * (1 + ratio)), low)
    return rng.integers(low, high + 1, size=n)


def _random(spec: WorkloadSpec) -> list[BenchRequest]:
    vocab = _vocab(spec)
    rng = np.random.default_rng(spec.seed)
    n = spec.num_prompts
    input_lens = _uniform_lens(rng, spec.input_len, spec.range_ratio, n)
    output_lens = _uniform_lens(rng, spec.output_len, spec.range_ratio, n)
    prefix = rng.integers(0, vocab, size=spec.prefix_len).tolist()
    requests = []
    for i in range(n):
        body = rng.integers(0, vocab, size=int(input_lens[i])).tolist()
        ids = prefix + body
        requests.append(BenchRequest(i, ids, len(ids), int(output_lens[i])))
    return requests


def _shared_prefix(spec: WorkloadSpec) -> list[BenchRequest]:
    vocab = _vocab(spec)
    rng = np.random.default_rng(spec.seed)
    prompts = []
    for _ in range(spec.num_groups):
        system = rng.integers(0, vocab, size=spec.system_prompt_len).tolist()
        for _ in range(spec.prompts_per_group):
            prompts.append(system + rng.integers(0, vocab, size=spec.question_len).tolist())
    order = rng.permutation(len(prompts))
    return [BenchRequest(i, prompts[j], len(prompts[j]), spec.output_len) for i, j in enumerate(order)]


def _sharegpt(spec: WorkloadSpec) -> list[BenchRequest]:
    if spec.dataset_path is None:
        raise WorkloadError("dataset_path", "the sharegpt workload needs a local ShareGPT JSON file")
    path = Path(spec.dataset_path)
    if not path.is_file():
        raise WorkloadError("dataset_path", f"no such file: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WorkloadError("dataset_path", f"not JSON: {exc}") from exc
    firsts = [_first_human_turn(item) for item in data if isinstance(item, dict)]
    prompts = [p for p in firsts if p]
    if len(prompts) < spec.num_prompts:
        raise WorkloadError(
            "num_prompts", f"asked for {spec.num_prompts} but {path} has {len(prompts)} usable conversations"
        )
    picked = random.Random(spec.seed).sample(prompts, spec.num_prompts)
    return [BenchRequest(i, text, None, spec.output_len) for i, text in enumerate(picked)]


def _first_human_turn(item: dict) -> str | None:
    turns = item.get("conversations") or []
    if len(turns) < 2:
        return None
    first = turns[0]
    if not isinstance(first, dict) or first.get("from") not in ("human", "user"):
        return None
    value = first.get("value")
    return value if isinstance(value, str) and value.strip() else None


def _standard(spec: WorkloadSpec) -> list[BenchRequest]:
    # The draw order is part of the definition: all prompts first, then all output lengths.
    rng = random.Random(0)
    prompts = []
    for _ in range(256):
        length = rng.randint(100, 1024)
        prompts.append([rng.randint(0, 10000) for _ in range(length)])
    outputs = [rng.randint(100, 1024) for _ in range(256)]
    return [BenchRequest(i, p, len(p), o) for i, (p, o) in enumerate(zip(prompts, outputs, strict=True))]
