//! `config.json` as transformers writes it (4.x and 5.x spellings; typed once, in
//! [`ft_io::hf_config`]) resolved into the runtime [`ModelConfig`].

use std::path::Path;

pub use ft_io::hf_config::{HfConfig, TokenIds, is_llava};

use crate::error::{ModelError, Result};
use crate::rope::RopeScaling;

/// The model families `ft` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 1/2/3 (and SmolLM2).
    Llama,
    /// Mistral.
    Mistral,
    /// Qwen2 (q/k/v biases).
    Qwen2,
    /// InternLM2 (fused `wqkv`).
    InternLm2,
}

/// Supported `model_type` values.
pub const SUPPORTED: &str = "llama, mistral, qwen2, internlm2";

impl Family {
    fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "llama" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "internlm2" => Some(Family::InternLm2),
            _ => None,
        }
    }
}

/// The runtime configuration of a decoder LLM.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Family (decides weight names and biases).
    pub family: Family,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest trained context.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// LM head tied to the embedding.
    pub tie_word_embeddings: bool,
    /// Biases on q, k, v.
    pub qkv_bias: bool,
    /// Bias on the attention output.
    pub o_bias: bool,
    /// Biases on the MLP.
    pub mlp_bias: bool,
    /// EOS ids from the config.
    pub eos_token_ids: Vec<u32>,
    /// Storage dtype name (`bfloat16`, `float16`, `float32`), if given.
    pub dtype: Option<String>,
    /// Attention window of each layer (`None` = full causal attention); see
    /// [`ModelConfig::sliding_window`].
    pub sliding_windows: Vec<Option<usize>>,
    /// Training recomputes each decoder layer in backward instead of keeping its activations
    /// (`[train] gradient_checkpointing`; not part of `config.json`). Inference ignores it.
    pub gradient_checkpointing: bool,
}

impl ModelConfig {
    /// Resolves the runtime configuration of `hf`; `path` names the file in errors.
    pub fn from_hf(hf: &HfConfig, path: &Path) -> Result<Self> {
        let model_type = hf.model_type.as_deref().ok_or_else(|| ModelError::Config {
            path: path.to_path_buf(),
            message: "invalid config.json: missing field `model_type`".into(),
        })?;
        let family = Family::from_model_type(model_type).ok_or_else(|| ModelError::UnsupportedModel {
            path: path.to_path_buf(),
            model_type: model_type.to_owned(),
            supported: SUPPORTED.into(),
        })?;
        let err = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        if hf.hidden_act != "silu" {
            return Err(err(format!(
                "hidden_act `{}` is not supported (only silu)",
                hf.hidden_act
            )));
        }
        for (key, value) in [
            ("hidden_size", hf.hidden_size),
            ("intermediate_size", hf.intermediate_size),
            ("num_attention_heads", hf.num_attention_heads),
            ("vocab_size", hf.vocab_size),
            ("head_dim", hf.head_dim.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(err(format!("`{key}` must be at least 1, found 0")));
            }
        }
        if !(hf.rms_norm_eps.is_finite() && hf.rms_norm_eps > 0.0) {
            return Err(err(format!(
                "`rms_norm_eps` must be a positive number, found {}",
                hf.rms_norm_eps
            )));
        }
        let num_kv_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        if num_kv_heads == 0 || !hf.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {num_kv_heads}",
                hf.num_attention_heads
            )));
        }
        let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads);
        if head_dim == 0 {
            return Err(err(format!(
                "`hidden_size` {} gives no dimension to each of {} heads",
                hf.hidden_size, hf.num_attention_heads
            )));
        }
        let params = hf.rope_parameters.as_ref();
        let rope_theta = hf
            .rope_theta
            .or_else(|| params.and_then(|p| p.get("rope_theta")?.as_f64()))
            .unwrap_or(match family {
                Family::Qwen2 | Family::InternLm2 => 1e6,
                _ => 1e4,
            });
        let scaling_source = hf.rope_scaling.as_ref().or(params);
        let rope_scaling = RopeScaling::from_json(
            scaling_source,
            hf.max_positions(),
            hf.original_max_position_embeddings,
        )
        .map_err(err)?;
        if let RopeScaling::LongRope {
            short_factor,
            long_factor,
            ..
        } = &rope_scaling
            && (short_factor.len() != head_dim / 2 || long_factor.len() != head_dim / 2)
        {
            return Err(err(format!(
                "longrope `short_factor` / `long_factor` need {} values (head_dim / 2), found {} / {}",
                head_dim / 2,
                short_factor.len(),
                long_factor.len()
            )));
        }
        let (qkv_bias, o_bias, mlp_bias) = match family {
            Family::Qwen2 => (true, false, false),
            Family::InternLm2 => {
                let b = hf.bias.unwrap_or(false);
                (b, b, b)
            }
            _ => (hf.attention_bias, hf.attention_bias, hf.mlp_bias),
        };
        let sliding_windows = sliding_windows(hf, family).map_err(err)?;
        Ok(ModelConfig {
            family,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads,
            head_dim,
            vocab_size: hf.vocab_size,
            max_position_embeddings: hf.max_positions(),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: hf.tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias,
            eos_token_ids: hf.eos_token_id.as_ref().map(TokenIds::to_vec).unwrap_or_default(),
            dtype: hf.torch_dtype.clone().or_else(|| hf.dtype.clone()),
            sliding_windows,
            gradient_checkpointing: false,
        })
    }

    /// The attention window of layer `layer` (`None` = full causal attention): its query sees
    /// itself and the `window - 1` keys before it.
    pub fn sliding_window(&self, layer: usize) -> Option<usize> {
        self.sliding_windows.get(layer).copied().flatten()
    }

    /// Reads and resolves `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let hf = HfConfig::read(dir).map_err(|e| match e {
            ft_io::IoError::Io { path, source, .. } => ModelError::io(path, source),
            other => ModelError::Config {
                path: dir.join("config.json"),
                message: match other {
                    ft_io::IoError::Json { message, .. } => message,
                    other => other.to_string(),
                },
            },
        })?;
        Self::from_hf(&hf, &dir.join("config.json"))
    }
}

