//! `ft data preview` and `ft data gen-assistant`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Subcommand};
use ft_data::dataset::{PreparedDataset, length_histogram, prepare, resolve_template};
use ft_data::encode::{IGNORE_INDEX, IMAGE_TOKEN_INDEX};
use ft_data::tokenizer::FtTokenizer;
use owo_colors::{OwoColorize, Stream::Stdout};

/// Arguments of `ft data`.
#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Show exactly what will be trained on: rendered samples with the trained tokens
    /// highlighted, token counts and dataset statistics.
    Preview {
        /// The training config (TOML); reads `[model] path` and `[data]`.
        config: PathBuf,
        /// Samples to show (default 3; with --json, all).
        #[arg(long)]
        limit: Option<usize>,
        /// Print one JSON object per encoded sample (`input_ids`, `labels`), dataset order, no packing.
        #[arg(long)]
        json: bool,
    },
    /// Write a self-cognition dataset ("who are you?" answered as NAME's assistant).
    GenAssistant {
        /// Whose assistant the model becomes.
        #[arg(long)]
        name: String,
        /// Output JSONL file (OpenAI `messages` format).
        #[arg(long)]
        out: PathBuf,
        /// Number of samples.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Seed for choosing question wordings.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Runs `ft data ...`.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Preview { config, limit, json } => preview(&config, limit, json),
        DataCommand::GenAssistant {
            name,
            out,
            count,
            seed,
        } => {
            ft_data::assistant::write_assistant_dataset(&name, count, seed, &out)?;
            eprintln!("wrote {count} samples to {}", out.display());
            Ok(())
        }
    }
}

/// Loads the tokenizer of a model folder.
pub fn load_tokenizer(model_path: &Path) -> anyhow::Result<FtTokenizer> {
    if model_path.is_dir() {
        return Ok(FtTokenizer::from_dir(model_path)?);
    }
    bail!(
        "{}: expected a model folder with tokenizer files (config.json, tokenizer.json)",
        model_path.display()
    )
}

fn preview(config_path: &Path, limit: Option<usize>, json: bool) -> anyhow::Result<()> {
    let config = ft_train::config::TrainConfig::from_file(config_path)?;
    let (model_path, mut data) = (config.model.path, config.data);
    let tokenizer = load_tokenizer(&model_path)?;
    let template = resolve_template(&data, &tokenizer)?;
    if json {
        data.pack = false;
    }
    let prepared = prepare(&data, &tokenizer, &template)?;
    for warning in &prepared.warnings {
        tracing::warn!("{warning}");
    }
    if json {
        for sample in prepared.samples.iter().take(limit.unwrap_or(usize::MAX)) {
            let line =
                serde_json::json!({"input_ids": sample.encoded.input_ids, "labels": sample.encoded.labels});
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "template: {}   tokenizer: {}   max_length: {}   legend: {} {}",
        template.name(),
        model_path.display(),
        data.max_length,
        "trained".if_supports_color(Stdout, |t| t.green()),
        "not trained".if_supports_color(Stdout, |t| t.dimmed()),
    );
    for (i, sample) in prepared.samples.iter().take(limit.unwrap_or(3)).enumerate() {
        let e = &sample.encoded;
        println!(
            "\n── sample {i} ({}:{}) · {} tokens · {} trained{}",
            sample.origin.file.display(),
            sample.origin.line,
            e.len(),
            e.supervised_tokens(),
            if e.truncated { " · truncated" } else { "" }
        );
        println!("{}", highlighted(&tokenizer, &e.input_ids, &e.labels)?);
    }
    print_stats(&prepared, data.max_length, data.pack);
    Ok(())
}

/// The sample's text with runs of trained tokens in green and the rest dimmed.
fn highlighted(tokenizer: &FtTokenizer, ids: &[i32], labels: &[i32]) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut start = 0;
    while start < ids.len() {
        let trained = labels[start] != IGNORE_INDEX;
        let mut end = start;
        while end < ids.len() && (labels[end] != IGNORE_INDEX) == trained && ids[end] != IMAGE_TOKEN_INDEX {
            end += 1;
        }
        if end == start {
            out.push_str(&format!("{}", "<image>".if_supports_color(Stdout, |t| t.cyan())));
            start += 1;
            continue;
        }
        let run: Vec<u32> = ids[start..end].iter().map(|&i| i as u32).collect();
        let text = tokenizer.decode(&run, false)?;
        if trained {
            out.push_str(&format!("{}", text.if_supports_color(Stdout, |t| t.green())));
        } else {
            out.push_str(&format!("{}", text.if_supports_color(Stdout, |t| t.dimmed())));
        }
        start = end;
    }
    Ok(out)
}

fn print_stats(prepared: &PreparedDataset, max_length: usize, packed: bool) {
    let s = &prepared.stats;
    println!("\n── statistics");
    println!("records            {}", s.records);
    println!("samples kept       {}", s.samples);
    println!("skipped (bad)      {}", s.skipped_bad);
    println!("empty              {}", s.empty);
    println!("dropped (no loss)  {}", s.dropped_unsupervised);
    println!("truncated          {}", s.truncated);
    println!("tokens             {}", s.tokens);
    println!(
        "trained tokens     {} ({:.1}%)",
        s.supervised_tokens,
        100.0 * s.supervised_tokens as f64 / s.tokens.max(1) as f64
    );
    if packed {
        println!("packed rows        {} of {max_length} tokens", s.rows);
    } else {
        println!("rows (no packing)  {}", s.rows);
    }
    println!("length histogram (tokens ≤ bound: samples)");
    let histogram = length_histogram(&prepared.samples, max_length, 8);
    let peak = histogram.iter().map(|(_, c)| *c).max().unwrap_or(1).max(1);
    for (bound, count) in histogram {
        let bar = "█".repeat((count * 40).div_ceil(peak));
        println!("  ≤{bound:>7} {count:>7} {bar}");
    }
}
