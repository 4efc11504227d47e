//! `ft convert hf MODEL.gguf OUT`: a GGUF file as a Hugging Face folder — its weights dequantised
//! (and q/k un-permuted) to `--dtype`, `config.json` from the metadata, the tokenizer as
//! `tokenizer.json` + `tokenizer_config.json` (with the chat template), `generation_config.json`.
//! The folder appears only when complete.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ft_cli::backend::{BackendTask, DType, DeviceKind, dispatch};
use ft_cli::model_load::{is_gguf, load_model};
use ft_export::Dtype;
use ft_model::KernelBackend;
use ft_train::model_folder::write_model_folder;

use crate::gguf_side_files::base_files;
use crate::merge_cmd::DtypeArg;

/// Arguments of `ft convert hf`.
#[derive(Args, Clone)]
pub struct HfArgs {
    /// The GGUF file.
    #[arg(value_name = "MODEL.gguf")]
    pub model: PathBuf,
    /// The folder to write.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// dtype of the weights.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Replace OUT if it exists (the old folder is removed only once the new one is complete).
    #[arg(long)]
    pub force: bool,
}

impl BackendTask for HfArgs {
    type Output = ();

    fn run<B: KernelBackend>(self, device: B::Device, _label: &str) -> anyhow::Result<()> {
        let dtype = self.dtype.into();
        convert_to_hf::<B>(&self.model, &self.out, dtype, self.force, &device)?;
        println!(
            "wrote {} ({} weights) from {}",
            self.out.display(),
            format!("{dtype:?}").to_lowercase(),
            self.model.display()
        );
        Ok(())
    }
}

/// Writes the GGUF model `model` as a Hugging Face folder `out` (weights in `dtype`).
pub fn convert_to_hf<B: KernelBackend>(
    model: &Path,
    out: &Path,
    dtype: Dtype,
    force: bool,
    device: &B::Device,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_gguf(model),
        "{}: MODEL must be a GGUF file (a Hugging Face folder is one already)",
        model.display()
    );
    let overwrite = if force {
        ft_io::Overwrite::Replace
    } else {
        ft_io::Overwrite::Refuse
    };
    let staging = ft_io::StagingDir::new(out, overwrite)?;
    let loaded = load_model::<B>(model, device)?;
    let side_files = base_files(model, &loaded.tokenizer)?;
    write_model_folder(&loaded.model, &loaded.config, &side_files, staging.path(), dtype)
        .with_context(|| format!("writing {}", out.display()))?;
    staging.commit()?;
    Ok(())
}

/// Runs `ft convert hf` on the CPU, in f32 (the weights are then cast once to `--dtype`).
pub fn run(args: HfArgs) -> anyhow::Result<()> {
    dispatch(DeviceKind::Cpu, DType::F32, args)
}
