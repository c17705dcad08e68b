"""The `anthropic` patcher: a tool-using model edits the target inside its candidate worktree.

One round is one conversation over the Messages API: the system prompt
(`prompts/patcher.md.j2`: goal, frozen workload, gap, tables, rules) and the sandboxed tools
of `tools.py` are sent with cache breakpoints, and the loop runs tools until the model calls
`finish`. Every `stop_reason` has its own branch. Caps are checked before each call, never
in the middle of a tool: the round's turn cap and the run's output-token and USD caps (spend
is summed from the ledger, so a resumed run keeps counting). A cap ends the round with a
budget-limited proposal and the half-edited worktree is thrown away. The round's usage,
cost, wall time and redacted transcript are written to `agent.json` and `transcript.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfloop.ledger.records import AgentRecord, RunSpend, TokenUsage
from perfloop.ledger.store import atomic_write_model, atomic_write_text
from perfloop.loop import worktrees as wt
from perfloop.loop.gates import GATES, available_rows
from perfloop.loop.patchers.base import Evidence, Patcher, Proposal
from perfloop.loop.patchers.tools import TOOL_SPECS, Sandbox, ToolError
from perfloop.loop.pricing import PRICES_AS_OF, calls_usd, prices_for, worst_rates
from perfloop.loop.secrets import PATTERNS
from perfloop.loop.templates import render

API_KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
DEFAULT_MODEL = "claude-sonnet-5-5"
RESPONSE_TOKENS = 16_000  # max_tokens of one reply, lowered when a cap leaves less
MIN_RESPONSE_TOKENS = 256  # below this a reply cannot carry a useful patch: stop instead
CHARS_PER_TOKEN = 3  # conservative input estimate (real English/code runs about 3.5-4)
AGENT_FILE = "agent.json"
TRANSCRIPT_FILE = "transcript.json"
SPEND_FILES = (AGENT_FILE, "model_review.json")
CACHE = {"type": "ephemeral"}


class MissingKeyError(RuntimeError):
    """ANTHROPIC_API_KEY is not set."""


def api_key() -> str:
    """The key from the environment, or a clear error naming the variable."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise MissingKeyError(
            f"{API_KEY_ENV} is not set: the anthropic patcher and --review-model call the Anthropic API "
            "with the key in that variable"
        )
    return key


@dataclass
class ApiSettings:
    """How to reach the API: model, timeouts and retries (the SDK retries 408/409/429/5xx with backoff)."""

    model: str = DEFAULT_MODEL
    base_url: str | None = None
    timeout_s: float = 300.0
    max_retries: int = 4

    def client(self, key: str) -> Any:
        """An `anthropic.Anthropic` client (imported here: the SDK takes a second to import)."""
        import anthropic

        return anthropic.Anthropic(
            api_key=key,
            base_url=self.base_url or os.environ.get(BASE_URL_ENV) or None,
            timeout=self.timeout_s,
            max_retries=self.max_retries,
        )


def redact(text: str, secrets: list[str]) -> str:
    """`text` with the given secrets and anything secret-shaped replaced by a marker."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    for kind, pattern in PATTERNS.items():
        text = pattern.sub(f"[REDACTED {kind}]", text)
    return text


def usage_of(response: Any) -> TokenUsage:
    """The response's `usage` block as a TokenUsage (missing cache fields count as 0)."""
    u = response.usage
    return TokenUsage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_creation_input_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
        cache_read_input_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
    )


def run_spend(run_root: Path, skip: Path | None = None) -> RunSpend:
    """Sum `usage` and `usd` of every spend record under `rounds/` (but `skip`)."""
    total = RunSpend()
    for name in SPEND_FILES:
        for path in sorted((run_root / "rounds").glob(f"*/{name}")):
            if skip is not None and path == skip:
                continue
            doc = json.loads(path.read_text())
            total = RunSpend(
                usage=total.usage + TokenUsage.model_validate(doc["usage"]), usd=total.usd + doc["usd"]
            )
    return total


@dataclass
class Caps:
    """The caps one round works under."""

    max_turns: int
    max_usd: float
    max_output_tokens: int | None
    spent_usd: float  # by earlier rounds of the run
    spent_output_tokens: int


