"""Per-request benchmark timelines as Perfetto traces (written with the `perfetto` package's
trace builder; viewing needs only ui.perfetto.dev, no trace-processor binary)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import TrackEvent
from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder

from perfloop.bench.metrics import RequestRecord
from perfloop.bench.result import read_records

_SEQ = 1
_CONCURRENCY_TRACK = 1


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def request_events(rec: RequestRecord) -> Iterator[tuple[int, str, str, dict]]:
    """(ts_ns, kind, name, annotations) of one request: slices and per-token instants."""
    t0 = _ns(rec.start)
    end = t0 + _ns(rec.latency)
    first = t0 + _ns(rec.ttft)
    info = {"prompt_len": rec.prompt_len, "output_len": rec.output_len, "success": int(rec.success)}
    yield t0, "begin", f"request {rec.index}", info
    # client-side TTFT covers server queueing and prefill; the client cannot split them
    yield t0, "begin", "queue + prefill (TTFT)", {}
    yield first, "end", "", {}
    if rec.success and rec.output_len > 0:
        yield first, "instant", "token 1", {}
        t = first
        for n, gap in enumerate(rec.itl, start=2):
            t += _ns(gap)
            yield t, "instant", f"token {n}", {}
    yield end, "end", "", {}


def _concurrency(records: list[RequestRecord]) -> list[tuple[int, int]]:
    edges = sorted([(_ns(r.start), 1) for r in records] + [(_ns(r.start + r.latency), -1) for r in records])
    level, out = 0, []
    for t, d in edges:
        level += d
        out.append((t, level))
    return out


def write_timeline(records: list[RequestRecord], out: Path) -> Path:
    """Write one track per request plus an in-flight-requests counter track."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        b = StreamingTraceProtoBuilder(f)
        _track(b, _CONCURRENCY_TRACK, "in-flight requests", counter=True)
        for t, level in _concurrency(records):
            p = _event(b, t, _CONCURRENCY_TRACK, TrackEvent.TYPE_COUNTER)
            p.track_event.counter_value = level
            b.write_packet(p)
        for rec in records:
            uuid = 1000 + rec.index
            _track(b, uuid, f"request {rec.index}")
            for t, kind, name, info in request_events(rec):
                kinds = {"begin": TrackEvent.TYPE_SLICE_BEGIN, "end": TrackEvent.TYPE_SLICE_END}
                p = _event(b, t, uuid, kinds.get(kind, TrackEvent.TYPE_INSTANT))
                if name:
                    p.track_event.name = name
                for key, value in info.items():
                    a = p.track_event.debug_annotations.add()
                    a.name, a.int_value = key, value
                b.write_packet(p)
    return out


def _track(b: StreamingTraceProtoBuilder, uuid: int, name: str, counter: bool = False) -> None:
    p = b.create_packet()
    p.track_descriptor.uuid = uuid
    p.track_descriptor.name = name
    if counter:
        p.track_descriptor.counter.SetInParent()
    b.write_packet(p)


def _event(b: StreamingTraceProtoBuilder, ts: int, track: int, kind: int):  # noqa: ANN202 - protobuf packet
    p = b.create_packet()
    p.timestamp = ts
    p.trusted_packet_sequence_id = _SEQ
    p.track_event.type = kind
    p.track_event.track_uuid = track
    return p


def timeline_from_result(result_path: Path, out: Path) -> Path:
    """Timeline of a bench result file (reads its per-request sidecar)."""
    return write_timeline(read_records(Path(result_path)), Path(out))


def trace_processor_status() -> str:
    """Whether a Perfetto trace processor is usable offline; it is optional and never downloaded."""
    binary = os.environ.get("PERFLOOP_TRACE_PROCESSOR_BIN")
    if binary and Path(binary).exists():
        return f"trace processor: {binary}"
    return (
        "trace processor: not available (the perfetto package downloads it on first use, impossible "
        "offline); set PERFLOOP_TRACE_PROCESSOR_BIN to a trace_processor_shell to enable queries. "
        "The .perfetto-trace file opens in ui.perfetto.dev without it."
    )
