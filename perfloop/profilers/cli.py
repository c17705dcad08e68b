"""`perfloop profile ...`."""

import typer

app = typer.Typer(help="Profiler capture and analysis tables.", no_args_is_help=True)
