"""Engine flags shared by every command that starts the bundled engine."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer
from pydantic import ValidationError

from perfloop.engine.config import EngineConfig
from perfloop.errors import UserError, describe_validation

_FLAGS: dict[str, Any] = {
    "model": typer.Option(..., "--model", help="Model directory or preset:NAME."),
    "dtype": typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    "device": typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    "block_size": typer.Option(16, "--block-size", help="Tokens per KV-cache block."),
    "num_kv_blocks": typer.Option(None, "--num-kv-blocks", help="KV pool size in blocks."),
    "gpu_memory_utilization": typer.Option(0.9, "--gpu-memory-utilization", help="GPU memory share."),
    "max_num_seqs": typer.Option(256, "--max-num-seqs", help="Most sequences in one step."),
    "max_num_batched_tokens": typer.Option(2048, "--max-num-batched-tokens", help="Token budget per step."),
    "max_model_len": typer.Option(None, "--max-model-len", help="Context limit."),
    "enable_prefix_caching": typer.Option(
        True, "--enable-prefix-caching/--no-enable-prefix-caching", help="Prefix caching."
    ),
    "enable_chunked_prefill": typer.Option(
        True, "--enable-chunked-prefill/--no-enable-chunked-prefill", help="Chunked prefill."
    ),
    "attention_backend": typer.Option("auto", "--attention-backend", help="auto, torch or triton."),
    "enforce_eager": typer.Option(False, "--enforce-eager", help="Disable decode CUDA graphs."),
}
_TYPES: dict[str, Any] = {
    "model": str,
    "dtype": str,
    "device": str,
    "block_size": int,
    "num_kv_blocks": int | None,
    "gpu_memory_utilization": float,
    "max_num_seqs": int,
    "max_num_batched_tokens": int,
    "max_model_len": int | None,
    "enable_prefix_caching": bool,
    "enable_chunked_prefill": bool,
    "attention_backend": str,
    "enforce_eager": bool,
}


def engine_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a Typer command the engine flags; it receives them as `engine_config: EngineConfig`.

    The command declares a parameter named `engine_config`; the flags replace it in the
    signature Typer sees, and are validated into one EngineConfig before the call.
    """
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name != "engine_config"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=_TYPES[name])
        for name, opt in _FLAGS.items()
    ]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in _FLAGS}
        try:
            config = EngineConfig(**flags)
        except ValidationError as exc:
            raise UserError(describe_validation(exc)) from exc
        return fn(engine_config=config, **kwargs)

    keyword_own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    wrapper.__signature__ = sig.replace(parameters=keyword_own + extra)  # type: ignore[attr-defined]
    return wrapper
