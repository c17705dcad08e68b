"""A round's `summary.md`, rendered from its records."""

from __future__ import annotations

from perfloop.ledger.records import ReviewRecord, RoundSummary
from perfloop.loop.verdicts import verdict_line


def render_summary(summary: RoundSummary, review: ReviewRecord) -> str:
    """Markdown for one round: gap, candidate, every gate, outcome."""
    lines = [f"# Round {summary.round}", ""]
    if summary.gap:
        g = summary.gap
        lines.append(
            f"Gap vs {g.peer}: {g.metric} ratio {g.median_ratio:.4f} "
            f"[{g.ci_low:.4f}, {g.ci_high:.4f}], {g.position}."
        )
    if summary.patch and summary.patch.commit:
        p = summary.patch
        lines += [
            f"Candidate `{p.commit}` by {p.patcher} ({p.rule or 'no rule'}): {p.rationale}",
            f"Cites: {', '.join(p.cited_rows) or 'nothing'}.",
        ]
    lines += ["", "| Gate | Result | Evidence |", "| --- | --- | --- |"]
    for gate in review.gates:
        evidence = gate.evidence.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {gate.gate} | {'pass' if gate.passed else 'FAIL'} | {evidence} |")
    lines += ["", f"Verdict: **{verdict_line(review)}**; {summary.outcome}.", ""]
    return "\n".join(lines)
