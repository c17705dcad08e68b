"""Docker fixtures: a daemon, an offline base image, perfloop's image built from Dockerfile.cpu.

No registry is reachable in CI, so the base image is made here: a Debian minimal root file
system (`debootstrap --variant=minbase`) plus this interpreter's own Python tree (torch CPU and
every perfloop dependency already installed; a venv's tree on top of its base interpreter's, at the
same paths, so its links resolve) and the wheels of perfloop's build backend,
imported with `docker import`. The image is tagged with a key of its inputs and reused while it
exists locally. The project's Dockerfile.cpu is then built on top with an offline pip.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from perfloop.bench.docker.cleanup import remove_managed
from perfloop.bench.docker.launcher import remove_container

REPO = Path(__file__).resolve().parents[2]
# The base interpreter, then the venv the tests run in (if any): where the dependencies are installed.
PREFIXES = tuple(dict.fromkeys([Path(sys.base_prefix), Path(sys.prefix)]))
IMAGE = "perfloop-test:cpu"
# One daemon serves every test session on a host: its docker tests take turns (see daemon_turn).
TURN_LOCK = Path(tempfile.gettempdir()) / "perfloop-docker-tests.lock"
_turn: list[IO[str]] = []
# Large packages perfloop never imports; left out to keep the base image smaller and faster to import.
UNUSED = ("moto", "cfnlint", "botocore", "boto3", "s3transfer", "jedi")
BUILD_BACKEND = ("hatchling",)
# Shared libraries the pyenv-built interpreter links beyond minbase (ssl, sqlite3, expat, readline).
EXTRA_DEBS = "libssl3,libsqlite3-0,libexpat1,libreadline8,libncursesw6,ca-certificates"


def docker_or_skip() -> Any:
    """A live Docker client, or skip the test with the reason."""
    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker daemon answers ({exc}); .ci/run starts one as root")
    return client


def managed(client: Any) -> list[Any]:
    """Containers with perfloop's label, running or not."""
    return client.containers.list(all=True, filters={"label": "perfloop.managed=1"})


def _site(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _base_key() -> str:
    installed = sorted(str(p) for prefix in PREFIXES for p in _site(prefix).glob("*.dist-info"))
    text = "|".join([*map(str, PREFIXES), sys.version, *UNUSED, *installed, "bookworm-minbase-3", EXTRA_DEBS])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _run(cmd: list[str] | str, **kw: Any) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def build_base_image(client: Any) -> str:
    """The offline base image's tag, made once per set of inputs."""
    import docker.errors

    tag = f"perfloop-test-base:{_base_key()}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is missing; .ci/run installs it")
    work = Path(tempfile.mkdtemp(prefix="perfloop-rootfs-"))
    try:
        root = work / "root"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={EXTRA_DEBS}",
                "bookworm",
                str(root),
                "http://deb.debian.org/debian",
            ]
        )
        _run([sys.executable, "-m", "pip", "download", "-q", "-d", str(root / "wheels"), *BUILD_BACKEND])
        sites = [_site(prefix).relative_to("/") for prefix in PREFIXES]
        excludes = [f"--exclude={site}/{name}" for site in sites for name in UNUSED]
        # The editable install of this checkout points at the host's tree; the image installs its own.
        excludes += [f"--exclude={site}/*perfloop*" for site in sites]
        bins = ":".join(f"{prefix}/bin" for prefix in reversed(PREFIXES))
        path = f"{bins}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        trees = [str(prefix.relative_to("/")) for prefix in PREFIXES]
        tar = ["tar", "-c", *excludes, "-C", str(root), ".", "-C", "/", *trees]
        cmd = " ".join(tar) + f" | docker import --change 'ENV PATH={path}' - {tag}"
        _run(cmd, shell=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tag


def dockerfile_sources() -> list[str]:
    """What Dockerfile.cpu COPYs from the context: the build context is derived from it, not listed twice."""
    sources: list[str] = []
    for line in (REPO / "Dockerfile.cpu").read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


def build_project_image(client: Any, base: str) -> str:
    """Dockerfile.cpu built on the offline base (docker's layer cache makes reruns quick)."""
    context = Path(tempfile.mkdtemp(prefix="perfloop-context-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copy2(REPO / "Dockerfile.cpu", context / "Dockerfile.cpu")
        for name in dockerfile_sources():
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, context / name, ignore=ignore)
            else:
                shutil.copy2(REPO / name, context / name)
        client.images.build(
            path=str(context),
            dockerfile="Dockerfile.cpu",
            tag=IMAGE,
            rm=True,
            buildargs={"BASE_IMAGE": base, "PIP_INSTALL_FLAGS": "--no-index --find-links /wheels"},
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return IMAGE


def take_daemon_turn() -> None:
    """Wait until no other test session on this host runs docker tests, then clear what a killed one left.

    These tests assert on every perfloop-labelled container of the daemon (and one runs
    `perfloop bench cleanup`, which removes them all), so two sessions sharing a daemon would
    remove or count each other's containers.
    """
    if _turn:
        return
    fh = TURN_LOCK.open("a")
    fcntl.flock(fh, fcntl.LOCK_EX)  # released when this session's docker tests end, or when it dies
    _turn.append(fh)
    remove_managed()  # only a session killed mid-test leaves these; the lock says none is running


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A live Docker client (skips without a daemon), taken in this session's turn at the daemon."""
    client = docker_or_skip()
    take_daemon_turn()
    return client


@pytest.fixture(scope="module", autouse=True)
def daemon_turn() -> Iterator[None]:
    """Hands the daemon to the next session once this module's tests are done (tests/ is no package: a
    package-scoped fixture here would last the whole session)."""
    yield
    while _turn:
        fh = _turn.pop()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The offline base image tag."""
    return build_base_image(docker_client)


@pytest.fixture(scope="session")
def perfloop_image(docker_client: Any, base_image: str) -> str:
    """perfloop's CPU image, built from the project's Dockerfile.cpu."""
    return build_project_image(docker_client, base_image)


@pytest.fixture()
def no_leftovers(docker_client: Any) -> Any:
    """Asserts the test left no perfloop-labelled container behind."""
    yield
    left = managed(docker_client)
    for c in left:
        remove_container(c)  # tolerates one already gone (a removal the test started may finish now)
    assert not left, f"containers left behind: {[(c.name, c.status) for c in left]}"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Host directory mounted as the container's preset cache (materialised once per session)."""
    return tmp_path_factory.mktemp("perfloop-cache")
