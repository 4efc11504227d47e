//! Building a token cache in constant memory: each file is streamed in chunks of at most
//! [`CHUNK_RECORDS`] records or [`CHUNK_BYTES`] bytes; a chunk is parsed and encoded on all
//! cores (rayon), then written in order. Everything goes into a temporary sibling folder that
//! is fsynced and renamed over the target, the manifest written last.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::manifest::{
    FORMAT_VERSION, FileHash, MANIFEST, MAX_WARNINGS, Manifest, SourceFile, mtime_ns, template_id,
    tokenizer_sha256,
};
use super::store::{INDEX, LABELS, SAMPLES, TOKENS};
use crate::config::DataConfig;
use crate::dataset::{DatasetStats, LengthHistogram};
use crate::encode::{EncodedSample, conversation_segments, encode_segments};
use crate::error::{DataError, Result};
use crate::formats::{DatasetFormat, RawItem, hex, map_value, resolve_format, stream_records};
use crate::template::Template;
use crate::tokenizer::FtTokenizer;

/// Records encoded together.
pub const CHUNK_RECORDS: usize = 8192;
/// Raw bytes read before a chunk is encoded, whatever its record count.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// Where a build is, for progress displays.
#[derive(Debug, Clone, Default)]
pub struct BuildProgress {
    /// Index of the file being read.
    pub file: usize,
    /// Number of files.
    pub files: usize,
    /// Raw (possibly compressed) bytes read over all files.
    pub bytes_done: u64,
    /// Raw bytes of all files.
    pub bytes_total: u64,
    /// Records read.
    pub records: u64,
    /// Samples written.
    pub samples: u64,
}

