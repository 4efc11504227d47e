//! Loading a model and its tokenizer from what a user points at.

use std::path::Path;

use anyhow::Context;
use burn::tensor::backend::Backend;
use ft_data::template::{HfTemplate, Template};
use ft_data::tokenizer::FtTokenizer;
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

/// Loads a Hugging Face model folder.
pub fn load_model<B: Backend>(path: &Path, device: &B::Device) -> anyhow::Result<LoadedModel<B>> {
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
    tracing::info!(
        "loaded {} ({:?}, {} layers, hidden {}) in {:.1}s",
        path.display(),
        config.family,
        config.num_layers,
        config.hidden_size,
        started.elapsed().as_secs_f64()
    );
    Ok(LoadedModel {
        model,
        config,
        tokenizer,
    })
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
