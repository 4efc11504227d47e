//! The training TOML: `[model]`, `[data]`, `[lora]` (absent = full fine-tuning), `[train]`,
//! `[eval]`, and for a LLaVA `[llava]` and `[visual_lora]`. Unknown keys are errors naming the key; values are checked before any work starts.

use std::path::{Path, PathBuf};

use ft_data::config::DataConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The whole training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The base model.
    pub model: ModelSection,
    /// The dataset.
    pub data: DataConfig,
    /// LoRA adapter; absent means full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraSection>,
    /// The loop.
    #[serde(default)]
    pub train: TrainSection,
    /// Sample generations during training.
    #[serde(default)]
    pub eval: Option<EvalSection>,
    /// A LLaVA: CLIP and the projector around the model (stage 1 without `[lora]`: only the
    /// projector trains; stage 2 with it: LoRA and the projector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llava: Option<LlavaSection>,
    /// A LLaVA's LoRA on CLIP (XTuner's `visual_encoder_lora`; `all-linear` = `q_proj, k_proj,
    /// v_proj, out_proj, fc1, fc2`), saved as `visual_encoder_adapter/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visual_lora: Option<LoraSection>,
}

/// `[llava]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlavaSection {
    /// The CLIP vision tower's folder (relative to the config).
    pub visual_encoder: PathBuf,
    /// A projector folder to start from (XTuner's layout); absent: a fresh one, seeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projector: Option<PathBuf>,
    /// Linear layers of a fresh projector.
    #[serde(default = "default_projector_depth")]
    pub projector_depth: usize,
    /// The CLIP hidden state the projector takes (−2: the second-to-last layer's output).
    #[serde(default = "default_select_layer")]
    pub visual_select_layer: i64,
    /// Pad pictures to a square with the mean colour first; absent: when `[lora]` is present
    /// (XTuner pads in stage 2, not in stage 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_image_to_square: Option<bool>,
    /// CLIP's linear layers: `none` (the model's dtype) or `nf4` (4-bit, as `[model]
    /// quantization`, with its `double_quant`).
    #[serde(default = "default_quantization")]
    pub visual_quantization: String,
}

fn default_projector_depth() -> usize {
    2
}

fn default_select_layer() -> i64 {
    -2
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Hugging Face folder or GGUF file, relative to the config.
    pub path: PathBuf,
    /// Compute dtype of the frozen base: `f32`, `bf16` or `f16`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// `none` or `nf4` (QLoRA: 4-bit base).
    #[serde(default = "default_quantization")]
    pub quantization: String,
    /// Quantise the NF4 absmax again (bitsandbytes' double quantisation).
    #[serde(default = "default_true")]
    pub double_quant: bool,
}

/// Module names to adapt: a list of names, or `"all-linear"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module-name suffixes (PEFT's matching rule).
    List(Vec<String>),
    /// A keyword: only `all-linear` is accepted.
    Keyword(String),
}

/// `[lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank.
    #[serde(default = "default_r")]
    pub r: usize,
    /// Scale numerator: scale = alpha / r (alpha / √r with rsLoRA).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter input.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Which linears get an adapter.
    #[serde(default = "default_targets")]
    pub target_modules: TargetModules,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
}

impl LoraSection {
    /// The adapter's shape.
    pub fn spec(&self) -> ft_lora::linear::LoraSpec {
        ft_lora::linear::LoraSpec {
            r: self.r,
            alpha: self.alpha,
            dropout: self.dropout,
            use_rslora: self.use_rslora,
        }
    }

    /// The layers to adapt, in PEFT's terms.
    pub fn targets(&self) -> ft_lora::peft::TargetModules {
        match &self.target_modules {
            TargetModules::List(names) => ft_lora::peft::TargetModules::names(names),
            TargetModules::Keyword(_) => ft_lora::peft::TargetModules::AllLinear,
        }
    }