/// A bin file being written, hashed as it goes.
struct BinWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl BinWriter {
    fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| DataError::io(&self.path, e))
    }

    fn write_i32s(&mut self, values: &[i32]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.write(&bytes)
    }

    /// Flushes and fsyncs; returns size and hash.
    fn finish(self) -> Result<FileHash> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| DataError::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&path, e))?;
        Ok(FileHash {
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

/// What one record became.
enum Outcome {
    /// Bad JSON, already counted.
    Skipped,
    /// An empty conversation.
    Empty,
    /// A record that does not fit its format.
    Bad(DataError),
    /// Encoded.
    Sample(EncodedSample),
}

struct Builder<'a> {
    config: &'a DataConfig,
    tokenizer: &'a FtTokenizer,
    template: &'a Template,
    tokens: BinWriter,
    labels: BinWriter,
    index: BinWriter,
    samples: BinWriter,
    offset: u64,
    stats: DatasetStats,
    histogram: LengthHistogram,
    warnings: Vec<String>,
    warnings_omitted: usize,
    // The file being read.
    file_index: u32,
    path: PathBuf,
    format: Option<DatasetFormat>,
    chunk: Vec<(RawItem, usize)>,
    chunk_bytes: u64,
    last_read: u64,
    // Progress.
    progress: BuildProgress,
    bytes_before: u64,
}

impl Builder<'_> {
    fn warn(&mut self, e: &DataError) {
        self.stats.skipped_bad += 1;
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(format!("skipped: {e}"));
        } else {
            self.warnings_omitted += 1;
        }
    }

    fn push(&mut self, item: RawItem, line: usize, read: u64) -> Result<()> {
        self.chunk_bytes += match &item {
            RawItem::Line(bytes) => bytes.len() as u64,
            RawItem::Value(_) => read.saturating_sub(self.last_read),
        };
        self.last_read = read;
        self.chunk.push((item, line));
        if self.chunk.len() >= CHUNK_RECORDS || self.chunk_bytes >= CHUNK_BYTES {
            self.flush()?;
            self.progress.bytes_done = self.bytes_before + read;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let chunk = std::mem::take(&mut self.chunk);
        self.chunk_bytes = 0;
        let path = self.path.clone();
        let parsed: Vec<(usize, std::result::Result<Value, DataError>)> = chunk
            .into_par_iter()
            .map(|(item, line)| {
                let value = match item {
                    RawItem::Value(v) => Ok(v),
                    RawItem::Line(bytes) => {
                        serde_json::from_slice::<Value>(bytes.trim_ascii()).map_err(|e| DataError::Json {
                            path: path.clone(),
                            line,
                            message: e.to_string(),
                        })
                    }
                };
                (line, value)
            })
            .collect();
        let mut values = Vec::with_capacity(parsed.len());
        for (line, value) in parsed {
            match value {
                Ok(v) => {
                    if self.format.is_none() {
                        self.format = Some(resolve_format(&path, self.config.format()?, &v)?);
                    }
                    values.push((line, Some(v)));
                }
                Err(e) if self.config.skip_bad_records => {
                    self.warn(&e);
                    values.push((line, None));
                }
                Err(e) => return Err(e),
            }
        }
        let Some(format) = self.format else {
            return Ok(());
        };
        let (config, tokenizer, template) = (self.config, self.tokenizer, self.template);
        let outcomes: Vec<(usize, Outcome)> = values
            .into_par_iter()
            .map(|(line, value)| {
                let Some(value) = value else {
                    return Ok((line, Outcome::Skipped));
                };
                let record = match map_value(&path, line, format, &value) {
                    Ok(Some(record)) => record,
                    Ok(None) => return Ok((line, Outcome::Empty)),
                    Err(e) => return Ok((line, Outcome::Bad(e))),
                };
                let segments =
                    conversation_segments(&record.conversation, template, config.system.as_deref()).map_err(
                        |e| DataError::Record {
                            path: path.clone(),
                            line,
                            message: e.to_string(),
                        },
                    )?;
                let encoded = encode_segments(&segments, tokenizer, config.max_length)?;
                Ok((line, Outcome::Sample(encoded)))
            })
            .collect::<Result<_>>()?;
        for (line, outcome) in outcomes {
            match outcome {
                Outcome::Skipped => {}
                Outcome::Empty => {
                    self.stats.records += 1;
                    self.stats.empty += 1;
                }
                Outcome::Bad(e) if self.config.skip_bad_records => self.warn(&e),
                Outcome::Bad(e) => return Err(e),
                Outcome::Sample(encoded) => {
                    self.stats.records += 1;
                    self.progress.records += 1;
                    self.write_sample(&encoded, line)?;
                }
            }
        }
        Ok(())
    }

    fn write_sample(&mut self, encoded: &EncodedSample, line: usize) -> Result<()> {
        let supervised = encoded.supervised_tokens();
        if supervised == 0 {
            self.stats.dropped_unsupervised += 1;
            return Ok(());
        }
        self.stats.samples += 1;
        self.stats.truncated += usize::from(encoded.truncated);
        self.stats.tokens += encoded.len();
        self.stats.supervised_tokens += supervised;
        self.stats.pictures += usize::from(encoded.input_ids.contains(&crate::encode::IMAGE_TOKEN_INDEX));
        self.histogram.add(encoded.len());
        self.tokens.write_i32s(&encoded.input_ids)?;
        self.labels.write_i32s(&encoded.labels)?;
        self.offset += encoded.len() as u64;
        self.index.write(&self.offset.to_le_bytes())?;
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        let mut entry = [0u8; 12];
        entry[..4].copy_from_slice(&self.file_index.to_le_bytes());
        entry[4..8].copy_from_slice(&line.to_le_bytes());
        entry[8..].copy_from_slice(&u32::from(encoded.truncated).to_le_bytes());
        self.samples.write(&entry)?;
        self.progress.samples += 1;
        Ok(())
    }
}

/// A sibling of `dir` named `.NAME.{what}-{pid}`.
fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