/// The attention window of each layer, as transformers 5.x resolves it: Mistral windows
/// every layer; Qwen2 only with `use_sliding_window`, on the layers `layer_types` marks
/// `sliding_attention` (or, without it, those from `max_window_layers` on).
fn sliding_windows(hf: &HfConfig, family: Family) -> std::result::Result<Vec<Option<usize>>, String> {
    let layers = hf.num_hidden_layers;
    if hf.sliding_window == Some(0) {
        return Err("sliding_window must be at least 1".into());
    }
    Ok(match family {
        Family::Mistral => vec![hf.sliding_window; layers],
        Family::Qwen2 => {
            let window = hf.sliding_window.filter(|_| hf.use_sliding_window == Some(true));
            match &hf.layer_types {
                Some(types) if types.len() == layers => types
                    .iter()
                    .map(|t| window.filter(|_| t == "sliding_attention"))
                    .collect(),
                Some(types) => {
                    return Err(format!(
                        "layer_types has {} entries for {layers} layers",
                        types.len()
                    ));
                }
                None => {
                    let first = hf.max_window_layers.unwrap_or(28);
                    (0..layers).map(|i| window.filter(|_| i >= first)).collect()
                }
            }
        }
        Family::Llama | Family::InternLm2 => vec![None; layers],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(extra: serde_json::Value) -> std::result::Result<Vec<Option<usize>>, String> {
        let mut json = serde_json::json!({"model_type": "qwen2", "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2,
            "vocab_size": 10});
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let hf: HfConfig = serde_json::from_value(json).unwrap();
        let family = Family::from_model_type(hf.model_type.as_deref().unwrap()).unwrap();
        sliding_windows(&hf, family)
    }

    #[test]
    fn mistral_windows_every_layer_unless_null() {
        let on = windows(serde_json::json!({"model_type": "mistral", "sliding_window": 4}));
        assert_eq!(on.unwrap(), vec![Some(4); 3]);
        let off = windows(serde_json::json!({"model_type": "mistral", "sliding_window": null}));
        assert_eq!(off.unwrap(), vec![None; 3]);
    }

    #[test]
    fn qwen2_windows_only_with_use_sliding_window_from_max_window_layers() {
        let off = windows(serde_json::json!({"sliding_window": 4, "max_window_layers": 1}));
        assert_eq!(off.unwrap(), vec![None; 3]);
        let on = serde_json::json!({"sliding_window": 4, "use_sliding_window": true,
            "max_window_layers": 1});
        assert_eq!(windows(on).unwrap(), vec![None, Some(4), Some(4)]);
    }

    #[test]
    fn qwen2_layer_types_decide_which_layers_slide() {
        let typed = serde_json::json!({"sliding_window": 4, "use_sliding_window": true,
            "max_window_layers": 0,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]});
        assert_eq!(windows(typed).unwrap(), vec![Some(4), None, Some(4)]);
        let short = serde_json::json!({"layer_types": ["full_attention"]});
        assert!(windows(short).is_err());
    }

    #[test]
    fn llama_ignores_and_zero_window_is_rejected() {
        let llama = windows(serde_json::json!({"model_type": "llama", "sliding_window": 4}));
        assert_eq!(llama.unwrap(), vec![None; 3]);
        let zero = windows(serde_json::json!({"model_type": "mistral", "sliding_window": 0}));
        assert!(zero.is_err());
    }
}
