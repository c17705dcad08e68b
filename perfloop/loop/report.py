"""The PR report: `prompts/pr_report.md.j2` rendered from ledger records only (no typed numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from perfloop.ledger.records import (  # noqa: E402
    BenchRecord,
    FreezeRecord,
    GapRecord,
    LoopState,
    Manifest,
    PatchRecord,
    ReviewRecord,
    RoundSummary,
    ValidationRecord,
)
from perfloop.ledger.store import MANIFEST, Ledger  # noqa: E402
from perfloop.ledger.verify import verify_ledger  # noqa: E402
from perfloop.loop.templates import render  # noqa: E402


def _load(path: Path, model: type) -> Any:
    return model.model_validate_json(path.read_text()) if path.exists() else None


def round_views(root: Path) -> list[dict[str, Any]]:
    """Per round: every record the report shows."""
    views = []
    for folder in sorted((root / "rounds").glob("[0-9][0-9][0-9]")):
        benches = [_load(p, BenchRecord) for p in sorted(folder.glob("bench-*.json"))]
        views.append(
            {
                "number": int(folder.name),
                "folder": folder.relative_to(root).as_posix(),
                "benches": benches,
                "gap": _load(folder / "gap.json", GapRecord),
                "patch": _load(folder / "patch.json", PatchRecord),
                "validation": _load(folder / "validation.json", ValidationRecord),
                "revalidate": _load(folder / "revalidate.json", BenchRecord),
                "review": _load(folder / "review.json", ReviewRecord),
                "summary": _load(folder / "summary.json", RoundSummary),
            }
        )
    return views


def plot_rounds(rounds: list[dict[str, Any]], metric: str, out: Path) -> Path:
    """Target/peer and candidate/best ratios per round with their intervals."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key, label, color, shift in (
        ("gap", "target / peer", "tab:blue", -0.1),
        ("revalidate", "candidate / best", "tab:orange", 0.1),
    ):
        xs, mids, lows, highs = [], [], [], []
        for r in rounds:
            rec = r[key]
            if rec is None:
                continue
            cmp = rec if key == "gap" else rec.metrics[metric]
            xs.append(r["number"] + shift)
            mids.append(cmp.median_ratio)
            lows.append(cmp.median_ratio - cmp.ci_low)
            highs.append(cmp.ci_high - cmp.median_ratio)
        if xs:
            ax.errorbar(xs, mids, yerr=[lows, highs], fmt="o", color=color, label=label, capsize=3)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel(f"{metric} ratio")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def bench_plots(root: Path, rounds: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Latency CDFs and throughput from `bench plot` for each accepted round (best vs candidate, trial 0)."""
    from perfloop.bench.plot import plot_results

    links = []
    for r in rounds:
        reval = r["revalidate"]
        if reval is None or not (r["summary"] and r["summary"].accepted):
            continue
        pair = [root / f for f in reval.result_files if Path(f).name in ("trial00-A.json", "trial00-B.json")]
        if len(pair) == 2 and all(p.exists() for p in pair):
            written = plot_results(sorted(pair), out_dir / f"round-{r['number']:03d}")
            links += [p.relative_to(out_dir.parent).as_posix() for p in written]
    return links


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
    state = next(
        LoopState.model_validate(e.data["loop"]) for e in reversed(ledger.events()) if e.kind == "transition"
    )
    freeze = _load(root / "freeze" / "freeze.json", FreezeRecord)
    aa = _load(root / "freeze" / "aa.json", BenchRecord)
    rounds = round_views(root)
    metric = manifest.spec["metric"]
    plot = plot_rounds(rounds, metric, out.parent / "plots" / "rounds.png")
    extra_plots = bench_plots(root, rounds, out.parent / "plots")
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
        verify=verify_ledger(root),
        run_root=root,
        spec_yaml=reproduce_spec(manifest.spec),
        launches=launches(manifest.spec),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
