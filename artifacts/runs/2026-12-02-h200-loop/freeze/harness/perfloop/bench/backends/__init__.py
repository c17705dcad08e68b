"""Benchmark backends: OpenAI HTTP streaming, the in-process engine, HF transformers."""
