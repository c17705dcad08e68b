"""`perfloop goal ...` and `perfloop report`."""

import typer

app = typer.Typer(help="The performance loop.", no_args_is_help=True)


def report(run: str = typer.Argument(..., help="Run folder or id.")) -> None:
    """Render the Markdown PR report of a run from its ledger."""
    raise typer.Exit(code=2)