    /// Checks r, dropout and the targets; errors name `section.key`.
    fn validate(&self, section: &str) -> std::result::Result<(), (String, String)> {
        let key = |k: &str| format!("{section}.{k}");
        if self.r == 0 {
            return Err((key("r"), "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err((
                key("dropout"),
                format!("must be in [0, 1), found {}", self.dropout),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err((
                key("alpha"),
                format!("must be a positive number, found {}", self.alpha),
            ));
        }
        if let TargetModules::Keyword(k) = &self.target_modules
            && k != "all-linear"
        {
            return Err((
                key("target_modules"),
                format!("expected a list of module names or \"all-linear\", found \"{k}\""),
            ));
        }
        Ok(())
    }
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Where checkpoints, logs and the final model go (relative to the config).
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Passes over the data (ignored when `max_steps` is set).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Optimizer steps to run; overrides `epochs`.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Rows per micro-batch.
    #[serde(default = "default_one")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "default_one")]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Fraction of steps spent warming up.
    #[serde(default = "default_warmup_ratio")]
    pub warmup_ratio: f64,
    /// AdamW decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW betas.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// AdamW epsilon.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Global-norm gradient clipping; 0 = off.
    #[serde(default = "default_one_f")]
    pub max_grad_norm: f64,
    /// Save a checkpoint every this many optimizer steps; 0 = only at the end.
    #[serde(default = "default_save_steps")]
    pub save_steps: usize,
    /// Keep at most this many checkpoints; 0 = keep all.
    #[serde(default = "default_save_total_limit")]
    pub save_total_limit: usize,
    /// Seed of initialisation, dropout and shuffling.
    #[serde(default)]
    pub seed: u64,
    /// `auto`, `cuda`, `wgpu` or `cpu`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Log every this many optimizer steps.
    #[serde(default = "default_one")]
    pub log_steps: usize,
    /// Where else metrics go besides `metrics.jsonl` and `loss.png`: `["tensorboard"]` writes
    /// TensorBoard event files under `output_dir/runs/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report_to: Vec<String>,
    /// Data parallelism: one peer per device, e.g. `["cuda:0", "cuda:1"]`, or `["cpu:2"]` for
    /// two CPU peers. Empty: one peer on `device`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Seconds a peer waits for the others at a gradient all-reduce before the run stops with
    /// an error naming the peers that did not arrive.
    #[serde(
        default = "default_collective_timeout_s",
        skip_serializing_if = "is_default_collective_timeout"
    )]
    pub collective_timeout_s: u64,
    /// Recompute each decoder layer in backward instead of keeping its activations: activation
    /// memory of one layer plus each layer's input, for about one more forward per step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
}

/// Where each data-parallel peer of one node runs (`[train] devices`, `--devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerDevice {
    /// `cpu`, `cuda` or `wgpu`.
    pub kind: &'static str,
    /// The device's index (always 0 on the CPU).
    pub index: usize,
}

/// Parses `[train] devices` entries: `cuda:I` / `wgpu:I` (one peer each, every index once) or
/// `cpu:N` (N peers on the CPU); kinds are not mixed.
pub fn parse_devices(entries: &[String]) -> std::result::Result<Vec<PeerDevice>, String> {
    let mut peers = Vec::new();
    for entry in entries.iter().flat_map(|e| e.split(',')).map(str::trim) {
        let (kind, number) = entry.split_once(':').unwrap_or((entry, "0"));
        let number: usize = number
            .parse()
            .map_err(|_| format!("`{entry}`: expected cuda:I, wgpu:I or cpu:N"))?;
        match kind {
            "cpu" if number == 0 => return Err(format!("`{entry}`: cpu:N needs N ≥ 1 peers")),
            "cpu" => peers.extend((0..number).map(|_| PeerDevice {
                kind: "cpu",
                index: 0,
            })),
            "cuda" => peers.push(PeerDevice {
                kind: "cuda",
                index: number,
            }),
            "wgpu" => peers.push(PeerDevice {
                kind: "wgpu",
                index: number,
            }),
            _ => return Err(format!("`{entry}`: unknown device (cuda:I, wgpu:I or cpu:N)")),
        }
    }
    if let Some(other) = peers.iter().find(|p| p.kind != peers[0].kind) {
        return Err(format!(
            "devices mix {} and {}: every peer must run on the same kind",
            peers[0].kind, other.kind
        ));
    }
    for (i, p) in peers.iter().enumerate() {
        if p.kind != "cpu" && peers[..i].contains(p) {
            return Err(format!("{}:{} is listed twice", p.kind, p.index));
        }
    }
    Ok(peers)
}

