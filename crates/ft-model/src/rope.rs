//! Rotary position embeddings in Hugging Face's rotate-half layout, with the `linear`,
//! `dynamic` (NTK), `llama3`, `yarn` and `longrope` frequency scalings (read by
//! `ft_io::rope::RopeScaling`).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use ft_kernels::KernelBackend;

pub use ft_io::rope::RopeScaling;

/// Inverse frequencies `θ^(−2i/d)` after scaling, for a sequence of `seq_len` positions.
pub fn inv_freq(head_dim: usize, theta: f64, scaling: &RopeScaling, seq_len: usize) -> Vec<f64> {
    let base = match scaling {
        RopeScaling::Dynamic {
            factor,
            max_positions,
        } if seq_len > *max_positions => {
            let ratio = factor * seq_len as f64 / *max_positions as f64 - (factor - 1.0);
            theta * ratio.powf(head_dim as f64 / (head_dim as f64 - 2.0))
        }
        _ => theta,
    };
    let freqs = (0..head_dim / 2).map(|i| 1.0 / base.powf(2.0 * i as f64 / head_dim as f64));
    match scaling {
        RopeScaling::Linear { factor } => freqs.map(|f| f / factor).collect(),
        RopeScaling::FreqFactors { factors } => freqs.zip(factors).map(|(f, d)| f / d).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_positions,
        } => {
            let old = *original_max_positions as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            freqs
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
        RopeScaling::Yarn {
            factor,
            original_max_positions,
            beta_fast,
            beta_slow,
            truncate,
            ..
        } => {
            let (low, high) = yarn_correction_range(
                *beta_fast,
                *beta_slow,
                head_dim,
                base,
                *original_max_positions,
                *truncate,
            );
            let high = if low == high { high + 0.001 } else { high };
            freqs
                .enumerate()
                .map(|(i, f)| {
                    // The share of the extrapolated (unscaled) frequency: 1 below `low`, 0 above
                    // `high`, a linear ramp between.
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrapolation = 1.0 - ramp;
                    (f / factor) * (1.0 - extrapolation) + f * extrapolation
                })
                .collect()
        }
        RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_positions,
            ..
        } => {
            let factors = if seq_len > *original_max_positions {
                long_factor
            } else {
                short_factor
            };
            freqs.zip(factors).map(|(f, d)| f / d).collect()
        }
        _ => freqs.collect(),
    }
}

/// YaRN's dimensions where the ramp from extrapolation to interpolation starts and ends.
fn yarn_correction_range(
    beta_fast: f64,
    beta_slow: f64,
    head_dim: usize,
    base: f64,
    original: usize,
    truncate: bool,
) -> (f64, f64) {
    let dim = head_dim as f64;
    let correction_dim = |rotations: f64| {
        dim * (original as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
    };
    let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
    if truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    (low.max(0.0), high.min(dim - 1.0))
}

/// `cos` and `sin` tables `[positions, head_dim]` (`cat(freqs, freqs)` layout).
pub fn tables<B: Backend>(
    head_dim: usize,
    theta: f64,
    scaling: &RopeScaling,
    positions: usize,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let inv = inv_freq(head_dim, theta, scaling, positions);
    // YaRN and LongRoPE scale cos and sin (transformers: `emb.cos() * attention_scaling`, f32).
    let attention = scaling.attention_factor() as f32;
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(positions * head_dim);
    let mut sin = Vec::with_capacity(positions * head_dim);
    for p in 0..positions {
        for rep in 0..2 {
            let _ = rep;
            for f in &inv[..half] {
                // transformers computes freqs in f32: position (f32) × inv_freq (f32).
                let angle = (p as f32) * (*f as f32);
                cos.push(angle.cos() * attention);
                sin.push(angle.sin() * attention);
            }
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [positions, head_dim]), device),
        Tensor::from_data(TensorData::new(sin, [positions, head_dim]), device),
    )
}

/// The RoPE factors of one forward pass: the tables gathered at the tokens' positions
/// (`[batch, seq, head_dim]`, shared by every head and every layer) with the sign of
/// `rotate_half` folded into the sine.
#[derive(Debug, Clone)]
pub struct RopeAngles<B: Backend> {
    cos: Tensor<B, 3>,
    signed_sin: Tensor<B, 3>,
}

impl<B: Backend> RopeAngles<B> {
    /// # Shapes
    /// - positions: `[batch, seq]`
    /// - cos, sin: `[max_positions, head_dim]`
    pub fn new(positions: &Tensor<B, 2, Int>, cos: &Tensor<B, 2>, sin: &Tensor<B, 2>) -> Self {
        let [batch, seq] = positions.dims();
        let [_, head_dim] = cos.dims();
        let half = head_dim / 2;
        let rows = batch * seq;
        let flat = positions.clone().reshape([rows]);
        let per_position = |table: Tensor<B, 2>| table.reshape([batch, seq, head_dim]);
        let sin = sin.clone().select(0, flat.clone());
        // rotate_half(x)·sin = [x₂, x₁]·[−sin₁, sin₂]
        let signed_sin = Tensor::cat(
            vec![
                sin.clone().slice([0..rows, 0..half]).neg(),
                sin.slice([0..rows, half..head_dim]),
            ],
            1,
        );
        Self {
            cos: per_position(cos.clone().select(0, flat)),
            signed_sin: per_position(signed_sin),
        }
    }
}

/// Applies RoPE: `x·cos + rotate_half(x)·sin`, in the projections' own layout, through
/// `ft_kernels::rope` (one fused op forward and backward).
///
/// # Shapes
/// - x: `[batch, seq, heads, head_dim]`
/// - output: `[batch, seq, heads, head_dim]`
pub fn apply<B: KernelBackend>(x: Tensor<B, 4>, angles: &RopeAngles<B>) -> Tensor<B, 4> {
    ft_kernels::rope(x, angles.cos.clone(), angles.signed_sin.clone())
}
