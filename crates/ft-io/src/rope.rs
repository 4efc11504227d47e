//! RoPE scaling as a Hugging Face `config.json` states it (`rope_scaling` in transformers 4.x,
//! `rope_parameters` in 5.x), resolved with transformers 5's defaults: the one reading that the
//! model, the GGUF exporter and the GGUF importer share.

use serde_json::Value;

/// How RoPE frequencies are scaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// NTK-aware base growth beyond the trained context.
    Dynamic {
        /// Growth factor.
        factor: f64,
        /// `max_position_embeddings`, past which the base grows.
        max_positions: usize,
    },
    /// Llama 3.1's per-frequency scaling.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are divided by `factor`.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The pre-training context.
        original_max_positions: usize,
    },
    /// YaRN: interpolated low frequencies, extrapolated high ones, a linear ramp between, and
    /// `cos`/`sin` scaled by the attention factor.
    Yarn {
        /// Context extension factor.
        factor: f64,
        /// The pre-training context.
        original_max_positions: usize,
        /// The scale of `cos` and `sin`.
        attention_factor: f64,
        /// Rotations where extrapolation ends.
        beta_fast: f64,
        /// Rotations where interpolation starts.
        beta_slow: f64,
        /// Round the ramp's ends to whole dimensions.
        truncate: bool,
    },
    /// LongRoPE (Phi-3): per-frequency divisors, `short_factor` within the pre-training context
    /// and `long_factor` beyond it, and `cos`/`sin` scaled by the attention factor.
    LongRope {
        /// Divisors up to `original_max_positions`.
        short_factor: Vec<f64>,
        /// Divisors beyond it.
        long_factor: Vec<f64>,
        /// The pre-training context.
        original_max_positions: usize,
        /// The scale of `cos` and `sin`.
        attention_factor: f64,
    },
    /// Explicit divisors per frequency (llama.cpp's `rope_freqs.weight` in GGUF files, which is
    /// how Llama 3.1 scaling travels there).
    FreqFactors {
        /// One divisor per frequency.
        factors: Vec<f64>,
    },
}

/// The supported `rope_type` values.
pub const ROPE_TYPES: [&str; 6] = ["default", "linear", "dynamic", "llama3", "yarn", "longrope"];

impl RopeScaling {
    /// Reads `rope_scaling` / `rope_parameters`; `max_positions` is `max_position_embeddings`
    /// and `original_max_positions` a top-level `original_max_position_embeddings` (which wins
    /// over the one inside, as in transformers).
    pub fn from_json(
        value: Option<&Value>,
        max_positions: usize,
        original_max_positions: Option<usize>,
    ) -> Result<Self, String> {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            return Ok(RopeScaling::None);
        };
        let kind = v
            .get("rope_type")
            .or_else(|| v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let opt = |key: &str| v.get(key).and_then(Value::as_f64);
        let num = |key: &str| opt(key).ok_or_else(|| format!("rope scaling `{kind}` needs `{key}`"));
        let original = || {
            original_max_positions
                .or_else(|| opt("original_max_position_embeddings").map(|o| o as usize))
                .unwrap_or(max_positions)
        };
        let factors = |key: &str| -> Result<Vec<f64>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                .ok_or_else(|| format!("rope scaling `{kind}` needs `{key}`, a list of numbers"))
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
            "yarn" => {
                let original = original();
                let factor = opt("factor").unwrap_or(max_positions as f64 / original as f64);
                let attention_factor = match (opt("attention_factor"), opt("mscale"), opt("mscale_all_dim")) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        yarn_mscale(factor, m) / yarn_mscale(factor, all)
                    }
                    _ => yarn_mscale(factor, 1.0),
                };
                // transformers: `get("beta_fast") or 32`, so a 0 falls back too.
                let beta = |key: &str, default: f64| opt(key).filter(|b| *b != 0.0).unwrap_or(default);
                Ok(RopeScaling::Yarn {
                    factor,
                    original_max_positions: original,
                    attention_factor,
                    beta_fast: beta("beta_fast", 32.0),
                    beta_slow: beta("beta_slow", 1.0),
                    truncate: v.get("truncate").and_then(Value::as_bool).unwrap_or(true),
                })
            }
            "longrope" => {
                let original = original();
                let factor = opt("factor").unwrap_or(max_positions as f64 / original as f64);
                let attention_factor = opt("attention_factor").unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / (original as f64).ln()).sqrt()
                });
                Ok(RopeScaling::LongRope {
                    short_factor: factors("short_factor")?,
                    long_factor: factors("long_factor")?,
                    original_max_positions: original,
                    attention_factor,
                })
            }
            other => Err(format!(
                "rope scaling type `{other}` is not supported ({})",
                ROPE_TYPES.join(", ")
            )),
        }
    }

    /// The `rope_type` it was read from (`freq_factors` for a GGUF file's `rope_freqs.weight`).
    pub fn kind(&self) -> &'static str {
        match self {
            RopeScaling::None => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Dynamic { .. } => "dynamic",
            RopeScaling::Llama3 { .. } => "llama3",
            RopeScaling::Yarn { .. } => "yarn",
            RopeScaling::LongRope { .. } => "longrope",
            RopeScaling::FreqFactors { .. } => "freq_factors",
        }
    }

    /// The scale of `cos` and `sin` (YaRN's and LongRoPE's attention factor; 1 otherwise).
    pub fn attention_factor(&self) -> f64 {
        match self {
            RopeScaling::Yarn { attention_factor, .. } | RopeScaling::LongRope { attention_factor, .. } => {
                *attention_factor
            }
            _ => 1.0,
        }
    }
}

/// YaRN's `get_mscale`: `0.1·mscale·ln(scale) + 1` for a scale above 1.
fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yarn_defaults_follow_transformers() {
        let v = json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16});
        let RopeScaling::Yarn {
            attention_factor,
            beta_fast,
            beta_slow,
            truncate,
            original_max_positions,
            ..
        } = RopeScaling::from_json(Some(&v), 64, None).unwrap()
        else {
            panic!("yarn")
        };
        assert!((attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
        assert_eq!(
            (beta_fast, beta_slow, truncate, original_max_positions),
            (32.0, 1.0, true, 16)
        );
    }

    #[test]
    fn longrope_factor_defaults_to_the_context_ratio_and_the_top_level_original_wins() {
        let v = json!({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [2.0],
                       "original_max_position_embeddings": 8});
        let scaling = RopeScaling::from_json(Some(&v), 64, Some(4)).unwrap();
        let want = (1.0 + 16f64.ln() / 4f64.ln()).sqrt();
        assert!((scaling.attention_factor() - want).abs() < 1e-12);
        let bad = json!({"rope_type": "longrope", "short_factor": ["x"], "long_factor": [2.0]});
        assert!(
            RopeScaling::from_json(Some(&bad), 64, None)
                .unwrap_err()
                .contains("short_factor")
        );
        let unknown = json!({"rope_type": "su"});
        assert!(
            RopeScaling::from_json(Some(&unknown), 64, None)
                .unwrap_err()
                .contains("`su`")
        );
    }
}
