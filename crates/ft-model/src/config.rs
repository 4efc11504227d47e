//! `config.json` as transformers writes it (4.x and 5.x spellings), resolved into the runtime
//! [`ModelConfig`].

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

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

/// An id or a list of ids (`eos_token_id` in Llama-3 configs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// All ids.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `config.json`, with transformers' defaults for missing keys.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// `llama`, `mistral`, `qwen2`, `internlm2`.
    pub model_type: String,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (absent: = query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head size (absent: hidden / heads).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest context.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// The pre-training context, when stated outside the RoPE parameters (Phi-3 style).
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base (4.x).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE scaling (4.x).
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    /// RoPE parameters (5.x: `rope_theta`, `rope_type`, scaling keys).
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    /// LM head shares the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama: biases on q/k/v/o.
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama: biases on the MLP.
    #[serde(default)]
    pub mlp_bias: bool,
    /// InternLM2: biases on every linear.
    #[serde(default)]
    pub bias: Option<bool>,
    /// Activation; only `silu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Storage dtype (4.x).
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// Storage dtype (5.x).
    #[serde(default)]
    pub dtype: Option<String>,
    /// BOS id(s).
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    /// EOS id(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Mistral, Qwen2: attention window in tokens (`null` = full attention).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen2: whether `sliding_window` applies at all (default false).
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Qwen2: layers from this index on use the window (default 28).
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    /// Qwen2 (transformers 5.x): `full_attention` / `sliding_attention` per layer.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
}

fn default_max_positions() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
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
}

impl HfConfig {
    /// Reads `config.json` from a model folder; in a Hugging Face LLaVA folder
    /// (`LlavaForConditionalGeneration`), its language model's `text_config`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let invalid = |e: serde_json::Error| ModelError::Config {
            path: path.clone(),
            message: format!("invalid config.json: {e}"),
        };
        let mut json: Value = serde_json::from_str(&text).map_err(invalid)?;
        if is_llava(&json)
            && let Some(text_config) = json.get_mut("text_config")
        {
            json = text_config.take();
        }
        serde_json::from_value(json).map_err(invalid)
    }

    /// Resolves the runtime configuration; `path` names the file in errors.
    pub fn to_config(&self, path: &Path) -> Result<ModelConfig> {
        let family =
            Family::from_model_type(&self.model_type).ok_or_else(|| ModelError::UnsupportedModel {
                path: path.to_path_buf(),
                model_type: self.model_type.clone(),
                supported: SUPPORTED.into(),
            })?;
        let err = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        if self.hidden_act != "silu" {
            return Err(err(format!(
                "hidden_act `{}` is not supported (only silu)",
                self.hidden_act
            )));
        }
        for (key, value) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("head_dim", self.head_dim.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(err(format!("`{key}` must be at least 1, found 0")));
            }
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(err(format!(
                "`rms_norm_eps` must be a positive number, found {}",
                self.rms_norm_eps
            )));
        }
        let num_kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        if num_kv_heads == 0 || !self.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {num_kv_heads}",
                self.num_attention_heads
            )));
        }
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads);
        if head_dim == 0 {
            return Err(err(format!(
                "`hidden_size` {} gives no dimension to each of {} heads",
                self.hidden_size, self.num_attention_heads
            )));
        }
        let params = self.rope_parameters.as_ref();
        let rope_theta = self
            .rope_theta
            .or_else(|| params.and_then(|p| p.get("rope_theta")?.as_f64()))
            .unwrap_or(match family {
                Family::Qwen2 | Family::InternLm2 => 1e6,
                _ => 1e4,
            });
        let scaling_source = self.rope_scaling.as_ref().or(params);
        let rope_scaling = RopeScaling::from_json(
            scaling_source,
            self.max_position_embeddings,
            self.original_max_position_embeddings,
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
                let b = self.bias.unwrap_or(false);
                (b, b, b)
            }
            _ => (self.attention_bias, self.attention_bias, self.mlp_bias),
        };
        let sliding_windows = self.sliding_windows(family).map_err(err)?;
        Ok(ModelConfig {
            family,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads,
            head_dim,
            vocab_size: self.vocab_size,
            max_position_embeddings: self.max_position_embeddings,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: self.tie_word_embeddings,
            qkv_bias,
            o_bias,
            mlp_bias,
            eos_token_ids: self
                .eos_token_id
                .as_ref()
                .map(TokenIds::to_vec)
                .unwrap_or_default(),
            dtype: self.torch_dtype.clone().or_else(|| self.dtype.clone()),
            sliding_windows,
        })
    }

    /// The attention window of each layer, as transformers 5.x resolves it: Mistral windows
    /// every layer; Qwen2 only with `use_sliding_window`, on the layers `layer_types` marks
    /// `sliding_attention` (or, without it, those from `max_window_layers` on).
    fn sliding_windows(&self, family: Family) -> std::result::Result<Vec<Option<usize>>, String> {
        let layers = self.num_hidden_layers;
        if self.sliding_window == Some(0) {
            return Err("sliding_window must be at least 1".into());
        }
        Ok(match family {
            Family::Mistral => vec![self.sliding_window; layers],
            Family::Qwen2 => {
                let window = self
                    .sliding_window
                    .filter(|_| self.use_sliding_window == Some(true));
                match &self.layer_types {
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
                        let first = self.max_window_layers.unwrap_or(28);
                        (0..layers).map(|i| window.filter(|_| i >= first)).collect()
                    }
                }
            }
            Family::Llama | Family::InternLm2 => vec![None; layers],
        })
    }
}

impl ModelConfig {
    /// The attention window of layer `layer` (`None` = full causal attention): its query sees
    /// itself and the `window - 1` keys before it.
    pub fn sliding_window(&self, layer: usize) -> Option<usize> {
        self.sliding_windows.get(layer).copied().flatten()
    }

    /// Reads and resolves `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        HfConfig::read(dir)?.to_config(&dir.join("config.json"))
    }
}

/// Whether a `config.json` is a Hugging Face LLaVA's (its language model is `text_config`, its
/// tensors `language_model.*`).
pub fn is_llava(config: &Value) -> bool {
    config
        .get("model_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t == "llava")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(extra: Value) -> std::result::Result<Vec<Option<usize>>, String> {
        let mut json = serde_json::json!({"model_type": "qwen2", "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2,
            "vocab_size": 10});
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let hf: HfConfig = serde_json::from_value(json).unwrap();
        let family = Family::from_model_type(&hf.model_type).unwrap();
        hf.sliding_windows(family)
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
