#!/usr/bin/env bash
# Engine alone and two engines side by side, at torch threads 1 and 2 (this machine has 2 cores).
# Usage: bash measure.sh OUTDIR [THREADS...]   ("auto" = no --torch-threads flag: the engine's default)
set -eu
out=${1:-raw}; shift || true
mkdir -p "$out"
bench() {  # $1 = threads or auto, $2 = result file
  local flag=(); [ "$1" != auto ] && flag=(--torch-threads "$1")
  perfloop bench run --backend engine --model preset:tiny-qwen3 --num-prompts 8 \
    --random-input-len 256 --random-output-len 64 --no-progress "${flag[@]}" --output "$2" >/dev/null
}
threads=("$@"); [ ${#threads[@]} -eq 0 ] && threads=(1 2)
for rep in 1 2; do
  for t in "${threads[@]}"; do
    bench "$t" "$out/alone-t$t-r$rep.json"
    bench "$t" "$out/pair-t$t-r$rep-a.json" & bench "$t" "$out/pair-t$t-r$rep-b.json"; wait
  done
done
