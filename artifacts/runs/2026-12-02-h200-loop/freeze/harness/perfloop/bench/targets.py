"""Launch specs: one string names what to measure, for `run`, `ab` and `search` alike.

- `http://HOST:PORT` (or https): an already running OpenAI-compatible server.
- a shell command containing `{port}`: started by the `Launcher`, measured over HTTP,
  stopped afterwards (e.g. `perfloop serve --model preset:tiny-qwen3 --port {port}`).
- `engine:FLAGS`: the bundled engine in-process, FLAGS being `perfloop engine` flags
  (e.g. `engine:--model preset:tiny-qwen3 --no-enable-prefix-caching`).
- `hf:MODEL [--hf-mode generate_batch|generate]`: HF transformers on the same weights.
- `peer:llamacpp FLAGS` / `peer:transformers-serve FLAGS`: llama.cpp's server or HF's
  `transformers serve`, launched on the same weights (see `perfloop.bench.peers`).
- `docker:[OPTIONS] IMAGE[@DIGEST] [ARGS]`: a server container (see `perfloop.bench.docker.spec`),
  e.g. `docker:--gpus all vllm/vllm-openai:latest --model M --host 127.0.0.1 --port {port}`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from perfloop.bench.backends.base import Backend
from perfloop.bench.fingerprint import ContainerInfo, WeightsInfo
from perfloop.engine.config import EngineConfig

TargetKind = Literal["url", "command", "engine", "hf", "docker", "peer"]


@dataclass(frozen=True)
class Target:
    """A parsed launch spec."""

    kind: TargetKind
    spec: str
    value: str  # URL, shell command, engine flags, or HF model


def parse_target(spec: str) -> Target:
    """Classify a launch spec; bad specs raise ValueError naming `launch`."""
    text = spec.strip()
    if not text:
        raise ValueError("launch: empty launch spec")
    if text.startswith(("http://", "https://")):
        return Target("url", text, text.rstrip("/"))
    if text.startswith("engine:"):
        return Target("engine", text, text[len("engine:") :].strip())
    if text.startswith("hf:"):
        return Target("hf", text, text[len("hf:") :].strip())
    if text.startswith("peer:"):
        from perfloop.bench.peers import parse_peer

        value = text[len("peer:") :].strip()
        parse_peer(value)
        return Target("peer", text, value)
    if text.startswith("docker:"):
        from perfloop.bench.docker.spec import parse_docker_spec

        value = text[len("docker:") :].strip()
        parse_docker_spec(value.replace("{port}", "0"))
        if "{port}" not in value:
            raise ValueError("launch: a docker spec needs {port} in the server args or in -p {port}:N")
        return Target("docker", text, value)
    if "{port}" not in text:
        raise ValueError(
            f"launch: {text!r} is not a URL, engine:FLAGS, hf:MODEL, peer:KIND, docker:IMAGE, "
            "or a command with a {port} placeholder"
        )
    return Target("command", text, text)


def parse_engine_flags(flags: str) -> EngineConfig:
    """`perfloop engine` flags (a string) into a validated EngineConfig."""
    try:
        return EngineConfig.from_flags(shlex.split(flags))
    except ValueError as exc:
        raise ValueError(f"launch: {exc}") from exc


def parse_hf(value: str) -> tuple[str, str]:
    """`MODEL [--hf-mode MODE]` into (model, mode)."""
    words = shlex.split(value)
    if not words:
        raise ValueError("launch: hf: needs a model, e.g. hf:preset:tiny-qwen3")
    mode = "generate_batch"
    if "--hf-mode" in words:
        at = words.index("--hf-mode")
        if at + 1 >= len(words):
            raise ValueError("launch: --hf-mode needs generate_batch or generate")
        mode = words[at + 1]
        del words[at : at + 2]
    if len(words) != 1:
        raise ValueError(f"launch: hf: expected one model, got {words}")
    return words[0], mode


def target_model(target: Target) -> str | None:
    """The model a target serves, when the spec says (used to find the vocabulary size)."""
    if target.kind == "engine":
        return parse_engine_flags(target.value).model
    if target.kind == "hf":
        return parse_hf(target.value)[0]
    if target.kind == "peer":
        from perfloop.bench.peers import peer_model

        return peer_model(target.value)
    if target.kind == "command":
        words = shlex.split(target.value)
        if "--model" in words and words.index("--model") + 1 < len(words):
            return words[words.index("--model") + 1]
    if target.kind == "docker":
        from perfloop.bench.docker.spec import parse_docker_spec

        spec = parse_docker_spec(target.value.replace("{port}", "0"))
        for flag in ("--model", "--model-path"):  # vLLM and perfloop / SGLang
            if flag in spec.args and spec.args.index(flag) + 1 < len(spec.args):
                return spec.host_path(spec.args[spec.args.index(flag) + 1])
    return None


def model_vocab_size(model: str) -> int:
    """vocab_size from the model's config.json (presets are materialised first)."""
    import json

    from perfloop.engine.models.presets import resolve_model

    config = json.loads((Path(resolve_model(model)) / "config.json").read_text())
    return int(config["vocab_size"])


