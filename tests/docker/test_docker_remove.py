"""remove_container returns only once the daemon no longer lists the container."""

from __future__ import annotations

import docker.errors
import pytest

from perfloop.bench.docker import launcher
from perfloop.bench.launcher import LaunchError


class FakeContainer:
    """A container whose removal another remover has started; it stays listed for `listed_for` reloads."""

    def __init__(self, listed_for: int) -> None:
        self.name = "perfloop-run-1234"
        self.status = "removing"
        self.listed_for = listed_for
        self.reloads = 0

    def stop(self, timeout: int) -> None:
        raise docker.errors.APIError("container is stopping")

    def remove(self, force: bool) -> None:
        raise docker.errors.APIError("removal of container perfloop-run-1234 is already in progress")

    def reload(self) -> None:
        self.reloads += 1
        if self.reloads > self.listed_for:
            raise docker.errors.NotFound("No such container")


def test_waits_for_a_removal_in_progress_to_finish() -> None:
    box = FakeContainer(listed_for=3)
    launcher.remove_container(box)
    assert box.reloads == 4  # returned at the first reload that no longer found it


def test_a_container_that_stays_listed_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "REMOVE_TIMEOUT_S", 0.5)
    with pytest.raises(LaunchError, match=r"perfloop-run-1234 is still listed .*\(removing\).*bench cleanup"):
        launcher.remove_container(FakeContainer(listed_for=10**6))


def test_other_daemon_errors_are_raised() -> None:
    class Refused(FakeContainer):
        def remove(self, force: bool) -> None:
            raise docker.errors.APIError("driver failed to remove root filesystem")

    with pytest.raises(docker.errors.APIError, match="root filesystem"):
        launcher.remove_container(Refused(listed_for=0))
