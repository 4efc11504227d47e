#!/usr/bin/env python3
"""XTuner-style baseline for `cargo bench -p ft-data --bench encode`: the same 100k alpaca records,
read + alpaca_map_fn + template_map_fn(qwen_chat) + encode_fn with the transformers tokenizer of
fixtures/tokenizers/tiny-chatml, single process. Prints samples/s.

Run: /path/to/venv/bin/python crates/ft-data/benches/xtuner_encode.py [N]
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../fixtures"))
from gen_data import TEMPLATES, alpaca_map_fn, encode_fn, template_map_fn  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402


def records(n):
    for i in range(n):
        yield {
            "instruction": f"Question {i}: what is {i % 97} plus {i % 13}? Explain the steps.",
            "input": f"Context {i}: the numbers are small. 你好，世界。" if i % 3 == 0 else "",
            "output": f"The answer is {i % 97 + i % 13}. First add the ones, then the tens. def add(a, b): return a + b",
        }


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    root = os.path.join(os.path.dirname(__file__), "../../../fixtures/tokenizers/tiny-chatml")
    tok = AutoTokenizer.from_pretrained(root)
    path = os.path.join(tempfile.mkdtemp(), "alpaca.jsonl")
    with open(path, "w") as f:
        for r in records(n):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    start = time.perf_counter()
    kept = 0
    with open(path) as f:
        for line in f:
            conv = alpaca_map_fn(json.loads(line))
            mapped = template_map_fn(conv, TEMPLATES["qwen_chat"], None)
            ids, labels, _ = encode_fn(mapped, tok, 2048)
            kept += any(l != -100 for l in labels)
    elapsed = time.perf_counter() - start
    print(json.dumps({"samples": kept, "seconds": round(elapsed, 3), "samples_per_s": round(kept / elapsed, 1)}))


if __name__ == "__main__":
    main()
