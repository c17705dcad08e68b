"""Start a server as a subprocess, wait until it is healthy, always stop it.

`Launcher(command)` is a context manager: it picks a free port, substitutes it for
`{port}` in the shell command, starts it in its own process group with the log in a
file, polls `GET /health` (or another health path) until 200, and on exit (normal, error or Ctrl-C) terminates
the whole group (SIGTERM, then SIGKILL). Failing to come up raises `LaunchError` with
the log's tail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx


class LaunchError(RuntimeError):
    """The server did not come up; the message carries its log tail."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Launcher:
    """A server subprocess that lives exactly as long as the `with` block."""

    def __init__(
        self,
        command: str,
        health_timeout: float = 600.0,
        log_path: Path | None = None,
        health_path: str = "/health",
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if "{port}" not in command:
            raise ValueError(f"launch: the command must contain a {{port}} placeholder: {command!r}")
        self.template = command
        self.health_timeout = health_timeout
        self.health_path = health_path
        self.env, self.cwd = env, cwd  # None: this process's environment and working directory
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="perfloop-server-", suffix=".log")[1])
        self.port = 0
        self.command = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Launcher:
        self.port = free_port()
        self.command = self.template.replace("{port}", str(self.port))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                shell=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LaunchError(
                    f"server exited with code {self.proc.returncode} before {self.health_path} answered\n"
                    f"command: {self.command}\n--- log tail ({self.log_path}) ---\n{log_tail(self.log_path)}"
                )
            try:
                if httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise LaunchError(
            f"server not healthy after {self.health_timeout:.0f}s\ncommand: {self.command}\n"
            f"--- log tail ({self.log_path}) ---\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Terminate the server's process group; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
