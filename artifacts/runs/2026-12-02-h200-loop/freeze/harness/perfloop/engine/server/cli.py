"""`perfloop serve`: the bundled engine behind the OpenAI HTTP API."""

from __future__ import annotations

import logging
import signal
import socket
from enum import Enum
from pathlib import Path

import typer

from perfloop.engine.cli_options import engine_flags
from perfloop.engine.config import EngineConfig
from perfloop.errors import UserError

log = logging.getLogger("perfloop.serve")


class LogLevel(str, Enum):
    """Levels `--log-level` accepts (Python logging and uvicorn share them)."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def bind_port(host: str, port: int) -> socket.socket:
    """Bind host:port now, before the model loads, so a busy port fails at once.

    The bound socket is handed to uvicorn, so no other process can take the port in between.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve {host!r}: {exc.strerror}", "--host") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: ignore TIME_WAIT leftovers
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(
            f"{port}: cannot listen on {host}:{port} ({exc.strerror}); free it or pick another port",
            "--port",
        ) from None
    return sock


def check_model(config: EngineConfig) -> None:
    """Resolve --device and --model before serving, so a bad one is a one-line error, not a crash."""
    from perfloop.engine.models.presets import resolve_model
    from perfloop.engine.runner import pick_device

    resolve_model(config.model, device=pick_device(config.device).type)


@engine_flags
def serve(
    engine_config: EngineConfig,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to bind (0: any free one)."),
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
    log_level: LogLevel = typer.Option(LogLevel.info, "--log-level", case_sensitive=False, help="Log level."),
) -> None:
    """Serve the bundled engine over the OpenAI HTTP API (completions, chat, SSE, /metrics, profiling)."""
    logging.basicConfig(
        level=log_level.value.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sock = bind_port(host, port)
    check_model(engine_config)
    # Imported here: `perfloop --help` and a busy port must not wait for torch and FastAPI.
    import uvicorn

    from perfloop.engine.async_engine import AsyncEngine
    from perfloop.engine.server.app import ServerSettings, create_app

    settings = ServerSettings(
        served_model_name=served_model_name or engine_config.model,
        api_key=api_key,
        profile_dir=profile_dir.resolve(),
    )
    engine = AsyncEngine(engine_config, profile_dir=settings.profile_dir, max_queue=max_queue)
    app = create_app(engine, settings)
    bound = sock.getsockname()[1]
    log.info(
        "serving %s as '%s' on http://%s:%d", engine_config.model, settings.served_model_name, host, bound
    )
    # uvicorn re-raises the signal it caught once it has shut down; a no-op handler underneath
    # turns that into a plain return, so a graceful stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    config = uvicorn.Config(
        app,
        log_level=log_level.value,
        timeout_graceful_shutdown=shutdown_timeout,
        log_config=None,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:  # the engine failed to start; uvicorn has logged why
        raise typer.Exit(3)
    log.info("server stopped")
