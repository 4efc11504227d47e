//! A Hugging Face decoder LLM's `config.json`, typed: the one reading the model (`ft-model`), the
//! GGUF exporter (`ft-gguf`) and the merge (`ft-export`) share. It is the file as transformers
//! writes it (4.x and 5.x spellings); what each reader resolves from it (the runtime model
//! configuration, llama.cpp's keys) stays with the reader.
//!
//! ```
//! let json = serde_json::json!({"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
//!     "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 10, "torch_dtype": "bfloat16"});
//! let config = ft_io::hf_config::HfConfig::from_value(std::path::Path::new("config.json"), json).unwrap();
//! assert_eq!(config.storage_dtype(), Some(ft_io::Dtype::BF16));
//! assert_eq!(config.max_positions(), 2048); // transformers' default
//! ```

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::dtype::{Dtype, dtype_from_torch_name};
use crate::error::{IoError, Result};

/// The file name.
pub const CONFIG_FILE: &str = "config.json";

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

/// A decoder LLM's `config.json`, with transformers' defaults for missing keys. Keys it does not
/// name are ignored here; a writer that copies the file through keeps its raw JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// The transformers classes (`LlamaForCausalLM`, …); empty when absent.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `llama`, `mistral`, `qwen2`, `internlm2`, … (the model needs it; the GGUF exporter goes by
    /// `architectures`).
    #[serde(default)]
    pub model_type: Option<String>,
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
    /// Longest context, when stated ([`HfConfig::max_positions`] applies transformers' default).
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
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

fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}

impl HfConfig {
    /// Reads `dir/config.json`; in a Hugging Face LLaVA folder (`LlavaForConditionalGeneration`),
    /// its language model's `text_config`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let mut json = read_value(&path)?;
        if is_llava(&json)
            && let Some(text_config) = json.get_mut("text_config")
        {
            json = text_config.take();
        }
        Self::from_value(&path, json)
    }

    /// Reads the `config.json` at `path` as it is (a LLaVA's own keys, not its `text_config`).
    pub fn read_file(path: &Path) -> Result<Self> {
        Self::from_value(path, read_value(path)?)
    }

    /// Types an already parsed `config.json`; `path` names the file in errors.
    pub fn from_value(path: &Path, json: Value) -> Result<Self> {
        serde_json::from_value(json).map_err(|e| invalid(path, e))
    }

    /// `max_position_embeddings`, or transformers' default 2048.
    pub fn max_positions(&self) -> usize {
        self.max_position_embeddings.unwrap_or(2048)
    }

    /// The storage dtype the config declares, when it names a float type: `dtype` (written by
    /// transformers 5), else `torch_dtype`.
    pub fn storage_dtype(&self) -> Option<Dtype> {
        [&self.dtype, &self.torch_dtype]
            .into_iter()
            .find_map(|name| name.as_deref().and_then(dtype_from_torch_name))
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

fn read_value(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(IoError::at("reading", path))?;
    serde_json::from_str(&text).map_err(|e| invalid(path, e))
}

fn invalid(path: &Path, e: serde_json::Error) -> IoError {
    IoError::Json {
        path: path.to_path_buf(),
        message: format!("invalid config.json: {e}"),
    }
}
