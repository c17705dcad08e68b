"""The playbook patcher: deterministic rules from profiler table rows to bundled-engine config changes.

Each rule reads the round's tables (and the engine counters stored as the `all/engine_stats`
table), decides whether it applies, and if so edits the target's YAML EngineConfig in a
worktree at the current best commit and commits it. Every proposal cites the rows it acts
on. Rules already tried in this run are skipped; when none applies the loop stops NO_GO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perfloop.engine.config import EngineConfig
from perfloop.loop import worktrees as wt
from perfloop.loop.launch import dump_engine_config, load_engine_config
from perfloop.loop.patchers.base import Evidence, Patcher, Proposal
from perfloop.profilers.rows import ROW_ID, Tables


@dataclass
class Finding:
    """A rule that applies: the config change, why, and the rows it rests on."""

    change: dict[str, Any]
    rationale: str
    cites: list[str]


Rule = Callable[[EngineConfig, Evidence], Finding | None]


def _rows(tables: Tables, table: str) -> list[tuple[str, dict[str, Any]]]:
    """(row id, row) for one table across stages."""
    return [(row[ROW_ID], row) for by_table in tables.values() for row in by_table.get(table, [])]


def _stats(tables: Tables) -> tuple[str, dict[str, Any]] | None:
    rows = _rows(tables, "engine_stats")
    return rows[0] if rows else None


def _prefill_rows(tables: Tables) -> list[str]:
    """The id of the top kernel-table row of each stage that runs prefill work."""
    return [rows[0][ROW_ID] for s in ("prefill", "mixed") if (rows := tables.get(s, {}).get("kernel_table"))]


def _longest_prompt(ev: Evidence) -> int:
    w = ev.spec.workload
    if w.kind == "shared-prefix":
        return w.system_prompt_len + w.question_len
    return int(w.input_len * (1 + w.range_ratio)) + w.prefix_len


def prefix_caching(config: EngineConfig, ev: Evidence) -> Finding | None:
    """Shared prefixes are prefilled again and again with a near-zero hit rate: enable prefix caching."""
    w = ev.spec.workload
    shared = w.kind == "shared-prefix" or w.prefix_len > 0
    stats = _stats(ev.profile.tables)
    prefill = _prefill_rows(ev.profile.tables)
    if config.enable_prefix_caching or not shared or stats is None or not prefill:
        return None
    ref, row = stats
    if float(row.get("prefix_cache_hit_rate", 0.0)) >= 0.1:
        return None
    return Finding(
        {"enable_prefix_caching": True},
        f"{w.kind} workload: every request re-prefills its shared prefix (hit rate "
        f"{row.get('prefix_cache_hit_rate')}, {row.get('prompt_tokens')} prompt tokens prefilled); "
        "prefix caching reuses the shared blocks",
        [ref, *prefill],
    )


def cuda_graphs(config: EngineConfig, ev: Evidence) -> Finding | None:
    """Decode is launch- or host-bound while CUDA graphs are disabled: allow graph capture."""
    if not config.enforce_eager:
        return None
    hits = [
        (ref, row)
        for ref, row in _rows(ev.profile.tables, "host_table")
        if ref.startswith("decode/")
        and row["section"] == "verdict"
        and row["item"] in ("launch-bound", "host-bound")
    ]
    if not hits:
        return None
    ref, row = hits[0]
    return Finding(
        {"enforce_eager": False},
        f"decode host table says {row['item']} ({row['detail']}, device idle {row['share_pct']:.1f}%); "
        "CUDA graphs replay decode without per-kernel launches (on a device that has them)",
        [ref],
    )


def token_budget(config: EngineConfig, ev: Evidence) -> Finding | None:
    """Prefill is starved: the step token budget splits every prompt into many chunks."""
    longest = _longest_prompt(ev)
    stats = _stats(ev.profile.tables)
    if stats is None or config.max_num_batched_tokens >= longest:
        return None
    ref, row = stats
    chunks, requests = int(row.get("num_prefill_chunks", 0)), int(row.get("requests", 0))
    if requests and chunks <= requests:
        return None
    # The smallest power of two that prefills the longest prompt in one step: bigger budgets
    # only lengthen the steps decodes share with prefills (TPOT).
    budget = 1 << (longest - 1).bit_length()
    return Finding(
        {"max_num_batched_tokens": budget},
        f"token budget {config.max_num_batched_tokens} < longest prompt {longest}: {chunks} prefill chunks "
        f"for {requests} requests; a budget of {budget} prefills a prompt in one step",
        [ref, *_prefill_rows(ev.profile.tables)],
    )


def block_size(config: EngineConfig, ev: Evidence) -> Finding | None:
    """Coarse KV blocks waste the shared prefix's tail that does not fill a whole block."""
    if not config.enable_prefix_caching or config.block_size <= 16:
        return None
    stats = _stats(ev.profile.tables)
    if stats is None:
        return None
    ref, row = stats
    return Finding(
        {"block_size": 16},
        f"block size {config.block_size} with prefix caching (hit rate {row.get('prefix_cache_hit_rate')}): "
        "16-token blocks cache more of each shared prefix",
        [ref],
    )


def on_cuda(rule: Rule) -> Rule:
    """A rule that only means something on a CUDA device: it never fires on a CPU target."""

    def guarded(config: EngineConfig, ev: Evidence) -> Finding | None:
        import torch

        cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        return rule(config, ev) if cuda else None

    return guarded


RULES: dict[str, Rule] = {
    "prefix_caching": prefix_caching,
    "cuda_graphs": on_cuda(cuda_graphs),
    "token_budget": token_budget,
    "block_size": block_size,
}


class PlaybookPatcher(Patcher):
    """Applies the first rule that fires and has not been tried in this run."""

    name = "playbook"

    def propose(self, evidence: Evidence) -> Proposal:
        """Edit the target's engine config per the first applicable rule and commit it."""
        rel = evidence.spec.target.engine_config_file
        if rel is None:
            return Proposal(commit=None, reason="playbook needs target.engine_config_file (bundled engine)")
        tree = evidence.scratch / "playbook"
        with wt.worktree(evidence.repo, evidence.parent_commit, tree):
            config = load_engine_config(tree / rel)
            for name, rule in RULES.items():
                if name in evidence.tried_rules:
                    continue
                finding = rule(config, evidence)
                if finding is None:
                    continue
                new = config.model_copy(update=finding.change)
                (tree / rel).write_text(dump_engine_config(new))
                message = (
                    f"perfloop playbook: {name}\n\n{finding.rationale}\n\nCites: {' '.join(finding.cites)}\n"
                )
                sha = wt.commit_in_worktree(tree, message)
                return Proposal(
                    commit=sha,
                    reason=f"rule {name} applies",
                    rationale=finding.rationale,
                    cited_rows=finding.cites,
                    rule=name,
                )
        tried = ", ".join(evidence.tried_rules) or "none"
        return Proposal(
            commit=None, reason=f"no playbook rule applies to these tables (already tried: {tried})"
        )
