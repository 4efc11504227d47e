//! `ft data prepare`, `ft data preview` and `ft data gen-assistant`.

use ft_cli::model_load::load_tokenizer;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use std::io::Write;

use ft_data::cache::{CacheStatus, CachedDataset};
use ft_data::dataset::{DatasetStats, length_histogram, prepare, resolve_template};
use ft_data::encode::{IGNORE_INDEX, IMAGE_TOKEN_INDEX};
use ft_data::rows::RowSource;
use ft_data::tokenizer::FtTokenizer;
use owo_colors::{OwoColorize, Stream::Stdout};

use crate::data_cache::open_or_build_with_progress;

/// Arguments of `ft data`.
#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Tokenise the `[data]` files once into a token cache (streamed, on all cores) that
    /// `ft train` and `ft data preview` then memory-map; a valid cache is kept as is.
    Prepare {
        /// The training config (TOML); reads `[model] path`, `[data]` and `[train] output_dir`.
        config: PathBuf,
        /// Cache folder (default: `[data] cache_dir`, else `output_dir/data-cache`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Rebuild even when the cache is valid.
        #[arg(long)]
        force: bool,
    },
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
        /// Encode in memory instead of using (and building) the token cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// A LLaVA walk-through dataset: pictures of a red, green or blue square, circle or
    /// triangle, with captions (`captions.jsonl`, stage 1) and questions (`questions.jsonl`,
    /// stage 2) in the LLaVA format; pictures in `OUT/images`.
    GenShapes {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Number of pictures.
        #[arg(long, default_value_t = 300)]
        count: usize,
        /// Seed of the pictures.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Prefix of the picture files (keep held-out sets apart).
        #[arg(long, default_value = "shape-")]
        prefix: String,
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
        DataCommand::Prepare { config, out, force } => prepare_cache(&config, out, force),
        DataCommand::Preview {
            config,
            limit,
            json,
            no_cache,
        } => {
            if no_cache {
                preview(&config, limit, json)
            } else {
                preview_cached(&config, limit, json)
            }
        }
        DataCommand::GenShapes {
            out,
            count,
            seed,
            prefix,
        } => {
            ft_llava::shapes::write_shapes_dataset(&out, count, seed, &prefix)?;
            eprintln!(
                "wrote {count} pictures, captions.jsonl and questions.jsonl to {}",
                out.display()
            );
            Ok(())
        }
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

fn preview(config_path: &Path, limit: Option<usize>, json: bool) -> anyhow::Result<()> {
    let config = ft_train::config::TrainConfig::from_file(config_path)?;
    let rows = picture_rows(&config);
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
        println!("{}", highlighted(&tokenizer, &e.input_ids, &e.labels, rows)?);
    }
    let histogram = length_histogram(&prepared.samples, data.max_length, 8);
    print_stats(
        &prepared.stats,
        prepared.eval.len(),
        &histogram,
        data.max_length,
        data.pack,
    );
    Ok(())
}

fn prepare_cache(config_path: &Path, out: Option<PathBuf>, force: bool) -> anyhow::Result<()> {
    let config = ft_train::config::TrainConfig::from_file(config_path)?;
    let tokenizer = load_tokenizer(&config.model.path)?;
    let template = resolve_template(&config.data, &tokenizer)?;
    let dir = out.unwrap_or_else(|| config.cache_dir());
    let (cache, status) = open_or_build_with_progress(&dir, &config.data, &tokenizer, &template, force)?;
    let dataset = CachedDataset::new(cache, &config.data);
    let s = &dataset.stats;
    let verb = match status {
        CacheStatus::Hit => "up to date",
        CacheStatus::Built { .. } => "written",
    };
    println!(
        "{}: {verb}: {} samples, {} tokens ({} trained), {} skipped, {} rows, {} held out",
        dir.display(),
        s.samples,
        s.tokens,
        s.supervised_tokens,
        s.skipped_bad,
        s.rows,
        dataset.eval.len()
    );
    Ok(())
}

