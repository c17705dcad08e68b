"""`docker:` launch specs: `docker:[OPTIONS] IMAGE[@DIGEST] [CONTAINER ARGS...]`.

The grammar is `docker run`'s: options before the image, the container's arguments after it.
`{port}` anywhere stands for the host port the benchmark connects to (a free one, picked at
launch). Options:

    --gpus all|N|device=0,1     GPUs through a DeviceRequest
    --network host|bridge       host (default) or bridge with `-p {port}:CONTAINER_PORT`
    -p, --publish HOST:CTR      a published port (bridge only)
    -v, --volume HOST:CTR[:ro]  a bind mount (model cache, profile directory)
    -e, --env KEY[=VALUE]       environment; a bare KEY copies the host's value
    --shm-size SIZE             /dev/shm size, e.g. 16g
    --ipc MODE                  IPC namespace, e.g. host
    --entrypoint CMD            replace the image's entrypoint (split on spaces)
    --pull never|missing|always pull policy (default missing: only when absent locally)
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PullPolicy = Literal["never", "missing", "always"]
MANAGED_LABEL = "perfloop.managed"
RUN_LABEL = "perfloop.run"


class Mount(BaseModel):
    """A bind mount: host path (absolute) into the container."""

    model_config = ConfigDict(extra="forbid")

    host: str
    container: str
    mode: Literal["rw", "ro"] = "rw"


class Publish(BaseModel):
    """A published TCP port: host port -> container port."""

    model_config = ConfigDict(extra="forbid")

    host: int
    container: int


class DockerSpec(BaseModel):
    """A parsed `docker:` launch spec; everything `docker run` needs."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="Image reference, optionally pinned with @sha256:DIGEST.")
    args: list[str] = Field(default_factory=list, description="Container arguments (after the image).")
    entrypoint: list[str] | None = None
    gpus: str | None = Field(None, description="all, a count, or device=ID[,ID...].")
    network: Literal["host", "bridge"] = "host"
    publish: list[Publish] = Field(default_factory=list)
    volumes: list[Mount] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    shm_size: str | None = None
    ipc: str | None = None
    pull: PullPolicy = "missing"

    @property
    def digest(self) -> str | None:
        """The pinned digest (`sha256:...`), if the image reference has one."""
        return self.image.split("@", 1)[1] if "@" in self.image else None

    @property
    def repository(self) -> str:
        """The image reference without its digest."""
        return self.image.split("@", 1)[0]

    def device_requests(self) -> list[dict[str, Any]]:
        """Docker Engine API DeviceRequests for `--gpus`."""
        from docker.types import DeviceRequest

        if self.gpus is None:
            return []
        if self.gpus == "all":
            return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        if self.gpus.startswith("device="):
            ids = [d for d in self.gpus[len("device=") :].split(",") if d]
            return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
        return [DeviceRequest(count=int(self.gpus), capabilities=[["gpu"]])]

    def container_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `docker.client.containers.create/run` (labels and name added later)."""
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": list(self.args),
            "network_mode": self.network,
            "volumes": {m.host: {"bind": m.container, "mode": m.mode} for m in self.volumes},
            "environment": dict(self.env),
        }
        if self.entrypoint is not None:
            kwargs["entrypoint"] = list(self.entrypoint)
        if self.gpus is not None:
            kwargs["device_requests"] = self.device_requests()
        if self.publish:
            kwargs["ports"] = {f"{p.container}/tcp": p.host for p in self.publish}
        if self.shm_size is not None:
            kwargs["shm_size"] = self.shm_size
        if self.ipc is not None:
            kwargs["ipc_mode"] = self.ipc
        return kwargs

    def run_argv(self, hide_env_values: bool = True) -> list[str]:
        """The equivalent `docker run` command line (env values hidden unless asked: they may be secrets)."""
        argv = ["docker", "run", "--rm"]
        if self.gpus is not None:
            argv += ["--gpus", self.gpus]
        argv += ["--network", self.network]
        for p in self.publish:
            argv += ["-p", f"{p.host}:{p.container}"]
        for m in self.volumes:
            argv += ["-v", f"{m.host}:{m.container}" + (":ro" if m.mode == "ro" else "")]
        for key, value in self.env.items():
            argv += ["-e", key if hide_env_values else f"{key}={value}"]
        if self.shm_size is not None:
            argv += ["--shm-size", self.shm_size]
        if self.ipc is not None:
            argv += ["--ipc", self.ipc]
        if self.entrypoint is not None:
            argv += ["--entrypoint", " ".join(self.entrypoint)]
        return argv + [self.image, *self.args]

    def host_path(self, container_path: str) -> str:
        """Map a path inside the container back to the host through the mounts (unchanged otherwise)."""
        for m in sorted(self.volumes, key=lambda m: -len(m.container)):
            root = m.container.rstrip("/")
            if container_path == root or container_path.startswith(root + "/"):
                return m.host + container_path[len(root) :]
        return container_path


_WITH_VALUE = {
    "--gpus": "gpus",
    "--network": "network",
    "--net": "network",
    "-p": "publish",
    "--publish": "publish",
    "-v": "volume",
    "--volume": "volume",
    "-e": "env",
    "--env": "env",
    "--shm-size": "shm_size",
    "--ipc": "ipc",
    "--entrypoint": "entrypoint",
    "--pull": "pull",
}


def _split_option(word: str) -> tuple[str, str | None]:
    if word.startswith("--") and "=" in word:
        name, value = word.split("=", 1)
        return name, value
    return word, None


def _mount(value: str) -> Mount:
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"launch: docker --volume: expected HOST:CONTAINER[:ro|rw], got {value!r}")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ValueError(f"launch: docker --volume: mode must be ro or rw, got {mode!r}")
    host = str(Path(os.path.expanduser(parts[0])).resolve())
    return Mount(host=host, container=parts[1], mode=mode)  # type: ignore[arg-type]


def _publish(value: str) -> Publish:
    host, sep, container = value.partition(":")
    if not sep or not host.isdigit() or not container.split("/")[0].isdigit():
        raise ValueError(f"launch: docker --publish: expected HOST_PORT:CONTAINER_PORT, got {value!r}")
    return Publish(host=int(host), container=int(container.split("/")[0]))


def _env(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not key:
        raise ValueError(f"launch: docker --env: expected KEY=VALUE or KEY, got {value!r}")
    if not sep:
        if key not in os.environ:
            raise ValueError(f"launch: docker --env {key}: not set in this environment")
        val = os.environ[key]
    return key, val


def _gpus(value: str) -> str:
    text = value.strip("\"'")
    if text == "all" or text.isdigit() or (text.startswith("device=") and len(text) > len("device=")):
        return text
    raise ValueError(f"launch: docker --gpus: expected all, a count or device=ID[,ID], got {value!r}")


def _apply(fields: dict[str, Any], key: str, value: str) -> None:
    if key == "gpus":
        fields["gpus"] = _gpus(value)
    elif key == "network":
        if value not in ("host", "bridge"):
            raise ValueError(f"launch: docker --network: host or bridge, got {value!r}")
        fields["network"] = value
    elif key == "publish":
        fields.setdefault("publish", []).append(_publish(value))
    elif key == "volume":
        fields.setdefault("volumes", []).append(_mount(value))
    elif key == "env":
        k, v = _env(value)
        fields.setdefault("env", {})[k] = v
    elif key == "entrypoint":
        fields["entrypoint"] = shlex.split(value)
    elif key == "pull":
        if value not in ("never", "missing", "always"):
            raise ValueError(f"launch: docker --pull: never, missing or always, got {value!r}")
        fields["pull"] = value
    else:
        fields[key] = value


def parse_docker_spec(text: str) -> DockerSpec:
    """Parse the part after `docker:`; bad options raise ValueError naming the option."""
    words = shlex.split(text)
    fields: dict[str, Any] = {}
    i = 0
    while i < len(words) and words[i].startswith("-"):
        name, inline = _split_option(words[i])
        if name not in _WITH_VALUE:
            known = ", ".join(sorted({k for k in _WITH_VALUE if k.startswith("--")}))
            raise ValueError(f"launch: docker option {name!r} is not supported (known: {known})")
        if inline is None:
            if i + 1 >= len(words):
                raise ValueError(f"launch: docker {name} needs a value")
            inline, i = words[i + 1], i + 1
        _apply(fields, _WITH_VALUE[name], inline)
        i += 1
    if i >= len(words):
        raise ValueError("launch: docker: needs an image, e.g. docker:perfloop:cpu --model preset:tiny-qwen3")
    spec = DockerSpec(image=words[i], args=words[i + 1 :], **fields)
    if spec.publish and spec.network == "host":
        raise ValueError("launch: docker --publish needs --network bridge (host networking shares ports)")
    if spec.network == "bridge" and not spec.publish:
        raise ValueError("launch: docker --network bridge needs -p {port}:CONTAINER_PORT")
    return spec