@contextmanager
def open_backend(
    target: Target,
    temperature: float = 0.0,
    ignore_eos: bool = True,
    model_id: str | None = None,
    health_timeout: float = 600.0,
    log_path: Path | None = None,
) -> Iterator[tuple[Backend, str | None, ContainerInfo | None]]:
    """A ready backend, the server command it runs (None in-process) and its container (if any)."""
    from perfloop.bench.backends.openai_http import OpenAIBackend

    if target.kind == "url":
        yield OpenAIBackend(target.value, model_id, temperature, ignore_eos), None, None
    elif target.kind == "command":
        from perfloop.bench.launcher import Launcher

        with Launcher(target.value, health_timeout, log_path) as server:
            yield OpenAIBackend(server.url, model_id, temperature, ignore_eos), server.command, None
    elif target.kind == "docker":
        from perfloop.bench.docker.launcher import DockerLauncher

        with DockerLauncher(target.value, health_timeout, log_path) as box:
            yield OpenAIBackend(box.url, model_id, temperature, ignore_eos), box.command, box.info
    elif target.kind == "peer":
        from perfloop.bench.launcher import Launcher
        from perfloop.bench.peers import peer_launch, peer_token_counter

        peer = peer_launch(target.value)
        with Launcher(peer.command, health_timeout, log_path, peer.health_path) as server:
            served = peer.served_model  # a peer answers to its own name, whatever the caller passed
            count = peer_token_counter(peer)
            backend = OpenAIBackend(server.url, served, temperature, ignore_eos, eos_mode=peer.eos_mode,
                                    count_tokens=count)  # fmt: skip
            yield backend, server.command, None
    elif target.kind == "engine":
        from perfloop.bench.backends.engine import EngineBackend

        yield EngineBackend(parse_engine_flags(target.value), temperature, ignore_eos), None, None
    else:
        from perfloop.bench.backends.hf import HFBackend

        model, mode = parse_hf(target.value)
        yield HFBackend(model, mode, ignore_eos), None, None  # type: ignore[arg-type]


def target_weights(target: Target) -> WeightsInfo | None:
    """The weights a target serves (format, precision), when the spec says; None for a bare URL."""
    if target.kind == "peer":
        from perfloop.bench.peers import peer_launch

        return peer_launch(target.value).weights
    if target.kind == "engine":
        config = parse_engine_flags(target.value)
        return _dir_weights(config.model, config.dtype, config.device)
    if target.kind == "hf":
        return _dir_weights(parse_hf(target.value)[0], "auto", "auto")  # HFBackend: fp32 on CPU, bf16 on CUDA
    if target.kind == "command" and (model := target_model(target)) is not None:
        words = shlex.split(target.value)
        dtype = words[words.index("--dtype") + 1] if "--dtype" in words[:-1] else "auto"
        try:
            return _dir_weights(model, dtype, "auto")
        except (FileNotFoundError, ValueError, AttributeError):
            return None  # another server's model name (a hub id) or dtype spelling: unknown here
    return None


def _dir_weights(model: str, dtype: str, device: str) -> WeightsInfo:
    """An HF directory's weights as the engine loads them: safetensors, `dtype` resolved for `device`."""
    from perfloop.bench.peers import precision_name
    from perfloop.engine.models.presets import resolve_model
    from perfloop.engine.runner import pick_device, pick_dtype

    resolved = str(pick_dtype(dtype, pick_device(device))).removeprefix("torch.")
    path = str(resolve_model(model))
    return WeightsInfo(format="safetensors", precision=precision_name(resolved), path=path)


def engine_launch(config: EngineConfig) -> str:
    """The `engine:` launch spec of a config: its flags (only those off their defaults), shell-quoted."""
    return "engine:" + shlex.join(config.to_flags())
