"""What every backend does: send requests on an arrival schedule, report one record each.

A backend's `run` sends `requests[i]` no earlier than `t0 + arrivals[i]` (perf_counter
clock), keeps at most `max_concurrency` in flight, and calls `on_done` with a
`RequestRecord` (times relative to `t0`) as each finishes. A Ctrl-C propagates out of
`run`; the records already handed to `on_done` are what the runner saves.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Protocol

from perfloop.bench.metrics import RequestRecord
from perfloop.bench.workloads import BenchRequest

OnDone = Callable[[RequestRecord], None]


class Backend(Protocol):
    """A target the runner can measure."""

    name: str  # "openai" | "engine" | "hf"
    endpoint_type: str
    model_id: str

    def run(
        self,
        requests: Sequence[BenchRequest],
        arrivals: Sequence[float],
        max_concurrency: int | None,
        on_done: OnDone,
        t0: float,
    ) -> None:
        """Send every request on schedule; report each through on_done."""
        ...

    def engine_flags(self) -> dict[str, object] | None:
        """Engine settings for the environment fingerprint (None when unknown)."""
        ...


def admit(
    pending: deque[tuple[BenchRequest, float]],
    t0: float,
    now: float,
    in_flight: Sized,
    max_concurrency: int | None,
) -> Iterator[BenchRequest]:
    """Pop requests whose arrival time has come while in-flight capacity allows.

    `in_flight` is re-read before each pop, so the caller's loop body may add to it.
    """
    while (
        pending
        and t0 + pending[0][1] <= now
        and (max_concurrency is None or len(in_flight) < max_concurrency)
    ):
        yield pending.popleft()[0]


def failed_record(req: BenchRequest, start: float, error: str) -> RequestRecord:
    """A request that did not complete, with why."""
    return RequestRecord(
        index=req.index,
        success=False,
        error=error,
        prompt_len=req.prompt_len or 0,
        requested_output_len=req.output_len,
        start=start,
    )


def stream_record(
    req: BenchRequest,
    st: float,
    t0: float,
    times: list[float],
    prompt_len: int,
    output_len: int,
    output_ids: list[int] | None = None,
) -> RequestRecord:
    """A record from a request's send time and its token-chunk arrival times (vLLM's definitions)."""
    if not times:
        return failed_record(req, st - t0, "no tokens received")
    itl = [b - a for a, b in zip(times, times[1:], strict=False)]
    return RequestRecord(
        index=req.index,
        success=True,
        prompt_len=prompt_len,
        requested_output_len=req.output_len,
        output_len=output_len,
        output_len_source="tokens",
        start=st - t0,
        ttft=times[0] - st,
        itl=itl,
        latency=times[-1] - st,
        output_ids=output_ids,
    )


def sleep_until(deadline: float) -> None:
    """Sleep until the perf_counter clock reaches deadline."""
    delay = deadline - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
