//! Every fused op on a GPU backend (wgpu; in CI Mesa's lavapipe, a software Vulkan device) equals
//! the CPU's: forward outputs and the hand-written backward's gradients, on the same host-drawn
//! inputs. The GPU runs ft's CubeCL kernels (attention, NF4, RMSNorm, SwiGLU, RoPE, the LoRA
//! forward's low-rank term, the cross-entropy's rows and gradient) around Burn's matmul, the CPU
//! its own kernels; the CubeCL kernels are also checked against the composite reference on the
//! same device. Build with `--features wgpu`; with `--features wgpu,fusion` the ops also run on
//! Burn's `Fusion` wrapper of the wgpu backend.

use std::sync::Arc;

use burn::backend::{Autodiff, Wgpu};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::Flex;
use ft_io::nf4::Nf4Tensor;
use ft_kernels::{
    AttentionMask, KernelBackend, LoraWeights, Nf4Device, attention, cross_entropy, linear_cross_entropy,
    lora, lora_linear, nf4, nf4_dequantize, nf4_linear, rms_norm, rope, swiglu,
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
    assert_same_results(&all_ops::<Wgpu>(&Default::default()), &cpu);
}

/// Burn's `Fusion` wrapper of the wgpu backend, which `Wgpu` is when Burn's `fusion` feature is on.
#[cfg(feature = "fusion")]
type Fused =
    burn_fusion::Fusion<burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>>;

/// On the fusion wrapper every op is a custom operation of the stream that runs the wgpu
/// backend's kernel, between fused tensor ops: the same results as the CPU kernels.
#[cfg(feature = "fusion")]
#[test]
fn every_op_and_its_gradients_on_wgpu_with_fusion_equal_the_cpu_kernels() {
    let cpu = all_ops::<Flex>(&Default::default());
    assert_same_results(&all_ops::<Fused>(&Default::default()), &cpu);
}

