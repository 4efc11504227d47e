//! `ft convert <format> ...`: export a model to another format. `ft convert gguf MODEL OUT.gguf`
//! writes a merged Hugging Face Llama-family folder as a GGUF v3 file for llama.cpp-based tools;
//! `ft convert hf MODEL.gguf OUT` goes the other way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use ft_gguf::{HfTensors, OutType, SUPPORTED_ARCHITECTURES, export_gguf};
use ft_model::weights::{SafetensorsSource, TensorSource};

/// Arguments of `ft convert`.
#[derive(Args)]
pub struct ConvertArgs {
    #[command(subcommand)]
    pub format: ConvertFormat,
}

/// The target formats.
#[derive(Subcommand)]
pub enum ConvertFormat {
    /// A Hugging Face model folder (e.g. the output of `ft merge`) → one GGUF v3 file.
    Gguf(GgufArgs),
    /// A GGUF file → a Hugging Face folder (weights dequantised, config, tokenizer, chat
    /// template, generation config) that transformers loads.
    Hf(crate::convert_hf::HfArgs),
}

/// Arguments of `ft convert gguf`.
#[derive(Args)]
pub struct GgufArgs {
    /// The model folder: config.json, safetensors (single or sharded; f32/bf16/f16) and,
    /// for a usable file, tokenizer.json + tokenizer_config.json.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// The GGUF file to write.
    #[arg(value_name = "OUT.gguf")]
    pub out: PathBuf,
    /// Storage type of the 2-D weights (norms and biases stay f32; q8_0 keeps rows that are not
    /// a multiple of 32 in f16, as llama.cpp does).
    #[arg(long = "type", value_enum, default_value_t = TypeArg::F16)]
    pub out_type: TypeArg,
    /// Replace OUT.gguf if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `--type` values.
#[derive(Clone, Copy, ValueEnum)]
pub enum TypeArg {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
}

/// A safetensors folder seen as [`HfTensors`].
struct Safetensors(SafetensorsSource);

impl HfTensors for Safetensors {
    fn names(&self) -> Vec<String> {
        self.0.names()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.shape(name)
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, String> {
        self.0.read(name).map(|t| t.data).map_err(|e| e.to_string())
    }
}

/// Runs `ft convert`.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    match args.format {
        ConvertFormat::Gguf(args) => run_gguf(&args),
        ConvertFormat::Hf(args) => crate::convert_hf::run(args),
    }
}

fn run_gguf(args: &GgufArgs) -> anyhow::Result<()> {
    let model = args.model.as_path();
    let config = model.join("config.json");
    if !config.is_file() {
        let supported: Vec<&str> = SUPPORTED_ARCHITECTURES.iter().map(|(hf, _)| *hf).collect();
        bail!(
            "{} not found: MODEL must be a Hugging Face model folder ({})",
            config.display(),
            supported.join(", ")
        );
    }
    ft_gguf::check_output(&args.out, args.force)?;
    let source = SafetensorsSource::open_dir(model)
        .with_context(|| format!("reading the weights of {}", model.display()))?;
    let out_type = match args.out_type {
        TypeArg::F32 => OutType::F32,
        TypeArg::F16 => OutType::F16,
        TypeArg::Q8_0 => OutType::Q8_0,
    };
    let summary = export_gguf(model, &Safetensors(source), &args.out, out_type, args.force)?;
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    for t in &summary.tensors {
        *per_type.entry(t.ggml_type.to_string()).or_default() += 1;
    }
    let types: Vec<String> = per_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "wrote {} ({}, {} from {}): {} tensors ({}), {}",
        args.out.display(),
        human_size(&args.out),
        summary.arch,
        summary.hf_architecture,
        summary.tensors.len(),
        types.join(", "),
        if summary.has_tokenizer {
            "with tokenizer"
        } else {
            "no tokenizer"
        }
    );
    if !summary.has_tokenizer {
        eprintln!(
            "warning: {} has no tokenizer.json, so the GGUF has no tokenizer metadata; \
             llama.cpp needs one to run the model",
            model.display()
        );
    }
    Ok(())
}

fn human_size(path: &Path) -> String {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64;
    if bytes >= 1e9 {
        format!("{:.2} GB", bytes / 1e9)
    } else if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else {
        format!("{:.1} KB", bytes / 1e3)
    }
}
