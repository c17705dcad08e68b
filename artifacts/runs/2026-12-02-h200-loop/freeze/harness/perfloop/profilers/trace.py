"""Typed loading of torch-profiler Chrome traces (`.json` / `.json.gz`) into integer-nanosecond events.

msgspec decodes only the fields the tables need straight into typed structs (about 5x faster and
lighter than `json.load` on a 200 MB trace); every other key is skipped by the decoder.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

KERNEL_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
RUNTIME_CATS = frozenset({"cuda_runtime", "cuda_driver"})


class TraceFormatError(ValueError):
    """The file is not a torch-profiler Chrome trace."""


class _Args(msgspec.Struct):
    external_id: int | None = msgspec.field(default=None, name="External id")
    correlation: int | None = None
    python_id: int | None = msgspec.field(default=None, name="Python id")
    python_parent_id: int | None = msgspec.field(default=None, name="Python parent id")
    input_dims: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="Input Dims")
    stream: int | None = None


class _RawEvent(msgspec.Struct):
    ph: str = ""
    cat: str = ""
    name: str = ""
    pid: int | str = 0
    tid: int | str = 0
    ts: float = 0.0
    dur: float = 0.0
    args: _Args | None = None


class _RawTrace(msgspec.Struct):
    traceEvents: list[_RawEvent]  # noqa: N815 - the trace's own key
    baseTimeNanoseconds: int | None = None  # noqa: N815
    deviceProperties: list[dict] | dict = msgspec.field(default_factory=list)  # noqa: N815


class Event(msgspec.Struct):
    """One complete (`ph: X`) trace event, times in integer nanoseconds."""

    cat: str
    name: str
    pid: int | str
    tid: int | str
    start: int
    end: int
    external_id: int | None = None
    correlation: int | None = None
    python_id: int | None = None
    python_parent_id: int | None = None
    input_dims: str = ""

    @property
    def dur(self) -> int:
        return self.end - self.start


@dataclass
class Trace:
    """The events of one trace, split by role."""

    path: Path
    base_time_ns: int | None
    device_properties: list[dict]
    kernels: list[Event] = field(default_factory=list)
    runtime: list[Event] = field(default_factory=list)
    cpu_ops: list[Event] = field(default_factory=list)
    annotations: list[Event] = field(default_factory=list)
    gpu_annotations: list[Event] = field(default_factory=list)
    python: list[Event] = field(default_factory=list)

    @property
    def has_device(self) -> bool:
        """True for CUDA traces (kernels present); CPU-only traces are analysed over CPU ops."""
        return bool(self.kernels)


def to_ns(us: float) -> int:
    """Microseconds with three decimals -> exact integer nanoseconds.

    Splitting off the integer part keeps the result exact while the float's spacing is under 1 ns
    (timestamps below ~4.5e12 us, i.e. 52 days of the monotonic clock torch uses); beyond that
    the error is at most 1 ns. Decoding floats keeps loading fast (see the scale measurement).
    """
    whole = int(us)
    return whole * 1000 + round((us - whole) * 1000)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by magic number, not by name)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        with gzip.open(path, "rb") as g:
            return g.read()
    return path.read_bytes()


_BUCKETS = {
    "cpu_op": "cpu_ops",
    "user_annotation": "annotations",
    "gpu_user_annotation": "gpu_annotations",
    "python_function": "python",
}


def load_trace(path: Path | str) -> Trace:
    """Load a torch-profiler trace; raise TraceFormatError naming the problem if it is not one."""
    path = Path(path)
    if not path.exists():
        raise TraceFormatError(f"trace: {path} does not exist")
    try:
        raw = msgspec.json.decode(read_bytes(path), type=_RawTrace)
    except (msgspec.DecodeError, msgspec.ValidationError, OSError) as e:
        raise TraceFormatError(f"trace: {path} is not a torch-profiler Chrome trace ({e})") from e
    props = raw.deviceProperties if isinstance(raw.deviceProperties, list) else [raw.deviceProperties]
    trace = Trace(path=path, base_time_ns=raw.baseTimeNanoseconds, device_properties=props)
    for ev in raw.traceEvents:
        if ev.ph != "X":
            continue
        cat = ev.cat
        if cat in KERNEL_CATS:
            bucket = trace.kernels
        elif cat in RUNTIME_CATS:
            bucket = trace.runtime
        elif cat in _BUCKETS:
            bucket = getattr(trace, _BUCKETS[cat])
        else:
            continue
        bucket.append(_event(ev))
    return trace


def _event(ev: _RawEvent) -> Event:
    start = to_ns(ev.ts)
    a = ev.args
    if a is None:
        return Event(ev.cat, ev.name, ev.pid, ev.tid, start, start + to_ns(ev.dur))
    dims = (
        "".join(bytes(a.input_dims).decode().split()) if a.input_dims else ""
    )  # compact, like torch writes it
    tid = a.stream if ev.cat in KERNEL_CATS and a.stream is not None else ev.tid
    return Event(
        ev.cat,
        ev.name,
        ev.pid,
        tid,
        start,
        start + to_ns(ev.dur),
        a.external_id,
        a.correlation,
        a.python_id,
        a.python_parent_id,
        dims,
    )
