"""Tokenisation throughput: a synthetic text corpus, and Python `tokenizers`' `encode_batch` on it.

Write a corpus (JSON Lines, `{"text": ...}`, 300-1,500 words per record, Zipf-distributed
pseudo-words with numbers, punctuation and paragraphs; the same seed gives the same bytes), and
beside it `corpus.toml`, a config that tokenises it for the bundled tiny model (`format = "text"`,
`max_length` 2048, packed):

    python benches/bench_tokenize.py write /tmp/corpus.jsonl --mb 50
    cargo run -q --release -p ft -- data prepare /tmp/corpus.toml --force   # prints MB/s

Time the Python `tokenizers` library on the same file and tokenizer (encoding only, as
`ft data prepare` reports its MB/s over the file's bytes):

    python benches/bench_tokenize.py time corpus.jsonl --tokenizer fixtures/tiny-base --threads 2

"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

SYLLABLES = [
    "ka", "lo", "re", "mi", "tan", "ber", "so", "ul", "qua", "ne", "dor", "vi", "el", "sha",
    "pri", "ton", "ga", "fe", "ro", "lin", "ma", "zu", "ith", "or", "cel", "pa", "wy", "end",
]
PUNCTUATION = [",", ",", ".", ".", ".", ";", ":", "!", "?", " -"]


def vocabulary(rng, size):
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def record_text(rng, words, weights):
    n_words = rng.randint(300, 1500)
    picked = rng.choices(words, weights=weights, k=n_words)
    out = []
    sentence_start = True
    for i, word in enumerate(picked):
        if rng.random() < 0.02:
            word = str(rng.randint(0, 100000))
        if sentence_start:
            word = word.capitalize()
        out.append(word)
        sentence_start = False
        if rng.random() < 0.08:
            mark = rng.choice(PUNCTUATION)
            out[-1] += mark
            sentence_start = mark in (".", "!", "?")
        if sentence_start and rng.random() < 0.15 and i + 1 < n_words:
            out[-1] += "\n\n"
    return " ".join(out).replace("\n\n ", "\n\n")


def write(path, megabytes, seed):
    rng = random.Random(seed)
    words = vocabulary(rng, 30000)
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    rng.shuffle(words)
    target = int(megabytes * 1e6)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            line = json.dumps({"text": record_text(rng, words, weights)}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
    config = Path(path).with_suffix(".toml")
    model = Path(__file__).resolve().parent.parent / "fixtures" / "tiny-base"
    config.write_text(
        f"""[model]
path = "{model}"
dtype = "f32"

[data]
files = ["{Path(path).name}"]
format = "text"
max_length = 2048
pack = true

[train]
output_dir = "{Path(path).with_suffix("")}-run"
max_steps = 10
batch_size = 1
lr = 1e-4
"""
    )
    print(f"wrote {path}: {written / 1e6:.1f} MB, and {config}")


def time_encode(path, tokenizer_dir, threads, batch):
    os.environ["RAYON_RS_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    size = os.path.getsize(path)
    with open(path, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        for encoding in tokenizer.encode_batch(texts[i : i + batch], add_special_tokens=False):
            tokens += len(encoding.ids)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "file": path,
                "mb": size / 1e6,
                "records": len(texts),
                "tokens": tokens,
                "seconds": round(seconds, 3),
                "mb_per_s": round(size / 1e6 / seconds, 2),
                "threads": threads,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("path")
    w.add_argument("--mb", type=float, default=50)
    w.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("time")
    t.add_argument("path")
    t.add_argument("--tokenizer", required=True, help="a folder holding tokenizer.json")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--batch", type=int, default=8192)
    args = parser.parse_args()
    if args.command == "write":
        write(args.path, args.mb, args.seed)
    else:
        time_encode(args.path, args.tokenizer, args.threads, args.batch)


if __name__ == "__main__":
    sys.exit(main())
