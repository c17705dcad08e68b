"""Engine flags for every command that starts the bundled engine, derived from EngineConfig's fields."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from perfloop.engine.config import EngineConfig, flag_fields, flag_name
from perfloop.errors import UserError, describe_validation

# Newer Typer vendors its own click, so `click.ClickException` would miss its errors: take the base
# class of typer.BadParameter, whichever click that is.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _option(name: str, info: FieldInfo) -> inspect.Parameter:
    """The Typer parameter of one EngineConfig field (a Literal becomes str, its values in the help)."""
    annotation, help_text = info.annotation, info.description or ""
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        annotation, help_text = str, f"{', '.join(choices)}. {help_text}"
    flag = flag_name(name)
    decls = f"{flag}/--no-{flag[2:]}" if annotation is bool else flag
    default = ... if info.is_required() else info.default
    option = typer.Option(default, decls, help=help_text)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def engine_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a Typer command the engine flags; it receives them as `engine_config: EngineConfig`.

    The command declares a parameter named `engine_config`; the flags replace it in the signature
    Typer sees, and are validated into one EngineConfig before the call. A command parameter named
    like a flag field (e.g. `bench run`'s `torch_threads`) is that flag: the command keeps its own
    declaration and the value goes both to the command and into the EngineConfig.
    """
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name != "engine_config"]
    shared = {p.name for p in own} & set(flag_fields())
    extra = [_option(name, info) for name, info in flag_fields().items() if name not in shared]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        flags = {name: kwargs[name] if name in shared else kwargs.pop(name) for name in flag_fields()}
        try:
            config = EngineConfig(**flags)
        except ValidationError as exc:
            raise UserError(describe_validation(exc)) from exc
        return fn(engine_config=config, **kwargs)

    keyword_own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    wrapper.__signature__ = sig.replace(parameters=keyword_own + extra)  # type: ignore[attr-defined]
    return wrapper


@functools.cache
def _flags_command() -> Any:
    @engine_flags
    def _flags(engine_config: EngineConfig) -> EngineConfig:
        return engine_config

    app = typer.Typer()
    app.command()(_flags)
    return typer.main.get_command(app)


def parse_flags(words: list[str]) -> EngineConfig:
    """Engine flag words into a validated EngineConfig, with the CLI's own parser."""
    try:
        return _flags_command().main(words, standalone_mode=False, prog_name="engine")
    except _CLICK_ERROR as exc:
        raise ValueError(f"engine flags: {exc.format_message()}") from exc
