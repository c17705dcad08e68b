"""The loop's states, as DESIGN.md draws them, and every legal transition between them.

Terminal states end a run; they are distinct from a round's verdict (ADVANCED, STALLED, REGRESSED,
REJECTED in `ReviewRecord`): a run whose rounds kept stalling ends NO_PROGRESS.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """A state of the loop; its value is what the ledger records."""

    INIT = "INIT"
    FREEZE = "FREEZE"
    BENCH = "BENCH"
    GAP = "GAP"
    PROFILE = "PROFILE"
    PATCH = "PATCH"
    VALIDATE = "VALIDATE"
    REVALIDATE = "REVALIDATE"
    REVIEW = "REVIEW"
    RECORD = "RECORD"
    WAITING_FOR_PATCH = "WAITING_FOR_PATCH"

    COMPLETE = "COMPLETE"
    NO_GO = "NO_GO"
    BUDGET_LIMITED = "BUDGET_LIMITED"
    NO_PROGRESS = "NO_PROGRESS"
    UNPROVABLE = "UNPROVABLE"
    BLOCKED = "BLOCKED"
    ABORTED = "ABORTED"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


INIT, FREEZE, BENCH, GAP, PROFILE = State.INIT, State.FREEZE, State.BENCH, State.GAP, State.PROFILE
PATCH, VALIDATE, REVALIDATE, REVIEW = State.PATCH, State.VALIDATE, State.REVALIDATE, State.REVIEW
RECORD, WAITING_FOR_PATCH = State.RECORD, State.WAITING_FOR_PATCH
COMPLETE, NO_GO, BUDGET_LIMITED = State.COMPLETE, State.NO_GO, State.BUDGET_LIMITED
NO_PROGRESS, UNPROVABLE, BLOCKED, ABORTED = State.NO_PROGRESS, State.UNPROVABLE, State.BLOCKED, State.ABORTED

ROUND_STATES = [BENCH, GAP, PROFILE, PATCH, VALIDATE, REVALIDATE, REVIEW, RECORD]
TERMINAL = {COMPLETE, NO_GO, BUDGET_LIMITED, NO_PROGRESS, UNPROVABLE, BLOCKED, ABORTED}
# Any running state may be stopped (ABORTED) or give up after repeated failures (BLOCKED).
_ENDS = {ABORTED, BLOCKED}

# Every legal transition; the machine refuses anything else.
NEXT: dict[State, set[State]] = {
    INIT: {FREEZE} | _ENDS,
    FREEZE: {BENCH, UNPROVABLE} | _ENDS,
    BENCH: {GAP, BUDGET_LIMITED, UNPROVABLE} | _ENDS,
    GAP: {PROFILE, COMPLETE} | _ENDS,
    PROFILE: {PATCH} | _ENDS,
    PATCH: {VALIDATE, WAITING_FOR_PATCH, NO_GO, BUDGET_LIMITED} | _ENDS,
    WAITING_FOR_PATCH: {VALIDATE} | _ENDS,
    VALIDATE: {REVALIDATE, REVIEW} | _ENDS,  # REVIEW directly: static gates rejected, or the phase crashed
    REVALIDATE: {REVIEW} | _ENDS,
    REVIEW: {RECORD} | _ENDS,
    RECORD: {BENCH, NO_PROGRESS} | _ENDS,
}
