#!/usr/bin/env python3
"""PyTorch + PEFT's figure for `ft bench train`: one LoRA training step (forward, backward,
AdamW) on the CPU, same shape and settings.

Default shape (`ft bench train`'s `bench-torch`): a random Llama with hidden 256, 4 layers,
4 heads, intermediate 688, vocab 4096, fp32, batch 4 x seq 256; LoRA r=8, alpha=16, dropout 0
on q,k,v,o,gate,up,down; AdamW lr 1e-4; labels = inputs (every position trained).
`--gguf FILE` instead loads a real model (dequantised to f32 by transformers), e.g. the
SmolLM2-135M GGUF, for `ft bench train --model FILE`'s comparison.

Run:  python benches/bench_peft.py --threads 2 [--batch B --seq N] [--gguf FILE --r 16] [--json OUT]
Prints one JSON object: median step seconds, tokens/s and peak RSS.
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def base_model(args):
    if args.gguf:
        folder, name = os.path.split(os.path.abspath(args.gguf))
        return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    config = LlamaConfig(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=4096,
        max_position_embeddings=max(512, args.seq),
        rms_norm_eps=1e-6,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--gguf")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    lora = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=TARGETS)
    model = get_peft_model(base_model(args), lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq))

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {
        "step_s": round(median, 4),
        "tokens_per_s": round(args.batch * args.seq / median, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "batch": args.batch,
        "seq": args.seq,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    text = json.dumps(result)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