@dataclass
class Session:
    """One round's conversation state."""

    system: str
    messages: list[dict[str, Any]]
    round_dir: Path
    calls: list[TokenUsage] = field(default_factory=list)
    resumed: int = 0
    started: float = field(default_factory=time.time)
    tools: Counter[str] = field(default_factory=Counter)
    reminders: int = 0

    @property
    def usage(self) -> TokenUsage:
        total = TokenUsage()
        for u in self.calls:
            total = total + u
        return total


CAP_STOPS = {"turn_cap", "output_token_cap", "usd_cap"}


class AnthropicPatcher(Patcher):
    """Runs one tool-using conversation per round and commits what the model hands in."""

    name = "anthropic"

    def __init__(
        self,
        api: ApiSettings | None = None,
        max_turns: int = 40,
        max_output_tokens: int | None = None,
        notify: Any = None,
    ) -> None:
        self.api = api or ApiSettings()
        prices_for(self.api.model)  # an unknown model fails now, not after spending
        self.max_turns = max_turns
        self.max_output_tokens = max_output_tokens
        self.notify = notify or (lambda _msg: None)

    def propose(self, evidence: Evidence) -> Proposal:
        """Converse until `finish` or a cap; commit the change when one is handed in."""
        run_root = evidence.round_dir.parent.parent
        max_usd = evidence.spec.budgets.max_api_usd
        if max_usd <= 0:
            return Proposal(
                commit=None, reason="budgets.max_api_usd is 0: give the agent a spend cap (--max-usd)"
            )
        # A killed attempt of this round left its calls in agent.json: they count, and carry over.
        stale = evidence.round_dir / AGENT_FILE
        earlier = AgentRecord.model_validate_json(stale.read_text()).calls if stale.exists() else []
        spent = run_spend(run_root, skip=stale)
        caps = Caps(self.max_turns, max_usd, self.max_output_tokens, spent.usd, spent.usage.output_tokens)
        if (why := _exhausted(caps)) is not None:
            return Proposal(commit=None, reason=why, budget_limited=True)
        key = api_key()
        client = self.api.client(key)
        tree = evidence.scratch / f"anthropic-{evidence.round:03d}"
        with wt.worktree(evidence.repo, evidence.parent_commit, tree):
            sandbox = Sandbox(
                tree=tree,
                allowed_paths=evidence.spec.target.allowed_paths,
                correctness=evidence.spec.target.correctness,
                reference=run_root / "freeze" / "reference.json",
                citeable_rows=available_rows(evidence.profile),
            )
            session = Session(
                system=_system_prompt(evidence),
                messages=[_opening(evidence)],
                round_dir=evidence.round_dir,
                calls=list(earlier),
                resumed=len(earlier),
            )
            stop, detail = self._converse(client, session, sandbox, caps, key)
            commit = None
            if stop == "finished":
                commit = wt.commit_in_worktree(tree, _commit_message(sandbox, self.api.model))
        files = self._write(session, sandbox, stop, detail, key)
        return _proposal(stop, detail, commit, sandbox, files, self.api.model)

    # ---------- the conversation ----------

    def _converse(self, client: Any, s: Session, sandbox: Sandbox, caps: Caps, key: str) -> tuple[str, str]:
        """The tool loop; returns (stop, detail)."""
        import anthropic

        while True:
            budget = self._budget(s, caps)
            if isinstance(budget, tuple):
                return budget
            try:
                response = client.messages.create(
                    model=self.api.model,
                    max_tokens=budget,
                    system=[{"type": "text", "text": s.system, "cache_control": CACHE}],
                    tools=_tools_with_cache(),
                    messages=_with_cache(s.messages),
                )
            except anthropic.AuthenticationError:
                return "api_error", f"the API rejected the key in {API_KEY_ENV} (401)"
            except anthropic.APIError as exc:
                return "api_error", redact(f"{type(exc).__name__} after retries: {exc}", [key])
            s.calls.append(usage_of(response))
            # Spend is on disk after every call, so a kill mid-round still counts it.
            atomic_write_model(s.round_dir / AGENT_FILE, self._record(s, sandbox, "interrupted", "", key))
            content = [_block_param(b) for b in response.content]
            self.notify(
                f"PATCH: {self.api.model} turn {len(s.calls)} stop={response.stop_reason} "
                f"tools={[b['name'] for b in content if b['type'] == 'tool_use']}"
            )
            s.messages.append({"role": "assistant", "content": content})
            outcome = self._handle(response.stop_reason, content, s, sandbox, key)
            if outcome is not None:
                return outcome

    def _budget(self, s: Session, caps: Caps) -> int | tuple[str, str]:
        """max_tokens for the next call, or (stop, detail) when a cap leaves no room."""
        if len(s.calls) >= caps.max_turns:
            return "turn_cap", f"max_turns {caps.max_turns} reached before the model called finish"
        tokens = RESPONSE_TOKENS
        if caps.max_output_tokens is not None:
            left = caps.max_output_tokens - caps.spent_output_tokens - s.usage.output_tokens
            if left < MIN_RESPONSE_TOKENS:
                return "output_token_cap", f"max_output_tokens {caps.max_output_tokens} reached for the run"
            tokens = min(tokens, left)
        prices = worst_rates(self.api.model)
        spent = caps.spent_usd + calls_usd(self.api.model, s.calls)
        sent = len(json.dumps([s.system, TOOL_SPECS, s.messages])) // CHARS_PER_TOKEN
        usd_left = caps.max_usd - spent - sent * prices["input"] / 1e6
        tokens = min(tokens, int(usd_left * 1e6 / prices["output"]))
        if tokens < MIN_RESPONSE_TOKENS:
            return "usd_cap", (
                f"max_api_usd {caps.max_usd:.4f} reached for the run (spent {spent:.4f}); "
                "another call could exceed it"
            )
        return tokens

    def _handle(
        self, stop_reason: str | None, content: list[dict[str, Any]], s: Session, sandbox: Sandbox, key: str
    ) -> tuple[str, str] | None:
        """Act on one response; (stop, detail) ends the round, None continues."""
        uses = [b for b in content if b["type"] == "tool_use"]
        if stop_reason == "tool_use":
            s.messages.append({"role": "user", "content": [self._run_tool(b, s, sandbox, key) for b in uses]})
            if sandbox.finished is not None:
                return ("gave_up" if sandbox.finished.give_up else "finished"), sandbox.finished.rationale
            return None
        if stop_reason == "max_tokens":
            # A cut-off reply may hold a truncated patch: run none of its tool calls.
            note = "Your reply hit max_tokens and was cut off; no tool in it ran. Send smaller steps."
            results = [_result(b["id"], note, True) for b in uses]
            s.messages.append({"role": "user", "content": [*results, {"type": "text", "text": note}]})
            return None
        if stop_reason == "pause_turn":
            return None  # the assistant turn is sent back as is and the model continues it
        if stop_reason in ("end_turn", "stop_sequence"):
            if s.reminders >= 1:
                return "end_turn", "the model ended its turn twice without calling finish"
            s.reminders += 1
            text = "Use the tools; hand the round in with `finish` (or `finish` with give_up=true)."
            s.messages.append({"role": "user", "content": [{"type": "text", "text": text}]})
            return None
        if stop_reason == "refusal":
            return "refusal", "the model refused the request (stop_reason refusal)"
        if stop_reason == "model_context_window_exceeded":
            return "context_window", "the conversation outgrew the model's context window"
        return "unexpected_stop", f"unexpected stop_reason {stop_reason!r}"

    def _run_tool(self, block: dict[str, Any], s: Session, sandbox: Sandbox, key: str) -> dict[str, Any]:
        s.tools[block["name"]] += 1
        try:
            return _result(
                block["id"], redact(sandbox.call(block["name"], block["input"] or {}), [key]), False
            )
        except ToolError as exc:
            return _result(block["id"], redact(str(exc), [key]), True)

    # ---------- records ----------

    def _write(self, s: Session, sandbox: Sandbox, stop: str, detail: str, key: str) -> list[Path]:
        """agent.json and the redacted transcript.json."""
        transcript = {
            "model": self.api.model,
            "system": s.system,
            "tools": [t["name"] for t in TOOL_SPECS],
            "messages": s.messages,
        }
        tpath = atomic_write_text(
            s.round_dir / TRANSCRIPT_FILE, redact(json.dumps(transcript, indent=1), [key])
        )
        record = self._record(s, sandbox, stop, detail, key)
        usage = record.usage
        apath = atomic_write_model(s.round_dir / AGENT_FILE, record)
        self.notify(
            f"PATCH: {stop} after {record.turns} turns, {usage.input_tokens}+{usage.cache_read_input_tokens} "
            f"cached in / {usage.output_tokens} out tokens, ${record.usd:.4f}"
        )
        return [apath, tpath]

    def _record(self, s: Session, sandbox: Sandbox, stop: str, detail: str, key: str) -> AgentRecord:
        return AgentRecord(
            model=self.api.model,
            turns=len(s.calls),
            calls=s.calls,
            usage=s.usage,
            usd=calls_usd(self.api.model, s.calls),
            prices_as_of=PRICES_AS_OF,
            wall_s=time.time() - s.started,
            stop=stop,
            detail=redact(detail, [key]),
            tool_calls=dict(s.tools),
            refusals=[redact(r, [key]) for r in sandbox.refusals],
            transcript_file=TRANSCRIPT_FILE,
            resumed_calls=s.resumed,
        )


