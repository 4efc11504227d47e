//! The token cache as the commands use it: reuse a valid one, (re)build a missing or stale one
//! with a progress bar (MB/s and samples/s), and say which it was.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ft_data::cache::{BuildProgress, CacheStatus, TokenCache, open_or_build};
use ft_data::config::DataConfig;
use ft_data::template::Template;
use ft_data::tokenizer::FtTokenizer;
use indicatif::{ProgressBar, ProgressStyle};

/// Opens the cache at `dir`, building it first when it is missing, stale or `force`.
pub fn open_or_build_with_progress(
    dir: &Path,
    data: &DataConfig,
    tokenizer: &FtTokenizer,
    template: &Template,
    force: bool,
) -> anyhow::Result<(Arc<TokenCache>, CacheStatus)> {
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let mut on_progress = |p: &BuildProgress| {
        let bar = bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(p.bytes_total);
            bar.set_style(
                ProgressStyle::with_template(
                    "tokenising {bar:30} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .expect("invariant: valid template"),
            );
            bar
        });
        bar.set_position(p.bytes_done);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "file {}/{} · {} samples · {:.0} samples/s",
            p.file + 1,
            p.files,
            p.samples,
            p.samples as f64 / secs
        ));
    };
    let result = open_or_build(dir, data, tokenizer, template, force, &mut on_progress);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (cache, status) = result?;
    match &status {
        CacheStatus::Hit => tracing::info!("token cache {} is up to date", dir.display()),
        CacheStatus::Built { reason } => {
            let bytes: u64 = cache.manifest().sources.iter().map(|s| s.bytes).sum();
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                "built the token cache {} ({reason}): {} samples, {} tokens from {:.1} MB in {secs:.1} s ({:.1} MB/s)",
                dir.display(),
                cache.len(),
                cache.manifest().tokens,
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / secs.max(1e-9)
            );
        }
    }
    let manifest = cache.manifest();
    for w in &manifest.warnings {
        tracing::warn!("{w}");
    }
    if manifest.warnings_omitted > 0 {
        tracing::warn!("… and {} more skipped records", manifest.warnings_omitted);
    }
    Ok((cache, status))
}
