//! The flex attention kernel and the hand-written backward against the composite reference:
//! forward outputs, and gradients against Burn's own autodiff through the composite ops.

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use ft_kernels::attention::composite;
use ft_kernels::{AttentionMask, attention};
use proptest::prelude::*;

use crate::common;
use common::{assert_close, values};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type A = Autodiff<Flex>;

/// One attention call's inputs.
#[derive(Debug, Clone)]
struct Case {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    mask: AttentionMask,
    seed: u64,
}

impl Case {
    fn new(batch: usize, seq: usize, past: usize, heads: usize, kv_heads: usize, head_dim: usize) -> Self {
        Self {
            heads,
            kv_heads,
            head_dim,
            mask: AttentionMask::causal(batch, seq, past),
            seed: 7,
        }
    }

    fn scale(&self) -> f32 {
        (self.head_dim as f32).powf(-0.5)
    }

    fn values(&self, len: usize, stream: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed * 31 + stream);
        (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    fn tensor<B: burn::tensor::backend::Backend>(&self, shape: [usize; 4], stream: u64) -> Tensor<B, 4> {
        let data = TensorData::new(self.values(shape.iter().product(), stream), shape);
        Tensor::from_data(data, &Default::default())
    }

    fn query_shape(&self) -> [usize; 4] {
        [self.mask.batch, self.mask.seq, self.heads, self.head_dim]
    }

    fn key_shape(&self) -> [usize; 4] {
        [self.mask.batch, self.mask.keys(), self.kv_heads, self.head_dim]
    }

    fn qkv<B: burn::tensor::backend::Backend>(&self) -> [Tensor<B, 4>; 3] {
        [
            self.tensor(self.query_shape(), 1),
            self.tensor(self.key_shape(), 2),
            self.tensor(self.key_shape(), 3),
        ]
    }

    /// Gradients of `sum(attention(q, k, v) ∘ w)` with respect to q, k, v.
    fn grads(&self, op: impl Fn(Tensor<A, 4>, Tensor<A, 4>, Tensor<A, 4>) -> Tensor<A, 4>) -> [Vec<f32>; 3] {
        let [q, k, v] = self.qkv::<A>().map(|t| t.require_grad());
        let weights = self.tensor::<A>(self.query_shape(), 4);
        let grads = (op(q.clone(), k.clone(), v.clone()) * weights).sum().backward();
        [q, k, v].map(|t| values(t.grad(&grads).expect("tracked input has a gradient")))
    }
}

/// The kernel's forward equals the composite's, and its gradients equal Burn's autodiff of the
/// composite; the composite backward (used by GPU backends) equals it too.
fn check(case: &Case) {
    let (mask, scale) = (&case.mask, case.scale());
    let [q, k, v] = case.qkv::<Flex>();
    let kernel = values(attention(q.clone(), k.clone(), v.clone(), mask, scale));
    let (reference, _) = composite::forward(q.clone(), k.clone(), v.clone(), mask, scale);
    assert_close("forward", &kernel, &values(reference.clone()), 2e-5);

    let want = case.grads(|q, k, v| composite::forward(q, k, v, mask, scale).0);
    let got = case.grads(|q, k, v| attention(q, k, v, mask, scale));
    for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
        assert_close(name, got, want, 1e-4);
    }
    let weights = case.tensor::<Flex>(case.query_shape(), 4);
    let composite_grads = composite::backward(q, k, v, reference, weights, mask, scale);
    for (name, (got, want)) in ["composite dq", "composite dk", "composite dv"]
        .iter()
        .zip(composite_grads.into_iter().zip(&want))
    {
        assert_close(name, &values(got), want, 1e-4);
    }
}

#[test]
fn causal_single_head() {
    check(&Case::new(1, 9, 0, 1, 1, 8));
}

#[test]
fn several_tiles_with_grouped_kv_heads() {
    // 300 queries: three query tiles and three key tiles of 128, the last ones partial.
    check(&Case::new(2, 300, 0, 4, 2, 16));
}

#[test]
fn few_heads_split_their_keys_among_tasks() {
    // Fewer heads than two per thread: the backward splits each head's keys into chunks, each
    // with its own dQ, summed at the end (one head, and two query heads over one kv head).
    check(&Case::new(1, 300, 0, 1, 1, 8));
    check(&Case::new(1, 270, 0, 2, 1, 8));
}

#[test]
fn sliding_window_across_tiles() {
    let mut case = Case::new(1, 300, 0, 2, 1, 8);
    case.mask.window = Some(150);
    check(&case);
}

#[test]
fn packed_segments_and_right_padding() {
    let mut case = Case::new(2, 280, 0, 3, 1, 8);
    let segments: Vec<i32> = (0..560).map(|i| (i % 280) / 61).collect();
    let padding: Vec<i32> = (0..560).map(|i| i32::from(i % 280 < 251 || i < 280)).collect();
    case.mask.segment_ids = Some(Arc::new(segments));
    case.mask.attention_mask = Some(Arc::new(padding));
    check(&case);
}

#[test]
fn packed_samples_skip_tiles_of_other_samples_even_when_an_id_returns() {
    // Samples of 150, 40 and 170 tokens, then the first sample's id again: the kernel skips the
    // key tiles of earlier samples, except that the returning id still sees its first run.
    let mut case = Case::new(2, 400, 0, 2, 1, 8);
    let sample = |i: usize| match i {
        0..150 => 0,
        150..190 => 1,
        190..360 => 2,
        _ => 0,
    };
    case.mask.segment_ids = Some(Arc::new((0..800).map(|i| sample(i % 400)).collect()));
    check(&case);
}

#[test]
fn new_tokens_after_a_cache_with_a_window() {
    let mut case = Case::new(2, 5, 270, 4, 4, 8);
    case.mask.window = Some(140);
    check(&case);
}

#[test]
fn left_padded_queries_give_zero_output_and_zero_gradient() {
    let mut case = Case::new(1, 6, 0, 2, 2, 4);
    case.mask.attention_mask = Some(Arc::new(vec![0, 0, 1, 1, 1, 1]));
    check(&case);
    let [q, k, v] = case.qkv::<Flex>();
    let out = values(attention(q, k, v, &case.mask, case.scale()));
    assert!(
        out[..2 * 4].iter().all(|&x| x == 0.0),
        "first head, padded rows: {:?}",
        &out[..8]
    );
    let [dq, _, _] = case.grads(|q, k, v| attention(q, k, v, &case.mask, case.scale()));
    assert!(dq[..2 * 4].iter().all(|&x| x == 0.0));
}

#[test]
fn one_token_decoding_step_sees_the_whole_cache() {
    check(&Case::new(3, 1, 200, 2, 1, 16));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_shapes_and_masks_match_the_reference(
        batch in 1usize..3,
        seq in 1usize..90,
        past in 0usize..20,
        kv_heads in 1usize..3,
        groups in 1usize..3,
        head_dim in prop::sample::select(vec![4usize, 8, 12]),
        window in prop::option::of(1usize..40),
        segment_len in prop::option::of(1usize..30),
        seed in 0u64..1000,
    ) {
        let mut case = Case::new(batch, seq, past, kv_heads * groups, kv_heads, head_dim);
        case.seed = seed;
        case.mask.window = window;
        if let Some(len) = segment_len.filter(|_| past == 0) {
            let segments = (0..batch * seq).map(|i| ((i % seq) / len) as i32).collect();
            case.mask.segment_ids = Some(Arc::new(segments));
        }
        check(&case);
    }
}
