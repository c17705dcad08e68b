"""The `perfloop` command: each area adds its own sub-app, imported only when it runs.

`perfloop --help` lists the sub-apps from COMMANDS without importing them (no torch, no
transformers), and every user mistake ends as one line on stderr with exit code 2.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

from perfloop.errors import UserError, one_line
from perfloop.terminal import LOG_WIDTH

# name -> (module:attribute of the Typer app or command function, its one-line help).
# The help is repeated here so that listing needs no import; tests/test_cli_errors.py checks
# that it matches the command's own.
COMMANDS: dict[str, tuple[str, str]] = {
    "engine": ("perfloop.engine.cli:app", "The bundled reference engine."),
    "serve": (
        "perfloop.engine.server.cli:serve",
        "Serve the bundled engine over the OpenAI HTTP API (completions, chat, SSE, /metrics, profiling).",
    ),
    "bench": ("perfloop.bench.cli:app", "Fair serving benchmark."),
    "profile": ("perfloop.profilers.cli:app", "Profiler capture and analysis tables."),
    "goal": (
        "perfloop.loop.cli:app",
        "The performance loop; bare `perfloop goal` runs the quickstart (a real loop on the CPU, minutes).",
    ),
    "kernel": (
        "perfloop.kernel.cli:app",
        "Kernel tasks: production rows, same-ABI A/B, NCU digests, dispatch, arbiter.",
    ),
    "eval": (
        "perfloop.eval.cli:app",
        "Accuracy evidence: a task eval, a paired comparison, logprob consistency.",
    ),
    "ledger": ("perfloop.ledger.cli:app", "Artifact ledger."),
    "report": ("perfloop.loop.cli:report", "Render the Markdown PR report of a run from its ledger."),
}
DEBUG_ENV = "PERFLOOP_DEBUG"
_LISTING = "perfloop.listing"


def load_command(name: str) -> click.Command:
    """Import sub-app `name` and turn it into its click command."""
    target, _ = COMMANDS[name]
    module, attr = target.split(":")
    obj = getattr(importlib.import_module(module), attr)
    if not isinstance(obj, typer.Typer):
        obj = _single(obj, name)
    command = typer.main.get_command(obj)
    command.name = name
    return command


def _single(fn: Any, name: str) -> typer.Typer:
    """A Typer app holding only the command function `fn` (typer makes it a plain command)."""
    app = typer.Typer()
    app.command(name)(fn)
    return app


def _debug(args: Sequence[str]) -> bool:
    """`--debug` given before the sub-command (or PERFLOOP_DEBUG=1): show tracebacks."""
    leading = []
    for arg in args:
        if not arg.startswith("-"):
            break
        leading.append(arg)
    return "--debug" in leading or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _user_message(exc: BaseException) -> str | None:
    """The one-line message of a user mistake, or None for anything else (a bug: keep its traceback)."""
    if isinstance(exc, UserError):
        return exc.one_line()
    if isinstance(exc, OSError) and exc.filename is not None:  # a path the user gave: missing, not writable
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, click.exceptions.ClickException):
        text = one_line(exc.format_message()).replace("Value error, ", "")  # typer's pydantic wording
        # "Invalid value for --spec: --spec: cannot read ..." names the option once
        return re.sub(r"^(Invalid value for '?([-\w]+)'?: )\2: ", r"\1", text)
    return None


class PerfloopGroup(TyperGroup):
    """The root group: lazy sub-apps, and user errors as one line instead of a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if ctx.meta.get(_LISTING):  # the help listing needs names and help only
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return load_command(cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        ctx.meta[_LISTING] = True
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.meta.pop(_LISTING)

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, *rest: Any, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        argv = sys.argv[1:] if args is None else list(args)
        if args is None and not sys.stdout.isatty() and "COLUMNS" not in os.environ:
            # Help read from a pipe or a log (an agent's, often): typer would squeeze it to 80
            # columns and cut option names; it reads TERMINAL_WIDTH when it first renders.
            os.environ.setdefault("TERMINAL_WIDTH", str(LOG_WIDTH))
        try:
            rv = super().main(argv, *rest, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # typer has printed the help already
            if not standalone_mode:
                raise
            sys.exit(exc.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except Exception as exc:
            message = _user_message(exc)
            if message is None or _debug(argv) or not standalone_mode:
                raise
            click.echo(f"error: {message}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=PerfloopGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    debug: bool = typer.Option(
        False, "--debug", envvar=DEBUG_ENV, help="Show the full traceback of errors (also PERFLOOP_DEBUG=1)."
    ),
) -> None:
    """perfloop: fair benchmark -> gap -> profile -> patch -> revalidate, with a verified ledger."""
    # PerfloopGroup.main reads --debug itself: it must know even when parsing fails. Exporting it
    # makes engines and servers that perfloop starts show tracebacks too.
    if debug:
        os.environ[DEBUG_ENV] = "1"


if __name__ == "__main__":
    app()
