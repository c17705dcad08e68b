"""The anthropic patcher and model reviewer in the real loop, against a local fake Messages API.

The real `anthropic` SDK talks HTTP to `fake_messages_api` (scripted replies); measurements come
from the scripted FakeBackend, so each run takes a second or two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import git
import pytest
from conftest import FakeBackend, make_spec
from fake_messages_api import credential, error, message, serve, text, tool, usage

from perfloop.ledger.records import AgentRecord, ModelReviewRecord, PatchRecord, ReviewRecord, TokenUsage
from perfloop.ledger.verify import verify_ledger
from perfloop.loop.machine import Run
from perfloop.loop.model_review import ModelReviewer, merge
from perfloop.loop.patchers.anthropic import AnthropicPatcher, ApiSettings, MissingKeyError
from perfloop.loop.pricing import PRICES_AS_OF, cost_usd
from perfloop.loop.secrets import find_secrets

KEY = "sk-ant-api03-" + "Zq9" * 16
MODEL = "claude-sonnet-5-5"
CITES = ["prefill/kernel_table/aten::mm", "all/engine_stats/counters"]
GOOD = """diff --git a/engine.yaml b/engine.yaml
--- a/engine.yaml
+++ b/engine.yaml
@@ -1,2 +1,2 @@
-enable_prefix_caching: false
+enable_prefix_caching: true
 model: preset:tiny-qwen3
