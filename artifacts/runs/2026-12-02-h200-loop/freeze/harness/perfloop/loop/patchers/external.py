"""The external patcher: a coding agent (Claude Code, Codex) works from a rendered round prompt.

The loop renders `prompts/round.md.j2` into the round folder, prepares a detached worktree at
the current best commit for the agent, and parks in WAITING_FOR_PATCH. The agent commits in
that worktree and runs `perfloop goal submit RUN`; the loop then validates, revalidates and
reviews the commit exactly as it would a playbook candidate.
"""

from __future__ import annotations

from perfloop.ledger.store import atomic_write_text
from perfloop.loop import worktrees as wt
from perfloop.loop.gates import GATES, available_rows
from perfloop.loop.patchers.base import Evidence, Patcher, Proposal
from perfloop.loop.templates import render


class ExternalPatcher(Patcher):
    """Hands the round to an outside agent and waits for its commit."""

    name = "external"

    def propose(self, evidence: Evidence) -> Proposal:
        """Render the prompt, prepare the agent's worktree, and wait."""
        tree = evidence.scratch / f"agent-{evidence.round:03d}"
        if tree.exists():
            wt.drop_worktree(evidence.repo, tree)
        tree.parent.mkdir(parents=True, exist_ok=True)
        evidence.repo.git.worktree("add", "--detach", str(tree), evidence.parent_commit)
        run_root = evidence.round_dir.parent.parent
        text = render(
            "round.md.j2",
            spec=evidence.spec,
            run_id=evidence.run_id,
            run_root=run_root,
            round=evidence.round,
            gap=evidence.gap,
            freeze=evidence.freeze,
            profile=evidence.profile,
            rows=sorted(available_rows(evidence.profile)),
            worktree=tree,
            parent=evidence.parent_commit,
            gates=GATES,
            tried=evidence.tried_rules,
            history=evidence.history,
            research=evidence.research,
        )
        atomic_write_text(evidence.round_dir / "prompt.md", text)
        return Proposal(commit=None, reason=f"waiting for an agent commit in {tree}", waiting=True)