/// `ft data preview` over the token cache (built first when missing or stale).
fn preview_cached(config_path: &Path, limit: Option<usize>, json: bool) -> anyhow::Result<()> {
    let config = ft_train::config::TrainConfig::from_file(config_path)?;
    let model_path = config.model.path.clone();
    let tokenizer = load_tokenizer(&model_path)?;
    let template = resolve_template(&config.data, &tokenizer)?;
    let (cache, _) =
        open_or_build_with_progress(&config.cache_dir(), &config.data, &tokenizer, &template, false)?;
    if json {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for i in 0..cache.len().min(limit.unwrap_or(usize::MAX)) {
            let sample = cache.sample(i);
            let line = serde_json::json!({"input_ids": sample.input_ids, "labels": sample.labels});
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    let data = &config.data;
    println!(
        "template: {}   tokenizer: {}   max_length: {}   cache: {}   legend: {} {}",
        template.name(),
        model_path.display(),
        data.max_length,
        cache.dir().display(),
        "trained".if_supports_color(Stdout, |t| t.green()),
        "not trained".if_supports_color(Stdout, |t| t.dimmed()),
    );
    for i in 0..cache.len().min(limit.unwrap_or(3)) {
        let e = cache.sample(i);
        let info = cache.info(i);
        println!(
            "\n── sample {i} ({}:{}) · {} tokens · {} trained{}",
            cache.source_path(info.file).display(),
            info.line,
            e.len(),
            e.supervised_tokens(),
            if e.truncated { " · truncated" } else { "" }
        );
        println!(
            "{}",
            highlighted(&tokenizer, &e.input_ids, &e.labels, picture_rows(&config))?
        );
    }
    let histogram = cache.manifest().length_histogram.clone();
    let dataset = CachedDataset::new(cache, data);
    print_stats(
        &dataset.stats,
        dataset.eval.len(),
        &histogram,
        data.max_length,
        data.pack,
    );
    Ok(())
}

/// The sample's text with runs of trained tokens in green and the rest dimmed.
/// The rows a picture takes in a `[llava]` run (its CLIP's patches), for the preview.
fn picture_rows(config: &ft_train::config::TrainConfig) -> Option<usize> {
    let llava = config.llava.as_ref()?;
    ft_llava::ClipVisionConfig::from_dir(&llava.visual_encoder)
        .ok()
        .map(|c| c.patches())
}

/// The sample's text, trained tokens in green, the rest dimmed; a picture's place in cyan (with
/// the rows it takes in a `[llava]` run).
fn highlighted(
    tokenizer: &FtTokenizer,
    ids: &[i32],
    labels: &[i32],
    picture_rows: Option<usize>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut start = 0;
    while start < ids.len() {
        let trained = labels[start] != IGNORE_INDEX;
        let mut end = start;
        while end < ids.len() && (labels[end] != IGNORE_INDEX) == trained && ids[end] != IMAGE_TOKEN_INDEX {
            end += 1;
        }
        if end == start {
            let place = match picture_rows {
                Some(rows) => format!("<image: {rows} rows>"),
                None => "<image>".to_owned(),
            };
            out.push_str(&format!("{}", place.if_supports_color(Stdout, |t| t.cyan())));
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

fn print_stats(
    s: &DatasetStats,
    held_out: usize,
    histogram: &[(usize, usize)],
    max_length: usize,
    packed: bool,
) {
    println!("\n── statistics");
    println!("records            {}", s.records);
    println!("samples kept       {}", s.samples);
    println!("skipped (bad)      {}", s.skipped_bad);
    println!("empty              {}", s.empty);
    println!("dropped (no loss)  {}", s.dropped_unsupervised);
    println!("truncated          {}", s.truncated);
    if s.pictures > 0 {
        println!(
            "with a picture     {} (each <image> becomes the picture's rows)",
            s.pictures
        );
    }
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
    if held_out > 0 {
        println!("held out (eval)    {held_out} samples");
    }
    println!("length histogram (tokens ≤ bound: samples)");
    let peak = histogram.iter().map(|(_, c)| *c).max().unwrap_or(1).max(1);
    for &(bound, count) in histogram {
        let bar = "█".repeat((count * 40).div_ceil(peak));
        println!("  ≤{bound:>7} {count:>7} {bar}");
    }
}