/// The `report_to` values.
pub const REPORT_TO: [&str; 2] = ["tensorboard", "none"];

/// `[eval]`: sample answers during training (XTuner's EvaluateChatHook), and the held-out
/// loss when `[data] eval_split` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Prompts to answer (none: only the held-out loss is computed).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// System text for the prompts.
    #[serde(default)]
    pub system: Option<String>,
    /// Answer every this many optimizer steps (and before and after training); 0 = only then.
    #[serde(default = "default_eval_every")]
    pub every_steps: usize,
    /// Longest answer.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// A LLaVA run's pictures to ask about (relative to the config): one per input, or one for
    /// all. Each prompt is `<image>` + newline + the input, as XTuner's EvaluateChatHook asks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PathBuf>,
}

fn default_dtype() -> String {
    "bf16".into()
}
fn default_quantization() -> String {
    "none".into()
}
fn default_true() -> bool {
    true
}
fn default_r() -> usize {
    64
}
fn default_alpha() -> f64 {
    16.0
}
fn default_dropout() -> f64 {
    0.1
}
fn default_targets() -> TargetModules {
    TargetModules::Keyword("all-linear".into())
}
fn default_output_dir() -> PathBuf {
    PathBuf::from("work_dirs/run")
}
fn default_epochs() -> usize {
    3
}
fn default_one() -> usize {
    1
}
fn default_one_f() -> f64 {
    1.0
}
fn default_lr() -> f64 {
    2e-4
}
fn default_warmup_ratio() -> f64 {
    0.03
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_save_steps() -> usize {
    500
}
fn default_save_total_limit() -> usize {
    2
}
fn default_device() -> String {
    "auto".into()
}
fn default_collective_timeout_s() -> u64 {
    300
}
fn is_default_collective_timeout(seconds: &u64) -> bool {
    *seconds == default_collective_timeout_s()
}
fn default_eval_every() -> usize {
    500
}
fn default_max_new_tokens() -> usize {
    600
}

impl Default for TrainSection {
    fn default() -> Self {
        toml::from_str("").expect("invariant: every [train] key has a default")
    }
}

impl Default for EvalSection {
    fn default() -> Self {
        toml::from_str("").expect("invariant: every [eval] key has a default")
    }
}

impl TrainConfig {
    /// Where the token cache lives: `[data] cache_dir`, else `output_dir/data-cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.data
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.train.output_dir.join("data-cache"))
    }

    /// Reads, checks and resolves (paths relative to the file) a training config.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut config: TrainConfig = toml::from_str(&text).map_err(|e| TrainError::Config {
            file: path.to_path_buf(),
            key: toml_error_key(&e),
            message: e.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_and_validate(path, base)?;
        Ok(config)
    }

    fn resolve_and_validate(&mut self, file: &Path, base: &Path) -> Result<()> {
        let err = |key: &str, message: String| TrainError::Config {
            file: file.to_path_buf(),
            key: key.to_owned(),
            message,
        };
        if self.model.path.is_relative() {
            self.model.path = base.join(&self.model.path);
        }
        if self.train.output_dir.is_relative() {
            self.train.output_dir = base.join(&self.train.output_dir);
        }
        one_of(&self.model.dtype, &["f32", "bf16", "f16"]).map_err(|m| err("model.dtype", m))?;
        one_of(&self.model.quantization, &["none", "nf4"]).map_err(|m| err("model.quantization", m))?;
        one_of(&self.train.device, &["auto", "cuda", "wgpu", "cpu"]).map_err(|m| err("train.device", m))?;
        parse_devices(&self.train.devices).map_err(|m| err("train.devices", m))?;
        if self.train.collective_timeout_s == 0 {
            return Err(err(
                "train.collective_timeout_s",
                "must be at least 1 second".into(),
            ));
        }
        for target in &self.train.report_to {
            one_of(target, &REPORT_TO).map_err(|m| err("train.report_to", m))?;
        }
        if let Some(llava) = &mut self.llava {
            for path in [Some(&mut llava.visual_encoder), llava.projector.as_mut()]
                .into_iter()
                .flatten()
            {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
            one_of(&llava.visual_quantization, &["none", "nf4"])
                .map_err(|m| err("llava.visual_quantization", m))?;
            if llava.projector_depth == 0 {
                return Err(err("llava.projector_depth", "must be at least 1".into()));
            }
            if self.data.pack {
                return Err(err(
                    "data.pack",
                    "LLaVA data is not packed: set `pack = false`".into(),
                ));
            }
        }
        if let Some(eval) = &mut self.eval {
            for image in &mut eval.images {
                if image.is_relative() {
                    *image = base.join(&*image);
                }
            }
            let (images, inputs) = (eval.images.len(), eval.inputs.len());
            if images > 0 && self.llava.is_none() {
                return Err(err(
                    "eval.images",
                    "pictures are for a LLaVA run: add a [llava] section".into(),
                ));
            }
            if images > 1 && images != inputs {
                return Err(err(
                    "eval.images",
                    format!("give one picture for all inputs or one per input ({inputs}), found {images}"),
                ));
            }
        }
        if self.model.quantization == "nf4" && self.lora.is_none() && self.llava.is_none() {
            return Err(err(
                "model.quantization",
                "nf4 (QLoRA) trains a LoRA adapter on a frozen 4-bit base: add a [lora] section".into(),
            ));
        }
        for (section, lora) in [("lora", &self.lora), ("visual_lora", &self.visual_lora)] {
            if let Some(lora) = lora {
                lora.validate(section)
                    .map_err(|(key, message)| err(&key, message))?;
            }
        }
        if self.visual_lora.is_some() && self.llava.is_none() {
            return Err(err(
                "visual_lora",
                "a LoRA on CLIP belongs to a LLaVA run: add a [llava] section".into(),
            ));
        }
        let t = &self.train;
        for (key, value) in [
            ("train.batch_size", t.batch_size),
            ("train.grad_accum", t.grad_accum),
            ("train.log_steps", t.log_steps),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        if t.max_steps.is_none() && t.epochs == 0 {
            return Err(err(
                "train.epochs",
                "must be at least 1 (or set train.max_steps)".into(),
            ));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(err(
                "train.lr",
                format!("must be a positive number, found {}", t.lr),
            ));
        }
        for (k, beta) in t.betas.iter().enumerate() {
            if !(0.0..1.0).contains(beta) {
                return Err(err(
                    "train.betas",
                    format!("beta{} must be in [0, 1), found {beta}", k + 1),
                ));
            }
        }
        if !(t.eps.is_finite() && t.eps > 0.0) {
            return Err(err(
                "train.eps",
                format!("must be a positive number, found {}", t.eps),
            ));
        }
        for (key, value) in [
            ("train.max_grad_norm", t.max_grad_norm),
            ("train.weight_decay", t.weight_decay),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(err(key, format!("must be a number ≥ 0, found {value}")));
            }
        }
        if !(0.0..=1.0).contains(&t.warmup_ratio) {
            return Err(err(
                "train.warmup_ratio",
                format!("must be in [0, 1], found {}", t.warmup_ratio),
            ));
        }
        self.data.validate(base).map_err(|e| match e {
            ft_data::DataError::Config { key, message } => err(&key, message),
            other => TrainError::Data(other),
        })?;
        Ok(())
    }
}

