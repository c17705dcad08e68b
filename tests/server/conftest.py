"""Start the real `perfloop serve` as a subprocess on a free 127.0.0.1 port, one per test module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from perfloop.engine.server.metrics import parse

MODEL = "preset:tiny-qwen3"
# Flags every test server shares: a short context keeps requests fast and the limit testable.
BASE_FLAGS = ["--max-model-len", "256", "--log-level", "warning"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running `perfloop serve` process."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    profile_dir: Path
    api_key: str | None = None

    def client(self, **kwargs: object) -> openai.OpenAI:
        """The official OpenAI client pointed at this server (no retries: tests see every status)."""
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=self.api_key or "unused", max_retries=0, **kwargs
        )

    def async_client(self) -> openai.AsyncOpenAI:
        """The official async OpenAI client pointed at this server."""
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.api_key or "unused", max_retries=0)

    def metrics(self) -> dict[str, float]:
        """GET /metrics, parsed into name -> value."""
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return parse(response.text)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, *flags: str, api_key: str | None = None) -> Server:
    """Start a server and wait until /health answers 200."""
    port = free_port()
    log_path = tmp / f"server-{port}.log"
    profile_dir = tmp / "profiles"
    cmd = [sys.executable, "-m", "perfloop.cli", "serve", "--model", MODEL, "--port", str(port)]
    cmd += ["--profile-dir", str(profile_dir), *BASE_FLAGS, *flags]
    if api_key:
        cmd += ["--api-key", api_key]
    # One torch thread: the CI box has 2 cores shared with the test process and the client.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path, profile_dir, api_key)
    deadline = time.monotonic() + 600  # liveness only: loading is slow on a busy host
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server did not become healthy:\n{server.log()}")


def stop_server(server: Server, timeout: float = 30) -> int:
    """SIGTERM the server and return its exit code."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll until condition() is true; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


StartServer = Callable[..., Server]


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Start servers with extra flags (`start("--max-queue", "2", api_key=...)`); all stop at module end."""
    started: list[Server] = []

    def _start(*flags: str, api_key: str | None = None) -> Server:
        srv = start_server(tmp_path_factory.mktemp("server"), *flags, api_key=api_key)
        started.append(srv)
        return srv

    yield _start
    for srv in started:
        stop_server(srv)


@pytest.fixture(scope="module")
def server(start: StartServer) -> Server:
    """One default server for the whole module."""
    return start()


@pytest.fixture(scope="session")
def poll() -> Callable[..., bool]:
    """`poll(condition, timeout)`: wait until condition() holds."""
    return wait_for


@pytest.fixture(scope="session")
def stop() -> Callable[..., int]:
    """`stop(server)`: SIGTERM it and return its exit code."""
    return stop_server


@pytest.fixture(scope="session")
def new_port() -> Callable[[], int]:
    """`new_port()`: a TCP port nobody listens on right now."""
    return free_port
