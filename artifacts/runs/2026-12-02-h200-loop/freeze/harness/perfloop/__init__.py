"""perfloop: agent-driven performance loops on LLM inference engines."""

__version__ = "0.1.0"

from perfloop.engine_tree import mount_from_env as _mount_engine_tree

_mount_engine_tree()  # a loop evidence process measuring a candidate's engine code (else a no-op)
