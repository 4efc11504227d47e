#!/usr/bin/env python3
"""transformers' CPU figures for `ft bench forward` / `ft bench generate`, same shapes.

forward: tokens/s of one no-grad forward over a [batch, seq] batch of random ids.
generate: tokens/s of greedy decoding with the KV cache (prompt of `--prompt-len` ids, then
`--new-tokens` tokens, no early stop).

Run:  python benches/bench_transformers.py --model DIR            (an HF folder)
      python benches/bench_transformers.py --gguf FILE.gguf        (dequantised to f32 by transformers)
Prints one JSON object.
"""
import argparse
import json
import os
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def load(args):
    if args.gguf:
        return AutoModelForCausalLM.from_pretrained(os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf), torch_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--gguf")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load(args).eval()
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (args.batch, args.seq))
    with torch.no_grad():
        model(ids)  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - t)
        fwd = statistics.median(times)
        prompt = torch.randint(3, vocab, (1, args.prompt_len))
        gen_times = []
        for _ in range(max(1, args.repeats // 2)):
            t = time.perf_counter()
            model.generate(prompt, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
            gen_times.append(time.perf_counter() - t)
        gen = statistics.median(gen_times)
    print(json.dumps({
        "model": args.gguf or args.model,
        "threads": args.threads,
        "forward_tokens_per_s": round(args.batch * args.seq / fwd, 1),
        "forward_shape": [args.batch, args.seq],
        "generate_tokens_per_s": round(args.new_tokens / gen, 1),
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
