//! Loading a model and its tokenizer from what a user points at.

use ft_model::KernelBackend;
use std::path::Path;

use anyhow::Context;
use burn::tensor::backend::Backend;
use ft_data::template::{HfTemplate, Template};
use ft_data::tokenizer::{FtTokenizer, SpecialToken, SpecialTokens, TokenizerFamily};
use ft_model::{CausalLm, ModelConfig};

/// A model ready to run, with its tokenizer.
pub struct LoadedModel<B: Backend> {
    /// The network.
    pub model: CausalLm<B>,
    /// Its configuration.
    pub config: ModelConfig,
    /// Its tokenizer.
    pub tokenizer: FtTokenizer,
}

fn log_loaded(path: &Path, config: &ModelConfig, started: std::time::Instant) {
    tracing::info!(
        "loaded {} ({:?}, {} layers, hidden {}) in {:.1}s",
        path.display(),
        config.family,
        config.num_layers,
        config.hidden_size,
        started.elapsed().as_secs_f64()
    );
}

/// Loads a Hugging Face model folder or a GGUF file.
pub fn load_model<B: KernelBackend>(path: &Path, device: &B::Device) -> anyhow::Result<LoadedModel<B>> {
    if is_gguf(path) {
        return load_gguf_model(path, device);
    }
    if !path.is_dir() {
        anyhow::bail!(
            "{}: expected a Hugging Face model folder (config.json, *.safetensors, tokenizer files)",
            path.display()
        );
    }
    let started = std::time::Instant::now();
    let (model, config) =
        ft_model::load_hf::<B>(path, device).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = FtTokenizer::from_dir(path)?;
    log_loaded(path, &config, started);
    Ok(LoadedModel {
        model,
        config,
        tokenizer,
    })
}

fn load_gguf_model<B: KernelBackend>(path: &Path, device: &B::Device) -> anyhow::Result<LoadedModel<B>> {
    let started = std::time::Instant::now();
    let (model, config, source) = ft_model::gguf::load_gguf::<B>(path, device)
        .with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = gguf_tokenizer(source.file(), path)?;
    log_loaded(path, &config, started);
    Ok(LoadedModel {
        model,
        config,
        tokenizer,
    })
}

/// Whether `path` names a GGUF file.
pub fn is_gguf(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The tokenizer of a model folder or a GGUF file (without loading the weights).
pub fn load_tokenizer(path: &Path) -> anyhow::Result<FtTokenizer> {
    if is_gguf(path) {
        let file = ft_gguf::GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
        return gguf_tokenizer(&file, path);
    }
    if path.is_dir() {
        return Ok(FtTokenizer::from_dir(path)?);
    }
    anyhow::bail!(
        "{}: expected a model folder with tokenizer files (config.json, tokenizer.json) or a GGUF file",
        path.display()
    )
}

/// The tokenizer a GGUF file's metadata describes.
fn gguf_tokenizer(file: &ft_gguf::GgufFile, path: &Path) -> anyhow::Result<FtTokenizer> {
    let gguf = file
        .tokenizer()
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    let token = |t: Option<ft_gguf::GgufSpecialToken>| {
        t.map(|t| SpecialToken {
            content: t.content,
            id: t.id,
        })
    };
    let special = SpecialTokens {
        bos: token(gguf.special.bos),
        eos: token(gguf.special.eos),
        pad: token(gguf.special.pad),
        add_bos_token: gguf.special.add_bos_token,
    };
    Ok(FtTokenizer::from_parts(
        gguf.tokenizer,
        special,
        TokenizerFamily::Standard,
        gguf.chat_template,
        path.to_path_buf(),
    ))
}

/// The template to use: the one named, else the model's own chat template.
pub fn choose_template(name: Option<&str>, tokenizer: &FtTokenizer) -> anyhow::Result<Template> {
    let hf = HfTemplate::from_tokenizer(tokenizer);
    match name {
        Some(name) => Ok(Template::resolve(name, hf.as_ref())?),
        None if hf.is_some() => Ok(Template::resolve("hf", hf.as_ref())?),
        None => anyhow::bail!(
            "the model has no chat_template: pass --template (one of: {})",
            ft_data::template::template_names().join(", ")
        ),
    }
}

/// Attaches a PEFT LoRA adapter folder (ours or Hugging Face PEFT's) to a loaded model; returns
/// the chat template recorded with it, if any.
pub fn attach_adapter<B: KernelBackend>(
    loaded: &mut LoadedModel<B>,
    dir: &Path,
) -> anyhow::Result<Option<String>> {
    let adapter =
        ft_lora::peft::Adapter::read(dir).with_context(|| format!("reading adapter {}", dir.display()))?;
    let modules = ft_model::adapters::attach_peft_adapter(&mut loaded.model, &loaded.config, &adapter)
        .with_context(|| format!("adapter {} does not fit the model", dir.display()))?;
    tracing::info!(
        "adapter {}: {} modules, scale {}",
        dir.display(),
        modules.len(),
        adapter.scale()
    );
    let recorded = adapter.config.chat_template.clone();
    Ok(recorded.or_else(|| adapter.ft_meta.and_then(|m| m.chat_template)))
}

/// `--quantization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quantization {
    /// Dense weights.
    None,
    /// NF4 4-bit decoder-block linears (QLoRA), double-quantised absmax.
    Nf4,
}

