//! `adapter_config.json`: the classic PEFT LoRA key set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::error::{PeftError, Result, io_err};
use super::targets::TargetModules;

/// `ft`'s own key in `adapter_config.json`: the chat template used in training.
pub const FT_TEMPLATE_KEY: &str = "ft_chat_template";

/// File name of the PEFT config.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// The part of PEFT's `LoraConfig` that `ft` supports.
///
/// Writing emits exactly the classic key set (older PEFT versions reject unknown keys; newer ones
/// fill defaults for missing ones): `peft_type` LORA, `task_type`, `r`, `lora_alpha`, `lora_dropout`,
/// `target_modules`, `bias` none, `fan_in_fan_out` false, `use_rslora`, `use_dora` false,
/// `init_lora_weights` true, `inference_mode` true, `modules_to_save`/`layers_to_transform`/
/// `layers_pattern`/`revision`/`auto_mapping` null, `rank_pattern`/`alpha_pattern`/`loftq_config` `{}`,
/// `base_model_name_or_path`.
///
/// Reading ignores unknown keys but refuses what would change the adapter's meaning and `ft` does
/// not implement (see [`super::SUPPORTED_PEFT`]).
///
/// ```
/// use ft_io::peft::{AdapterConfig, TargetModules};
/// let cfg = AdapterConfig::new(4, 8.0, TargetModules::names(&["q_proj", "v_proj"]));
/// assert_eq!(cfg.scale(), 2.0);
/// let back = AdapterConfig::from_json_str(&cfg.to_json_string()).unwrap();
/// assert_eq!(back, cfg);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    /// LoRA rank.
    pub r: usize,
    /// LoRA alpha (an integer in most configs; PEFT allows floats).
    pub lora_alpha: f64,
    /// Dropout on the adapter input during training.
    pub lora_dropout: f64,
    /// Which linear layers are adapted.
    pub target_modules: TargetModules,
    /// rsLoRA: scale by `alpha / √r` instead of `alpha / r`.
    pub use_rslora: bool,
    /// PEFT task type: `CAUSAL_LM` for an LLM's adapter, none (`null`) for a vision tower's, as
    /// PEFT saves an adapter of a model without a task head.
    pub task_type: Option<String>,
    /// Base model path or hub id.
    pub base_model_name_or_path: Option<String>,
    /// The chat template the adapter was trained with (`ft`'s extra key `ft_chat_template`,
    /// written only when set; PEFT ≥ 0.14 ignores unknown keys with a warning).
    pub chat_template: Option<String>,
}

impl AdapterConfig {
    /// A CAUSAL_LM config with dropout 0, no rsLoRA and no base model path.
    pub fn new(r: usize, lora_alpha: f64, target_modules: TargetModules) -> Self {
        Self {
            r,
            lora_alpha,
            lora_dropout: 0.0,
            target_modules,
            use_rslora: false,
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: None,
            chat_template: None,
        }
    }

