"""The PR report: `prompts/pr_report.md.j2` rendered from ledger records only (no typed numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from perfloop.ledger.anchor import anchor_ref, read_anchor  # noqa: E402
from perfloop.ledger.eval_records import AccuracyFreeze, AccuracyRun  # noqa: E402
from perfloop.ledger.records import (  # noqa: E402
    BenchRecord,
    FreezeRecord,
    GapRecord,
    LoopState,
    Manifest,
    PatchRecord,
    ProfileRecord,
    ReviewRecord,
    RoundSummary,
    ValidationRecord,
)
from perfloop.ledger.store import MANIFEST, Ledger  # noqa: E402
from perfloop.ledger.verify import verify_ledger  # noqa: E402
from perfloop.loop.accuracy import FREEZE_FILE as ACCURACY_FREEZE  # noqa: E402
from perfloop.loop.accuracy import judge  # noqa: E402
from perfloop.loop.templates import render  # noqa: E402


def _load(path: Path, model: type) -> Any:
    return model.model_validate_json(path.read_text()) if path.exists() else None


def round_views(root: Path) -> list[dict[str, Any]]:
    """Per round: every record the report shows."""
    views = []
    frozen = _load(root / ACCURACY_FREEZE, AccuracyFreeze)
    for folder in sorted((root / "rounds").glob("[0-9][0-9][0-9]")):
        benches = [_load(p, BenchRecord) for p in sorted(folder.glob("bench-*.json"))]
        acc = _load(folder / "accuracy.json", AccuracyRun)
        views.append(
            {
                "number": int(folder.name),
                "folder": folder.relative_to(root).as_posix(),
                "benches": benches,
                "gap": _load(folder / "gap.json", GapRecord),
                "profile": _load(folder / "profile.json", ProfileRecord),
                "patch": _load(folder / "patch.json", PatchRecord),
                "validation": _load(folder / "validation.json", ValidationRecord),
                "revalidate": _load(folder / "revalidate.json", BenchRecord),
                "review": _load(folder / "review.json", ReviewRecord),
                "summary": _load(folder / "summary.json", RoundSummary),
                "accuracy": acc,
                "accuracy_judgement": judge(frozen, acc) if frozen and acc else None,
            }
        )
    return views


def profile_rows(profile: ProfileRecord, per_table: int = 5) -> list[dict[str, Any]]:
    """The rows a reader needs to see why the target is where it is: per stage, the largest kernel
    rows (folded rows last, as the table orders them) and the host table's verdict."""
    rows = []
    for stage, tables in profile.tables.items():
        kernels = [r for r in tables.get("kernel_table", []) if not r.get("folded")][:per_table]
        verdicts = [r for r in tables.get("host_table", []) if r.get("section") == "verdict"]
        for r in kernels + verdicts:
            sites = r.get("python_sites") or []
            where = sites[0]["site"] if sites else r.get("detail", "")
            rows.append({"stage": stage, "row_id": r["row_id"], "time_ms": r.get("time_ms"),
                         "share_pct": r.get("share_pct"), "where": where})  # fmt: skip
    return rows


def consistent(cmp: Any) -> bool:
    """A comparison whose median lies inside its interval; anything else is a broken record."""
    return bool(cmp.ci_low <= cmp.median_ratio <= cmp.ci_high)


