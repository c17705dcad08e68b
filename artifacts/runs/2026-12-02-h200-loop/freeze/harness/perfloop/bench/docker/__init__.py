"""Run servers (vLLM, SGLang, perfloop's own image) as Docker containers for the benchmark."""
