//! What the kernel suites share: seeded random tensors, reading values back, and a relative
//! comparison. Each suite uses part of it.
#![allow(dead_code)]

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A tensor of values drawn uniformly from `−spread..spread`, the same for a seed on every
/// backend.
pub fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64, spread: f32) -> Tensor<B, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random_range(-spread..spread))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// A tensor's values as f32.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("float data")
}

/// Fails unless every `|got − want| / (1 + |want|)` is at most `tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: worst difference {worst:e} > {tol:e}");
}
