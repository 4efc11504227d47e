//! `ft merge BASE [ADAPTER] OUT`: fold a LoRA adapter into its base model (or only re-shard /
//! re-type the base), writing a Hugging Face folder with safetensors shards.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use ft_data::template::{HfTemplate, Template};
use ft_export::merge::{BaseQuantization, MergeOptions, merge};
use ft_export::{Dtype, Overwrite, parse_size};
use ft_lora::peft::FtAdapterMeta;

/// Arguments of `ft merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The base model: a Hugging Face folder (safetensors weights) or a GGUF file (dequantised
    /// to --dtype, f32 by default).
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The PEFT LoRA adapter folder, then OUT; or only OUT, to re-shard / re-type the base.
    #[arg(value_name = "ADAPTER")]
    pub adapter_or_out: PathBuf,
    /// The output folder (when an ADAPTER is given).
    #[arg(value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Output dtype of the weights (default: the base's).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Largest shard, e.g. 2GB, 500MB, 5GiB.
    #[arg(long, default_value = "2GB")]
    pub max_shard_size: String,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Chat template whose stop tokens join generation_config.json's eos_token_id
    /// (default: the one recorded in the adapter's ft_adapter.json).
    #[arg(long)]
    pub template: Option<String>,
    /// Whether the adapter was trained on an NF4 (QLoRA) base (default: as ft_adapter.json records).
    #[arg(long, value_enum, default_value_t = BaseQuantArg::Auto)]
    pub base_quantization: BaseQuantArg,
    /// Print the peak resident memory (VmHWM) at the end.
    #[arg(long)]
    pub report_memory: bool,
    /// ADAPTER is a LLaVA folder (XTuner's layout) and this its CLIP: write one Hugging Face
    /// `LlavaForConditionalGeneration` folder.
    #[arg(long)]
    pub visual_encoder: Option<PathBuf>,
    /// With --visual-encoder: the CLIP hidden state the projector takes.
    #[arg(long, default_value_t = -2, allow_hyphen_values = true)]
    pub visual_select_layer: i64,
}

/// `--dtype` values.
#[derive(Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    Bf16,
    F16,
    F32,
}

impl From<DtypeArg> for Dtype {
    fn from(arg: DtypeArg) -> Self {
        match arg {
            DtypeArg::Bf16 => Dtype::BF16,
            DtypeArg::F16 => Dtype::F16,
            DtypeArg::F32 => Dtype::F32,
        }
    }
}

/// `--base-quantization` values.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BaseQuantArg {
    /// As the adapter's ft_adapter.json records (dense when it says nothing).
    Auto,
    /// Plain LoRA on the base as it is.
    Dense,
    /// QLoRA: NF4 base without double quantisation.
    Nf4,
    /// QLoRA: NF4 base with double-quantised absmax (XTuner's default).
    Nf4DoubleQuant,
}

