"""The optional model reviewer: a second opinion after the mechanical gates have passed.

It renders `prompts/review.md.j2` from the round's artifacts only (diff, patch record,
correctness output, measurements, cited profiler rows, gate results; never the patcher's
transcript), makes one call that answers with the `submit_review` tool (a structured
verdict with every finding in one pass; a bare JSON object in the text is accepted too, as
tool use is offered rather than forced: newer models reject forced tool use), and writes
`model_review.json`. Merging can only
add: a `model_review` gate joins the mechanical ones, and a non-ADVANCED verdict or a
blocking finding rejects the candidate. A failed mechanical gate is never overridden, and a
review that cannot be had (spend cap, API error, malformed answer) fails closed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from perfloop.ledger.records import GateResult, ModelFinding, ModelReviewRecord, ReviewRecord, Verdict
from perfloop.ledger.store import atomic_write_model
from perfloop.loop.gates import ReviewInput
from perfloop.loop.patchers.anthropic import ApiSettings, api_key, redact, run_spend, usage_of
from perfloop.loop.pricing import PRICES_AS_OF, cost_usd, prices_for, worst_rates
from perfloop.loop.templates import render
from perfloop.profilers.rows import profile_rows

REVIEW_FILE = "model_review.json"
REVIEW_TOKENS = 4096
GATE = "model_review"


class ModelVerdict(BaseModel):
    """What `submit_review` must carry."""

    verdict: Verdict
    summary: str
    findings: list[ModelFinding] = Field(default_factory=list)


REVIEW_TOOL: dict[str, Any] = {
    "name": "submit_review",
    "description": "Submit the verdict and every finding of this review in one call.",
    "input_schema": {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["ADVANCED", "STALLED", "REGRESSED", "REJECTED"]},
            "summary": {"type": "string"},
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "severity": {"type": "string", "enum": ["blocking", "major", "minor"]},
                        "title": {"type": "string"},
                        "evidence": {"type": "string"},
                    },
                    "required": ["severity", "title", "evidence"],
                },
            },
        },
        "required": ["verdict", "summary", "findings"],
    },
}


class ModelReviewer:
    """Asks one model for a structured verdict on a candidate that passed the mechanical gates."""

    def __init__(self, api: ApiSettings) -> None:
        prices_for(api.model)  # an unknown model fails before any spend
        self.api = api

    def review(self, inp: ReviewInput, mechanical: ReviewRecord) -> ModelReviewRecord:
        """One call; every failure comes back as a record with `error` set."""
        started = time.time()
        run_root = inp.round_dir.parent.parent
        cap = inp.spec.budgets.max_api_usd
        spent = run_spend(run_root).usd
        prompt, read = _prompt(inp, mechanical, run_root)
        price = worst_rates(self.api.model)
        sent = (len(prompt) + 2000) // 3 * price["input"] / 1e6
        tokens = min(REVIEW_TOKENS, int((cap - spent - sent) * 1e6 / price["output"]))
        if tokens < 256:
            return self._failed(
                f"max_api_usd {cap:.4f} leaves no room for a review (spent {spent:.4f})", read
            )
        key = api_key()
        try:
            response = self.api.client(key).messages.create(
                model=self.api.model,
                max_tokens=tokens,
                system="You are a strict reviewer of performance patches. Answer only with submit_review.",
                tools=[REVIEW_TOOL],
                messages=[{"role": "user", "content": prompt}],
            )
        except Exception as exc:  # anthropic.APIError and transport failures: fail closed
            return self._failed(redact(f"{type(exc).__name__}: {exc}", [key]), read)
        usage = usage_of(response)
        spend = {"usage": usage, "usd": cost_usd(self.api.model, usage), "wall_s": time.time() - started}
        answer = _answer(response)
        if answer is None:
            return self._failed(f"no submit_review call (stop_reason {response.stop_reason})", read, **spend)
        try:
            verdict = ModelVerdict.model_validate(answer)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return self._failed(f"malformed verdict: {where}: {first['msg']}", read, **spend)
        return ModelReviewRecord(
            model=self.api.model,
            verdict=verdict.verdict,
            summary=redact(verdict.summary, [key]),
            findings=verdict.findings,
            read=read,
            prices_as_of=PRICES_AS_OF,
            **spend,
        )

    def _failed(self, error: str, read: list[str], **spend: Any) -> ModelReviewRecord:
        return ModelReviewRecord(
            model=self.api.model, verdict=None, error=error, read=read, prices_as_of=PRICES_AS_OF, **spend
        )


def _answer(response: Any) -> Any:
    """The submit_review input, else a JSON object in the text, else None."""
    if response.stop_reason not in ("tool_use", "end_turn"):
        return None
    for block in response.content:
        if block.type == "tool_use" and block.name == "submit_review":
            return block.input
    text = "".join(b.text for b in response.content if b.type == "text")
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None


def merge(mechanical: ReviewRecord, model: ModelReviewRecord) -> ReviewRecord:
    """Add the model's findings as a gate; it can reject a candidate, never accept one."""
    blocking = [f for f in model.findings if f.severity == "blocking"]
    passed = model.error is None and model.verdict == "ADVANCED" and not blocking
    listed = "; ".join(f"[{f.severity}] {f.title} ({f.evidence})" for f in model.findings)
    head = (
        f"model error: {model.error}" if model.error else f"{model.model}: {model.verdict}: {model.summary}"
    )
    gate = GateResult(gate=GATE, passed=passed, evidence=head + (f"; findings: {listed}" if listed else ""))
    gates = [*mechanical.gates, gate]
    if not mechanical.accepted:
        return mechanical.model_copy(update={"gates": gates})
    if passed:
        return mechanical.model_copy(update={"gates": gates})
    return ReviewRecord(
        gates=gates,
        verdict="REJECTED",
        why=f"{GATE} ({gate.evidence[:300]})",
        rejected_by=[*mechanical.rejected_by, GATE],
        accepted=False,
    )


def run_model_review(
    reviewer: ModelReviewer | None, inp: ReviewInput, mechanical: ReviewRecord
) -> tuple[ReviewRecord, list[Path]]:
    """REVIEW's second step: only for candidates the gates accepted; returns the merged record and files."""
    if reviewer is None or not mechanical.accepted:
        return mechanical, []
    record = reviewer.review(inp, mechanical)
    path = atomic_write_model(inp.round_dir / REVIEW_FILE, record)
    return merge(mechanical, record), [path]


def _prompt(inp: ReviewInput, mechanical: ReviewRecord, run_root: Path) -> tuple[str, list[str]]:
    """The review prompt and the artifacts it was built from (never transcript.json)."""
    patch = inp.patch
    read = [p for p in (patch.diff_file, inp.validation.log_file) if p]
    diff = (run_root / patch.diff_file).read_text() if patch.diff_file else ""
    log = (run_root / inp.validation.log_file).read_text()[-3000:]
    rows = profile_rows(inp.profile.tables)
    cited = {ref: rows[ref] for ref in patch.cited_rows if ref in rows}
    text = render(
        "review.md.j2",
        run_id=run_root.name,
        round=int(inp.round_dir.name),
        spec=inp.spec,
        patch=patch,
        cited=cited,
        diff=diff[:40_000],
        validation=inp.validation,
        validation_log=log,
        revalidate=inp.revalidate,
        gates=mechanical.gates,
    )
    return text, read