/// Loads a model, quantising its decoder-block linears to NF4 when asked.
pub fn load_model_quantized<B: KernelBackend>(
    path: &Path,
    device: &B::Device,
    quantization: Quantization,
    double_quant: bool,
) -> anyhow::Result<LoadedModel<B>> {
    if quantization == Quantization::None {
        return load_model(path, device);
    }
    if path.is_dir() {
        let (model, config) = ft_model::load_hf_nf4::<B>(path, device, double_quant)
            .with_context(|| format!("loading {} as NF4", path.display()))?;
        let tokenizer = FtTokenizer::from_dir(path)?;
        return Ok(LoadedModel {
            model,
            config,
            tokenizer,
        });
    }
    let mut loaded = load_model(path, device)?;
    ft_model::quantize::quantize_model(&mut loaded.model, &loaded.config, double_quant)?;
    Ok(loaded)
}

/// The flags that pick a model: folder or GGUF file, adapter, quantisation, template.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model folder (Hugging Face layout) or GGUF file.
    pub model: std::path::PathBuf,
    /// LoRA adapter folder (PEFT layout) to apply.
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    /// Quantise the decoder-block linears to NF4 (QLoRA-style) at load; default: what the
    /// adapter's `ft_adapter.json` records (a QLoRA adapter runs on the NF4 base it was trained
    /// on), else none.
    #[arg(long, value_enum)]
    pub quantization: Option<Quantization>,
    /// With NF4: keep the absmax in f32 instead of double-quantising it (default: as recorded by
    /// the adapter, else double-quantised as in XTuner).
    #[arg(long)]
    pub no_double_quant: bool,
    /// Chat template; default: the adapter's training template, else the model's own (`hf`).
    #[arg(long)]
    pub template: Option<String>,
}

impl ModelArgs {
    /// Loads the model (+ adapter) and resolves the template, warning when the template differs
    /// from the one the adapter was trained with.
    pub fn load<B: KernelBackend>(&self, device: &B::Device) -> anyhow::Result<(LoadedModel<B>, Template)> {
        let recorded = match &self.adapter {
            Some(dir) => ft_lora::peft::FtAdapterMeta::read(dir)
                .with_context(|| format!("reading {}", dir.display()))?,
            None => None,
        };
        let recorded_nf4 = recorded
            .as_ref()
            .is_some_and(|m| m.quantization.as_deref() == Some("nf4"));
        let quantization = self.quantization.unwrap_or(if recorded_nf4 {
            Quantization::Nf4
        } else {
            Quantization::None
        });
        let double_quant =
            !self.no_double_quant && recorded.as_ref().and_then(|m| m.double_quant).unwrap_or(true);
        if quantization == Quantization::Nf4 {
            tracing::info!("NF4 base (double quant: {double_quant})");
        }
        let mut loaded = load_model_quantized::<B>(&self.model, device, quantization, double_quant)?;
        let trained_with = match &self.adapter {
            Some(dir) => attach_adapter(&mut loaded, dir)?,
            None => None,
        };
        if let (Some(asked), Some(trained)) = (&self.template, &trained_with)
            && asked != trained
        {
            tracing::warn!("the adapter was trained with template `{trained}`, but `{asked}` was asked for");
        }
        let name = self.template.clone().or(trained_with);
        let template = choose_template(name.as_deref(), &loaded.tokenizer)?;
        Ok((loaded, template))
    }
}