def _oriented(cmp: Any) -> tuple[float, float, float]:
    """(median, low, high) oriented so that > 1 means B is better."""
    if getattr(cmp, "higher_is_better", True):
        return cmp.median_ratio, cmp.ci_low, cmp.ci_high
    return 1 / cmp.median_ratio, 1 / cmp.ci_high, 1 / cmp.ci_low


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_rounds(
    rounds: list[dict[str, Any]], metric: str, band: float, goal: float | None, out: Path
) -> Path:
    """Per round, from the ledger's medians and intervals (oriented: > 1 is better): target/peer and
    candidate/best, with the A/A noise band around 1 and the goal line; broken records are left out."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.axhspan(1 - band, 1 + band, color="grey", alpha=0.2, label=f"A/A noise band ±{band:.1%}")
    ax.axhline(1.0, color="grey", lw=0.8)
    if goal is not None:
        ax.axhline(goal, color="tab:green", ls="--", lw=1, label=f"goal x{goal:.2f}")
    for key, color, shift in (("gap", "tab:blue", -0.1), ("revalidate", "tab:orange", 0.1)):
        xs, mids, lows, highs, label = [], [], [], [], ""
        for r in rounds:
            rec = r[key]
            cmp = None if rec is None else rec if key == "gap" else rec.metrics.get(metric)
            if cmp is None or not consistent(cmp):
                continue
            mid, low, high = (cmp.median_ratio, cmp.ci_low, cmp.ci_high) if key == "gap" else _oriented(cmp)
            label = f"target / {rec.peer}" if key == "gap" else f"{rec.b_name} / {rec.a_name}"
            xs.append(r["number"] + shift)
            mids.append(mid)
            lows.append(mid - low)
            highs.append(high - mid)
        if xs:
            ax.errorbar(xs, mids, yerr=[lows, highs], fmt="o", color=color, label=label, capsize=3)
    numbers = sorted({r["number"] for r in rounds})
    if numbers:  # one tick per round (a locator picks fractions when the range holds one integer)
        ax.set_xticks(numbers)
        ax.set_xlim(numbers[0] - 0.5, numbers[-1] + 0.5)
    ax.set_xlabel("round")
    ax.set_ylabel(f"{metric} ratio (> 1 better)")
    ax.set_title("median of paired ratios per round, with its interval", fontsize=9)
    ax.legend(loc="best", fontsize=7)
    return _save(fig, out)


def plot_revalidation(r: dict[str, Any], band: float, out: Path) -> Path | None:
    """Every metric of an accepted round's revalidation, candidate vs best, from the ledger's
    medians and intervals (oriented: > 1 is better), with the noise band."""
    reval = r["revalidate"]
    items = [(name, _oriented(c)) for name, c in reval.metrics.items() if consistent(c)]
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(6.4, max(2.4, 0.8 + 0.45 * len(items))))
    ax.axvspan(1 - band, 1 + band, color="grey", alpha=0.2, label=f"A/A noise band ±{band:.1%}")
    ax.axvline(1.0, color="grey", lw=0.8)
    for y, (_name, (mid, low, high)) in enumerate(items):
        ax.errorbar([mid], [y], xerr=[[mid - low], [high - mid]], fmt="o", color="tab:orange", capsize=3)
    ax.set_yticks(range(len(items)), [name for name, _ in items], fontsize=8)
    ax.set_xlabel(f"{reval.b_name} / {reval.a_name}: median paired ratio (> 1 better)")
    ax.set_title(f"round {r['number']}: {reval.b_name} vs {reval.a_name}", fontsize=9)
    ax.legend(loc="best", fontsize=7)
    return _save(fig, out)


def _goal_line(spec: dict[str, Any]) -> float | None:
    objective = spec.get("objective", {})
    if objective.get("kind", "beat_peer") == "beat_peer" and objective.get("margin", 0) > 0:
        return 1 + float(objective["margin"])
    return None


def _final_state(ledger: Ledger) -> LoopState | None:
    """The last transition's loop state, or None when the events cannot be read (a broken ledger)."""
    try:
        loops = [e.data["loop"] for e in ledger.events() if e.kind == "transition"]
        return LoopState.model_validate(loops[-1]) if loops else None
    except (ValueError, KeyError):
        return None


def _interrupted(ledger: Ledger) -> list[dict[str, Any]]:
    try:
        return [e.data | {"round": e.round} for e in ledger.events() if e.kind == "interrupted"]
    except ValueError:
        return []


def reproduce_spec(spec: dict[str, Any]) -> str:
    """The run's spec as YAML for a new run (no run id; the artifact root of this one)."""
    return yaml.safe_dump({k: v for k, v in spec.items() if k != "run_id"}, sort_keys=False, width=1000)


def launches(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(side, launch) of the target and every peer, as the spec gives them."""
    target = spec["target"]
    own = target["launch"] or f"engine: flags of {target['engine_config_file']} at each commit"
    peers = [(p["name"], p["launch"]) for p in spec["peers"]] or [("peer (the base commit)", own)]
    return [("target", own), *peers]


def build_report(root: Path, out: Path | None = None) -> Path:
    """Render the report of the run at `root` to `out` (default `<root>/report.md`)."""
    out = out or root / "report.md"
    ledger = Ledger(root)
    manifest = Manifest.model_validate_json((root / MANIFEST).read_text())
    verify = verify_ledger(root, against_branch=Path(manifest.target_repo).exists())
    anchor = (
        read_anchor(Path(manifest.target_repo), manifest.run_id)
        if Path(manifest.target_repo).exists()
        else None
    )
    state = _final_state(ledger)
    freeze = _load(root / "freeze" / "freeze.json", FreezeRecord)
    aa = _load(root / "freeze" / "aa.json", BenchRecord)
    rounds = round_views(root)
    metric = manifest.spec["metric"]
    band = freeze.noise_band if freeze else 0.0
    plots = out.parent / "plots"
    plot = plot_rounds(rounds, metric, band, _goal_line(manifest.spec), plots / "rounds.png")
    accepted = [r for r in rounds if r["summary"] and r["summary"].accepted and r["revalidate"]]
    extra = [plot_revalidation(r, band, plots / f"round-{r['number']:03d}.png") for r in accepted]
    extra_plots = [p.relative_to(out.parent).as_posix() for p in extra if p is not None]
    measured = [r for r in rounds if r["benches"]]
    text = render(
        "pr_report.md.j2",
        manifest=manifest,
        spec=manifest.spec,
        state=state,
        freeze=freeze,
        aa=aa,
        rounds=rounds,
        first=measured[0] if measured else None,
        last=measured[-1] if measured else None,
        accepted=[r for r in rounds if r["summary"] and r["summary"].accepted],
        rejected=[r for r in rounds if r["summary"] and not r["summary"].accepted],
        metric=metric,
        plot=plot.relative_to(out.parent).as_posix(),
        bench_plots=extra_plots,
        verify=verify,
        anchor=anchor,
        anchor_ref=anchor_ref(manifest.run_id),
        interrupted=_interrupted(ledger),
        consistent=consistent,
        profile_rows=profile_rows,
        run_root=root,
        spec_yaml=reproduce_spec(manifest.spec),
        launches=launches(manifest.spec),
        accuracy=_load(root / ACCURACY_FREEZE, AccuracyFreeze),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
