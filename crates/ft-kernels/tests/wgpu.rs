//! Every fused op on a GPU backend (wgpu; in CI Mesa's lavapipe, a software Vulkan device) equals
//! the CPU's: forward outputs and the hand-written backward's gradients, on the same host-drawn
//! inputs. The GPU runs the composite ops, the CPU its own kernels, so this checks both against
//! each other on a real CubeCL device. Build with `--features wgpu`.

use std::sync::Arc;

use burn::backend::{Autodiff, Wgpu};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use ft_io::nf4::Nf4Tensor;
use ft_kernels::{
    AttentionMask, KernelBackend, LoraWeights, Nf4Device, attention, linear_cross_entropy, lora_linear,
    nf4_dequantize, nf4_linear, rms_norm, rope, swiglu,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{assert_close, values};

/// A tensor drawn on the host from `seed`, the same on every backend.
fn host<B: Backend, const D: usize>(shape: [usize; D], seed: u64, device: &B::Device) -> Tensor<B, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random_range(-1.5f32..1.5))
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// `sum(out ∘ w)` for a host-drawn `w`, so every output element has its own gradient.
fn weighted_sum<B: Backend, const D: usize>(out: Tensor<B, D>, seed: u64) -> Tensor<B, 1> {
    let w = host::<B, D>(out.dims(), seed, &out.device());
    (out * w).sum()
}

/// The forward output and the gradients of `inputs` of one op, as host vectors.
fn run<A, const N: usize, const D: usize>(
    inputs: [Tensor<A, D>; N],
    op: impl FnOnce([Tensor<A, D>; N]) -> Tensor<A, 1>,
) -> Vec<Vec<f32>>
where
    A: AutodiffBackend,
{
    let tracked = inputs.map(Tensor::require_grad);
    let loss = op(tracked.clone());
    let mut out = vec![values(loss.clone())];
    let grads = loss.backward();
    out.extend(tracked.map(|t| values(t.grad(&grads).expect("tracked input has a gradient"))));
    out
}

/// The results of every op on backend `B`.
fn all_ops<B: KernelBackend>(device: &B::Device) -> Vec<(&'static str, Vec<Vec<f32>>)> {
    type A<B> = Autodiff<B>;
    let d = device;
    let mut results = Vec::new();

    let mut packed = AttentionMask::causal(2, 40, 0);
    packed.segment_ids = Some(Arc::new((0..80).map(|i| (i % 40) / 13).collect()));
    packed.attention_mask = Some(Arc::new(
        (0..80).map(|i| i32::from(i < 40 || i % 40 < 33)).collect(),
    ));
    let mut windowed = AttentionMask::causal(1, 6, 30);
    windowed.window = Some(20);
    for (name, mask, heads, kv_heads) in [
        ("attention packed, grouped heads", packed, 4, 2),
        ("attention after a cache, window", windowed, 2, 2),
    ] {
        let keys = mask.keys();
        let q = host::<A<B>, 4>([mask.batch, mask.seq, heads, 8], 1, d);
        let k = host::<A<B>, 4>([mask.batch, keys, kv_heads, 8], 2, d);
        let v = host::<A<B>, 4>([mask.batch, keys, kv_heads, 8], 3, d);
        let grads_of = |qkv: [Tensor<A<B>, 4>; 3]| {
            let [q, k, v] = qkv;
            weighted_sum(attention(q, k, v, &mask, 0.35), 4)
        };
        results.push((name, run([q, k, v], grads_of)));
    }

    // The weight enters as `[1, 48]` so that both inputs have one rank.
    let norm = run(
        [host::<A<B>, 2>([10, 48], 5, d), host([1, 48], 6, d)],
        |[x, weight]| weighted_sum(rms_norm(x, weight.reshape([48]), 1e-6), 7),
    );
    results.push(("rms_norm", norm));

    let swi = run(
        [host::<A<B>, 2>([9, 40], 8, d), host([9, 40], 9, d)],
        |[gate, up]| weighted_sum(swiglu(gate, up), 10),
    );
    results.push(("swiglu", swi));

    let cos = host::<A<B>, 3>([2, 7, 16], 11, d).cos();
    let sin = host::<A<B>, 3>([2, 7, 16], 11, d).sin();
    let roped = run([host::<A<B>, 4>([2, 7, 3, 16], 12, d)], |[x]| {
        weighted_sum(rope(x, cos, sin), 13)
    });
    results.push(("rope", roped));

    let lora = run(
        [
            host::<A<B>, 2>([6, 24], 14, d),
            host([4, 24], 15, d),
            host([20, 4], 16, d),
        ],
        |[x, a, b]| {
            let weights = LoraWeights {
                weight: host([20, 24], 17, d),
                a,
                b,
                scale: 2.0,
            };
            weighted_sum(lora_linear(x.clone(), x, weights), 18)
        },
    );
    results.push(("lora_linear", lora));

    let targets: Vec<u32> = (0..11).map(|i| (i * 7 % 53) as u32).collect();
    let ce = run(
        [host::<A<B>, 2>([11, 16], 19, d), host([53, 16], 20, d)],
        |[hidden, head]| linear_cross_entropy(hidden, head, &targets),
    );
    results.push(("linear_cross_entropy", ce));

    for double_quant in [false, true] {
        // 40 × 500 weights: 313 blocks, a partial last block and two double-quant groups.
        let dense: Vec<f32> = values(host::<Flex, 2>([40, 500], 21, &Default::default()));
        let quantised = Nf4Tensor::quantize(&dense, &[40, 500], double_quant).unwrap();
        let weight = Nf4Device::<A<B>>::upload(&quantised, d).unwrap();
        results.push(("nf4 dequantise", vec![values(nf4_dequantize(&weight))]));
        let step = run(
            [
                host::<A<B>, 2>([3, 500], 22, d),
                host([5, 500], 23, d),
                host([40, 5], 24, d),
            ],
            |[x, a, b]| weighted_sum(nf4_linear(x.clone(), x, &weight, Some((a, b, 0.5))), 25),
        );
        results.push(("nf4_linear", step));
    }
    results
}

#[test]
fn every_op_and_its_gradients_on_wgpu_equal_the_cpu_kernels() {
    let cpu = all_ops::<Flex>(&Default::default());
    let gpu = all_ops::<Wgpu>(&Default::default());
    for ((name, want), (_, got)) in cpu.iter().zip(&gpu) {
        for (part, (got, want)) in got.iter().zip(want).enumerate() {
            let what = if part == 0 {
                format!("{name}: output")
            } else {
                format!("{name}: gradient of input {part}")
            };
            assert_close(&what, got, want, 1e-4);
        }
    }
    assert_eq!(cpu.len(), gpu.len());
}
