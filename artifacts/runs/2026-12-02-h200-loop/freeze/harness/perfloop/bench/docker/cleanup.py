"""Find and remove containers perfloop started (the `perfloop.managed=1` label)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from perfloop.bench.docker.launcher import docker_client, remove_container
from perfloop.bench.docker.spec import MANAGED_LABEL, RUN_LABEL


class ManagedContainer(BaseModel):
    """One labelled container."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    image: str
    status: str
    run_id: str | None


def managed_containers(run_id: str | None = None) -> list[ManagedContainer]:
    """Containers carrying perfloop's label (of one run when `run_id` is given), running or not."""
    client = docker_client()
    labels = [f"{MANAGED_LABEL}=1"] + ([f"{RUN_LABEL}={run_id}"] if run_id else [])
    found = client.containers.list(all=True, filters={"label": labels})
    return [
        ManagedContainer(
            id=c.id,
            name=c.name,
            image=str(c.attrs.get("Config", {}).get("Image", "")),
            status=c.status,
            run_id=c.labels.get(RUN_LABEL),
        )
        for c in found
    ]


def remove_managed(run_id: str | None = None) -> list[ManagedContainer]:
    """Remove perfloop's leftover containers; returns what was removed."""
    import docker.errors

    client = docker_client()
    leftovers = managed_containers(run_id)
    for item in leftovers:
        try:
            remove_container(client.containers.get(item.id))
        except docker.errors.NotFound:
            pass  # removed meanwhile (its own launcher finished)
    return leftovers
