//! The token cache: a dataset tokenised once into flat little-endian files that are
//! memory-mapped for training, so memory stays flat whatever the corpus size and later runs
//! skip tokenisation.
//!
//! [`build_cache`] streams the `[data]` files (constant memory, all cores); [`TokenCache::open`]
//! maps and verifies a cache; [`open_or_build`] reuses a valid cache and rebuilds a missing,
//! corrupted or stale one, saying why; [`CachedDataset`] applies `eval_split`, `weights`,
//! shuffling and packing by index ([`CachedRows`]).
//!
//! ```no_run
//! # fn main() -> ft_data::Result<()> {
//! use ft_data::cache::{CachedDataset, open_or_build};
//! use ft_data::config::DataConfig;
//! use ft_data::dataset::resolve_template;
//! use ft_data::rows::RowSource;
//! use ft_data::tokenizer::FtTokenizer;
//!
//! let tokenizer = FtTokenizer::from_dir("model")?;
//! let mut config = DataConfig::new(vec!["corpus.jsonl".into()]);
//! config.format = Some("text".into());
//! config.template = Some("default".into());
//! let template = resolve_template(&config, &tokenizer)?;
//! let (cache, _status) = open_or_build("cache".as_ref(), &config, &tokenizer, &template, false, &mut |_| {})?;
//! let data = CachedDataset::new(cache, &config);
//! let first_row = data.rows.row(0);
//! # let _ = first_row; Ok(()) }
//! ```

mod build;
mod manifest;
mod rows;
mod store;

use std::path::Path;
use std::sync::Arc;

pub use build::{BuildProgress, CHUNK_BYTES, CHUNK_RECORDS, build_cache};
pub use manifest::{
    FORMAT_VERSION, FileHash, MANIFEST, Manifest, SourceFile, TemplateId, template_id, tokenizer_sha256,
};
pub use rows::CachedRows;
pub use store::{INDEX, LABELS, SAMPLES, SampleInfo, TOKENS, TokenCache, read_i32s};

use crate::config::DataConfig;
use crate::dataset::DatasetStats;
use crate::error::{DataError, Result};
use crate::rows::RowSource;
use crate::split::{SplitKeys, split_samples};
use crate::template::Template;
use crate::tokenizer::FtTokenizer;

/// Whether [`open_or_build`] reused the cache or (re)built it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// A valid cache matched the config, tokenizer and template.
    Hit,
    /// The cache was built; `reason` says why (missing, corrupted, or what changed).
    Built {
        /// Why it was (re)built.
        reason: String,
    },
}

/// Why the cache at `dir` cannot be used for `config` (`None`: it can), with the opened cache
/// when it is valid.
pub fn check_cache(
    dir: &Path,
    config: &DataConfig,
    tokenizer: &FtTokenizer,
    template: &Template,
) -> Result<std::result::Result<TokenCache, String>> {
    if !dir.join(MANIFEST).is_file() {
        return Ok(Err(format!("no token cache in {} yet", dir.display())));
    }
    let cache = match TokenCache::open(dir) {
        Ok(cache) => cache,
        Err(e @ (DataError::Cache { .. } | DataError::Io { .. })) => return Ok(Err(e.to_string())),
        Err(e) => return Err(e),
    };
    let stale = cache
        .manifest()
        .staleness(config, &tokenizer_sha256(tokenizer)?, &template_id(template))?;
    Ok(match stale {
        Some(reason) => Err(reason),
        None => Ok(cache),
    })
}

/// Opens the cache at `dir` if it is valid for `config`, `tokenizer` and `template`, else
/// builds it (always when `force`), reporting build progress.
pub fn open_or_build(
    dir: &Path,
    config: &DataConfig,
    tokenizer: &FtTokenizer,
    template: &Template,
    force: bool,
    progress: &mut dyn FnMut(&BuildProgress),
) -> Result<(Arc<TokenCache>, CacheStatus)> {
    let reason = if force {
        "rebuild asked for".to_owned()
    } else {
        match check_cache(dir, config, tokenizer, template)? {
            Ok(cache) => return Ok((Arc::new(cache), CacheStatus::Hit)),
            Err(reason) => reason,
        }
    };
    build_cache(dir, config, tokenizer, template, progress)?;
    let cache = TokenCache::open(dir)?;
    Ok((Arc::new(cache), CacheStatus::Built { reason }))
}

/// A cache with the config's sample choice applied: training rows (weights, shuffle, packing)
/// and the held-out rows (one per sample), both by index.
#[derive(Debug, Clone)]
pub struct CachedDataset {
    /// The cache.
    pub cache: Arc<TokenCache>,
    /// Training rows.
    pub rows: CachedRows,
    /// Held-out samples (`eval_split`), one row each.
    pub eval: CachedRows,
    /// Counts, with `rows` filled in.
    pub stats: DatasetStats,
}

impl CachedDataset {
    /// Splits and orders the cache's samples as `config` says.
    pub fn new(cache: Arc<TokenCache>, config: &DataConfig) -> Self {
        let split = split_samples(&cache.sample_files(), config.files.len(), &SplitKeys::of(config));
        let rows = CachedRows::new(cache.clone(), split.train, config.max_length, config.pack);
        let eval = CachedRows::new(cache.clone(), split.eval, config.max_length, false);
        let mut stats = cache.manifest().stats.clone();
        stats.rows = rows.len();
        Self {
            cache,
            rows,
            eval,
            stats,
        }
    }
}
