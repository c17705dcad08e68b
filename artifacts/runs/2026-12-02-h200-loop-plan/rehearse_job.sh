#!/usr/bin/env bash
# Rehearse one device `run` of the plan on this machine: RUN (a run folder under CHECKOUT/artifacts)
# and ARCHIVE (the job bundle `goal` printed). A scratch folder stands in for the bare machine that
# receives the carried archive; the plan's device command runs there verbatim (minus the .whl install:
# this interpreter has the packages), then the plan's local `cat` + `perfloop goal import`.
#   rehearse_job.sh CHECKOUT RUN ARCHIVE
set -u
checkout=$(cd "$1" && pwd); run="$2"; archive="$3"
rel="${archive#"$checkout"/}"
node=$(mktemp -d); out=$(mktemp -d)
mkdir -p "$node/$(dirname "$rel")" && cp "$archive" "$node/$rel"
rm -rf /tmp/bundle
(cd "$node" && env -u PYTHONPATH OUT="$out" bash -c "export PERFLOOP_CACHE=/tmp/plc TRITON_CACHE_DIR=/tmp/tc PYTHONUNBUFFERED=1; tar xzf $rel -C /tmp && bash /tmp/bundle/run.sh; rc=\$?; split -b 15M -d /tmp/bundle/out.tgz \$OUT/out.tgz.; tail -20 /tmp/bundle/out/child.log; exit \$rc")
echo "device exit $?, files back: $(ls "$out")"
cat "$out"/out.tgz.* > "$node/out.tgz" && cd "$checkout" && perfloop goal import "$run" "$node/out.tgz"
