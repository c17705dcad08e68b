"""Start a `docker:` launch spec as a container, wait until it serves, always remove it.

`DockerLauncher(spec)` mirrors the subprocess `Launcher`: it picks a free host port for
`{port}`, makes sure the image is there (pull policy), runs the container labelled
`perfloop.managed=1` and `perfloop.run=<run id>`, streams its log into a file, waits for
`/health` and then `/v1/models`, and removes the container on exit: success, error,
timeout, Ctrl-C and SIGTERM alike. A run killed harder than that leaves a labelled
container that `perfloop bench cleanup` removes.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx

from perfloop.bench.docker.spec import MANAGED_LABEL, RUN_LABEL, DockerSpec, parse_docker_spec
from perfloop.bench.fingerprint import ContainerInfo
from perfloop.bench.launcher import LaunchError, free_port

LOG_TAIL_LINES = 40
REMOVE_TIMEOUT_S = 60.0


def docker_client() -> Any:
    """A Docker Engine API client from the environment; LaunchError when no daemon answers."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # the SDK raises several types for "no daemon"
        raise LaunchError(f"docker: cannot reach the Docker daemon ({exc}); is dockerd running?") from exc
    return client


def ensure_image(client: Any, spec: DockerSpec) -> Any:
    """The local image for the spec, pulled per its policy; LaunchError when absent and not pulled."""
    if spec.pull == "always":
        return _pull(client, spec)
    image = _local_image(client, spec)
    if image is not None:
        return image
    if spec.pull == "never":
        raise LaunchError(
            f"docker: image {spec.image} is not present locally and --pull is never; "
            f"build it or `docker pull {spec.image}` first"
        )
    return _pull(client, spec, why="is not present locally and ")


def _local_image(client: Any, spec: DockerSpec) -> Any | None:
    import docker.errors

    try:
        return client.images.get(spec.image)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError:
        pass  # the daemon rejects some digest forms; fall back to the repository below
    if spec.digest is None:
        return None
    # A locally built image has no registry digest; accept its image id as the pin.
    try:
        image = client.images.get(spec.repository)
    except docker.errors.ImageNotFound:
        return None
    pinned = spec.digest in (image.id, *[d.split("@", 1)[-1] for d in image.attrs.get("RepoDigests", [])])
    if not pinned:
        raise LaunchError(
            f"docker: {spec.repository} is {image.id}, not the pinned {spec.digest}; pull or rebuild the pin"
        )
    return image


def _pull(client: Any, spec: DockerSpec, why: str = "") -> Any:
    import docker.errors

    try:
        return client.images.pull(spec.image)
    except docker.errors.DockerException as exc:
        raise LaunchError(f"docker: image {spec.image} {why}pulling it failed: {exc}") from exc


def container_info(spec: DockerSpec, image: Any) -> ContainerInfo:
    """What the fingerprint records: image id and digests, the command, the run options."""
    config = image.attrs.get("Config") or {}
    entrypoint = spec.entrypoint if spec.entrypoint is not None else list(config.get("Entrypoint") or [])
    args = spec.args or list(config.get("Cmd") or [])
    return ContainerInfo(
        image=spec.image,
        image_id=image.id,
        repo_digests=list(image.attrs.get("RepoDigests") or []),
        command=[*entrypoint, *args],
        docker_run=" ".join(spec.run_argv()),
        gpus=spec.gpus,
        network=spec.network,
        env_keys=sorted(spec.env),
        shm_size=spec.shm_size,
    )


class _LogPump(threading.Thread):
    """Copies the container's log stream into a file until the container goes away."""

    def __init__(self, container: Any, path: Path) -> None:
        super().__init__(daemon=True, name="perfloop-docker-log")
        self.container = container
        self.path = path

    def run(self) -> None:
        try:
            with self.path.open("ab") as out:
                for chunk in self.container.logs(stream=True, follow=True):
                    out.write(chunk)
                    out.flush()
        except Exception:  # the container was removed under the stream: nothing more to copy
            return


class DockerLauncher:
    """A server container that lives exactly as long as the `with` block."""

    def __init__(
        self,
        spec: str,
        health_timeout: float = 600.0,
        log_path: Path | None = None,
        run_id: str | None = None,
    ) -> None:
        if "{port}" not in spec:
            raise ValueError(
                "launch: a docker spec needs {port} in the server args (host network) or -p {port}:N (bridge)"
            )
        parse_docker_spec(spec.replace("{port}", "0"))  # fail on bad options before touching Docker
        self.template = spec
        self.health_timeout = health_timeout
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="perfloop-container-", suffix=".log")[1])
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.port = 0
        self.spec: DockerSpec | None = None
        self.info: ContainerInfo | None = None
        self.container: Any = None
        self._old_sigterm: Any = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> str:
        """The `docker run` equivalent of what was started (env values hidden)."""
        return self.info.docker_run if self.info else ""

    def __enter__(self) -> DockerLauncher:
        self.port = free_port()
        self.spec = parse_docker_spec(self.template.replace("{port}", str(self.port)))
        self._trap_sigterm()
        try:
            self._start()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self) -> None:
        assert self.spec is not None
        client = docker_client()
        image = ensure_image(client, self.spec)
        self.info = container_info(self.spec, image)
        kwargs = self.spec.container_kwargs()
        kwargs["image"] = image.id  # exactly the image fingerprinted, even if the tag moves meanwhile
        labels = {MANAGED_LABEL: "1", RUN_LABEL: self.run_id, "perfloop.port": str(self.port)}
        self.container = client.containers.run(
            detach=True, labels=labels, name=f"perfloop-{self.run_id}-{self.port}", **kwargs
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        _LogPump(self.container, self.log_path).start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.health_timeout
        for path in ("/health", "/v1/models"):
            while not self._answers(path):
                self._check_running()
                if time.monotonic() > deadline:
                    raise LaunchError(
                        f"container not ready ({path}) after {self.health_timeout:.0f}s\n"
                        f"command: {self.command}\n{self._tail()}"
                    )
                time.sleep(0.25)

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(self.url + path, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _check_running(self) -> None:
        self.container.reload()
        if self.container.status in ("exited", "dead"):
            code = self.container.attrs.get("State", {}).get("ExitCode")
            raise LaunchError(
                f"container exited with code {code} before it served\ncommand: {self.command}\n{self._tail()}"
            )

    def _tail(self) -> str:
        try:
            text = self.container.logs(tail=LOG_TAIL_LINES).decode(errors="replace").rstrip()
        except Exception:
            text = "(no log)"
        return f"--- last {LOG_TAIL_LINES} log lines ({self.log_path}) ---\n{text}"

    def _trap_sigterm(self) -> None:
        # A plain SIGTERM would end Python without running `finally`; make it unwind like Ctrl-C.
        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._old_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def stop(self) -> None:
        """Stop and remove the container; idempotent."""
        container, self.container = self.container, None
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        if container is None:
            return
        remove_container(container)


def remove_container(container: Any) -> None:
    """Stop (short grace) and force-remove a container; returns once it is gone (LaunchError if it stays)."""
    import docker.errors

    try:
        container.stop(timeout=5)
    except docker.errors.DockerException:
        pass
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise
    # Another remover may have got there first (or the daemon is slow): nothing of this run may
    # stay listed behind it, so wait for the daemon to stop listing it.
    deadline = time.monotonic() + REMOVE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            container.reload()
        except docker.errors.NotFound:
            return
        time.sleep(0.2)
    raise LaunchError(
        f"docker: container {container.name} is still listed {REMOVE_TIMEOUT_S:.0f}s after its removal "
        f"({container.status}); remove it with `perfloop bench cleanup`"
    )
