"""Turning a target commit's files into the launch spec the benchmark runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from perfloop.bench.targets import engine_launch
from perfloop.engine.config import EngineConfig
from perfloop.loop.spec import TargetSpec


def load_engine_config(path: Path) -> EngineConfig:
    """Read a YAML EngineConfig (the bundled engine's launch config in a target repo)."""
    data = yaml.safe_load(path.read_text()) or {}
    return EngineConfig.model_validate(data)


def dump_engine_config(config: EngineConfig) -> str:
    """YAML text of a config, only the fields that differ from the defaults plus the model."""
    data = config.model_dump(exclude_defaults=True)
    data["model"] = config.model
    return yaml.safe_dump(data, sort_keys=True)


def target_launch(target: TargetSpec, tree: Path) -> str:
    """The launch spec of the target as committed in `tree`."""
    if target.engine_config_file:
        return engine_launch(load_engine_config(tree / target.engine_config_file))
    return target.launch.replace("{worktree}", str(tree))
