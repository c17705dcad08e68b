#!/usr/bin/env bash
# Not run yet (no H200 could be started on 2026-12-02). One device command: the standard workload on the tree as committed (A) and with candidate 2
# applied (B), A B A order, plus candidate 2's fp32 correctness part. Run from the repo root on the
# H200 with the wheels installed (see the device tool's README); results go to $OUT.
set -uo pipefail
export PERFLOOP_CACHE=/tmp/plc TRITON_CACHE_DIR=/tmp/tc
ROOT=$PWD
PATCH=$ROOT/artifacts/runs/2026-12-02-h200-loop-plan/candidates/h200-cand-2.patch
rm -rf /tmp/cand2 && mkdir /tmp/cand2 && tar -C "$ROOT" --exclude=./.whl --exclude=./artifacts -cf - . | tar -C /tmp/cand2 -xf -
(cd /tmp/cand2 && git apply "$PATCH") || { echo "patch failed"; exit 1; }
run() {  # name dir parts
  echo "== $1 $(date +%T)"
  (cd "$2" && PYTHONPATH="$2:${PYTHONPATH:-}" python3 -m benchmarks.gpu_suite --out "$OUT/$1" --parts "$3") 2>&1 | tail -12
}
run A1 "$ROOT" standard
run B1 /tmp/cand2 correctness,standard
run A2 "$ROOT" standard
python3 - <<'PY'
import json, os, pathlib
for name in ("A1", "B1", "A2"):
    p = pathlib.Path(os.environ["OUT"], name, "suite.json")
    if p.exists():
        s = json.loads(p.read_text())
        st = s.get("standard", {})
        print(name, round(st.get("output_throughput", 0)), "tok/s", st.get("duration"), s.get("correctness", {}).get("all_identical", ""))
PY
