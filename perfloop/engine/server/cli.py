"""`perfloop serve`."""

import typer


def serve(model: str = typer.Option(..., help="Model directory or preset:NAME.")) -> None:
    """Serve the bundled engine over the OpenAI HTTP API."""
    raise typer.Exit(code=2)