/// Tokenises every file of `config` into a token cache at `dir` (replacing what is there),
/// reporting progress after every chunk. Returns the manifest written.
pub fn build_cache(
    dir: &Path,
    config: &DataConfig,
    tokenizer: &FtTokenizer,
    template: &Template,
    progress: &mut dyn FnMut(&BuildProgress),
) -> Result<Manifest> {
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let result = write_into(&tmp, config, tokenizer, template, progress).and_then(|m| {
        publish(&tmp, dir)?;
        Ok(m)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_into(
    tmp: &Path,
    config: &DataConfig,
    tokenizer: &FtTokenizer,
    template: &Template,
    progress: &mut dyn FnMut(&BuildProgress),
) -> Result<Manifest> {
    let mut sizes = Vec::with_capacity(config.files.len());
    for file in &config.files {
        sizes.push(std::fs::metadata(file).map_err(|e| DataError::io(file, e))?.len());
    }
    let mut b = Builder {
        config,
        tokenizer,
        template,
        tokens: BinWriter::create(tmp.join(TOKENS))?,
        labels: BinWriter::create(tmp.join(LABELS))?,
        index: BinWriter::create(tmp.join(INDEX))?,
        samples: BinWriter::create(tmp.join(SAMPLES))?,
        offset: 0,
        stats: DatasetStats::default(),
        histogram: LengthHistogram::new(config.max_length, 8),
        warnings: Vec::new(),
        warnings_omitted: 0,
        file_index: 0,
        path: PathBuf::new(),
        format: None,
        chunk: Vec::new(),
        chunk_bytes: 0,
        last_read: 0,
        progress: BuildProgress {
            files: config.files.len(),
            bytes_total: sizes.iter().sum(),
            ..BuildProgress::default()
        },
        bytes_before: 0,
    };
    b.index.write(&0u64.to_le_bytes())?;
    let mut sources = Vec::with_capacity(config.files.len());
    for (i, path) in config.files.iter().enumerate() {
        let mtime = std::fs::metadata(path).ok().and_then(|m| mtime_ns(&m));
        b.file_index = i as u32;
        b.path = path.clone();
        b.format = None;
        b.last_read = 0;
        b.progress.file = i;
        let digest = stream_records(path, |item, line, read| {
            let before = b.progress.samples;
            b.push(item, line, read)?;
            if b.progress.samples != before {
                progress(&b.progress);
            }
            Ok(())
        })?;
        b.flush()?;
        b.bytes_before += digest.size;
        b.progress.bytes_done = b.bytes_before;
        progress(&b.progress);
        sources.push(SourceFile {
            path: path.clone(),
            bytes: digest.size,
            mtime_ns: mtime,
            sha256: digest.sha256,
            format: b.format.map(|f| f.name().to_owned()),
        });
    }
    if b.stats.samples == 0 {
        let files: Vec<String> = config.files.iter().map(|f| f.display().to_string()).collect();
        return Err(DataError::EmptyDataset(format!(
            "{} ({} records, {} dropped with no supervised token, {} empty)",
            files.join(", "),
            b.stats.records,
            b.stats.dropped_unsupervised,
            b.stats.empty
        )));
    }
    let mut files = BTreeMap::new();
    files.insert(TOKENS.to_owned(), b.tokens.finish()?);
    files.insert(LABELS.to_owned(), b.labels.finish()?);
    files.insert(INDEX.to_owned(), b.index.finish()?);
    files.insert(SAMPLES.to_owned(), b.samples.finish()?);
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        writer: format!("ft-data {}", env!("CARGO_PKG_VERSION")),
        tokenizer_sha256: tokenizer_sha256(tokenizer)?,
        template: template_id(template),
        data: config.clone(),
        sources,
        samples: b.stats.samples as u64,
        tokens: b.stats.tokens as u64,
        length_histogram: b.histogram.bins(),
        stats: b.stats,
        files,
        warnings: b.warnings,
        warnings_omitted: b.warnings_omitted,
    };
    let path = tmp.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).expect("invariant: the manifest serialises");
    let mut file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
    file.write_all(&text)
        .and_then(|_| file.sync_all())
        .map_err(|e| DataError::io(&path, e))?;
    Ok(manifest)
}

/// Renames `tmp` over `dir` (the old cache, if any, moved aside first and then deleted), and
/// fsyncs the parent folder.
fn publish(tmp: &Path, dir: &Path) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    if dir.exists() {
        let old = sibling(dir, "old");
        std::fs::rename(dir, &old).map_err(|e| DataError::io(dir, e))?;
        std::fs::rename(tmp, dir).map_err(|e| DataError::io(dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
    } else {
        std::fs::rename(tmp, dir).map_err(|e| DataError::io(dir, e))?;
    }
    if let Ok(f) = File::open(parent) {
        let _ = f.sync_all();
    }
    Ok(())
}
