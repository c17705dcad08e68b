"""An asyncio front for LLMEngine: one background thread owns the engine and runs its step loop.

The event loop never runs torch work. It hands adds, aborts and profiler commands to the
engine thread through a thread-safe queue; the thread hands step outputs back with
`loop.call_soon_threadsafe`, into one asyncio queue per request.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from perfloop.engine.config import EngineConfig
from perfloop.engine.detokenizer import IncrementalDetokenizer
from perfloop.engine.errors import EngineInputError
from perfloop.engine.llm_engine import LLMEngine, StepOutput
from perfloop.engine.sampler import Logprob
from perfloop.engine.sampling_params import SamplingParams
from perfloop.engine.stats import EngineStats

log = logging.getLogger(__name__)

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)


class QueueFullError(RuntimeError):
    """The waiting queue is at its limit; the client should retry later."""


class EngineDeadError(RuntimeError):
    """The engine thread stopped; no request can be served."""


@dataclass
class Histogram:
    """A Prometheus-style cumulative histogram, updated from the event-loop thread only."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        """Record one observation in seconds."""
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, as Prometheus wants them."""
        running, out = 0, []
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class Delta:
    """What one request produced in one step (one token): text ready to send (maybe empty), and more."""

    text: str
    num_new_tokens: int
    finish_reason: str | None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Logprob] | None = None
    prompt_logprobs: list[Logprob | None] | None = None


@dataclass
class _Request:
    queue: asyncio.Queue[tuple[StepOutput, float]]
    arrival: float
    last_token_at: float | None = None


@dataclass
class RequestCounters:
    """Requests seen by the server, by outcome."""

    finished: dict[str, int] = field(default_factory=dict)
    rejected_queue_full: int = 0


