"""The run's earlier candidates, as the round prompt lists them so an agent does not repeat itself."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from perfloop.ledger.records import BenchRecord, PatchRecord, RoundSummary


class CandidateHistory(BaseModel):
    """One earlier candidate: what it changed, what it cited, how it was judged and measured."""

    model_config = ConfigDict(extra="forbid")

    round: int
    commit: str
    patcher: str
    rule: str | None
    rationale: str
    diff_stat: str
    cited_rows: list[str]
    verdict: str
    rejected_by: list[str]
    ratio: str


def diff_stat(diff: str) -> str:
    """`file +added -removed` per file of a unified diff."""
    stats: dict[str, list[int]] = {}
    current = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            current = line[4:].removeprefix("b/")
            stats.setdefault(current, [0, 0])
        elif current and line.startswith("+") and not line.startswith("+++"):
            stats[current][0] += 1
        elif current and line.startswith("-") and not line.startswith("---"):
            stats[current][1] += 1
    return ", ".join(f"{path} +{a} -{r}" for path, (a, r) in stats.items()) or "no change"


def _ratio(folder: Path, metric: str) -> str:
    path = folder / "revalidate.json"
    if not path.exists():
        return "not measured"
    cmp = BenchRecord.model_validate_json(path.read_text()).metrics[metric]
    return f"candidate/best {metric} x{cmp.median_ratio:.3f} [{cmp.ci_low:.3f}, {cmp.ci_high:.3f}]"


def candidate_history(root: Path, before_round: int, metric: str) -> list[CandidateHistory]:
    """Every candidate recorded in rounds before `before_round`, oldest first."""
    out = []
    for folder in sorted((root / "rounds").glob("[0-9][0-9][0-9]")):
        summary_path, patch_path = folder / "summary.json", folder / "patch.json"
        if int(folder.name) >= before_round or not (summary_path.exists() and patch_path.exists()):
            continue
        patch = PatchRecord.model_validate_json(patch_path.read_text())
        if not patch.commit:
            continue
        summary = RoundSummary.model_validate_json(summary_path.read_text())
        diff = (root / patch.diff_file).read_text() if patch.diff_file else ""
        out.append(
            CandidateHistory(
                round=int(folder.name),
                commit=patch.commit,
                patcher=patch.patcher,
                rule=patch.rule,
                rationale=patch.rationale.strip().splitlines()[0] if patch.rationale.strip() else "",
                diff_stat=diff_stat(diff),
                cited_rows=patch.cited_rows,
                verdict=summary.verdict or "",
                rejected_by=summary.rejected_by,
                ratio=_ratio(folder, metric),
            )
        )
    return out
