#!/usr/bin/env bash
# ABCCBA: A = perfloop bench, B = vllm bench serve (vllm 0.33.0 wheel), C = sglang.bench_serving
# (sglang 0.5.23 wheel), all against ONE perfloop serve (started by hand, see COMMAND.md).
# Peer clients run unmodified from .venv-peers (pip install --no-deps sglang vllm + their
# pure-Python imports), 32 prompts, 128 in / 64 out, all at once (request rate inf).
set -euo pipefail
OUT=${OUT:-$(dirname "$0")}
URL=http://127.0.0.1:18731
MODEL=preset:tiny-qwen3
TOK=${TOK:?path of the preset folder (GET /v1/models root)}
PEERS=${PEERS:?.venv-peers/bin}
run_a() {
  perfloop bench run --backend openai --url $URL --model $MODEL --num-prompts 32 \
    --random-input-len 128 --random-output-len 64 --no-progress --output "$OUT/A-$1.json" > "$OUT/A-$1.log" 2>&1
}
run_b() {
  "$PEERS/vllm" bench serve --backend openai --base-url $URL --model $MODEL --tokenizer "$TOK" \
    --dataset-name random --num-prompts 32 --random-input-len 128 --random-output-len 64 --ignore-eos \
    --temperature 0 --save-result --save-detailed --result-dir "$OUT" --result-filename "B-$1.json" > "$OUT/B-$1.log" 2>&1
}
run_c() {
  "$PEERS/python" -m sglang.bench_serving --backend vllm --base-url $URL --model $MODEL --tokenizer "$TOK" \
    --dataset-name random-ids --num-prompts 32 --random-input-len 128 --random-output-len 64 \
    --random-range-ratio 1.0 --output-details --output-file "$OUT/C-$1.jsonl" > "$OUT/C-$1.log" 2>&1
}
run_a 1; run_b 1; run_c 1; run_c 2; run_b 2; run_a 2
