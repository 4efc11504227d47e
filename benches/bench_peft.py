#!/usr/bin/env python3
"""PyTorch + PEFT's figure for `ft bench train`: one LoRA training step (forward, backward,
AdamW) on the CPU, same shape and settings.

Default shape (`ft bench train`'s `bench-torch`): a random Llama with hidden 256, 4 layers,
4 heads, intermediate 688, vocab 4096, fp32, batch 4 x seq 256; LoRA r=8, alpha=16, dropout 0
on q,k,v,o,gate,up,down; AdamW lr 1e-4; labels = inputs (every position trained).
`--gguf FILE` instead loads a real model (dequantised to f32 by transformers), e.g. the
SmolLM2-135M GGUF, for `ft bench train --model FILE`'s comparison.

`--llava small|vit-l-336` makes it a LLaVA stage-2 step as `ft bench train --llava` runs it:
a frozen CLIP of that shape (one random picture per row, after the first token), XTuner's
2-layer projector (trained), LoRA on the LLM; tokens/s counts the picture rows the LLM runs.

Run:  python benches/bench_peft.py --threads 2 [--batch B --seq N] [--gguf FILE --r 16] [--llava SHAPE] [--json OUT]
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


CLIP_SHAPES = {
    "vit-l-336": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=336, patch_size=14),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  image_size=224, patch_size=16),
}


def llava_model(args, lora):
    """LLaVA around the bench LLM; returns the model, the batch's inputs and its LLM length."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration
    text = base_model(args).config
    shape = CLIP_SHAPES[args.llava]
    patches = (shape["image_size"] // shape["patch_size"]) ** 2
    text.max_position_embeddings = max(text.max_position_embeddings, args.seq + patches)
    config = LlavaConfig(vision_config=CLIPVisionConfig(**shape), text_config=text,
                         image_token_index=text.vocab_size - 1, projector_hidden_act="gelu",
                         vision_feature_layer=-2, image_seq_length=patches)
    model = LlavaForConditionalGeneration(config)
    lora = LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=0.0,
                      target_modules=r".*language_model.*\.(" + "|".join(TARGETS) + ")")
    model = get_peft_model(model, lora)
    for name, p in model.named_parameters():
        if "multi_modal_projector" in name:
            p.requires_grad_(True)
    ids = torch.randint(0, text.vocab_size - 1, (args.batch, args.seq - 1))
    image = torch.full((args.batch, patches), text.vocab_size - 1)
    ids = torch.cat([ids[:, :1], image, ids[:, 1:]], dim=1)
    labels = ids.clone()
    labels[:, : 1 + patches] = -100
    pixels = torch.randn(args.batch, 3, shape["image_size"], shape["image_size"])
    return model, dict(input_ids=ids, labels=labels, pixel_values=pixels), ids.shape[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--alpha", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--gguf")
    p.add_argument("--llava", choices=sorted(CLIP_SHAPES))
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    lora = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=TARGETS)
    if args.llava:
        model, inputs, length = llava_model(args, lora)
    else:
        model = get_peft_model(base_model(args), lora)
        ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq))
        inputs, length = dict(input_ids=ids, labels=ids), args.seq
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss = model(**inputs).loss
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
        "tokens_per_s": round(args.batch * length / median, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "batch": args.batch,
        "seq": length,
        "llava": args.llava,
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
