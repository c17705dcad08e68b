"""`perfloop engine ...`."""

import typer

app = typer.Typer(help="The bundled reference engine.", no_args_is_help=True)
