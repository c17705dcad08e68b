"""docker: launch specs parse like `docker run`, and the presets give the documented configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfloop.bench.docker.presets import PresetOptions, preset_launch
from perfloop.bench.docker.spec import parse_docker_spec
from perfloop.bench.fingerprint import ContainerInfo, collect_environment
from perfloop.bench.targets import parse_target, target_model

HF = str(Path("~/.cache/huggingface").expanduser().resolve())
GPU_ALL = {"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}


def _spec(launch: str, port: int = 8123):
    return parse_docker_spec(launch.removeprefix("docker:").replace("{port}", str(port)))


def test_options_before_image_args_after() -> None:
    spec = _spec(
        "docker:--gpus device=0,2 -v /data/models:/models:ro -e A=1 --shm-size 16g --pull never "
        "img/x:1@sha256:abc --model /models/m --port {port}"
    )
    kwargs = spec.container_kwargs()
    assert kwargs["image"] == "img/x:1@sha256:abc" and spec.digest == "sha256:abc"
    assert kwargs["command"] == ["--model", "/models/m", "--port", "8123"]
    assert kwargs["network_mode"] == "host"
    assert kwargs["volumes"] == {"/data/models": {"bind": "/models", "mode": "ro"}}
    assert kwargs["environment"] == {"A": "1"}
    assert kwargs["shm_size"] == "16g"
    assert kwargs["device_requests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["0", "2"], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert spec.pull == "never"
    assert spec.host_path("/models/m") == "/data/models/m"


def test_bridge_publishes_the_benchmark_port() -> None:
    spec = _spec("docker:--network bridge -p {port}:8000 perfloop:cpu --host 0.0.0.0 --port 8000")
    assert spec.container_kwargs()["ports"] == {"8000/tcp": 8123}
    assert spec.container_kwargs()["network_mode"] == "bridge"


def test_bare_env_key_copies_the_host_value_and_hides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "secret-value")
    spec = _spec("docker:-e HF_TOKEN img --port {port}")
    assert spec.env == {"HF_TOKEN": "secret-value"}
    assert "secret-value" not in " ".join(spec.run_argv())


@pytest.mark.parametrize(
    ("launch", "message"),
    [
        ("docker:--gpus many img --port {port}", "--gpus"),
        ("docker:--network none img --port {port}", "--network"),
        ("docker:--pull sometimes img --port {port}", "--pull"),
        ("docker:-v nocolon img --port {port}", "--volume"),
        ("docker:--privileged img --port {port}", "--privileged"),
        ("docker:--shm-size", "needs a value"),
        ("docker:--gpus all", "needs an image"),
        ("docker:-p {port}:8000 img", "--network bridge"),
        ("docker:--network bridge img --port {port}", "-p {port}"),
        ("docker:img --port 8000", "{port}"),
        ("docker:-e NOT_SET_ANYWHERE_42 img --port {port}", "NOT_SET_ANYWHERE_42"),
    ],
)
def test_bad_specs_name_the_option(launch: str, message: str) -> None:
    os.environ.pop("NOT_SET_ANYWHERE_42", None)
    with pytest.raises(ValueError, match="launch") as err:
        parse_target(launch)
    assert message in str(err.value)


def test_target_model_maps_a_mounted_model_back_to_the_host(tmp_path: Path) -> None:
    target = parse_target(f"docker:-v {tmp_path}:/models perfloop:cpu --model /models/m --port {{port}}")
    assert target.kind == "docker"
    assert target_model(target) == f"{tmp_path}/m"
    sgl = parse_target(
        "docker:lmsysorg/sglang:latest python3 -m sglang.launch_server --model-path Q --port {port}"
    )
    assert target_model(sgl) == "Q"


def test_vllm_preset_is_the_documented_docker_run() -> None:
    opts = PresetOptions(model="Qwen/Qwen3-0.6B", tensor_parallel_size=2, memory_fraction=0.85)
    spec = _spec(preset_launch("vllm", opts))
    assert spec.run_argv() == [
        "docker", "run", "--rm", "--gpus", "all", "--network", "host",
        "-v", f"{HF}:/root/.cache/huggingface", "--ipc", "host",
        "vllm/vllm-openai:latest",
        "--model", "Qwen/Qwen3-0.6B", "--host", "127.0.0.1", "--port", "8123",
        "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.85", "--enable-prefix-caching",
    ]  # fmt: skip
    assert spec.container_kwargs() == {
        "image": "vllm/vllm-openai:latest",
        "command": [
            "--model",
            "Qwen/Qwen3-0.6B",
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--tensor-parallel-size",
            "2",
            "--gpu-memory-utilization",
            "0.85",
            "--enable-prefix-caching",
        ],  # fmt: skip
        "network_mode": "host",
        "volumes": {HF: {"bind": "/root/.cache/huggingface", "mode": "rw"}},
        "environment": {},
        "device_requests": [GPU_ALL],
        "ipc_mode": "host",
    }


def test_sglang_preset_is_the_documented_docker_run() -> None:
    opts = PresetOptions(
        model="meta-llama/Llama-3.1-8B-Instruct", memory_fraction=0.8, prefix_caching=False, gpus="1"
    )
    spec = _spec(preset_launch("sglang", opts))
    assert spec.container_kwargs() == {
        "image": "lmsysorg/sglang:latest",
        "command": [
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            "meta-llama/Llama-3.1-8B-Instruct",
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--tp-size",
            "1",
            "--mem-fraction-static",
            "0.8",
            "--disable-radix-cache",
        ],  # fmt: skip
        "network_mode": "host",
        "volumes": {HF: {"bind": "/root/.cache/huggingface", "mode": "rw"}},
        "environment": {},
        "device_requests": [{**GPU_ALL, "Count": 1}],
        "shm_size": "32g",
        "ipc_mode": "host",
    }
    assert spec.pull == "missing"


def test_environment_fingerprint_separates_image_versions() -> None:
    def info(image_id: str) -> ContainerInfo:
        return ContainerInfo(
            image="vllm/vllm-openai:latest",
            image_id=image_id,
            repo_digests=[],
            command=["vllm", "serve"],
            docker_run="docker run vllm/vllm-openai:latest",
            gpus="all",
            network="host",
            env_keys=[],
            shm_size=None,
        )

    plain = collect_environment()
    a = plain.model_copy(update={"container": info("sha256:aaa")})
    b = plain.model_copy(update={"container": info("sha256:bbb")})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() != plain.fingerprint()
    # Results without a container keep the fingerprint they had before containers existed.
    legacy = plain.model_dump(exclude={"container"})
    assert type(plain).model_validate(legacy).fingerprint() == plain.fingerprint()