def _exhausted(caps: Caps) -> str | None:
    if caps.spent_usd >= caps.max_usd:
        return f"max_api_usd {caps.max_usd:.4f} reached for the run (spent {caps.spent_usd:.4f})"
    if caps.max_output_tokens is not None and caps.spent_output_tokens >= caps.max_output_tokens:
        return f"max_output_tokens {caps.max_output_tokens} reached for the run"
    return None


def _proposal(
    stop: str, detail: str, commit: str | None, sandbox: Sandbox, files: list[Path], model: str
) -> Proposal:
    if commit is not None and sandbox.finished is not None:
        first = sandbox.finished.rationale.splitlines()[0]
        return Proposal(
            commit=commit,
            reason=f"{model} handed in a change",
            rationale=sandbox.finished.rationale,
            cited_rows=sandbox.finished.cited_rows,
            rule=f"agent: {first[:80]}",
            files=files,
        )
    reason = f"agent {stop}: {detail}"
    return Proposal(commit=None, reason=reason, budget_limited=stop in CAP_STOPS, files=files)


def _system_prompt(ev: Evidence) -> str:
    return render(
        "patcher.md.j2",
        spec=ev.spec,
        run_id=ev.run_id,
        round=ev.round,
        gap=ev.gap,
        freeze=ev.freeze,
        profile=ev.profile,
        parent=ev.parent_commit,
        gates=GATES,
        tried=ev.tried_rules,
        history=ev.history,
        research=ev.research,
    )


