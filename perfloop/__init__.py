"""perfloop: agent-driven performance loops on LLM inference engines."""

__version__ = "0.1.0"
