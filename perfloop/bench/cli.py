"""`perfloop bench ...`."""

import typer

app = typer.Typer(help="Fair serving benchmark.", no_args_is_help=True)
