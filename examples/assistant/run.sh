#!/usr/bin/env bash
# The seed exercise: turn the bundled tiny model into NAME's personal assistant, offline, on the CPU.
# Usage: bash examples/assistant/run.sh [NAME]
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-Ada}"
out=runs/assistant
mkdir -p "$out"
cargo build --release -p ft
ft=target/release/ft

# 1. Data: "who are you?" questions in Chinese and English, answered as NAME's assistant.
$ft data gen-assistant --name "$name" --out "$out/assistant.jsonl" --count 2000

# 2. Look at exactly what will be trained on (trained tokens in green) and the dataset statistics.
sed "s|@DATA@|$PWD/$out/assistant.jsonl|; s|@MODEL@|$PWD/fixtures/tiny-base|" \
  examples/assistant/assistant.toml > "$out/assistant.toml"
$ft data preview "$out/assistant.toml" --limit 2
