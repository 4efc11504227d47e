//! A Hugging Face `config.json` ([`HfConfig`], read by `ft-io`) resolved for GGUF export:
//! architecture and hyper-parameters, written as llama.cpp's `{arch}.*` keys (the same keys and
//! types as `convert_hf_to_gguf.py`).

use std::path::Path;

use ft_io::IoError;
use ft_io::hf_config::{CONFIG_FILE, HfConfig};
use ft_io::rope::RopeScaling;
use serde_json::Value;

use crate::error::{GgufError, Result};
use crate::metadata::MetadataValue;
use crate::writer::GgufWriter;

/// HF architectures the exporter accepts, and the llama.cpp architecture each becomes.
pub const SUPPORTED_ARCHITECTURES: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("MistralForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
];

/// The hyper-parameters of a Llama-family `config.json`.
#[derive(Debug, Clone)]
pub(crate) struct HfHyperParams {
    /// HF class, e.g. `LlamaForCausalLM`.
    pub hf_architecture: String,
    /// llama.cpp architecture, `llama` or `qwen2`.
    pub arch: &'static str,
    pub hidden: u64,
    pub intermediate: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    /// `head_dim` when the config states it.
    pub head_dim: Option<u64>,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub context: Option<u64>,
    pub vocab_size: u64,
    pub tie_word_embeddings: bool,
    pub rope: RopeScaling,
}

impl HfHyperParams {
    /// Reads `dir/config.json` (the typed [`HfConfig`] of `ft-io`).
    pub fn read(dir: &Path) -> Result<Self> {
        let file = dir.join(CONFIG_FILE);
        let config = HfConfig::read_file(&file).map_err(|e| match e {
            IoError::Io { source, .. } => GgufError::Io {
                file: file.clone(),
                source,
            },
            other => GgufError::Export {
                file: file.clone(),
                what: match other {
                    IoError::Json { message, .. } => message,
                    other => other.to_string(),
                },
            },
        })?;
        Self::from_config(&file, &config)
    }

    fn from_config(file: &Path, config: &HfConfig) -> Result<Self> {
        let err = |what: String| GgufError::Export {
            file: file.to_path_buf(),
            what,
        };
        let supported = || {
            let names: Vec<&str> = SUPPORTED_ARCHITECTURES.iter().map(|(hf, _)| *hf).collect();
            names.join(", ")
        };
        let hf_architecture = config
            .architectures
            .first()
            .ok_or_else(|| {
                err(format!(
                    "key `architectures` is missing (supported: {})",
                    supported()
                ))
            })?
            .clone();
        let &(_, arch) = SUPPORTED_ARCHITECTURES
            .iter()
            .find(|(hf, _)| *hf == hf_architecture)
            .ok_or_else(|| {
                err(format!(
                    "architecture `{hf_architecture}` cannot be exported to GGUF (supported: {})",
                    supported()
                ))
            })?;
        let heads = config.num_attention_heads as u64;
        let rope_parameters = config.rope_parameters.as_ref().filter(|v| v.is_object());
        let rope_theta = config
            .rope_theta
            .or_else(|| {
                rope_parameters
                    .and_then(|r| r.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10000.0);
        let scaling = config
            .rope_scaling
            .as_ref()
            .filter(|v| v.is_object())
            .or(rope_parameters);
        Ok(Self {
            rope: exportable_rope(RopeScaling::from_json(
                scaling,
                config.max_positions(),
                config.original_max_position_embeddings,
            ))
            .map_err(err)?,
            hf_architecture,
            arch,
            hidden: config.hidden_size as u64,
            intermediate: config.intermediate_size as u64,
            layers: config.num_hidden_layers as u64,
            heads,
            kv_heads: config.num_key_value_heads.map_or(heads, |k| k as u64),
            head_dim: config.head_dim.map(|d| d as u64),
            rms_eps: config.rms_norm_eps,
            rope_theta,
            context: config.max_position_embeddings.map(|c| c as u64),
            vocab_size: config.vocab_size as u64,
            tie_word_embeddings: config.tie_word_embeddings,
        })
    }

    /// `head_dim`, or hidden / heads.
    pub fn rope_dim(&self) -> u64 {
        self.head_dim.unwrap_or(self.hidden / self.heads.max(1))
    }

    /// Writes the `{arch}.*` keys.
    pub fn write_metadata(&self, w: &mut GgufWriter) {
        let key = |k: &str| format!("{}.{k}", self.arch);
        let u32v = |v: u64| MetadataValue::U32(v as u32);
        if let Some(ctx) = self.context {
            w.set(key("context_length"), u32v(ctx));
        }
        w.set(key("embedding_length"), u32v(self.hidden));
        w.set(key("block_count"), u32v(self.layers));
        w.set(key("feed_forward_length"), u32v(self.intermediate));
        w.set(key("attention.head_count"), u32v(self.heads));
        w.set(key("attention.head_count_kv"), u32v(self.kv_heads));
        w.set(key("rope.freq_base"), MetadataValue::F32(self.rope_theta as f32));
        w.set(
            key("attention.layer_norm_rms_epsilon"),
            MetadataValue::F32(self.rms_eps as f32),
        );
        if let Some(hd) = self.head_dim {
            w.set(key("attention.key_length"), u32v(hd));
            w.set(key("attention.value_length"), u32v(hd));
        }
        w.set(key("vocab_size"), u32v(self.vocab_size));
        w.set(key("rope.dimension_count"), u32v(self.rope_dim()));
        match &self.rope {
            RopeScaling::Linear { factor } => {
                w.set(key("rope.scaling.type"), MetadataValue::String("linear".into()));
                w.set(key("rope.scaling.factor"), MetadataValue::F32(*factor as f32));
            }
            RopeScaling::Yarn {
                factor,
                original_max_positions,
                ..
            } => {
                w.set(key("rope.scaling.type"), MetadataValue::String("yarn".into()));
                w.set(key("rope.scaling.factor"), MetadataValue::F32(*factor as f32));
                w.set(
                    key("rope.scaling.original_context_length"),
                    u32v(*original_max_positions as u64),
                );
            }
            // Llama 3.1's travels as `rope_freqs.weight`; the rest are refused on reading.
            _ => {}
        }
    }

    /// Llama 3.1's per-frequency divisors for `rope_freqs.weight` (`[rope_dim / 2]`), as
    /// llama.cpp's converter computes them; `None` without llama3 scaling.
    pub fn rope_freqs(&self) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_positions,
        } = self.rope
        else {
            return None;
        };
        let original = original_max_positions as f64;
        let dim = self.rope_dim() as usize;
        // All in f32, as torch evaluates llama.cpp's formula on f32 tensors.
        let (factor, low, high, original) = (factor as f32, low as f32, high as f32, original as f32);
        let (low_wavelen, high_wavelen) = (original / low, original / high);
        let factors = (0..dim)
            .step_by(2)
            .map(|i| {
                let freq = 1.0 / (self.rope_theta as f32).powf(i as f32 / dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (original / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect();
        Some(factors)
    }
}

/// The scalings llama.cpp's files carry (`linear`, `yarn` as keys; `llama3` as a tensor).
fn exportable_rope(
    scaling: std::result::Result<RopeScaling, String>,
) -> std::result::Result<RopeScaling, String> {
    match scaling? {
        s @ (RopeScaling::None
        | RopeScaling::Linear { .. }
        | RopeScaling::Yarn { .. }
        | RopeScaling::Llama3 { .. }) => Ok(s),
        other => Err(format!(
            "rope scaling `{}` cannot be exported (supported: default, linear, yarn, llama3)",
            other.kind()
        )),
    }
}