/// Each op's output and gradients in `gpu` equal those in `cpu`.
fn assert_same_results(gpu: &[(&str, Vec<Vec<f32>>)], cpu: &[(&str, Vec<Vec<f32>>)]) {
    for ((name, want), (_, got)) in cpu.iter().zip(gpu) {
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

/// The GPU backend with its element types spelled out (trait calls cannot infer them).
type Gpu = Wgpu<f32, i32, u32>;

/// A backend op's output as a rank-`D` tensor.
fn tensor<const D: usize>(primitive: FloatTensor<Wgpu>) -> Tensor<Wgpu, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

fn primitive<const D: usize>(t: Tensor<Wgpu, D>) -> FloatTensor<Wgpu> {
    t.into_primitive().tensor()
}

/// The CubeCL kernels against the composite reference on the same device, on sizes that are
/// not multiples of the kernels' cubes: rows wider than a cube's 256 units, more rows than
/// one weight-gradient chunk, odd head sizes, a partial last NF4 block and word.
#[test]
fn cubecl_kernels_equal_the_composite_reference_on_the_same_device() {
    let d = &Default::default();
    for (rows, hidden) in [(1, 37), (130, 300), (3, 1030)] {
        let x = host::<Wgpu, 2>([rows, hidden], 30, d);
        let weight = host::<Wgpu, 1>([hidden], 31, d);
        let grad_out = host::<Wgpu, 2>([rows, hidden], 32, d);
        let (want, want_inv) = rms_norm::composite::forward(x.clone(), weight.clone(), 1e-5);
        let (got, got_inv) =
            Gpu::fused_rms_norm_forward(primitive(x.clone()), primitive(weight.clone()), 1e-5);
        let what = format!("rms_norm {rows}×{hidden}");
        assert_close(&what, &values(tensor::<2>(got)), &values(want), 1e-5);
        assert_close(
            &what,
            &values(tensor::<1>(got_inv.clone())),
            &values(want_inv),
            1e-5,
        );
        let (want_dx, want_dw) = rms_norm::composite::backward(
            x.clone(),
            weight.clone(),
            tensor(got_inv.clone()),
            grad_out.clone(),
        );
        let [got_dx, got_dw] =
            Gpu::fused_rms_norm_backward(primitive(x), primitive(weight), got_inv, primitive(grad_out));
        assert_close(
            &format!("{what} dx"),
            &values(tensor::<2>(got_dx)),
            &values(want_dx),
            1e-5,
        );
        assert_close(
            &format!("{what} dweight"),
            &values(tensor::<1>(got_dw)),
            &values(want_dw),
            1e-5,
        );
    }

    for n in [7, 1001] {
        let [gate, up, grad] = [33, 34, 35].map(|seed| host::<Wgpu, 1>([n], seed, d));
        let want = swiglu::composite::forward(gate.clone(), up.clone());
        let got = Gpu::fused_swiglu(primitive(gate.clone()), primitive(up.clone()));
        assert_close("swiglu", &values(tensor::<1>(got)), &values(want), 1e-6);
        let want = swiglu::composite::backward(gate.clone(), up.clone(), grad.clone());
        let got = Gpu::fused_swiglu_backward(primitive(gate), primitive(up), primitive(grad));
        for (got, want) in got.into_iter().zip(want) {
            assert_close("swiglu backward", &values(tensor::<1>(got)), &values(want), 1e-6);
        }
    }

    for shape in [[2, 5, 3, 6], [1, 3, 2, 128]] {
        let [batch, seq, _, head_dim] = shape;
        let x = host::<Wgpu, 4>(shape, 36, d);
        let cos = host::<Wgpu, 3>([batch, seq, head_dim], 37, d);
        let sin = host::<Wgpu, 3>([batch, seq, head_dim], 38, d);
        let want = rope::composite::forward(x.clone(), cos.clone(), sin.clone());
        let got = Gpu::fused_rope(
            primitive(x.clone()),
            primitive(cos.clone()),
            primitive(sin.clone()),
        );
        assert_close("rope", &values(tensor::<4>(got)), &values(want), 1e-6);
        let want = rope::composite::backward(x.clone(), cos.clone(), sin.clone());
        let got = Gpu::fused_rope_backward(primitive(x), primitive(cos), primitive(sin));
        assert_close("rope backward", &values(tensor::<4>(got)), &values(want), 1e-6);
    }

    for (name, mask, heads, kv_heads, head_dim) in attention_cases() {
        let keys = mask.keys();
        let q = host::<Wgpu, 4>([mask.batch, mask.seq, heads, head_dim], 40, d);
        let k = host::<Wgpu, 4>([mask.batch, keys, kv_heads, head_dim], 41, d);
        let v = host::<Wgpu, 4>([mask.batch, keys, kv_heads, head_dim], 42, d);
        let grad_out = host::<Wgpu, 4>([mask.batch, mask.seq, heads, head_dim], 43, d);
        let (want, _) = attention::composite::forward(q.clone(), k.clone(), v.clone(), &mask, 0.3);
        let (got, lse) = Gpu::fused_attention_forward(
            primitive(q.clone()),
            primitive(k.clone()),
            primitive(v.clone()),
            &mask,
            0.3,
        );
        assert_close(
            &format!("{name}: output"),
            &values(tensor::<4>(got.clone())),
            &values(want),
            1e-5,
        );
        let want = attention::composite::backward(
            q.clone(),
            k.clone(),
            v.clone(),
            tensor(got.clone()),
            grad_out.clone(),
            &mask,
            0.3,
        );
        let got = Gpu::fused_attention_backward(
            primitive(q),
            primitive(k),
            primitive(v),
            got,
            lse,
            primitive(grad_out),
            &mask,
            0.3,
        );
        for (part, (got, want)) in got.into_iter().zip(want).enumerate() {
            assert_close(
                &format!("{name}: gradient {part}"),
                &values(tensor::<4>(got)),
                &values(want),
                1e-5,
            );
        }
    }

    for double_quant in [false, true] {
        // 33 × 37: 20 blocks, the last one partial, and an odd number of packed words.
        let dense: Vec<f32> = values(host::<Flex, 2>([33, 37], 39, &Default::default()));
        let quantised = Nf4Tensor::quantize(&dense, &[33, 37], double_quant).unwrap();
        let weight = Nf4Device::<Wgpu>::upload(&quantised, d).unwrap();
        let want = nf4::composite::dequantize::<Wgpu>(weight.primitive(), DType::F32, d);
        let got = Gpu::nf4_dequantize_as(weight.primitive(), DType::F32);
        let host_reference = quantised.dequantize();
        assert_eq!(
            values(tensor::<2>(got)),
            values(want),
            "nf4 kernel = composite, bit for bit"
        );
        assert_eq!(
            values(nf4_dequantize(&weight)),
            host_reference,
            "nf4 on the device = the host's"
        );
    }
}

/// The LoRA forward's low-rank kernel and the cross-entropy's row and gradient kernels against
/// the composite on the same device: odd sizes, the one-chunk softmax path, and a vocabulary so
/// large that the batch takes three chunks (the log-sum-exp path, rows offset per chunk).
#[test]
fn cubecl_lora_and_cross_entropy_equal_the_composite_reference() {
    let d = &Default::default();
    let [x, x_adapter] = [50, 51].map(|seed| host::<Wgpu, 2>([7, 33], seed, d));
    let weights = [
        host::<Wgpu, 2>([45, 33], 52, d),
        host([5, 33], 53, d),
        host([45, 5], 54, d),
    ];
    let (want_y, want_h) = lora::composite::forward(x.clone(), x_adapter.clone(), weights.clone(), 0.7);
    let (got_y, got_h) =
        Gpu::fused_lora_linear_forward(primitive(x), primitive(x_adapter), weights.map(primitive), 0.7);
    assert_close("lora y", &values(tensor::<2>(got_y)), &values(want_y), 1e-5);
    assert_close("lora h", &values(tensor::<2>(got_h)), &values(want_h), 1e-5);

    // (rows, width, vocab): one chunk of 11 rows; 190 rows in chunks of 83, 83 and 24.
    for (rows, width, vocab) in [(11, 16, 53), (190, 8, 200_000)] {
        let what = format!("cross-entropy {rows}×{vocab}");
        let hidden = host::<Wgpu, 2>([rows, width], 55, d).mul_scalar(0.3);
        let weight = host::<Wgpu, 2>([vocab, width], 56, d);
        let targets: Vec<u32> = (0..rows).map(|i| ((i * 7919 + 3) % vocab) as u32).collect();
        let grad = Tensor::<Wgpu, 1>::from_floats([0.37], d);
        let (want_loss, want_lse) =
            cross_entropy::composite::forward(hidden.clone(), weight.clone(), &targets);
        let inference =
            Gpu::fused_linear_cross_entropy(primitive(hidden.clone()), primitive(weight.clone()), &targets);
        assert_close(
            &what,
            &values(tensor::<1>(inference)),
            &values(want_loss.clone()),
            1e-5,
        );
        let (loss, kept) = Gpu::fused_linear_cross_entropy_forward(
            primitive(hidden.clone()),
            primitive(weight.clone()),
            &targets,
        );
        assert_close(&what, &values(tensor::<1>(loss)), &values(want_loss), 1e-5);
        let want = cross_entropy::composite::backward(
            hidden.clone(),
            weight.clone(),
            &targets,
            want_lse,
            grad.clone(),
            true,
        );
        let got = Gpu::fused_linear_cross_entropy_backward(
            primitive(hidden),
            primitive(weight),
            &targets,
            kept,
            primitive(grad),
            true,
        );
        let got_weight = got.1.expect("the weight's gradient was asked for");
        assert_close(
            &format!("{what} dhidden"),
            &values(tensor::<2>(got.0)),
            &values(want.0),
            1e-5,
        );
        let want_weight = want.1.expect("the weight's gradient was asked for");
        assert_close(
            &format!("{what} dweight"),
            &values(tensor::<2>(got_weight)),
            &values(want_weight),
            1e-5,
        );
    }
}

/// Masks for the attention kernels: `(name, mask, heads, kv_heads, head_dim)`.
fn attention_cases() -> Vec<(&'static str, AttentionMask, usize, usize, usize)> {
    let mut packed = AttentionMask::causal(2, 37, 0);
    packed.segment_ids = Some(Arc::new((0..74).map(|i| (i % 37) / 10).collect()));
    // The first token of the second row is padding: its query sees no key at all.
    packed.attention_mask = Some(Arc::new(
        (0..74).map(|i| i32::from(i != 37 && i % 37 < 34)).collect(),
    ));
    let mut cached = AttentionMask::causal(2, 3, 5);
    cached.window = Some(4);
    cached.cache_mask = Some(Arc::new((0..10).map(|i| i32::from(i % 5 != 3)).collect()));
    vec![
        (
            "attention causal, four heads on one kv head",
            AttentionMask::causal(2, 33, 0),
            4,
            1,
            16,
        ),
        ("attention packed, padded, grouped heads", packed, 4, 2, 8),
        (
            "attention after a cache with empty slots, window",
            cached,
            2,
            2,
            6,
        ),
    ]
}

/// The cross-entropy over a vocabulary of 2^20 (three chunks of 16 rows) on wgpu equals the CPU
/// kernels, loss and gradients. Burn 0.21's own reductions on wgpu stop summing a dimension at
/// 262,128 elements (so the composite's log-sum-exp is wrong here, by ln 4); the kernels reduce
/// the whole row.
#[test]
fn cross_entropy_over_a_vocabulary_of_a_million_equals_the_cpu_kernels() {
    fn loss_and_gradients<B: KernelBackend>(device: &B::Device) -> Vec<Vec<f32>> {
        let targets: Vec<u32> = (0..40).map(|i| ((i * 7919 + 3) % (1 << 20)) as u32).collect();
        let inputs = [
            host::<Autodiff<B>, 2>([40, 8], 57, device).mul_scalar(0.3),
            host([1 << 20, 8], 58, device),
        ];
        run(inputs, |[hidden, head]| {
            linear_cross_entropy(hidden, head, &targets).mul_scalar(0.37)
        })
    }
    let cpu = loss_and_gradients::<Flex>(&Default::default());
    let gpus = [
        ("wgpu", loss_and_gradients::<Wgpu>(&Default::default())),
        // Too many rows to keep the softmax: the forward's other output shape.
        #[cfg(feature = "fusion")]
        (
            "wgpu with fusion",
            loss_and_gradients::<Fused>(&Default::default()),
        ),
    ];
    for (backend, gpu) in gpus {
        for (part, what) in ["loss", "dhidden", "dweight"].iter().enumerate() {
            // Products summed over 2^20 terms in different orders: the cross-backend tolerance.
            assert_close(
                &format!("{backend}, vocab 2^20: {what}"),
                &gpu[part],
                &cpu[part],
                1e-4,
            );
        }
    }
}
