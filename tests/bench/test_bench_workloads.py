"""Workloads are deterministic, follow their length conventions, and fingerprint what matters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfloop.bench.workloads import WorkloadError, WorkloadSpec, build_requests


def test_standard_workload_reproduces_nano_vllm_totals() -> None:
    reqs = build_requests(WorkloadSpec(kind="standard"))
    assert len(reqs) == 256
    assert sum(r.prompt_len for r in reqs) == 142_827
    assert sum(r.output_len for r in reqs) == 133_966


def test_random_lengths_follow_vllm_range_and_vocab() -> None:
    spec = WorkloadSpec(
        kind="random", num_prompts=200, input_len=100, output_len=20, range_ratio=0.5, vocab_size=512, seed=4
    )
    reqs = build_requests(spec)
    assert all(50 <= r.prompt_len <= 150 and 10 <= r.output_len <= 30 for r in reqs)
    assert all(0 <= t < 512 for r in reqs for t in r.prompt)
    assert len({r.prompt_len for r in reqs}) > 20
    assert build_requests(spec) == reqs
    fixed = build_requests(spec.model_copy(update={"range_ratio": 0.0}))
    assert {r.prompt_len for r in fixed} == {100} and {r.output_len for r in fixed} == {20}


def test_random_prefix_is_shared() -> None:
    reqs = build_requests(WorkloadSpec(num_prompts=3, input_len=5, prefix_len=8, vocab_size=100))
    assert reqs[0].prompt[:8] == reqs[1].prompt[:8] == reqs[2].prompt[:8]
    assert all(r.prompt_len == 13 for r in reqs)


def test_shared_prefix_groups_share_their_system_prompt() -> None:
    spec = WorkloadSpec(
        kind="shared-prefix",
        num_groups=3,
        prompts_per_group=4,
        system_prompt_len=32,
        question_len=8,
        output_len=5,
        vocab_size=512,
    )
    reqs = build_requests(spec)
    assert len(reqs) == spec.total_requests() == 12
    prefixes = {tuple(r.prompt[:32]) for r in reqs}
    assert len(prefixes) == 3
    assert all(r.prompt_len == 40 and r.output_len == 5 for r in reqs)


def test_sharegpt_reads_local_file_and_fingerprint_covers_its_bytes(tmp_path: Path) -> None:
    data = [
        {"conversations": [{"from": "human", "value": f"question {i}"}, {"from": "gpt", "value": "a"}]}
        for i in range(5)
    ]
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(data))
    spec = WorkloadSpec(kind="sharegpt", dataset_path=str(path), num_prompts=3, output_len=7)
    reqs = build_requests(spec)
    assert len(reqs) == 3 and all(isinstance(r.prompt, str) and r.output_len == 7 for r in reqs)
    before = spec.fingerprint()
    path.write_text(json.dumps(data[:4]))
    assert spec.fingerprint() != before


def test_fingerprint_changes_with_the_spec() -> None:
    a = WorkloadSpec(vocab_size=512)
    assert a.fingerprint() == WorkloadSpec(vocab_size=512).fingerprint()
    assert a.fingerprint() != WorkloadSpec(vocab_size=512, output_len=64).fingerprint()


def test_bad_input_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="vocab_size"):
        build_requests(WorkloadSpec(kind="random"))
    with pytest.raises(WorkloadError, match="dataset_path"):
        build_requests(WorkloadSpec(kind="sharegpt", dataset_path=str(tmp_path / "missing.json")))
