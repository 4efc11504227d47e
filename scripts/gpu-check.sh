#!/usr/bin/env bash
# GPU check for a lent GPU machine (no registry there): run from the repo root with a release
# binary built here with `cargo build --release -p ft --features cuda` and carried as
# `gpu-bin/ft` (strip it first). Runs the CUDA smoke tests and the GPU benches, prints a table last.
#   bash scripts/gpu-check.sh [path/to/ft]
set -uo pipefail
ft="${1:-gpu-bin/ft}"
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
row() { printf '%-34s %s\n' "$1" "$2" | tee -a "$out/table.txt"; }
: > "$out/table.txt"
# 1. Correctness on CUDA: the tiny model answers as on the CPU (greedy), in f32 and bf16.
cpu=$("$ft" chat fixtures/tiny-base --prompt "What is 3 plus 4?" --temperature 0 --device cpu 2>/dev/null)
for dtype in f32 bf16; do
  gpu=$("$ft" chat fixtures/tiny-base --prompt "What is 3 plus 4?" --temperature 0 --device cuda --dtype $dtype 2>"$out/chat-$dtype.err")
  [ "$gpu" = "$cpu" ] && row "chat cuda $dtype = cpu" "ok ($gpu)" || row "chat cuda $dtype = cpu" "FAIL: '$gpu' vs '$cpu'"
done
# 2. Benches (tokens/s).
for dtype in f32 bf16; do
  "$ft" bench forward --device cuda --dtype $dtype --batch 8 --seq 256 --json > "$out/fwd-$dtype.json" 2>>"$out/bench.err" \
    && row "forward tiny b8 s256 $dtype" "$(grep -o '"tokens_per_s":[0-9.]*' "$out/fwd-$dtype.json")"
  "$ft" bench generate --device cuda --dtype $dtype --json > "$out/gen-$dtype.json" 2>>"$out/bench.err" \
    && row "generate tiny $dtype" "$(grep -o '"tokens_per_s":[0-9.]*' "$out/gen-$dtype.json")"
done
# 3. LoRA training step benches: benches/bench_peft.py's shape in f32, a 1B-class shape in bf16 with MFU
#    (989 TFLOP/s = H100/H200 dense bf16 peak).
"$ft" bench train --device cuda --json > "$out/train-small.json" 2>>"$out/bench.err" \
  && row "train step bench-torch f32" "$(grep -o '"tokens_per_s":[0-9.]*' "$out/train-small.json")"
timeout 300 "$ft" bench train --device cuda --shape 1b --dtype bf16 --batch 4 --seq 1024 --steps 3 \
  --peak-tflops 989 --json > "$out/train-1b.json" 2>>"$out/bench.err" \
  && row "train step 1b bf16 b4 s1024" "$(grep -o '"tokens_per_s":[0-9.]*\|"mfu":[0-9.]*' "$out/train-1b.json" | tr '\n' ' ')"
# 4. A short LoRA training run on the GPU.
if [ -f runs/assistant/assistant.toml ]; then
  timeout 300 "$ft" train runs/assistant/assistant.toml --device cuda > "$out/train.log" 2>&1 \
    && row "train assistant (cuda)" "ok" || row "train assistant (cuda)" "FAIL (see train.log)"
fi
echo; echo "== summary"; cat "$out/table.txt"