fn one_of(value: &str, allowed: &[&str]) -> std::result::Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!("`{value}` is not one of {}", allowed.join(", ")))
    }
}

/// The dotted key a TOML error points at, read from its message (`unknown field `x``) or span.
fn toml_error_key(e: &toml::de::Error) -> String {
    let message = e.message();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        return rest[..end].to_owned();
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(end) = rest.find('`')
    {
        return rest[..end].to_owned();
    }
    "(config)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        std::fs::write(dir.join("d.jsonl"), "{\"text\": \"hello\"}\n").unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            format!("[model]\npath = \"m\"\n[data]\nfiles = [\"d.jsonl\"]\n{body}"),
        )
        .unwrap();
        path
    }

    #[test]
    fn defaults_follow_xtuner_and_paths_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let c = TrainConfig::from_file(&write(dir.path(), "[lora]\n")).unwrap();
        let lora = c.lora.unwrap();
        assert_eq!((lora.r, lora.alpha, lora.dropout), (64, 16.0, 0.1));
        assert_eq!(lora.target_modules, TargetModules::Keyword("all-linear".into()));
        assert_eq!(c.train.lr, 2e-4);
        assert_eq!(c.train.max_grad_norm, 1.0);
        assert_eq!(c.model.path, dir.path().join("m"));
        assert_eq!(c.data.files[0], dir.path().join("d.jsonl"));
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = TrainConfig::from_file(&write(dir.path(), "[train]\nlearning_rate = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_allowed_values() {
        let dir = tempfile::tempdir().unwrap();
        let err = TrainConfig::from_file(&write(dir.path(), "[train]\ndevice = \"tpu\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.device") && err.contains("cuda"), "{err}");
        let path = write(dir.path(), "");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("path = \"m\"", "path = \"m\"\nquantization = \"nf4\"");
        std::fs::write(&path, text).unwrap();
        let err = TrainConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("[lora]"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_or_not_finite_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        for (body, key) in [
            ("[train]\nbetas = [0.9, 1.0]\n", "train.betas"),
            ("[train]\nbetas = [-0.1, 0.999]\n", "train.betas"),
            ("[train]\neps = 0.0\n", "train.eps"),
            ("[train]\neps = nan\n", "train.eps"),
            ("[train]\nmax_grad_norm = inf\n", "train.max_grad_norm"),
            ("[train]\nmax_grad_norm = -1.0\n", "train.max_grad_norm"),
            ("[train]\nweight_decay = nan\n", "train.weight_decay"),
            ("[train]\nlr = inf\n", "train.lr"),
            ("[lora]\nalpha = nan\n", "lora.alpha"),
            ("[lora]\nalpha = 0.0\n", "lora.alpha"),
            ("[lora]\nr = 0\n", "lora.r"),
            ("[lora]\ndropout = 1.0\n", "lora.dropout"),
        ] {
            let err = TrainConfig::from_file(&write(dir.path(), body))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
    }

    #[test]
    fn eval_inputs_are_optional_and_data_split_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = TrainConfig::from_file(&write(dir.path(), "[eval]\nevery_steps = 5\n")).unwrap();
        assert!(c.eval.as_ref().unwrap().inputs.is_empty());
        assert_eq!(c.cache_dir(), dir.path().join("work_dirs/run/data-cache"));
        let c =
            TrainConfig::from_file(&write(dir.path(), "cache_dir = \"cache\"\neval_split = 0.1\n")).unwrap();
        assert_eq!(c.cache_dir(), dir.path().join("cache"));
        for (body, key) in [
            ("eval_split = 1.5\n", "data.eval_split"),
            ("weights = [1.0, 2.0]\n", "data.weights"),
            ("weights = [-1.0]\n", "data.weights"),
        ] {
            let err = TrainConfig::from_file(&write(dir.path(), body))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
    }

    #[test]
    fn devices_name_one_peer_each_and_bad_lists_are_refused() {
        let list =
            |entries: &[&str]| parse_devices(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        let cuda = list(&["cuda:0,cuda:1", "cuda:3"]).unwrap();
        assert_eq!(
            cuda.iter().map(|p| (p.kind, p.index)).collect::<Vec<_>>(),
            [("cuda", 0), ("cuda", 1), ("cuda", 3)]
        );
        assert_eq!(list(&["cpu:3"]).unwrap().len(), 3);
        assert!(list(&[]).unwrap().is_empty());
        for (bad, says) in [
            (&["cuda:0", "cuda:0"][..], "twice"),
            (&["cuda:0", "cpu:1"][..], "mix"),
            (&["tpu:0"][..], "unknown"),
            (&["cpu:0"][..], "N ≥ 1"),
            (&["cuda:x"][..], "expected"),
        ] {
            let err = list(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        for (body, key) in [
            ("[train]\ndevices = [\"gpu:1\"]\n", "train.devices"),
            (
                "[train]\ncollective_timeout_s = 0\n",
                "train.collective_timeout_s",
            ),
        ] {
            let err = TrainConfig::from_file(&write(dir.path(), body))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
    }
}
