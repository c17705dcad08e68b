"""Errors the engine raises for bad requests: the caller can name the offending field."""

from __future__ import annotations

from perfloop.errors import UserError


class EngineInputError(ValueError):
    """A request the engine refuses; `param` names the field at fault (OpenAI's `param`)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class EngineConfigError(UserError, ValueError):
    """The engine cannot start as configured: an unknown model or preset, a device it cannot use."""
