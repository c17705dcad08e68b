"""GET /metrics: the engine's state in Prometheus text format (names follow vLLM's, prefix `perfloop:`)."""

from __future__ import annotations

from perfloop.engine.async_engine import AsyncEngine, Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]
    return lines


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _histogram(name: str, help_text: str, hist: Histogram, labels: str) -> list[str]:
    samples = [(f'{{{labels},le="{bound}"}}', count) for bound, count in hist.cumulative()]
    samples.append((f'{{{labels},le="+Inf"}}', hist.count))
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    lines += [f"{name}_bucket{lab} {_number(v)}" for lab, v in samples]
    lines += [f"{name}_sum{{{labels}}} {_number(hist.total)}", f"{name}_count{{{labels}}} {hist.count}"]
    return lines


# (metric name, Prometheus type, EngineStats field, help text)
_STATS: list[tuple[str, str, str, str]] = [
    ("num_requests_running", "gauge", "num_running", "Requests in the running batch."),
    ("num_requests_waiting", "gauge", "num_waiting", "Requests waiting to be scheduled."),
    ("peak_num_requests_running", "gauge", "peak_running", "Most requests ever in one step."),
    ("kv_cache_usage_perc", "gauge", "kv_usage", "KV-cache usage, 0 to 1."),
    ("kv_cache_blocks_used", "gauge", "kv_blocks_used", "KV-cache blocks in use."),
    ("kv_cache_blocks_total", "gauge", "kv_blocks_total", "KV-cache blocks in the pool."),
    (
        "prefix_cache_queries_total",
        "counter",
        "prefix_cache_queries",
        "Prompt tokens looked up in the prefix cache.",
    ),
    ("prefix_cache_hits_total", "counter", "prefix_cache_hits", "Prompt tokens found in the prefix cache."),
    ("prefix_cache_hit_rate", "gauge", "prefix_cache_hit_rate", "Prefix-cache hits over queries, in tokens."),
    ("num_preemptions_total", "counter", "num_preemptions", "Recompute preemptions."),
    ("prompt_tokens_total", "counter", "prompt_tokens", "Prompt tokens admitted."),
    ("generation_tokens_total", "counter", "generation_tokens", "Tokens generated."),
    ("num_prefill_chunks_total", "counter", "num_prefill_chunks", "Prefill chunks run."),
    ("num_steps_total", "counter", "num_steps", "Engine steps run."),
]


def render(engine: AsyncEngine, model_name: str) -> str:
    """The whole /metrics page."""
    stats = engine.stats()
    lab = f'model_name="{model_name}"'
    one = f"{{{lab}}}"
    lines: list[str] = []
    for name, kind, field, help_text in _STATS:
        lines += _metric(f"perfloop:{name}", kind, help_text, [(one, getattr(stats, field))])
    finished = [(f'{{{lab},finished_reason="{r}"}}', n) for r, n in sorted(engine.counters.finished.items())]
    lines += _metric("perfloop:request_success_total", "counter", "Finished requests by reason.", finished)
    rejected = [(one, engine.counters.rejected_queue_full)]
    lines += _metric(
        "perfloop:request_rejected_queue_full_total", "counter", "Requests refused: queue full.", rejected
    )
    lines += _histogram("perfloop:time_to_first_token_seconds", "Time to first token.", engine.ttft, lab)
    lines += _histogram(
        "perfloop:inter_token_latency_seconds", "Time between output tokens.", engine.itl, lab
    )
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, float]:
    """Unlabelled view of a /metrics page: `name` -> value, summed over label sets (for tests and tools)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0]
        if "_bucket" in name:
            continue
        values[name] = values.get(name, 0.0) + float(value)
    return values