class AsyncEngine:
    """Runs an LLMEngine on its own thread and serves many asyncio callers at once."""

    def __init__(self, config: EngineConfig, profile_dir: Path, max_queue: int | None = None) -> None:
        self.config = config
        self.profile_dir = profile_dir
        self.max_queue = max_queue
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.counters = RequestCounters()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._requests: dict[str, _Request] = {}
        self._inflight_adds = 0
        self._stats: EngineStats | None = None
        self._engine: LLMEngine | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._profiler: torch.profiler.profile | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the engine on its own thread and wait until it is ready."""
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="perfloop-engine", daemon=True)
        self._thread.start()
        await ready

    async def shutdown(self) -> None:
        """Abort what is still running, stop the profiler if on, and join the engine thread."""
        if self._thread is None:
            return
        for request_id in list(self._requests):
            self.abort(request_id)
        self._commands.put(("stop", None))
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    @property
    def healthy(self) -> bool:
        """True while the engine thread is alive and has not failed."""
        return self._thread is not None and self._thread.is_alive() and self._error is None

    @property
    def engine(self) -> LLMEngine:
        """The engine, for read-only facts (tokenizer, max_model_len, model config)."""
        assert self._engine is not None, "engine not started"
        return self._engine

    @property
    def num_requests(self) -> int:
        """Requests added and not yet finished or aborted."""
        return len(self._requests)

    def stats(self) -> EngineStats:
        """The engine's stats as of its last step or command."""
        assert self._stats is not None, "engine not started"
        return self._stats

    # ---- requests --------------------------------------------------------------------------

    async def add(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        parent: str | None = None,
        arrival: float | None = None,
    ) -> list[int]:
        """Queue a request; return its prompt token ids. Raises EngineInputError or QueueFullError.

        `parent`: an earlier request with the same prompt whose KV blocks this one shares (n > 1).
        `arrival` (perf_counter): when the HTTP request came in; TTFT counts from there, as a client's does.
        """
        self._check_alive()
        if self.max_queue is not None and self.stats().num_waiting + self._inflight_adds >= self.max_queue:
            self.counters.rejected_queue_full += 1
            raise QueueFullError(f"the waiting queue is full ({self.max_queue} requests)")
        assert self._loop is not None
        done: asyncio.Future[list[int]] = self._loop.create_future()
        start = time.perf_counter() if arrival is None else arrival
        self._requests[request_id] = _Request(queue=asyncio.Queue(), arrival=start)
        self._inflight_adds += 1
        self._commands.put(("add", (request_id, prompt, params, parent, done)))
        try:
            return await done
        except BaseException:
            self._requests.pop(request_id, None)
            raise
        finally:
            self._inflight_adds -= 1

    async def stream(
        self, request_id: str, detokenizer: IncrementalDetokenizer, eos_token_id: int | None
    ) -> AsyncIterator[Delta]:
        """Yield text deltas of an added request until it finishes; abort it if the caller leaves."""
        state = self._requests[request_id]
        finished = False
        try:
            while not finished:
                output, _ = await state.queue.get()
                if output.finish_reason == "abort" and output.request_id not in self._requests:
                    raise EngineDeadError("the engine stopped before the request finished")
                ids = output.new_token_ids
                if output.finished and output.finish_reason == "stop" and ids and ids[-1] == eos_token_id:
                    ids = ids[:-1]  # the end-of-sequence token has no text
                text = detokenizer.push(ids)
                if output.finished:
                    text += detokenizer.flush()
                reason = "stop" if detokenizer.stopped else output.finish_reason if output.finished else None
                finished = reason is not None
                yield Delta(
                    text=text,
                    num_new_tokens=len(output.new_token_ids),
                    finish_reason=reason,
                    token_ids=output.new_token_ids,
                    logprobs=output.logprobs,
                    prompt_logprobs=output.prompt_logprobs,
                )
        finally:
            self._finish(request_id, aborted=not finished or detokenizer.stopped)

    def abort(self, request_id: str) -> None:
        """Stop a request and free its KV blocks (asynchronously, on the engine thread)."""
        if self._requests.pop(request_id, None) is not None:
            self._commands.put(("abort", request_id))

    def _finish(self, request_id: str, aborted: bool) -> None:
        if aborted:
            self.abort(request_id)
        self._requests.pop(request_id, None)

    def record_finish(self, reason: str) -> None:
        """Count a finished request by reason, for /metrics."""
        self.counters.finished[reason] = self.counters.finished.get(reason, 0) + 1

    # ---- profiler --------------------------------------------------------------------------

    async def start_profile(self) -> None:
        """Start a torch profiler around the step loop."""
        await self._call("start_profile")

    async def stop_profile(self) -> Path:
        """Stop the profiler; return the Chrome trace (.json.gz) it wrote."""
        return await self._call("stop_profile")

    async def _call(self, command: str) -> Any:
        self._check_alive()
        assert self._loop is not None
        done: asyncio.Future[Any] = self._loop.create_future()
        self._commands.put((command, done))
        return await done

    def _check_alive(self) -> None:
        if not self.healthy:
            raise EngineDeadError(f"the engine is not running: {self._error!r}")

    # ---- event-loop side of the hand-over --------------------------------------------------

    def _deliver(self, outputs: list[StepOutput], at: float) -> None:
        for output in outputs:
            state = self._requests.get(output.request_id)
            if state is None:
                continue  # aborted while the step ran
            if output.new_token_ids:
                if state.last_token_at is None:
                    self.ttft.observe(at - state.arrival)
                else:
                    self.itl.observe(at - state.last_token_at)
                state.last_token_at = at
            state.queue.put_nowait((output, at))

    def _fail_all(self) -> None:
        for request_id, state in list(self._requests.items()):
            self._requests.pop(request_id)
            state.queue.put_nowait((StepOutput(request_id, [], True, "abort"), time.perf_counter()))

    # ---- engine thread ---------------------------------------------------------------------

    def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            self._engine = LLMEngine(self.config)
            self._stats = self._engine.stats()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            self._error = exc
            self._call_soon(_set_exception, ready, exc)
            return
        self._call_soon(_set_result, ready, None)
        try:
            self._step_loop(self._engine)
        except BaseException as exc:  # noqa: BLE001 - the server must report it, not hang
            log.exception("engine thread failed")
            self._error = exc
            self._call_soon(self._fail_all)
        finally:
            self._close_profiler()

    def _step_loop(self, engine: LLMEngine) -> None:
        while True:
            busy = engine.has_unfinished()
            if not self._drain_commands(engine, block=not busy):
                return
            if engine.has_unfinished():
                outputs = engine.step()
                if self._profiler is not None:
                    self._profiler.step()
                self._stats = engine.stats()
                if outputs:
                    self._call_soon(self._deliver, outputs, time.perf_counter())
                    # Hand the GIL to the event loop now rather than after the 5 ms switch interval.
                    time.sleep(0)

    def _drain_commands(self, engine: LLMEngine, block: bool) -> bool:
        """Run queued commands; False when asked to stop."""
        try:
            command = self._commands.get(timeout=0.5) if block else self._commands.get_nowait()
        except queue.Empty:
            return True
        while True:
            if command[0] == "stop":
                return False
            self._handle(engine, *command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                self._stats = engine.stats()
                return True

    def _handle(self, engine: LLMEngine, name: str, arg: Any) -> None:
        if name == "add":
            request_id, prompt, params, parent, done = arg
            try:
                ids = engine.add_request(request_id, prompt, params, parent)
            except EngineInputError as exc:
                self._call_soon(_set_exception, done, exc)
                return
            self._stats = engine.stats()
            self._call_soon(_set_result, done, ids)
        elif name == "abort":
            engine.abort(arg)
        elif name == "start_profile":
            self._reply(arg, self._open_profiler)
        elif name == "stop_profile":
            self._reply(arg, self._close_profiler)

    def _reply(self, done: asyncio.Future[Any], fn: Callable[[], Any]) -> None:
        try:
            self._call_soon(_set_result, done, fn())
        except Exception as exc:  # noqa: BLE001 - reported to the HTTP caller
            self._call_soon(_set_exception, done, exc)

    def _open_profiler(self) -> None:
        if self._profiler is not None:
            raise RuntimeError("the profiler is already running")
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._profiler = torch.profiler.profile(activities=activities, record_shapes=True, with_stack=True)
        self._profiler.start()
        log.info("profiler started; traces go to %s", self.profile_dir)

    def _close_profiler(self) -> Path | None:
        if self._profiler is None:
            return None
        profiler, self._profiler = self._profiler, None
        profiler.stop()
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile_dir / f"perfloop-trace-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns()}.json.gz"
        profiler.export_chrome_trace(str(path))
        log.info("profiler stopped; trace written to %s", path)
        return path

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the event loop is closed: nobody is waiting any more


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
