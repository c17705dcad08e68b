"""The one registry of patchers: the goal spec accepts exactly these names and the CLI builds from it.

A new patcher is one `register_patcher(PatcherEntry(...))` call; nothing else names patchers.
Factories import their patcher lazily so that listing names stays cheap (no API client import).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perfloop.loop.patchers.base import Patcher
    from perfloop.loop.spec import GoalSpec

Notify = Callable[[str], None]


@dataclass(frozen=True)
class PatcherEntry:
    """A named patcher: how to build it for a spec, and whether it spends API money."""

    name: str
    description: str
    factory: Callable[[GoalSpec, Notify], Patcher]
    uses_api: bool = False


_REGISTRY: dict[str, PatcherEntry] = {}


def register_patcher(entry: PatcherEntry) -> None:
    """Add (or replace) a patcher under `entry.name`."""
    _REGISTRY[entry.name] = entry


def unregister_patcher(name: str) -> None:
    """Remove a patcher (tests that registered one clean up with this)."""
    _REGISTRY.pop(name, None)


def patcher_names() -> list[str]:
    """Every registered patcher name, in registration order."""
    return list(_REGISTRY)


def patcher_entry(name: str) -> PatcherEntry:
    """The entry of `name`; a ValueError naming the valid ones otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"patcher: {name!r} is not a patcher; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def make_patcher(spec: GoalSpec, notify: Notify) -> Patcher:
    """Build the spec's patcher (the anthropic one may raise MissingKeyError or UnknownModelError)."""
    return patcher_entry(spec.patcher).factory(spec, notify)


def _playbook(spec: GoalSpec, notify: Notify) -> Patcher:
    from perfloop.loop.patchers.playbook import PlaybookPatcher

    return PlaybookPatcher()


def _external(spec: GoalSpec, notify: Notify) -> Patcher:
    from perfloop.loop.patchers.external import ExternalPatcher

    return ExternalPatcher()


def _anthropic(spec: GoalSpec, notify: Notify) -> Patcher:
    from perfloop.loop.patchers.anthropic import AnthropicPatcher, ApiSettings, api_key

    api_key()  # a missing key fails here, before any measuring
    return AnthropicPatcher(
        ApiSettings(model=spec.agent.model),
        max_turns=spec.agent.max_turns,
        max_output_tokens=spec.agent.max_output_tokens,
        notify=notify,
    )


register_patcher(PatcherEntry("playbook", "deterministic tuning rules, offline", _playbook))
register_patcher(PatcherEntry("external", "a coding agent submits commits (goal submit)", _external))
register_patcher(PatcherEntry("anthropic", "a tool-using Claude model in the worktree", _anthropic, True))
