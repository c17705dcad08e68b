"""Environment fingerprint: what the numbers were measured on, hashed for quick equality checks."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class ContainerInfo(BaseModel):
    """The container a target ran in: which image exactly, and how it was started."""

    model_config = ConfigDict(extra="forbid")

    image: str
    image_id: str
    repo_digests: list[str]
    command: list[str]
    docker_run: str
    gpus: str | None
    network: str
    env_keys: list[str]  # names only: values may be secrets
    shm_size: str | None


class WeightsInfo(BaseModel):
    """The weights one side serves: file format and numeric precision (fp32, bf16, fp16, q4_1, ...)."""

    model_config = ConfigDict(extra="forbid")

    format: str  # safetensors | gguf
    precision: str
    path: str | None = None


class Environment(BaseModel):
    """Hardware and software a benchmark ran on, plus what it measured (command, engine flags)."""

    model_config = ConfigDict(extra="forbid")

    hostname: str
    cpu_model: str
    cpu_count: int
    # CPUs this process may run on (its affinity): what an engine's default torch threads derive from.
    usable_cpus: int | None = None
    gpu_models: list[str]
    gpu_driver: str | None
    python: str
    torch: str
    torch_threads: int  # effective count when collected: an in-process engine's own, once it started
    cuda: str | None
    transformers: str | None
    perfloop: str
    perfloop_commit: str | None
    target_commit: str | None
    server_command: str | None
    engine_flags: dict[str, object] | None
    container: ContainerInfo | None = None
    weights: WeightsInfo | None = None

    def fingerprint(self) -> str:
        """sha256 over the fields that make two measurements comparable (not the hostname)."""
        # Unset container/weights: leave the keys out so older fingerprints stay as they were.
        unset = {k for k in ("container", "weights") if getattr(self, k) is None}
        keep = self.model_dump(exclude={"hostname"} | unset)
        return "sha256:" + hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_driver() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for word in text.split():
        if word.count(".") >= 1 and word.replace(".", "").isdigit():
            return word
    return None


def git_commit(repo: Path | None) -> str | None:
    """HEAD commit of the git work tree holding `repo`, or None outside git."""
    if repo is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def collect_environment(
    server_command: str | None = None,
    engine_flags: dict[str, object] | None = None,
    target_repo: Path | None = None,
    container: ContainerInfo | None = None,
    weights: WeightsInfo | None = None,
) -> Environment:
    """Fingerprint this machine and the measured target."""
    import torch

    import perfloop
    from perfloop.engine.threads import usable_cpus

    try:
        import transformers

        tf_version: str | None = transformers.__version__
    except ImportError:
        tf_version = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return Environment(
        hostname=platform.node(),
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count() or 1,
        usable_cpus=usable_cpus(),
        gpu_models=gpus,
        gpu_driver=_gpu_driver(),
        python=platform.python_version(),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        cuda=torch.version.cuda,
        transformers=tf_version,
        perfloop=getattr(perfloop, "__version__", "0"),
        perfloop_commit=git_commit(Path(perfloop.__file__).parent),
        target_commit=git_commit(target_repo) if target_repo else None,
        server_command=server_command,
        engine_flags=engine_flags,
        container=container,
        weights=weights,
    )
