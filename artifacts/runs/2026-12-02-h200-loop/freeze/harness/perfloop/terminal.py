"""The rich console every command prints through: no wrapping or squeezing when output goes to a log."""

from __future__ import annotations

import sys

from rich.console import Console

# Wide enough for every table perfloop prints; rich's default of 80 columns for files and pipes
# would wrap log lines and squeeze tables.
LOG_WIDTH = 240


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr): terminal width on a TTY, LOG_WIDTH otherwise; lines never wrap."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else LOG_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=True)
