"""`perfloop serve`: the bundled engine behind the OpenAI HTTP API."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import typer
import uvicorn

from perfloop.engine.async_engine import AsyncEngine
from perfloop.engine.cli_options import engine_flags
from perfloop.engine.config import EngineConfig
from perfloop.engine.server.app import ServerSettings, create_app

log = logging.getLogger("perfloop.serve")


@engine_flags
def serve(
    engine_config: EngineConfig,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to bind."),
    served_model_name: str | None = typer.Option(
        None, "--served-model-name", help="Model name clients send; default: the --model value."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="PERFLOOP_API_KEY", help="Require 'Authorization: Bearer KEY'."
    ),
    max_queue: int = typer.Option(1024, "--max-queue", min=1, help="Most waiting requests before 429s."),
    profile_dir: Path = typer.Option(
        Path("perfloop-profiles"), "--profile-dir", help="Where /stop_profile writes Chrome traces."
    ),
    shutdown_timeout: float = typer.Option(
        10.0, "--shutdown-timeout", min=0, help="Seconds in-flight requests get to finish on SIGTERM/SIGINT."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Serve the bundled engine over the OpenAI HTTP API (completions, chat, SSE, /metrics, profiling)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServerSettings(
        served_model_name=served_model_name or engine_config.model,
        api_key=api_key,
        profile_dir=profile_dir.resolve(),
    )
    engine = AsyncEngine(engine_config, profile_dir=settings.profile_dir, max_queue=max_queue)
    app = create_app(engine, settings)
    log.info(
        "serving %s as '%s' on http://%s:%d", engine_config.model, settings.served_model_name, host, port
    )
    # uvicorn re-raises the signal it caught once it has shut down; a no-op handler underneath
    # turns that into a plain return, so a graceful stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=shutdown_timeout,
        log_config=None,
    )
    log.info("server stopped")
