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
# 1b. Eval loss of the tiny model on CUDA against the CPU's: f32 within 1e-4 (relative), bf16 within
#     2e-2; NF4 (QLoRA's base, dequantised on the device) within 1e-4.
printf '%s\n' '{"messages": [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "2 plus 2 is 4."}]}' > "$out/eval.jsonl"
eval_loss() { "$ft" eval fixtures/tiny-base --data "$out/eval.jsonl" --json "$@" 2>>"$out/eval.err" | grep -o '"loss":[0-9.e-]*' | cut -d: -f2; }
close() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= tol * (b < 0 ? -b : b)) }'; }
for case in "f32 --dtype f32:1e-4" "bf16 --dtype bf16:2e-2" "nf4 --quantization nf4:1e-4"; do
  name=${case%% *}; flags=${case#* }; flags=${flags%%:*}; tol=${case##*:}
  cpu_loss=$(eval_loss --device cpu $flags); gpu_loss=$(eval_loss --device cuda $flags)
  close "$gpu_loss" "$cpu_loss" "$tol" && row "eval loss cuda $name = cpu" "ok ($gpu_loss vs $cpu_loss)" \
    || row "eval loss cuda $name = cpu" "FAIL: '$gpu_loss' vs '$cpu_loss' (tol $tol)"
done
# 2. Benches (tokens/s).
for dtype in f32 bf16; do
  "$ft" bench forward --device cuda --dtype $dtype --batch 8 --seq 256 --json > "$out/fwd-$dtype.json" 2>>"$out/bench.err" \
    && row "forward tiny b8 s256 $dtype" "$(grep -o '"tokens_per_s":[0-9.]*' "$out/fwd-$dtype.json")"
  "$ft" bench generate --device cuda --dtype $dtype --json > "$out/gen-$dtype.json" 2>>"$out/bench.err" \
    && row "generate tiny $dtype" "$(grep -o '"tokens_per_s":[0-9.]*' "$out/gen-$dtype.json")"
done
# 3. Training step benches: benches/bench_peft.py's shape in f32; a 1B-class LoRA step in bf16 with
#    MFU (989 TFLOP/s = H100/H200 dense bf16 peak); QLoRA on the Llama-7B shape (r 64, all linears,
#    seq 2048, batch 1) with its peak device memory.
pick() { grep -o '"tokens_per_s":[0-9.]*\|"mfu":[0-9.]*\|"peak_device_mb":[0-9.]*' "$1" | tr '\n' ' '; }
"$ft" bench train --device cuda --json > "$out/train-small.json" 2>>"$out/bench.err" \
  && row "train step bench-torch f32" "$(pick "$out/train-small.json")"
timeout 300 "$ft" bench train --device cuda --shape 1b --dtype bf16 --batch 1 --seq 2048 --steps 3 \
  --rank 64 --peak-tflops 989 --json > "$out/train-1b.json" 2>>"$out/bench.err" \
  && row "LoRA step 1b bf16 b1 s2048 r64" "$(pick "$out/train-1b.json")" \
  || row "LoRA step 1b bf16 b1 s2048 r64" "FAIL (see bench.err)"
timeout 420 "$ft" bench train --device cuda --shape 7b --dtype bf16 --quantization nf4 --batch 1 --seq 2048 \
  --steps 2 --rank 64 --peak-tflops 989 --json > "$out/train-7b-qlora.json" 2>>"$out/bench.err" \
  && row "QLoRA step 7b nf4 b1 s2048 r64" "$(pick "$out/train-7b-qlora.json")" \
  || row "QLoRA step 7b nf4 b1 s2048 r64" "FAIL (see bench.err)"
# 4. A short LoRA training run on the GPU.
if [ -f runs/assistant/assistant.toml ]; then
  timeout 300 "$ft" train runs/assistant/assistant.toml --device cuda > "$out/train.log" 2>&1 \
    && row "train assistant (cuda)" "ok" || row "train assistant (cuda)" "FAIL (see train.log)"
fi
# 5. Several GPUs (when the machine has more than one): the assistant exercise on every GPU as one
#    data-parallel run against one GPU, same global batch; tokens/s in all, per device, and the
#    scaling efficiency (tokens/s with N / (N x tokens/s with 1)).
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)
if [ "$gpus" -gt 1 ]; then
  "$ft" data gen-assistant --name Ada --count 2048 --out "$out/dp.jsonl" >/dev/null 2>&1
  median_tps() { grep -o '"tokens_per_s":[0-9.]*' "$1" | cut -d: -f2 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  list=$(seq -s, 0 $((gpus - 1)) | sed 's/\([0-9]*\)/cuda:\1/g')
  for run in one:cuda:0 all:$list; do
    name=${run%%:*}; devices=${run#*:}
    sed -e "s#@MODEL@#$PWD/fixtures/tiny-base#; s#@DATA@#$out/dp.jsonl#; s#@OUT@#$out/dp-$name#" \
      -e 's/^epochs = 8/max_steps = 40/; s/^batch_size = 4/batch_size = 64/; s/^device = "cpu"/device = "cuda"/' \
      -e '/^\[eval\]/,$d' examples/assistant/assistant.toml > "$out/dp-$name.toml"
    timeout 600 "$ft" train "$out/dp-$name.toml" --devices "$devices" > "$out/dp-$name.log" 2>&1 \
      || row "data parallel $name ($devices)" "FAIL (see dp-$name.log)"
  done
  one=$(median_tps "$out/dp-one/metrics.jsonl"); all=$(median_tps "$out/dp-all/metrics.jsonl")
  [ -n "$one" ] && [ -n "$all" ] && row "data parallel x$gpus (tiny, b64)" \
    "$(awk -v a="$all" -v o="$one" -v n="$gpus" 'BEGIN { printf "%.0f tok/s, %.0f per device, 1 GPU %.0f, efficiency %.2f", a, a / n, o, a / (n * o) }')"
else
  row "data parallel" "skipped: one GPU"
fi
echo; echo "== summary"; cat "$out/table.txt"
