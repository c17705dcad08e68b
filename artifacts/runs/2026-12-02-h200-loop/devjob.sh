# devjob.sh BUNDLE [tc]: one loop GPU job on a lent machine; out.tgz comes back in 15 MiB parts.
export PERFLOOP_CACHE=/tmp/plc TRITON_CACHE_DIR=/tmp/tc PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl > /dev/null 2>&1 || exit 9
if [ -f artifacts/tc.tgz ] && [ ! -d /tmp/tc ]; then tar xzf artifacts/tc.tgz -C /tmp; fi
rm -rf /tmp/bundle; t0=$(date +%s)
tar xzf "$1" -C /tmp && bash /tmp/bundle/run.sh; rc=$?
echo "job rc=$rc in $(( $(date +%s) - t0 )) s"
split -b 15M -d /tmp/bundle/out.tgz "$OUT/out.tgz."
if [ "${2:-}" = tc ]; then tar czf "$OUT/tc.tgz" -C /tmp tc; fi
tail -25 /tmp/bundle/out/child.log; ls -la "$OUT"; exit $rc