    /// The LoRA scale `s` in `W' = W + s·(B @ A)`: `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        let r = self.r as f64;
        if self.use_rslora {
            self.lora_alpha / r.sqrt()
        } else {
            self.lora_alpha / r
        }
    }

    /// Reads `<dir>/adapter_config.json`; a missing file is [`PeftError::MissingConfig`] naming `dir`.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PeftError::MissingConfig {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        Self::parse(&text, &path)
    }

    /// Parses config JSON (errors name the file as `<string>`).
    pub fn from_json_str(text: &str) -> Result<Self> {
        Self::parse(text, Path::new("<string>"))
    }

    /// Writes `<dir>/adapter_config.json` (temp file + rename).
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        super::write_atomically(
            &dir.as_ref().join(ADAPTER_CONFIG_FILE),
            self.to_json_string().as_bytes(),
        )
    }

    /// The classic key set, sorted and indented like PEFT's `save_pretrained`.
    pub fn to_json_string(&self) -> String {
        let alpha = if self.lora_alpha.fract() == 0.0 && self.lora_alpha.abs() < 1e15 {
            json!(self.lora_alpha as i64)
        } else {
            json!(self.lora_alpha)
        };
        let mut keys: BTreeMap<&str, Value> = BTreeMap::from([
            ("alpha_pattern", json!({})),
            ("auto_mapping", Value::Null),
            ("base_model_name_or_path", json!(self.base_model_name_or_path)),
            ("bias", json!("none")),
            ("fan_in_fan_out", json!(false)),
            ("inference_mode", json!(true)),
            ("init_lora_weights", json!(true)),
            ("layers_pattern", Value::Null),
            ("layers_to_transform", Value::Null),
            ("loftq_config", json!({})),
            ("lora_alpha", alpha),
            ("lora_dropout", json!(self.lora_dropout)),
            ("modules_to_save", Value::Null),
            ("peft_type", json!("LORA")),
            ("r", json!(self.r)),
            ("rank_pattern", json!({})),
            ("revision", Value::Null),
            (
                "target_modules",
                serde_json::to_value(&self.target_modules).expect("invariant: serialises"),
            ),
            ("task_type", json!(self.task_type)),
            ("use_dora", json!(false)),
            ("use_rslora", json!(self.use_rslora)),
        ]);
        if let Some(template) = &self.chat_template {
            keys.insert(FT_TEMPLATE_KEY, json!(template));
        }
        let mut text = serde_json::to_string_pretty(&keys).expect("invariant: config serialises");
        text.push('\n');
        text
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let json_err = |e: serde_json::Error| PeftError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let map: Map<String, Value> = serde_json::from_str(text).map_err(json_err)?;
        let cfg = RawConfig {
            map: &map,
            path: path.to_path_buf(),
        };
        cfg.refuse_unsupported()?;
        let r = cfg.get("r").and_then(Value::as_u64).filter(|&r| r > 0);
        let r = r.ok_or_else(|| cfg.invalid("r", "must be a positive integer"))? as usize;
        let lora_alpha = match cfg.get("lora_alpha") {
            None => 8.0, // PEFT's default
            Some(v) => v
                .as_f64()
                .ok_or_else(|| cfg.invalid("lora_alpha", "must be a number"))?,
        };
        let lora_dropout = match cfg.get("lora_dropout") {
            None => 0.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| cfg.invalid("lora_dropout", "must be a number"))?,
        };
        let target_modules = match cfg.get("target_modules") {
            None => {
                return Err(cfg.invalid("target_modules", "is missing or null; ft needs an explicit list"));
            }
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| cfg.invalid("target_modules", &e.to_string()))?,
        };
        let use_rslora = cfg.flag("use_rslora")?;
        let task_type = match cfg.map.get("task_type") {
            None => Some("CAUSAL_LM".to_string()),
            Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| cfg.invalid("task_type", "must be a string"))?
                    .to_string(),
            ),
        };
        let base_model_name_or_path = cfg
            .get("base_model_name_or_path")
            .and_then(Value::as_str)
            .map(String::from);
        let chat_template = cfg.get(FT_TEMPLATE_KEY).and_then(Value::as_str).map(String::from);
        Ok(Self {
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
            use_rslora,
            task_type,
            base_model_name_or_path,
            chat_template,
        })
    }
}

/// The parsed JSON object plus its file name, for checks with precise errors.
struct RawConfig<'a> {
    map: &'a Map<String, Value>,
    path: PathBuf,
}

impl RawConfig<'_> {
    /// The value of `key`, `None` when absent or null.
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn invalid(&self, key: &'static str, message: &str) -> PeftError {
        PeftError::InvalidConfig {
            path: self.path.clone(),
            key,
            message: message.to_string(),
        }
    }

    fn unsupported(&self, feature: &'static str, found: &Value) -> PeftError {
        PeftError::Unsupported {
            path: self.path.clone(),
            feature,
            found: found.to_string(),
        }
    }

    fn flag(&self, key: &'static str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.invalid(key, "must be true or false")),
        }
    }

    /// Refuses every setting that changes what the saved tensors mean.
    fn refuse_unsupported(&self) -> Result<()> {
        match self.get("peft_type") {
            Some(Value::String(t)) if t == "LORA" => {}
            Some(other) => return Err(self.unsupported("peft_type other than \"LORA\"", other)),
            None => return Err(self.invalid("peft_type", "is missing (expected \"LORA\")")),
        }
        let is_set = |v: &Value| match v {
            Value::Bool(b) => *b,
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::String(s) => !s.is_empty(),
            Value::Number(_) => true,
            Value::Null => false,
        };
        let refused: [(&str, &'static str); 11] = [
            ("use_dora", "DoRA (use_dora: true)"),
            ("rank_pattern", "a per-module rank_pattern"),
            ("alpha_pattern", "a per-module alpha_pattern"),
            ("layers_to_transform", "layers_to_transform"),
            ("modules_to_save", "modules_to_save"),
            ("fan_in_fan_out", "fan_in_fan_out: true"),
            ("exclude_modules", "exclude_modules"),
            ("lora_bias", "lora_bias: true"),
            ("layer_replication", "layer_replication"),
            ("target_parameters", "target_parameters"),
            ("trainable_token_indices", "trainable_token_indices"),
        ];
        for (key, feature) in refused {
            if let Some(v) = self.get(key).filter(|v| is_set(v)) {
                return Err(self.unsupported(feature, v));
            }
        }
        match self.get("bias") {
            None => {}
            Some(Value::String(b)) if b == "none" => {}
            Some(other) => return Err(self.unsupported("bias other than \"none\"", other)),
        }
        if let Some(v) = self.get("use_qalora").filter(|v| is_set(v)) {
            return Err(self.unsupported("QA-LoRA (use_qalora: true)", v));
        }
        Ok(())
    }
}
