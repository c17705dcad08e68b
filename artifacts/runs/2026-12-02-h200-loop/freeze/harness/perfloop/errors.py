"""User errors: mistakes in what was asked for, which the `perfloop` command prints as one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic stays unimported until an error needs it: `perfloop --help` is fast
    from pydantic import ValidationError


class UserError(ValueError):
    """A bad value, a missing file, a busy port: the user can fix it, so no traceback is shown.

    `option` names the CLI flag at fault, when there is one. The `perfloop` command prints
    `error: OPTION: MESSAGE` on one line and exits 2; `perfloop --debug` shows the traceback.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option

    def one_line(self) -> str:
        """The message as the CLI prints it: prefixed with the flag, on one line."""
        text = one_line(str(self))
        return f"{self.option}: {text}" if self.option and not text.startswith(self.option) else text


def one_line(text: str) -> str:
    """`text` with its lines joined by '; ' (pydantic and nested errors span several)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def describe_validation(exc: ValidationError, flag: bool = True, most: int = 3) -> str:
    """A pydantic error on one line: `--field: problem (got VALUE)` for the first `most` fields.

    `flag=False` names fields as they are (`field:`), for records that are not CLI flags.
    """
    errors = exc.errors()
    parts = []
    for err in errors[:most]:
        field = ".".join(str(p) for p in err["loc"])
        name = "--" + field.replace("_", "-") if flag and field else field
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        parts.append(f"{name}: {err['msg']}{got}" if name else f"{err['msg']}{got}")
    more = f" (and {len(errors) - most} more)" if len(errors) > most else ""
    return "; ".join(parts) + more