"""
BENCH_TOO = GOOD + (
    "diff --git a/bench/workload.py b/bench/workload.py\n--- a/bench/workload.py\n+++ b/bench/workload.py\n"
    "@@ -1 +1 @@\n-PROMPTS = 8\n+PROMPTS = 1\n"
)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def settings(url: str, retries: int = 3) -> ApiSettings:
    return ApiSettings(model=MODEL, base_url=url, timeout_s=30, max_retries=retries)


def good_turns(patch: str = GOOD) -> list[dict]:
    """A patcher conversation that looks, patches, checks and finishes (five responses)."""
    return [
        message(
            text("PRIVATE-NOTE: let me look around."), tool("list_dir"), use=usage(1800, 70, cache_write=1500)
        ),
        message(tool("read_file", path="engine.yaml"), use=usage(40, 35, cache_read=1500)),
        message(tool("apply_patch", patch=patch), use=usage(60, 140, cache_read=1540)),
        message(tool("run_correctness"), use=usage(55, 30, cache_read=1700)),
        message(
            tool(
                "finish",
                rationale="Enable prefix caching: shared prefixes are prefilled again",
                cited_rows=CITES,
            ),
            use=usage(50, 90, cache_read=1760),
        ),
    ]


def review_turn(verdict: str = "ADVANCED", findings: list[dict] | None = None) -> dict:
    return message(
        tool("submit_review", verdict=verdict, summary="a plain config change", findings=findings or []),
        use=usage(2100, 120),
    )


def new_run(tmp_path: Path, repo: Path, patcher: AnthropicPatcher, reviewer=None, **spec_over) -> Run:
    over = {"budgets": {"max_rounds": 2, "max_api_usd": 1.0}, **spec_over}
    return Run.create(make_spec(repo, tmp_path, **over), FakeBackend(), patcher, model_reviewer=reviewer)


def round_file(run: Run, name: str, n: int = 1) -> Path:
    return run.root / "rounds" / f"{n:03d}" / name


def recorded(run: Run) -> set[str]:
    return set(run.ledger.recorded_files())


def test_good_patch_goes_through_tools_finish_validation_and_review(
    tmp_path: Path, target_repo: Path
) -> None:
    with serve(
        [*good_turns(), review_turn(findings=[{"severity": "minor", "title": "t", "evidence": "e"}])]
    ) as api:
        run = new_run(
            tmp_path, target_repo, AnthropicPatcher(settings(api.url)), ModelReviewer(settings(api.url))
        )
        assert run.drive() == "COMPLETE"
    review = ReviewRecord.model_validate_json(round_file(run, "review.json").read_text())
    assert review.accepted and review.verdict == "ADVANCED"
    assert review.gates[-1].gate == "model_review" and review.gates[-1].passed
    patch = PatchRecord.model_validate_json(round_file(run, "patch.json").read_text())
    assert (
        patch.patcher == "anthropic" and patch.files_changed == ["engine.yaml"] and patch.cited_rows == CITES
    )
    repo = git.Repo(target_repo)
    assert repo.heads[run.manifest.loop_branch].commit.hexsha == patch.commit
    assert (
        "Cites: prefill/kernel_table/aten::mm all/engine_stats/counters" in repo.commit(patch.commit).message
    )
    assert {
        "rounds/001/agent.json",
        "rounds/001/transcript.json",
        "rounds/001/model_review.json",
    } <= recorded(run)
    assert verify_ledger(run.root).ok
    assert not (run.root / "work" / "anthropic-001").exists()
    # Prompt caching: system prompt and last tool carry breakpoints, plus one moving message breakpoint.
    first = api.requests[0]
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert [t["name"] for t in first["tools"]] == [
        "read_file",
        "list_dir",
        "grep",
        "apply_patch",
        "run_correctness",
        "finish",
    ]
    assert "Never edit benchmark" in first["system"][0]["text"]
    # The reviewer reads artifacts, never the patcher's conversation.
    review_request = json.dumps(api.requests[-1])
    assert [t["name"] for t in api.requests[-1]["tools"]] == ["submit_review"]
    assert "+enable_prefix_caching: true" in review_request and "PRIVATE-NOTE" not in review_request


def test_usage_and_cost_in_the_ledger_equal_what_the_server_reported(
    tmp_path: Path, target_repo: Path
) -> None:
    with serve([*good_turns(), review_turn()]) as api:
        run = new_run(
            tmp_path, target_repo, AnthropicPatcher(settings(api.url)), ModelReviewer(settings(api.url))
        )
        run.drive()
    agent = AgentRecord.model_validate_json(round_file(run, "agent.json").read_text())
    served = [TokenUsage.model_validate(u) for u in api.served_usage]
    assert agent.model == MODEL and agent.turns == 5 and agent.stop == "finished"
    assert agent.calls == served[:5]
    total = sum(served[:5], TokenUsage())
    assert agent.usage == total
    assert agent.usage.cache_read_input_tokens == 1500 + 1540 + 1700 + 1760
    assert agent.usd == pytest.approx(cost_usd(MODEL, total))
    # Sonnet 5.5: $2 in, $10 out, $2.50 cache write, $0.10 cache read per MTok.
    assert agent.usd == pytest.approx((2005 * 2 + 365 * 10 + 1500 * 2.50 + 6500 * 0.10) / 1e6)
    assert agent.tool_calls == {
        "list_dir": 1,
        "read_file": 1,
        "apply_patch": 1,
        "run_correctness": 1,
        "finish": 1,
    }
    model_review = ModelReviewRecord.model_validate_json(round_file(run, "model_review.json").read_text())
    assert model_review.usage == served[5] and model_review.verdict == "ADVANCED"


def test_refused_patches_outside_allowed_paths_and_through_a_symlink_are_recorded(
    tmp_path: Path, target_repo: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, target_repo / "conf")
    repo = git.Repo(target_repo)
    repo.git.add("-A")
    repo.index.commit("a config folder link")
    into_link = "--- /dev/null\n+++ b/conf/extra.yaml\n@@ -0,0 +1 @@\n+x: 1\n"
    turns = [
        message(tool("apply_patch", patch=BENCH_TOO)),
        message(tool("apply_patch", patch=into_link)),
        *good_turns()[2:],
    ]
    target = {
        "repo": str(target_repo),
        "engine_config_file": "engine.yaml",
        "allowed_paths": ["engine.yaml", "conf/**"],
        "correctness": "true",
    }
    with serve(turns) as api:
        run = new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url)), target=target)
        assert run.drive() == "COMPLETE"
    agent = AgentRecord.model_validate_json(round_file(run, "agent.json").read_text())
    assert len(agent.refusals) == 2
    assert "outside the allowed paths" in agent.refusals[0] and "symlink" in agent.refusals[1]
    errors = [
        b["content"]
        for m in json.loads(round_file(run, "transcript.json").read_text())["messages"]
        if m["role"] == "user"
        for b in m["content"]
        if b.get("is_error")
    ]
    assert len(errors) == 2 and "bench/workload.py" in errors[0]
    assert list(outside.iterdir()) == []
    patch = PatchRecord.model_validate_json(round_file(run, "patch.json").read_text())
    assert patch.files_changed == ["engine.yaml"]


def test_benchmark_edit_is_rejected_by_the_mechanical_gate_whatever_the_reviewer_says(
    tmp_path: Path, target_repo: Path
) -> None:
    target = {
        "repo": str(target_repo),
        "engine_config_file": "engine.yaml",
        "allowed_paths": ["**"],  # the sandbox lets it through; the protected_code gate must not
        "correctness": "true",
    }
    with serve([*good_turns(BENCH_TOO), review_turn("ADVANCED")]) as api:
        run = new_run(
            tmp_path,
            target_repo,
            AnthropicPatcher(settings(api.url)),
            ModelReviewer(settings(api.url)),
            target=target,
            budgets={"max_rounds": 1, "max_api_usd": 1.0},
        )
        assert run.drive() == "BUDGET_LIMITED"  # max_rounds 1: the one round was rejected
    review = ReviewRecord.model_validate_json(round_file(run, "review.json").read_text())
    assert not review.accepted and "protected_code" in review.rejected_by
    # The reviewer was never asked: failed gates are final.
    assert not any(t["name"] == "submit_review" for r in api.requests for t in r["tools"])
    assert git.Repo(target_repo).heads[run.manifest.loop_branch].commit.hexsha == run.manifest.base_commit
    # And were it asked, an ADVANCED verdict adds its gate but cannot flip the rejection.
    advanced = ModelReviewRecord(
        model=MODEL, verdict="ADVANCED", summary="looks great", prices_as_of=PRICES_AS_OF
    )
    merged = merge(review, advanced)
    assert (
        not merged.accepted and merged.verdict == review.verdict and merged.rejected_by == review.rejected_by
    )
    assert merged.gates[-1].gate == "model_review"


def test_reviewer_findings_can_reject_a_candidate_the_gates_passed(tmp_path: Path, target_repo: Path) -> None:
    blocking = [{"severity": "blocking", "title": "special-cases the workload", "evidence": "engine.yaml"}]
    with serve([*good_turns(), review_turn("ADVANCED", blocking)]) as api:
        run = new_run(
            tmp_path,
            target_repo,
            AnthropicPatcher(settings(api.url)),
            ModelReviewer(settings(api.url)),
            budgets={"max_rounds": 1, "max_api_usd": 1.0},
        )
        run.drive()
    review = ReviewRecord.model_validate_json(round_file(run, "review.json").read_text())
    assert not review.accepted and review.rejected_by == ["model_review"] and review.verdict == "REJECTED"
    assert "special-cases the workload" in review.gates[-1].evidence


def test_conversation_that_never_finishes_stops_at_the_turn_cap(tmp_path: Path, target_repo: Path) -> None:
    forever = [lambda _body: message(tool("list_dir"))] * 50
    with serve(forever) as api:
        run = new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url), max_turns=3))
        assert run.drive() == "BUDGET_LIMITED"
    assert len(api.requests) == 3
    assert "max_turns 3" in run.state.reason
    agent = AgentRecord.model_validate_json(round_file(run, "agent.json").read_text())
    assert agent.stop == "turn_cap" and agent.turns == 3
    assert run.state.best_commit == run.manifest.base_commit
    assert not (run.root / "work" / "anthropic-001").exists()
    assert verify_ledger(run.root).ok and "rounds/001/agent.json" in recorded(run)


def test_spend_cap_stops_the_run_before_it_is_exceeded(tmp_path: Path, target_repo: Path) -> None:
    costly = [lambda _body: message(tool("list_dir"), use=usage(1500, 600))] * 50
    cap = 0.05
    with serve(costly) as api:
        run = new_run(
            tmp_path,
            target_repo,
            AnthropicPatcher(settings(api.url)),
            budgets={"max_rounds": 2, "max_api_usd": cap},
        )
        assert run.drive() == "BUDGET_LIMITED"
    agent = AgentRecord.model_validate_json(round_file(run, "agent.json").read_text())
    assert agent.stop == "usd_cap" and 1 <= agent.turns == len(api.requests) < 50
    assert agent.usd <= cap
    assert "max_api_usd" in run.state.reason
    assert verify_ledger(run.root).ok


def test_output_token_cap_counts_across_rounds(tmp_path: Path, target_repo: Path) -> None:
    # Round 1 spends 365 output tokens; round 2 has 175 left, less than one useful reply.
    with serve(good_turns()) as api:
        run = new_run(
            tmp_path,
            target_repo,
            AnthropicPatcher(settings(api.url), max_output_tokens=540),
            objective={"kind": "beat_peer", "margin": 0.5},
        )
        assert run.drive() == "BUDGET_LIMITED"
    assert run.state.round == 2 and "max_output_tokens 540" in run.state.reason
    assert len(api.requests) == 5
    assert run.state.best_commit != run.manifest.base_commit  # round 1's candidate was kept


def test_rate_limits_and_server_errors_are_retried(tmp_path: Path, target_repo: Path) -> None:
    with serve([error(429), error(500), *good_turns()]) as api:
        run = new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url)))
        assert run.drive() == "COMPLETE"
    assert api.statuses[:3] == [429, 500, 200]
    assert [h.get("x-stainless-retry-count") for h in api.headers[:3]] == ["0", "1", "2"]


def test_errors_left_after_retries_end_the_round_with_the_reason(tmp_path: Path, target_repo: Path) -> None:
    with serve([error(529), error(529)]) as api:
        run = new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url, retries=1)))
        assert run.drive() == "NO_GO"
    assert len(api.requests) == 2 and "after retries" in run.state.reason


@pytest.mark.parametrize(
    ("first", "end", "reason"),
    [
        (message(tool("apply_patch", patch=GOOD[:90]), stop_reason="max_tokens"), "COMPLETE", None),
        (message(text("working on it"), stop_reason="pause_turn"), "COMPLETE", None),
        (message(text("I will not do this."), stop_reason="refusal"), "NO_GO", "refused"),
        (message(text("done?"), stop_reason="model_context_window_exceeded"), "NO_GO", "context window"),
    ],
)
def test_each_stop_reason_has_its_own_handling(
    tmp_path: Path, target_repo: Path, first: dict, end: str, reason: str | None
) -> None:
    with serve([first, *good_turns()]) as api:
        run = new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url)))
        assert run.drive() == end
    if reason:
        assert reason in run.state.reason and len(api.requests) == 1
        return
    second = api.requests[1]["messages"]
    if first["stop_reason"] == "max_tokens":
        # The cut-off tool call is answered with an error and not run.
        assert second[-1]["content"][0]["is_error"] and "cut off" in second[-1]["content"][0]["content"]
    else:
        assert second[-1]["role"] == "assistant"  # pause_turn: the turn is sent back to continue


def test_ending_the_turn_twice_without_finish_is_no_proposal(tmp_path: Path, target_repo: Path) -> None:
    with serve([message(text("Looks fine.")), message(text("Still fine."))]) as api:
        run = new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url)))
        assert run.drive() == "NO_GO"
    assert "finish" in api.requests[1]["messages"][-1]["content"][0]["text"]
    assert "twice without calling finish" in run.state.reason


def test_the_key_never_reaches_the_run_folder_and_the_secrets_gate_would_catch_it(
    tmp_path: Path, target_repo: Path
) -> None:
    leaky = good_turns()
    leaky[0] = message(text(f"my key is {KEY}"), tool("grep", pattern=KEY))
    with serve(leaky) as api:
        run = new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url)))
        assert run.drive() == "COMPLETE"
    assert credential(api.headers[0]) == KEY
    for path in run.root.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="ignore"), path
    assert find_secrets(run.root / "rounds" / "001") == []
    transcript = round_file(run, "transcript.json").read_text()
    assert "[REDACTED]" in transcript
    unredacted = tmp_path / "leak"
    unredacted.mkdir()
    (unredacted / "transcript.json").write_text(transcript.replace("[REDACTED]", KEY))
    assert {(f.file, f.kind) for f in find_secrets(unredacted)} == {("transcript.json", "anthropic key")}


def test_missing_key_is_a_clear_error(
    tmp_path: Path, target_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    run = new_run(tmp_path, target_repo, AnthropicPatcher(settings("http://127.0.0.1:9")))
    with pytest.raises(MissingKeyError, match="ANTHROPIC_API_KEY is not set"):
        run.drive()


@pytest.mark.parametrize(
    ("reply", "accepted", "evidence"),
    [
        (
            message(text('Verdict: {"verdict": "ADVANCED", "summary": "fine", "findings": []}')),
            True,
            "ADVANCED",
        ),
        (
            message(tool("submit_review", verdict="GREAT", summary="s", findings=[])),
            False,
            "malformed verdict",
        ),
        (message(text("I cannot review this."), stop_reason="refusal"), False, "no submit_review"),
    ],
)
def test_model_review_reads_json_text_and_fails_closed_on_bad_answers(
    tmp_path: Path, target_repo: Path, reply: dict, accepted: bool, evidence: str
) -> None:
    with serve([*good_turns(), reply]) as api:
        run = new_run(
            tmp_path,
            target_repo,
            AnthropicPatcher(settings(api.url)),
            ModelReviewer(settings(api.url)),
            budgets={"max_rounds": 1, "max_api_usd": 1.0},
        )
        run.drive()
    review = ReviewRecord.model_validate_json(round_file(run, "review.json").read_text())
    assert review.accepted is accepted and evidence in review.gates[-1].evidence


def test_spend_of_a_round_killed_mid_conversation_still_counts_after_resume(
    tmp_path: Path, target_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = AnthropicPatcher._handle

    def killed_on_third_reply(self, stop_reason, content, s, sandbox, key):  # type: ignore[no-untyped-def]
        if len(s.calls) == 3:
            raise KeyboardInterrupt  # as good as a kill: nothing after this point runs
        return handle(self, stop_reason, content, s, sandbox, key)

    monkeypatch.setattr(AnthropicPatcher, "_handle", killed_on_third_reply)
    with serve(good_turns()) as api, pytest.raises(KeyboardInterrupt):
        new_run(tmp_path, target_repo, AnthropicPatcher(settings(api.url))).drive()
    first = [TokenUsage.model_validate(u) for u in api.served_usage]
    monkeypatch.setattr(AnthropicPatcher, "_handle", handle)
    with serve(good_turns()) as api:
        run = Run(tmp_path / "artifacts" / "test-run", FakeBackend(), AnthropicPatcher(settings(api.url)))
        assert run.drive() == "COMPLETE"
    agent = AgentRecord.model_validate_json(round_file(run, "agent.json").read_text())
    assert agent.resumed_calls == 3 and agent.turns == 8
    assert agent.calls == first + [TokenUsage.model_validate(u) for u in api.served_usage]
    assert agent.usd == pytest.approx(sum(cost_usd(MODEL, u) for u in agent.calls))
