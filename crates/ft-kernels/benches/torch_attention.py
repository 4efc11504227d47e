"""PyTorch's figure for `cargo bench -p ft-kernels --bench attention`: causal scaled-dot-product
attention, forward + backward, on the same shapes (1 row, 9 query heads over 3 kv heads, head
size 64, f32, 512 and 2048 tokens), on the CPU with the given thread count.

    python benches/torch_attention.py --threads 2
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64


def step(seq: int) -> None:
    q = torch.randn(1, HEADS, seq, HEAD_DIM, requires_grad=True)
    k = torch.randn(1, KV_HEADS, seq, HEAD_DIM, requires_grad=True)
    v = torch.randn(1, KV_HEADS, seq, HEAD_DIM, requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    out.sum().backward()


def median_seconds(seq: int, runs: int) -> float:
    step(seq)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step(seq)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {f"seq_{seq}_ms": round(1000 * median_seconds(seq, args.runs), 2) for seq in (512, 2048)}
    result["torch"] = torch.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
