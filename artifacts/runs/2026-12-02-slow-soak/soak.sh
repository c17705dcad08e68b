#!/usr/bin/env bash
# soak.sh NAME CHECKOUT VENV N [HOG]: run the slow suite N times in CHECKOUT, logging each run.
name=$1; co=$2; venv=$3; n=$4; hog=${5:-0}
export PATH=$venv/bin:$PATH
cd "$co"
if [ "$hog" = 1 ]; then (exec yes > /dev/null) & hogpid=$!; fi
for i in $(seq 1 "$n"); do
  start=$(date +%s)
  echo "$(date -u +%H:%M:%S) $name run $i start commit $(git rev-parse --short HEAD) $PYTEST_EXTRA load $(cut -d' ' -f1 /proc/loadavg)" >> /work/soak/summary.txt
  python -m pytest -q -m slow -p no:cacheprovider --durations=10 $PYTEST_EXTRA > /work/soak/$name-$i.log 2>&1
  rc=$?
  echo "$(date -u +%H:%M:%S) $name run $i rc=$rc $(( $(date +%s) - start ))s: $(tail -1 /work/soak/$name-$i.log)" >> /work/soak/summary.txt
  [ -f /work/soak/STOP ] && break
done
[ -n "$hogpid" ] && kill $hogpid
