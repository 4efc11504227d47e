//! Rotary position embeddings in Hugging Face's rotate-half layout, with the `linear`,
//! `dynamic` (NTK) and `llama3` frequency scalings.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use ft_kernels::KernelBackend;
use serde_json::Value;

/// How RoPE frequencies are scaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// NTK-aware base growth beyond the trained context.
    Dynamic { factor: f64, max_positions: usize },
    /// Llama 3.1's per-frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: usize,
    },
    /// Explicit divisors per frequency (llama.cpp's `rope_freqs.weight` in GGUF files, which is
    /// how Llama 3.1 scaling travels there).
    FreqFactors { factors: Vec<f64> },
}

impl RopeScaling {
    /// Parses `rope_scaling` (4.x) or `rope_parameters` (5.x).
    pub fn from_json(value: Option<&Value>, max_positions: usize) -> Result<Self, String> {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            return Ok(RopeScaling::None);
        };
        let kind = v
            .get("rope_type")
            .or_else(|| v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |key: &str| -> Result<f64, String> {
            v.get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("rope scaling `{kind}` needs `{key}`"))
        };
        match kind {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            "dynamic" => Ok(RopeScaling::Dynamic {
                factor: num("factor")?,
                max_positions,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_positions: num("original_max_position_embeddings")? as usize,
            }),
            other => Err(format!(
                "rope scaling type `{other}` is not supported (default, linear, dynamic, llama3)"
            )),
        }
    }
}

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
        _ => freqs.collect(),
    }
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
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(positions * head_dim);
    let mut sin = Vec::with_capacity(positions * head_dim);
    for p in 0..positions {
        for rep in 0..2 {
            let _ = rep;
            for f in &inv[..half] {
                // transformers computes freqs in f32: position (f32) × inv_freq (f32).
                let angle = (p as f32) * (*f as f32);
                cos.push(angle.cos());
                sin.push(angle.sin());
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
