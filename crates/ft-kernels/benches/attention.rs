//! Attention forward + backward on burn-flex: the hand-written kernel against the composite
//! reference (Burn's autodiff through materialised scores), on SmolLM2-135M's attention shape
//! (9 query heads over 3 kv heads, head size 64) at 512 and 2048 tokens.
//!
//! `cargo bench -p ft-kernels --bench attention`; the PyTorch figure for the same shapes comes
//! from `benches/torch_attention.py`.

use burn::backend::Autodiff;
use burn::tensor::{Distribution, Tensor};
use burn_flex::Flex;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ft_kernels::attention::composite;
use ft_kernels::{AttentionMask, attention};

type A = Autodiff<Flex>;

const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;

fn inputs(seq: usize) -> [Tensor<A, 4>; 3] {
    let device = Default::default();
    let random = |heads| Tensor::<A, 4>::random([1, seq, heads, HEAD_DIM], Distribution::Default, &device);
    [random(HEADS), random(KV_HEADS), random(KV_HEADS)].map(|t| t.require_grad())
}

fn step(seq: usize, fused: bool) {
    let [q, k, v] = inputs(seq);
    let mask = AttentionMask::causal(1, seq, 0);
    let scale = (HEAD_DIM as f32).powf(-0.5);
    let out = if fused {
        attention(q.clone(), k, v, &mask, scale)
    } else {
        composite::forward(q.clone(), k, v, &mask, scale).0
    };
    let grads = out.sum().backward();
    std::hint::black_box(q.grad(&grads));
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention_forward_backward");
    group.sample_size(10);
    for seq in [512, 2048] {
        group.bench_with_input(BenchmarkId::new("kernel", seq), &seq, |b, &seq| {
            b.iter(|| step(seq, true))
        });
        group.bench_with_input(BenchmarkId::new("composite", seq), &seq, |b, &seq| {
            b.iter(|| step(seq, false))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
