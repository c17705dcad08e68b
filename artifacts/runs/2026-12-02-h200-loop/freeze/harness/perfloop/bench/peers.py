"""Launched peers: llama.cpp's server and `transformers serve`, on the same weights as perfloop.

A `peer:` launch spec names one (see `perfloop.bench.targets`):

- `peer:llamacpp --model preset:smollm2-135m --weights f32 --threads 1 --ctx 4096`:
  `python -m llama_cpp.server` (from `llama-cpp-python[server]`). `--weights f32|f16|bf16`
  serves a GGUF written once from the model's HF directory (the very tensors perfloop
  loads); `--weights q4_1` serves the packaged Q4_1 file, what a CPU user would run.
  Fair options are always set: requests are queued, not interrupted
  (`--interrupt_requests False`), the thread count is explicit for prompt and decode.
- `peer:transformers-serve --model preset:smollm2-135m --dtype float32 --threads 1`:
  HF's own OpenAI server, pinned to the model directory, on the CPU.

Each peer is started by the `Launcher` (health wait, log file, process group always
stopped), answers `/v1/completions`, and reports its weights (format and precision)
for the environment fingerprint.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from perfloop.bench.fingerprint import WeightsInfo

PeerKind = Literal["llamacpp", "transformers-serve"]
EosMode = Literal["ignore_eos", "min_tokens", "generation_config"]
PEER_KINDS: tuple[str, ...] = ("llamacpp", "transformers-serve")
LLAMACPP_INSTALL = 'pip install "perfloop[peers]"  (builds llama-cpp-python[server]==0.3.36 from source)'
_PRECISION = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "float16": "fp16", "f16": "fp16"}


def precision_name(value: str) -> str:
    """One spelling per precision: fp32, bf16, fp16, q4_1, ..."""
    return _PRECISION.get(value, value)


@dataclass(frozen=True)
class PeerLaunch:
    """How to start one peer and talk to it."""

    command: str  # shell command with {port}
    health_path: str
    eos_mode: EosMode  # how the peer is told to ignore EOS (ignore_eos is not universal)
    weights: WeightsInfo
    served_model: str  # the `model` field the peer answers to
    model: str  # the model directory both sides load (its tokenizer counts tokens)


def _parser(kind: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"peer:{kind}", add_help=False, exit_on_error=False)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    if kind == "llamacpp":
        parser.add_argument("--weights", default="f32", choices=["f32", "f16", "bf16", "q4_1"])
        parser.add_argument("--ctx", type=int, default=4096)
    else:
        parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    return parser


def parse_peer(value: str) -> tuple[str, argparse.Namespace]:
    """`KIND FLAGS` into (kind, options); bad specs raise ValueError naming the bad part."""
    words = shlex.split(value)
    if not words or words[0] not in PEER_KINDS:
        got = words[0] if words else ""
        raise ValueError(f"launch: unknown peer {got!r}; known peers: {', '.join(PEER_KINDS)}")
    kind = words[0]
    try:
        opts, rest = _parser(kind).parse_known_args(words[1:])
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(f"launch: peer:{kind}: {exc}") from exc
    if rest:
        raise ValueError(f"launch: peer:{kind}: unknown options {rest}")
    if opts.threads < 1:
        raise ValueError(f"launch: peer:{kind}: --threads must be >= 1, got {opts.threads}")
    return kind, opts


def peer_model(value: str) -> str:
    """The model a peer spec names."""
    return parse_peer(value)[1].model


def peer_launch(value: str) -> PeerLaunch:
    """Resolve the weights (writing a GGUF once if needed) and build the server command."""
    from perfloop.engine.models.presets import resolve_model

    kind, opts = parse_peer(value)
    model_dir = resolve_model(opts.model)
    if kind == "llamacpp":
        return _llamacpp(model_dir, opts)
    return _transformers_serve(model_dir, opts)


def _llamacpp(model_dir: Path, opts: argparse.Namespace) -> PeerLaunch:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ValueError(f"launch: peer:llamacpp needs llama-cpp-python; run: {LLAMACPP_INSTALL}")
    gguf = llamacpp_weights(model_dir, opts.weights)
    threads = str(opts.threads)
    server = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
    server += ["--n_threads", threads, "--n_threads_batch", threads, "--n_ctx", str(opts.ctx)]
    server += ["--interrupt_requests", "False", "--model_alias", model_dir.name]
    command = shlex.join(server) + " --port {port}"
    weights = WeightsInfo(format="gguf", precision=precision_name(opts.weights), path=str(gguf))
    # llama-cpp-python has no /health; /v1/models answers once the model is loaded.
    return PeerLaunch(command, "/v1/models", "min_tokens", weights, model_dir.name, str(model_dir))


def _transformers_serve(model_dir: Path, opts: argparse.Namespace) -> PeerLaunch:
    t = opts.threads
    command = (
        f"OMP_NUM_THREADS={t} MKL_NUM_THREADS={t} {shlex.quote(sys.executable)} "
        f"-m transformers.cli.transformers serve {shlex.quote(str(model_dir))} "
        f"--host 127.0.0.1 --port {{port}} --device cpu --dtype {opts.dtype} --log-level warning"
    )
    weights = WeightsInfo(format="safetensors", precision=precision_name(opts.dtype), path=str(model_dir))
    # Pinned to the directory: any other `model` in a request is refused.
    return PeerLaunch(command, "/health", "generation_config", weights, str(model_dir), str(model_dir))


def peer_token_counter(peer: PeerLaunch) -> Callable[[str], int]:
    """Token counts with the served model's own tokenizer (peers may report none in streams)."""
    from perfloop.engine.models.config import ModelConfig
    from perfloop.engine.models.presets import resolve_model
    from perfloop.engine.tokenizer import load_tokenizer

    model_dir = resolve_model(peer.model)
    tok = load_tokenizer(model_dir, ModelConfig.from_dir(model_dir).vocab_size, None)
    return lambda text: len(tok.encode(text))


def llamacpp_weights(model_dir: Path, weights: str) -> Path:
    """The GGUF llama.cpp serves: the packaged Q4_1 file, or one written once from `model_dir`."""
    from perfloop.bench.gguf_export import export_gguf
    from perfloop.engine.models.smollm2 import packaged_gguf

    marker = model_dir / "perfloop_preset.json"
    if not marker.is_file() or '"smollm2-135m"' not in marker.read_text():
        # The GGUF metadata (tokenizer, chat template) comes from the packaged SmolLM2 file.
        raise ValueError(f"launch: peer:llamacpp serves preset:smollm2-135m only, not {model_dir}")
    reference = packaged_gguf()
    if weights == "q4_1":
        return reference
    out = model_dir.with_name(f"{model_dir.name}-{weights}.gguf")
    if not out.is_file():
        export_gguf(model_dir, reference, out, weights)  # type: ignore[arg-type]
    return out
