#!/usr/bin/env bash
# XTuner's LLaVA exercise, offline on the CPU in about a minute: build a LLaVA from a (tiny) CLIP,
# a projector and the bundled tiny LLM, train it in two stages on generated pictures of shapes,
# then ask it about pictures it never saw.
# Usage: bash examples/llava/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=runs/llava
mkdir -p "$out"
cargo build -q -p ft -p llava-chat
ft() { cargo run -q -p ft -- "$@"; }
llava_chat() { cargo run -q -p llava-chat -- "$@"; }
clip=$PWD/fixtures/llava/clip-vision

# 1. Pictures: a red, green or blue square, circle or triangle; captions and questions. A
#    second, held-out set to ask about afterwards.
ft data gen-shapes --out "$out/data" --count 300 --seed 0
ft data gen-shapes --out "$out/held-out" --count 6 --seed 99 --prefix held-out-

# 2. The configs, with this machine's paths filled in.
for stage in stage1 stage2; do
  sed "s|@MODEL@|$PWD/fixtures/tiny-base|; s|@DATA@|$PWD/$out/data|g; s|@CLIP@|$clip|; s|@OUT@|$PWD/$out|" \
    "examples/llava/$stage.toml" > "$out/$stage.toml"
done

# 3. What stage 2 trains on: <image> marks where the picture's rows go.
ft data preview "$out/stage2.toml" --limit 1

# 4. Stage 1 (projector only), then stage 2 (LoRA + projector); XTuner's checkpoint layout.
rm -rf "$out/stage1" "$out/stage2"
ft train "$out/stage1.toml"
ft train "$out/stage2.toml"

# 5. Ask about pictures it never saw.
for picture in "$out"/held-out/images/*.png; do
  echo ">>> $(basename "$picture"): What colour is the shape?"
  llava_chat fixtures/tiny-base --llava "$out/stage2/final" --visual-encoder "$clip" \
    --image "$picture" --prompt "What colour is the shape?" --template qwen_chat --temperature 0
done
echo "the answers' truth: $out/held-out/questions.jsonl"

# 6. One Hugging Face folder (transformers, vLLM, llama.cpp's converter).
ft merge fixtures/tiny-base "$out/stage2/final" "$out/hf" --visual-encoder "$clip" --force
