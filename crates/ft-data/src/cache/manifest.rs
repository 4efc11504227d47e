//! `manifest.json`: what a token cache was built from (tokenizer, template, `[data]` keys,
//! source files) and what it holds (bin file sizes and hashes, counts, length histogram).
//! Written last, so a cache without one is incomplete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::DataConfig;
use crate::dataset::DatasetStats;
use crate::error::{DataError, Result};
use crate::formats::{hex, sha256_file};
use crate::template::Template;
use crate::tokenizer::FtTokenizer;

/// Bumped whenever the layout of the bin files or the encoding changes.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";

/// Size and SHA-256 of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    /// Bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// A dataset file the cache was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path as configured (resolved).
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Modification time (ns since the epoch), to skip re-hashing unchanged files.
    pub mtime_ns: Option<u64>,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Format read (detected or configured); `None` for a file without records.
    pub format: Option<String>,
}

/// The template a cache was rendered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateId {
    /// Template name.
    pub name: String,
    /// SHA-256 of its full definition.
    pub sha256: String,
}

/// Everything recorded about a cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `ft-data` version of the writer.
    pub writer: String,
    /// SHA-256 of the serialised tokenizer and its special-token facts.
    pub tokenizer_sha256: String,
    /// The template.
    pub template: TemplateId,
    /// Every `[data]` key as configured.
    pub data: DataConfig,
    /// The source files, in `[data] files` order.
    pub sources: Vec<SourceFile>,
    /// Samples stored.
    pub samples: u64,
    /// Tokens stored.
    pub tokens: u64,
    /// Counts (records, skipped, dropped, ...); `rows` depends on packing and is left 0.
    pub stats: DatasetStats,
    /// Sample lengths: 8 equal bins over `[0, max_length]`, as `(upper_bound, count)`.
    pub length_histogram: Vec<(usize, usize)>,
    /// Size and SHA-256 of every bin file.
    pub files: BTreeMap<String, FileHash>,
    /// Skipped records, by file and line (at most [`MAX_WARNINGS`]).
    pub warnings: Vec<String>,
    /// Skipped records not listed in `warnings`.
    pub warnings_omitted: usize,
}

/// Skipped-record messages kept in the manifest.
pub const MAX_WARNINGS: usize = 1000;

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| DataError::Cache {
            path: dir.to_path_buf(),
            message: format!("{MANIFEST} is unreadable ({e})"),
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(DataError::Cache {
                path: dir.to_path_buf(),
                message: format!(
                    "written in format version {}, this ft reads {FORMAT_VERSION}",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    /// Why this cache does not match `config` rendered with `template` and tokenized with
    /// `tokenizer` (`None`: it matches). Source files whose size and mtime are unchanged are
    /// trusted; others are re-hashed.
    pub fn staleness(
        &self,
        config: &DataConfig,
        tokenizer_sha256: &str,
        template: &TemplateId,
    ) -> Result<Option<String>> {
        if self.tokenizer_sha256 != tokenizer_sha256 {
            return Ok(Some("the tokenizer changed".into()));
        }
        if &self.template != template {
            return Ok(Some(if self.template.name != template.name {
                format!(
                    "the template changed (`{}` → `{}`)",
                    self.template.name, template.name
                )
            } else {
                format!("the template `{}` changed", template.name)
            }));
        }
        if let Some(reason) = key_change(&self.data, config) {
            return Ok(Some(reason));
        }
        for (source, path) in self.sources.iter().zip(&config.files) {
            let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
            if meta.len() != source.bytes {
                return Ok(Some(format!(
                    "source file {} changed ({} → {} bytes)",
                    path.display(),
                    source.bytes,
                    meta.len()
                )));
            }
            if mtime_ns(&meta) != source.mtime_ns && sha256_file(path)?.sha256 != source.sha256 {
                return Ok(Some(format!(
                    "source file {} changed (content hash differs)",
                    path.display()
                )));
            }
        }
        Ok(None)
    }
}

/// Whether two file lists name the same files in the same order. The same config reached by
/// another path (`ft data prepare /abs/run.toml`, then `ft train run.toml` from its folder)
/// names its files differently; what counts is the file each one resolves to.
fn same_files(old: &[std::path::PathBuf], new: &[std::path::PathBuf]) -> bool {
    let same = |a: &std::path::PathBuf, b: &std::path::PathBuf| {
        a == b
            || matches!(
                (std::fs::canonicalize(a), std::fs::canonicalize(b)),
                (Ok(a), Ok(b)) if a == b
            )
    };
    old.len() == new.len() && old.iter().zip(new).all(|(a, b)| same(a, b))
}

/// The first `[data]` key that changes the cache's contents, described for the user. Keys that
/// only choose and order samples (`pack`, `shuffle_before_pack`, `seed`, `weights`,
/// `eval_split`, `cache_dir`) are applied when reading and need no rebuild.
fn key_change(old: &DataConfig, new: &DataConfig) -> Option<String> {
    let changed = |key: &str, a: String, b: String| Some(format!("`data.{key}` changed ({a} → {b})"));
    if !same_files(&old.files, &new.files) {
        return changed("files", format!("{:?}", old.files), format!("{:?}", new.files));
    }
    if old.format != new.format {
        return changed("format", format!("{:?}", old.format), format!("{:?}", new.format));
    }
    if old.template != new.template {
        return changed(
            "template",
            format!("{:?}", old.template),
            format!("{:?}", new.template),
        );
    }
    if old.system != new.system {
        return changed("system", format!("{:?}", old.system), format!("{:?}", new.system));
    }
    if old.max_length != new.max_length {
        return changed(
            "max_length",
            old.max_length.to_string(),
            new.max_length.to_string(),
        );
    }
    if old.skip_bad_records != new.skip_bad_records {
        return changed(
            "skip_bad_records",
            old.skip_bad_records.to_string(),
            new.skip_bad_records.to_string(),
        );
    }
    None
}

/// A file's modification time in ns since the epoch, when the platform has one.
pub fn mtime_ns(meta: &std::fs::Metadata) -> Option<u64> {
    let t = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(t.as_nanos()).ok()
}

/// SHA-256 of everything about a tokenizer that changes ids: its serialised pipeline and its
/// special-token facts (not where it was loaded from).
pub fn tokenizer_sha256(tokenizer: &FtTokenizer) -> Result<String> {
    let json = tokenizer
        .inner()
        .to_string(false)
        .map_err(|e| DataError::Tokenizer {
            path: tokenizer.source().to_path_buf(),
            message: format!("cannot serialise the tokenizer to hash it: {e}"),
        })?;
    let mut h = Sha256::new();
    h.update(json.as_bytes());
    h.update(
        format!(
            "{:?}|{:?}|{:?}|{:?}|{}",
            tokenizer.special(),
            tokenizer.family(),
            tokenizer.unk(),
            tokenizer.eos_ids(),
            tokenizer.add_eos_token()
        )
        .as_bytes(),
    );
    Ok(hex(&h.finalize()))
}

/// A template's name and the SHA-256 of its full definition.
pub fn template_id(template: &Template) -> TemplateId {
    TemplateId {
        name: template.name().to_owned(),
        sha256: hex(&Sha256::digest(format!("{template:?}").as_bytes())),
    }
}
