#!/usr/bin/env bash
# Client agreement: A = perfloop bench, B = vllm bench serve (vllm 0.33.0 wheel), C = sglang.bench_serving
# (sglang 0.5.23 wheel), interleaved ABCCBA (ROUNDS times), all against ONE perfloop serve that this script
# starts and stops. Same 32 prompts for every client (chat-prompts.json, ShareGPT format), 64 tokens out,
# ignore_eos, greedy, all requests sent at once. Peer clients run unmodified from the venv in $PEERS.
#
#   PEERS=/work/venv-peers/bin ./run.sh          # from anywhere; results land next to this file
#   PEERS=... ROUNDS=1 WARMUPS=0 OUT=$PWD/no-warmup ./run.sh   # no client warm-ups (vLLM sends none anyway)
#   PEERS=... SERVER_FLAGS='--num-kv-blocks 1024' OUT=$PWD/no-preemption ./run.sh   # a pool that holds all 32
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE}
PEERS=${PEERS:?the bin folder of a venv with vllm 0.33.0 and sglang 0.5.23 (see README.md)}
ROUNDS=${ROUNDS:-2}
WARMUPS=${WARMUPS:-1}  # perfloop's and SGLang's warm-up requests (their defaults: 1)
mkdir -p "$OUT"
PORT=${PORT:-18731}
URL=http://127.0.0.1:$PORT
MODEL=preset:smollm2-135m
DATA=$HERE/chat-prompts.json
N=32
OLEN=64

# One server, one torch thread; prefix caching off so that no run reuses an earlier run's KV blocks.
OMP_NUM_THREADS=1 perfloop serve --model $MODEL --port $PORT --torch-threads 1 --no-enable-prefix-caching \
  ${SERVER_FLAGS:-} --log-level warning > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf $URL/health > /dev/null && break; sleep 1; done
# The tokenizer the peer clients load: the folder /v1/models names as `root`.
TOK=$(curl -sf $URL/v1/models | python -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["root"])')

metrics() { curl -sf $URL/metrics > "$OUT/$1.metrics.txt"; }  # the server's own counters, per run
run_a() {
  metrics A-$1.before
  perfloop bench run --backend openai --url $URL --model $MODEL --dataset-name sharegpt --dataset-path "$DATA" \
    --num-prompts $N --random-output-len $OLEN --num-warmups $WARMUPS --no-progress --output "$OUT/A-$1.json" > "$OUT/A-$1.log" 2>&1
  metrics A-$1.after
}
run_b() {
  metrics B-$1.before
  "$PEERS/vllm" bench serve --backend openai --base-url $URL --model $MODEL --tokenizer "$TOK" \
    --dataset-name sharegpt --dataset-path "$DATA" --sharegpt-output-len $OLEN --num-prompts $N --ignore-eos \
    --temperature 0 --save-result --save-detailed --result-dir "$OUT" --result-filename "B-$1.json" > "$OUT/B-$1.log" 2>&1
  metrics B-$1.after
}
run_c() {
  metrics C-$1.before
  "$PEERS/python" -m sglang.bench_serving --backend vllm --base-url $URL --model $MODEL --tokenizer "$TOK" \
    --dataset-name sharegpt --dataset-path "$DATA" --sharegpt-output-len $OLEN --num-prompts $N \
    --warmup-requests $WARMUPS --output-details --output-file "$OUT/C-$1.jsonl" > "$OUT/C-$1.log" 2>&1
  metrics C-$1.after
}
for r in $(seq "$ROUNDS"); do
  i=$((2 * r - 1)); j=$((2 * r))
  run_a $i; run_b $i; run_c $i; run_c $j; run_b $j; run_a $j
done