def _opening(ev: Evidence) -> dict[str, Any]:
    text = (
        f"Round {ev.round}. Read what you need, apply one change with apply_patch, check it with "
        "run_correctness, then call finish with the rationale and the table rows it acts on."
    )
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def _commit_message(sandbox: Sandbox, model: str) -> str:
    done = sandbox.finished
    assert done is not None
    first = done.rationale.splitlines()[0][:72]
    return f"perfloop agent ({model}): {first}\n\n{done.rationale}\n\nCites: {' '.join(done.cited_rows)}\n"


def _tools_with_cache() -> list[dict[str, Any]]:
    """The tool specs with a cache breakpoint on the last one (tools come first in the prefix)."""
    tools = [dict(t) for t in TOOL_SPECS]
    tools[-1]["cache_control"] = CACHE
    return tools


def _with_cache(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with one moving breakpoint on the last block of the last user turn (4 at most in all)."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user" and isinstance(m["content"], list) and m["content"]:
            blocks = list(m["content"])
            blocks[-1] = {**blocks[-1], "cache_control": CACHE}
            m["content"] = blocks
            break
    return out


def _block_param(block: Any) -> dict[str, Any]:
    """A response content block as the request param that sends it back unchanged."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(exclude_none=True)


def _result(tool_use_id: str, text: str, is_error: bool) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": text, "is_error": is_error}
