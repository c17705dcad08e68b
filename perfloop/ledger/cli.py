"""`perfloop ledger ...`."""

import typer

app = typer.Typer(help="Artifact ledger.", no_args_is_help=True)
