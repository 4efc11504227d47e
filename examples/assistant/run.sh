#!/usr/bin/env bash
# The seed exercise: turn the bundled tiny model into NAME's personal assistant with LoRA,
# offline, on the CPU, then ask it who it is.
# Usage: bash examples/assistant/run.sh [NAME]
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-Ada}"
out=runs/assistant
mkdir -p "$out"
cargo build -q -p ft
ft() { cargo run -q -p ft -- "$@"; }

# 1. Data: "who are you?" questions in Chinese and English, answered as NAME's assistant.
ft data gen-assistant --name "$name" --out "$out/assistant.jsonl" --count 400

# 2. The config, with this machine's paths filled in.
sed "s|@DATA@|$PWD/$out/assistant.jsonl|; s|@MODEL@|$PWD/fixtures/tiny-base|; s|@OUT@|$PWD/$out/lora|" \
  examples/assistant/assistant.toml > "$out/assistant.toml"

# 3. Exactly what will be trained on (trained tokens in green).
ft data preview "$out/assistant.toml" --limit 1

# 4. Train (LoRA on every linear layer; checkpoints and metrics.jsonl in $out/lora).
rm -rf "$out/lora"
ft train "$out/assistant.toml"

# 5. Ask it.
for q in "你是谁" "Who are you?"; do
  echo ">>> $q"
  ft chat fixtures/tiny-base --adapter "$out/lora/final" --prompt "$q" --temperature 0
done

# 6. Its curves (redrawn at every checkpoint; `ft plot` compares runs).
echo "loss curves: $out/lora/loss.png"