/// Runs `ft merge`.
pub fn run(args: MergeArgs) -> anyhow::Result<()> {
    let (adapter, out) = match &args.out {
        Some(out) => (Some(args.adapter_or_out.as_path()), out.as_path()),
        None => (None, args.adapter_or_out.as_path()),
    };
    // A GGUF base is first dequantised into a Hugging Face folder beside OUT (f32; the merge
    // casts to --dtype once), removed when the merge ends.
    let converted = match ft_cli::model_load::is_gguf(&args.base) {
        true => Some(gguf_as_folder(&args.base, out)?),
        false => None,
    };
    let base = match &converted {
        Some(dir) => dir.path().join("base"),
        None => args.base.clone(),
    };
    let base = base.as_path();
    let max_shard_bytes = parse_size(&args.max_shard_size).context("--max-shard-size")?;
    let adapter_meta_dir = match (&args.visual_encoder, adapter) {
        (Some(_), Some(llava)) => Some(llava.join("llm_adapter")).filter(|d| d.is_dir()),
        (_, adapter) => adapter.map(Path::to_path_buf),
    };
    let template = match &args.template {
        Some(name) => Some(name.clone()),
        None => match &adapter_meta_dir {
            Some(dir) => FtAdapterMeta::read(dir)
                .with_context(|| format!("reading {}/ft_adapter.json", dir.display()))?
                .and_then(|m| m.chat_template),
            None => None,
        },
    };
    let extra_eos_ids = match &template {
        Some(name) => template_stop_ids(base, name)?,
        None => Vec::new(),
    };
    let options = MergeOptions {
        dtype: args.dtype.map(Dtype::from),
        max_shard_bytes,
        overwrite: if args.force {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        },
        base_quantization: match args.base_quantization {
            BaseQuantArg::Auto => BaseQuantization::FromAdapter,
            BaseQuantArg::Dense => BaseQuantization::Dense,
            BaseQuantArg::Nf4 => BaseQuantization::Nf4 { double_quant: false },
            BaseQuantArg::Nf4DoubleQuant => BaseQuantization::Nf4 { double_quant: true },
        },
        extra_eos_ids,
    };
    if let Some(clip) = &args.visual_encoder {
        let llava = adapter.context("--visual-encoder: give BASE LLAVA_DIR OUT")?;
        let summary =
            ft_export::merge::merge_llava(base, llava, clip, out, args.visual_select_layer, &options)
                .with_context(|| {
                    format!("exporting the LLaVA {} over {}", llava.display(), base.display())
                })?;
        println!(
            "LLaVA {} + {} + {}: {} tensors merged, <image> = token {}; wrote {} ({:.1} MB)",
            base.display(),
            llava.display(),
            clip.display(),
            summary.merged_tensors.len(),
            summary.image_token_id,
            summary.export.out_dir.display(),
            summary.export.total_size as f64 / 1e6,
        );
        return Ok(());
    }
    let what = match adapter {
        Some(a) => format!("merging {} into {}", a.display(), base.display()),
        None => format!("re-sharding {}", base.display()),
    };
    let summary = merge(base, adapter, out, &options).with_context(|| what.clone())?;

    let dtype = summary
        .output_dtype
        .map_or("as the base".to_string(), |d| d.as_str().to_string());
    println!(
        "{what}: {} modules merged{}; wrote {} ({} weight file{}, {:.1} MB, {dtype})",
        summary.merged_modules.len(),
        match summary.nf4_base {
            Some(true) => " (NF4 base, double quant)",
            Some(false) => " (NF4 base)",
            None => "",
        },
        summary.export.out_dir.display(),
        summary.export.shard_files.len(),
        if summary.export.shard_files.len() == 1 {
            ""
        } else {
            "s"
        },
        summary.export.total_size as f64 / 1e6,
    );
    if let Some(ids) = &summary.eos_token_ids {
        println!("generation_config.json eos_token_id: {ids:?}");
    }
    if args.report_memory {
        match peak_rss_kib() {
            Some(kib) => println!("peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
            None => println!("peak RSS: unavailable (no /proc/self/status)"),
        }
    }
    Ok(())
}

/// The GGUF file `gguf` as a Hugging Face folder `base/` inside a temporary folder next to `out`.
fn gguf_as_folder(gguf: &Path, out: &Path) -> anyhow::Result<tempfile::TempDir> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(".ft-merge-base-")
        .tempdir_in(parent)
        .with_context(|| format!("a temporary folder in {}", parent.display()))?;
    tracing::info!("dequantising {} for the merge", gguf.display());
    crate::convert_hf::convert_to_hf::<burn_flex::Flex>(
        gguf,
        &dir.path().join("base"),
        Dtype::F32,
        false,
        &Default::default(),
    )?;
    Ok(dir)
}

/// The token ids of `template`'s stop words in the base's tokenizer (each must be one token).
fn template_stop_ids(base: &Path, name: &str) -> anyhow::Result<Vec<u32>> {
    let tokenizer = ft_cli::model_load::load_tokenizer(base).with_context(|| {
        format!(
            "loading the tokenizer of {} to find the stop tokens of template `{name}`",
            base.display()
        )
    })?;
    let hf = HfTemplate::from_tokenizer(&tokenizer);
    let template = Template::resolve(name, hf.as_ref()).with_context(|| format!("template `{name}`"))?;
    let mut ids = Vec::new();
    for word in template.stop_words() {
        match tokenizer.token_to_id(&word) {
            Some(id) => ids.push(id),
            None => tracing::warn!(
                "stop word {word:?} of template `{name}` is not a single token of this tokenizer; \
                 it is not added to eos_token_id"
            ),
        }
    }
    Ok(ids)
}

/// Peak resident set size in KiB (`VmHWM` of /proc/self/status), where the OS reports it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
