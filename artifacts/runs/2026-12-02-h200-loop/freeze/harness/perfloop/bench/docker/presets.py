"""Ready-made `docker:` launch specs for vLLM's and SGLang's official OpenAI servers.

Flags follow each framework's documented CLI and Docker instructions:

- vLLM (`vllm/vllm-openai`, entrypoint = the OpenAI server): `--model`, `--host`, `--port`,
  `--tensor-parallel-size`, `--gpu-memory-utilization`, `--enable-prefix-caching` /
  `--no-enable-prefix-caching`; run with `--ipc host` and the Hugging Face cache mounted at
  `/root/.cache/huggingface`.
- SGLang (`lmsysorg/sglang`, no entrypoint): `python3 -m sglang.launch_server --model-path`,
  `--host`, `--port`, `--tp-size`, `--mem-fraction-static`, `--disable-radix-cache` (prefix
  caching is on by default); run with `--ipc host`, a large `--shm-size` and the same cache.

Host networking is the default, so the server binds 127.0.0.1 on the benchmark's `{port}`.
"""

from __future__ import annotations

import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Framework = Literal["vllm", "sglang"]
IMAGES: dict[str, str] = {"vllm": "vllm/vllm-openai:latest", "sglang": "lmsysorg/sglang:latest"}
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"


class PresetOptions(BaseModel):
    """What a user picks for a peer container."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Hugging Face id or a path inside the container.")
    image: str | None = Field(None, description="Image (default: the framework's official :latest).")
    tensor_parallel_size: int = Field(1, ge=1)
    memory_fraction: float | None = Field(None, gt=0, le=1, description="GPU memory share for weights+KV.")
    prefix_caching: bool = True
    gpus: str = "all"
    hf_cache: str = Field("~/.cache/huggingface", description="Host model cache, mounted read-write.")
    shm_size: str | None = Field(None, description="Default: none for vLLM (ipc host), 32g for SGLang.")
    pull: Literal["never", "missing", "always"] = "missing"
    extra_args: list[str] = Field(default_factory=list, description="More server flags, appended.")


def _docker_options(opts: PresetOptions, shm_default: str | None) -> list[str]:
    words = ["--gpus", opts.gpus, "--network", "host", "--ipc", "host"]
    shm = opts.shm_size or shm_default
    if shm:
        words += ["--shm-size", shm]
    words += ["-v", f"{opts.hf_cache}:{HF_CACHE_IN_CONTAINER}", "--pull", opts.pull]
    return words


def vllm_args(opts: PresetOptions) -> list[str]:
    """vLLM OpenAI server arguments (after the image)."""
    args = ["--model", opts.model, "--host", "127.0.0.1", "--port", "{port}"]
    args += ["--tensor-parallel-size", str(opts.tensor_parallel_size)]
    if opts.memory_fraction is not None:
        args += ["--gpu-memory-utilization", str(opts.memory_fraction)]
    args.append("--enable-prefix-caching" if opts.prefix_caching else "--no-enable-prefix-caching")
    return args + list(opts.extra_args)


def sglang_args(opts: PresetOptions) -> list[str]:
    """SGLang launch_server command and arguments (after the image)."""
    args = ["python3", "-m", "sglang.launch_server", "--model-path", opts.model]
    args += ["--host", "127.0.0.1", "--port", "{port}", "--tp-size", str(opts.tensor_parallel_size)]
    if opts.memory_fraction is not None:
        args += ["--mem-fraction-static", str(opts.memory_fraction)]
    if not opts.prefix_caching:
        args.append("--disable-radix-cache")
    return args + list(opts.extra_args)


def preset_launch(framework: Framework, opts: PresetOptions) -> str:
    """The `docker:` launch spec of a framework's server with these options."""
    if framework == "vllm":
        words = _docker_options(opts, None) + [opts.image or IMAGES["vllm"]] + vllm_args(opts)
    elif framework == "sglang":
        words = _docker_options(opts, "32g") + [opts.image or IMAGES["sglang"]] + sglang_args(opts)
    else:
        raise ValueError(f"framework: expected vllm or sglang, got {framework!r}")
    return "docker:" + " ".join(w if w == "{port}" else shlex.quote(w) for w in words)
