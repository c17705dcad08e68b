"""Decisive or explicitly unprovable: the noise band against the objective's margin, verdicts that say
why, and playbook rules that cannot apply to the device never proposed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from conftest import FakeBackend, ScriptedPatcher, make_spec, set_config

from perfloop.bench.ab import SequentialRule
from perfloop.ledger.records import BenchRecord, GateResult, MetricComparison
from perfloop.ledger.verify import verify_ledger
from perfloop.loop.machine import Run
from perfloop.loop.measurement import Side
from perfloop.loop.patchers.playbook import RULES
from perfloop.loop.report import build_report
from perfloop.loop.spec import GoalSpec
from perfloop.loop.verdicts import round_verdict


class NoisyBackend(FakeBackend):
    """A planted noise source: the A/A interval is ±`noise` wide, as on a loaded host."""

    def __init__(self, noise: float) -> None:
        super().__init__()
        self.noise = noise
        self.rules: list[SequentialRule | None] = []

    def ab(self, a: Side, b: Side, spec: GoalSpec, trials: int, label: str, out_dir: Path, until=None):  # noqa: ANN001, ANN201
        self.rules.append(until)
        record = super().ab(a, b, spec, trials, label, out_dir, until)
        if label != "aa":
            return record
        m = record.metrics["output_throughput"]
        wide = m.model_copy(update={"ci_low": 1 - self.noise, "ci_high": 1 + self.noise})
        return record.model_copy(update={"metrics": {**record.metrics, "output_throughput": wide}})


def _spec(repo: Path, tmp_path: Path) -> GoalSpec:
    return make_spec(repo, tmp_path, objective={"kind": "beat_peer", "margin": 0.05})


def test_a_band_wider_than_the_margin_ends_unprovable_with_advice(tmp_path: Path, target_repo: Path) -> None:
    backend = NoisyBackend(noise=0.2)
    run = Run.create(_spec(target_repo, tmp_path), backend, ScriptedPatcher([set_config(block_size=32)]))
    assert run.drive() == "UNPROVABLE"
    assert run.state.reason.startswith("UNPROVABLE on this host: band ±20.0% > margin 5.0%")
    assert "Advice:" in run.state.reason
    assert backend.rules == [SequentialRule(metric="output_throughput", max_trials=3, margin=0.05)]
    assert verify_ledger(run.root, against_branch=True).ok
    assert "**Verdict: UNPROVABLE**: UNPROVABLE on this host" in build_report(run.root).read_text()


def test_a_band_below_the_margin_goes_on_to_measure(tmp_path: Path, target_repo: Path) -> None:
    backend = NoisyBackend(noise=0.02)
    run = Run.create(_spec(target_repo, tmp_path), backend, ScriptedPatcher([set_config(block_size=32)]))
    run.drive()
    assert run.state.state != "UNPROVABLE" and "vs-peer" in backend.calls
    bench_rule = backend.rules[1]
    assert bench_rule is not None and bench_rule.bars == [1.05] and bench_rule.margin is None


def _bench(ratio: float, low: float, high: float) -> BenchRecord:
    cmp = MetricComparison(
        metric="output_throughput",
        a_median=100,
        b_median=100 * ratio,
        median_ratio=ratio,
        ci_low=low,
        ci_high=high,
        higher_is_better=True,
    )
    return BenchRecord(
        label="revalidate",
        a_name="best",
        b_name="candidate",
        a_launch="a",
        b_launch="b",
        workload_fingerprint="f",
        trials=3,
        metrics={"output_throughput": cmp},
        requested_output_tokens=1,
        achieved_output_tokens_a=1,
        achieved_output_tokens_b=1,
    )


def _gates(**failed: str) -> list[GateResult]:
    names = ["correctness", "beyond_noise", "no_regression"]
    return [GateResult(gate=n, passed=n not in failed, evidence=failed.get(n, "ok")) for n in names]


def test_verdicts_name_the_failing_gate_and_metric() -> None:
    faster = _bench(1.3, 1.2, 1.4)
    verdict, why = round_verdict(
        "output_throughput", 0.02, faster, _gates(no_regression="p99_ttft_ms x1.440 > 1.250")
    )
    assert (verdict, why) == ("REJECTED", "no_regression (p99_ttft_ms x1.440 > 1.250)")
    assert round_verdict("output_throughput", 0.02, faster, _gates())[0] == "ADVANCED"
    flat = _bench(1.0, 0.99, 1.01)
    verdict, why = round_verdict("output_throughput", 0.02, flat, _gates(beyond_noise="within"))
    assert verdict == "STALLED" and why.startswith("beyond_noise (output_throughput x1.000")
    # REGRESSED only when the goal metric itself got worse, whatever else failed.
    slower = _bench(0.9, 0.85, 0.95)
    gates = _gates(beyond_noise="no", no_regression="p99_ttft_ms x1.3 > 1.25")
    assert round_verdict("output_throughput", 0.02, slower, gates)[0] == "REGRESSED"
    assert round_verdict("output_throughput", 0.02, None, _gates(correctness="exit 1"))[0] == "REJECTED"


def test_cuda_graphs_is_never_proposed_for_a_cpu_device() -> None:
    from perfloop.engine.config import EngineConfig

    row = {
        "row_id": "decode/host_table/verdict:launch-bound",
        "section": "verdict",
        "item": "launch-bound",
        "detail": "launches",
        "share_pct": 40.0,
    }
    ev = SimpleNamespace(profile=SimpleNamespace(tables={"decode": {"host_table": [row]}}))
    rule = RULES["cuda_graphs"]
    assert rule(EngineConfig(model="preset:tiny-qwen3", enforce_eager=True, device="cpu"), ev) is None
    found = rule(EngineConfig(model="preset:tiny-qwen3", enforce_eager=True, device="cuda"), ev)
    assert found is not None and found.change == {"enforce_eager": False}
