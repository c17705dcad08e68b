"""The benchmark result file: vLLM's key names, an `sglang_compat` block, a `perfloop` block.

Public API: `BenchResult` (pydantic; `.model_dump_json()` is the result file,
`BenchResult.load(path)` reads one back), `result_schema()` (its JSON Schema),
`write_result(result, path, records)` (the JSON plus the per-request sidecar JSONL).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from perfloop.bench.fingerprint import Environment
from perfloop.bench.metrics import LATENCY_METRICS, PERCENTILES, RequestRecord
from perfloop.bench.workloads import WorkloadSpec
from perfloop.errors import describe_validation

SCHEMA_VERSION = 1


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: str
    endpoint_type: str
    backend: str
    label: str | None = None
    model_id: str
    tokenizer_id: str
    num_prompts: int
    request_rate: float | Literal["inf"]
    burstiness: float
    max_concurrency: int | None


class _Results(_Header):
    duration: float
    completed: int
    failed: int
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    request_goodput: float | None
    output_throughput: float
    total_token_throughput: float
    max_output_tokens_per_s: float
    max_concurrent_requests: int


def _latency_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for metric in LATENCY_METRICS:
        for stat in ("mean", "median", "std", *(f"p{p}" for p in PERCENTILES)):
            fields[f"{stat}_{metric}_ms"] = (float, ...)
    return fields


_WithLatency = create_model("_WithLatency", __base__=_Results, **_latency_fields())


class SGLangCompat(BaseModel):
    """The same run under SGLang `bench_serving` key names (concurrency = mean in flight)."""

    model_config = ConfigDict(extra="forbid")

    duration: float
    completed: int
    total_input_tokens: int
    total_output_tokens: int
    total_output_tokens_retokenized: int | None
    request_throughput: float
    input_throughput: float
    output_throughput: float
    total_throughput: float
    mean_e2e_latency_ms: float
    median_e2e_latency_ms: float
    std_e2e_latency_ms: float
    p99_e2e_latency_ms: float
    mean_ttft_ms: float
    median_ttft_ms: float
    std_ttft_ms: float
    p99_ttft_ms: float
    mean_tpot_ms: float
    median_tpot_ms: float
    std_tpot_ms: float
    p99_tpot_ms: float
    mean_itl_ms: float
    median_itl_ms: float
    std_itl_ms: float
    p95_itl_ms: float
    p99_itl_ms: float
    max_itl_ms: float
    concurrency: float
    accept_length: float | None


class OutputLengths(BaseModel):
    """Requested vs achieved output tokens: a run that stopped early is not the same workload."""

    model_config = ConfigDict(extra="forbid")

    requested_total: int
    achieved_total: int
    mismatched_requests: int = Field(description="Successful requests whose output length differs.")
    all_achieved: bool


class PerfloopBlock(BaseModel):
    """What makes the result trustworthy: workload and environment fingerprints, lengths, run facts."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    workload: WorkloadSpec
    workload_fingerprint: str
    environment: Environment
    environment_fingerprint: str
    launch: str = Field(description="The launch spec: URL, shell command, engine:FLAGS or hf:MODEL.")
    seed: int
    num_warmups: int
    goodput_slos_ms: dict[str, float] | None
    output_lengths: OutputLengths
    interrupted: bool = Field(False, description="Ctrl-C: the metrics cover the requests that finished.")
    requests_file: str | None = Field(None, description="Sidecar JSONL with one RequestRecord per line.")
    errors: list[str] = Field(default_factory=list, description="Distinct request errors, first few.")
    max_failed: int = Field(0, description="Failed requests the run tolerates before it is invalid.")
    valid: bool = Field(True, description="False when more than max_failed requests failed: do not compare.")
    failures: list[str] = Field(
        default_factory=list, description="Per error kind: count and the first error, most frequent first."
    )


class BenchResult(_WithLatency):  # type: ignore[misc, valid-type]
    """One benchmark run; `.model_dump_json()` is the result file."""

    sglang_compat: SGLangCompat
    perfloop: PerfloopBlock

    @classmethod
    def load(cls, path: Path | str) -> BenchResult:
        """Read a result file, with the file name in any validation error."""
        text = Path(path).read_text()
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ValueError(
                f"{path}: not a perfloop bench result: {describe_validation(exc, flag=False)}"
            ) from exc

    def check_valid(self) -> None:
        """Raise ValueError saying why when the run had more failed requests than it tolerates."""
        if not self.perfloop.valid:
            why = "; ".join(self.perfloop.failures) or "no request completed"
            raise ValueError(
                f"invalid result ({self.failed} of {self.num_prompts} requests failed, "
                f"max {self.perfloop.max_failed}): {why}"
            )

    def metric(self, name: str) -> float | None:
        """A top-level metric by vLLM key name (None when absent or unset)."""
        value = getattr(self, name, None)
        return None if value is None else float(value)


def output_lengths(records: list[RequestRecord]) -> OutputLengths:
    """Compare requested and achieved output tokens over successful requests."""
    done = [r for r in records if r.success]
    mismatched = sum(r.output_len != r.requested_output_len for r in done)
    return OutputLengths(
        requested_total=sum(r.requested_output_len for r in done),
        achieved_total=sum(r.output_len for r in done),
        mismatched_requests=mismatched,
        all_achieved=mismatched == 0 and bool(done),
    )


def failure_summary(records: list[RequestRecord]) -> list[str]:
    """`COUNT x KIND: first error` per error kind (the text before the first colon), most frequent first."""
    kinds: dict[str, list[str]] = {}
    for rec in sorted(records, key=lambda r: r.index):
        if not rec.success:
            error = rec.error or "unknown error"
            kinds.setdefault(error.split(":", 1)[0], []).append(error)
    ranked = sorted(kinds.items(), key=lambda item: -len(item[1]))
    return [f"{len(errors)} x {errors[0][:300]}" for _, errors in ranked]


def result_schema() -> dict[str, Any]:
    """JSON Schema of the result file."""
    return BenchResult.model_json_schema()


def write_result(result: BenchResult, path: Path, records: list[RequestRecord]) -> Path:
    """Write the result JSON and its `<stem>.requests.jsonl` sidecar; returns the sidecar path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_name(path.stem + ".requests.jsonl")
    with sidecar.open("w") as fh:
        for rec in sorted(records, key=lambda r: r.index):
            fh.write(rec.model_dump_json() + "\n")
    result.perfloop.requests_file = sidecar.name
    path.write_text(json.dumps(json.loads(result.model_dump_json()), indent=2) + "\n")
    return sidecar


def read_records(result_path: Path) -> list[RequestRecord]:
    """The per-request rows saved next to a result file."""
    result = BenchResult.load(result_path)
    if result.perfloop.requests_file is None:
        return []
    sidecar = result_path.with_name(result.perfloop.requests_file)
    return [RequestRecord.model_validate_json(line) for line in sidecar.read_text().splitlines() if line]
