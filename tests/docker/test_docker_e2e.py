"""perfloop serve in a container on a real Docker engine: benchmark, profile, and never a leftover."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from perfloop.bench.docker.launcher import DockerLauncher
from perfloop.bench.launcher import LaunchError
from perfloop.bench.runner import BenchSpec, run_benchmark
from perfloop.bench.workloads import WorkloadSpec

pytestmark = pytest.mark.slow


def managed(client: Any) -> list[Any]:
    """Containers with perfloop's label, running or not."""
    return client.containers.list(all=True, filters={"label": "perfloop.managed=1"})


def serve_launch(image: str, cache: Path, profiles: Path | None = None, extra: str = "") -> str:
    """perfloop serve in the image, host network on 127.0.0.1, preset cache (and profiles) mounted."""
    mounts = f"-v {cache}:/cache/perfloop" + (f" -v {profiles}:/profiles" if profiles else "")
    return (
        f"docker:--pull never {mounts} {image} --model preset:tiny-qwen3 --host 127.0.0.1 --port {{port}} "
        f"--profile-dir /profiles {extra}"
    ).strip()


def test_benchmark_through_the_docker_launcher(
    perfloop_image: str, docker_client: Any, model_cache: Path, tmp_path: Path, no_leftovers: None
) -> None:
    workload = WorkloadSpec(kind="random", num_prompts=8, input_len=32, output_len=8, seed=1)
    out = tmp_path / "run" / "result.json"
    spec = BenchSpec(
        launch=serve_launch(perfloop_image, model_cache),
        workload=workload,
        model_id="preset:tiny-qwen3",
        health_timeout=180,
        output=str(out),
        progress=False,
    )
    result = run_benchmark(spec)
    assert result.completed == 8 and result.failed == 0
    assert result.perfloop.output_lengths.all_achieved
    container = result.perfloop.environment.container
    assert container is not None
    assert container.image_id == docker_client.images.get(perfloop_image).id
    assert container.command[:2] == ["perfloop", "serve"] and "preset:tiny-qwen3" in container.command
    saved = json.loads(out.read_text())
    assert saved["perfloop"]["environment"]["container"]["image_id"] == container.image_id
    log = out.with_name("result.server.log").read_text()
    assert "serving preset:tiny-qwen3" in log


def test_profile_endpoints_write_traces_into_the_mounted_dir(
    perfloop_image: str, model_cache: Path, tmp_path: Path, no_leftovers: None
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    launch = serve_launch(perfloop_image, model_cache, profiles).removeprefix("docker:")
    with DockerLauncher(launch, health_timeout=180, log_path=tmp_path / "server.log") as box:
        assert httpx.post(box.url + "/start_profile", timeout=60).status_code == 200
        body = {"model": "preset:tiny-qwen3", "prompt": "hello", "max_tokens": 4}
        assert httpx.post(box.url + "/v1/completions", json=body, timeout=60).status_code == 200
        stopped = httpx.post(box.url + "/stop_profile", timeout=120).json()
    trace = profiles / Path(stopped["trace"]).name
    assert stopped["trace"].startswith("/profiles/") and trace.exists() and trace.stat().st_size > 0


def test_bad_image_is_a_clear_error(docker_client: Any, no_leftovers: None) -> None:
    with pytest.raises(LaunchError, match="not present locally and --pull is never"):
        with DockerLauncher("--pull never perfloop-no-such-image:0 --port {port}", health_timeout=5):
            pass


def test_health_timeout_carries_the_last_log_lines(
    base_image: str, tmp_path: Path, no_leftovers: None
) -> None:
    script = "print('still warming up on {port}', flush=True); import time; time.sleep(600)"
    launch = f'--pull never --entrypoint python {base_image} -c "{script}"'
    with pytest.raises(LaunchError, match="not ready") as err:
        # long enough for a busy host to start the container and print; it never becomes healthy
        with DockerLauncher(launch, health_timeout=30, log_path=tmp_path / "s.log"):
            pass
    assert "still warming up" in str(err.value)


def test_a_server_that_exits_reports_its_exit_code(
    perfloop_image: str, model_cache: Path, no_leftovers: None
) -> None:
    launch = serve_launch(perfloop_image, model_cache, extra="--max-num-seqs 0").removeprefix("docker:")
    with pytest.raises(LaunchError, match="exited with code"):
        with DockerLauncher(launch, health_timeout=120):
            pass


def _bench_process(image: str, cache: Path, out: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "perfloop.cli", "bench", "run", "--backend", "openai",
        "--model", "preset:tiny-qwen3", "--launch", serve_launch(image, cache),
        "--num-prompts", "4000", "--random-input-len", "32", "--random-output-len", "64",
        "--no-progress", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_serving(client: Any, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for c in managed(client):
            port = c.labels.get("perfloop.port")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    time.sleep(2)  # let the benchmark get going
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise AssertionError("the benchmark's container never served")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_killed_benchmark_removes_its_container(
    perfloop_image: str, docker_client: Any, model_cache: Path, tmp_path: Path, sig: int, no_leftovers: None
) -> None:
    proc = _bench_process(perfloop_image, model_cache, tmp_path / "r.json")
    try:
        _wait_serving(docker_client, proc)
        proc.send_signal(sig)
        proc.wait(timeout=180)  # a hang detector: ending ~4000 streams on a loaded 2-core host takes a while
    finally:
        if proc.poll() is None:
            proc.kill()
    assert managed(docker_client) == []


def test_cleanup_removes_what_a_hard_killed_run_left(
    perfloop_image: str, docker_client: Any, model_cache: Path, tmp_path: Path, no_leftovers: None
) -> None:
    proc = _bench_process(perfloop_image, model_cache, tmp_path / "r.json")
    _wait_serving(docker_client, proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(timeout=30)
    assert len(managed(docker_client)) == 1
    out = subprocess.run(
        [sys.executable, "-m", "perfloop.cli", "bench", "cleanup"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "1 container(s) removed" in out.stdout
    assert managed(docker_client) == []
