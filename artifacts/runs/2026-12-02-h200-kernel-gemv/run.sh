#!/usr/bin/env bash
# One device call: GPU tests of the split-K GEMV, a real 8B batch-1 trace, production rows, two
# candidates judged, an NCU digest and the arbiter. Run from the repository root on the H200.
set -uo pipefail
D=artifacts/runs/2026-12-02-h200-kernel-gemv
T=$D/task
PL="python3 -m perfloop.kernel.cli"
export PERFLOOP_CACHE=/tmp/plcache TRITON_CACHE_DIR=/tmp/tc PYTHONUNBUFFERED=1
save() { tar czf "$OUT/kernel.tgz" -C "$D" task extracted.json 2>/dev/null; cp "$D/run.log" "$OUT/" 2>/dev/null; }
{
  python3 -m pytest -q tests/gpu/test_gemv.py -k "split or fused_gemv" 2>&1 | tail -3
  [ -f /tmp/s/profile8b/trace.json.gz ] || python3 -m benchmarks.gpu_suite --out /tmp/s --parts profile8b > /tmp/suite.log 2>&1; tail -3 /tmp/suite.log
  TRACE=/tmp/s/profile8b/trace.json.gz; ls -la $TRACE
  $PL extract "$TRACE" --stage decode --kernel gemv --out $D/extracted.json
  python3 $T/make_rows.py $D/extracted.json > $T/rows.json && cat $T/rows.json
  save
  $PL run $T --candidate $T/candidate_splitk2.py --direction "split K in 2 for qkv, o_proj, down"
  $PL run $T --candidate $T/candidate_splitk4.py --direction "split K in 4 for qkv, o_proj, down"
  save
  $PL ncu $T --row o_proj --candidate $T/candidate_splitk2.py
  $PL ncu $T --row down --candidate $T/candidate_splitk2.py
  save
  $PL arbiter $T
  $PL status $T
  python3 -c "from perfloop.ledger.cli import app; app()" verify $T/ledger
} 2>&1 | tee $D/run.log
save
