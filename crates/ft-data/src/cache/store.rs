//! Reading a token cache: the bin files memory-mapped, checked against the manifest (sizes,
//! SHA-256, index consistency) before anything is trusted.
//!
//! Layout of a cache folder (all little-endian):
//! - `tokens.bin`: `[tokens]` i32 ids (the LLaVA image placeholder is −200),
//! - `labels.bin`: `[tokens]` i32 labels (−100 = not trained),
//! - `index.bin`: `[samples + 1]` u64 offsets into the two above,
//! - `samples.bin`: `[samples, 3]` u32: source file index, line, flags (bit 0: truncated),
//! - `manifest.json`: see [`Manifest`].

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::manifest::{FileHash, Manifest};
use crate::encode::EncodedSample;
use crate::error::{DataError, Result};
use crate::formats::hex;

/// `tokens.bin`.
pub const TOKENS: &str = "tokens.bin";
/// `labels.bin`.
pub const LABELS: &str = "labels.bin";
/// `index.bin`.
pub const INDEX: &str = "index.bin";
/// `samples.bin`.
pub const SAMPLES: &str = "samples.bin";
/// Bytes per `samples.bin` entry.
pub const SAMPLE_ENTRY: usize = 12;

/// Where a cached sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// Index into `[data] files`.
    pub file: u32,
    /// 1-based line the record starts on.
    pub line: u32,
    /// Whether it was cut to `max_length`.
    pub truncated: bool,
}

/// An open, verified token cache.
#[derive(Debug)]
pub struct TokenCache {
    dir: PathBuf,
    manifest: Manifest,
    tokens: Mmap,
    labels: Mmap,
    index: Mmap,
    samples: Mmap,
}

fn map(dir: &Path, name: &str, expected: &FileHash) -> Result<Mmap> {
    let path = dir.join(name);
    let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(&path, e))?.len();
    if len != expected.bytes {
        return Err(DataError::Cache {
            path: dir.to_path_buf(),
            message: format!(
                "{name} has {len} bytes, the manifest says {} (truncated or overwritten)",
                expected.bytes
            ),
        });
    }
    // SAFETY: the cache is written once into a temporary folder and renamed into place; ft never
    // writes to a published cache, and a cache is replaced by renaming a new folder over it.
    unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(&path, e))
}

/// SHA-256 of a file read in 1 MiB blocks (not through the map, so it costs no resident
/// memory).
fn hash_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn u64_at(bytes: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("invariant: 8 bytes"))
}

fn u32_at(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("invariant: 4 bytes"))
}

/// Decodes little-endian i32s.
pub fn read_i32s(bytes: &[u8]) -> impl ExactSizeIterator<Item = i32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().expect("invariant: 4 bytes")))
}

impl TokenCache {
    /// Opens `dir`, checking every bin file's size and SHA-256 against the manifest and the
    /// index's consistency. Any mismatch is an error: a cache is never half-trusted.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let corrupt = |message: String| DataError::Cache {
            path: dir.to_path_buf(),
            message,
        };
        let (n, t) = (manifest.samples, manifest.tokens);
        let expected_sizes = [
            (TOKENS, 4 * t),
            (LABELS, 4 * t),
            (INDEX, 8 * (n + 1)),
            (SAMPLES, SAMPLE_ENTRY as u64 * n),
        ];
        let mut maps = Vec::new();
        for (name, bytes) in expected_sizes {
            let recorded = manifest
                .files
                .get(name)
                .ok_or_else(|| corrupt(format!("the manifest does not list {name}")))?;
            if recorded.bytes != bytes {
                return Err(corrupt(format!(
                    "the manifest gives {name} {} bytes for {n} samples and {t} tokens",
                    recorded.bytes
                )));
            }
            let mapped = map(dir, name, recorded)?;
            if hash_file(&dir.join(name))? != recorded.sha256 {
                return Err(corrupt(format!(
                    "{name} is corrupted (SHA-256 differs from the manifest)"
                )));
            }
            maps.push(mapped);
        }
        let mut maps = maps.into_iter();
        let mut next = || maps.next().expect("invariant: four maps");
        let cache = Self {
            dir: dir.to_path_buf(),
            tokens: next(),
            labels: next(),
            index: next(),
            samples: next(),
            manifest,
        };
        let mut previous = 0;
        for i in 0..=cache.len() {
            let offset = u64_at(&cache.index, i);
            if (i == 0 && offset != 0) || offset < previous || offset > t {
                return Err(corrupt(format!("{INDEX} entry {i} ({offset}) is out of order")));
            }
            previous = offset;
        }
        if previous != t {
            return Err(corrupt(format!("{INDEX} ends at {previous}, expected {t}")));
        }
        Ok(cache)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the cache holds and was built from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.manifest.samples as usize
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token range of sample `i` in `tokens.bin` / `labels.bin`.
    pub fn span(&self, i: usize) -> std::ops::Range<usize> {
        u64_at(&self.index, i) as usize..u64_at(&self.index, i + 1) as usize
    }

    /// Length of sample `i` in tokens.
    pub fn sample_len(&self, i: usize) -> usize {
        self.span(i).len()
    }

    /// `[len]` ids of `range` of the flat token stream.
    pub fn ids(&self, range: std::ops::Range<usize>) -> impl ExactSizeIterator<Item = i32> + '_ {
        read_i32s(&self.tokens[range.start * 4..range.end * 4])
    }

    /// `[len]` labels of `range` of the flat token stream.
    pub fn labels(&self, range: std::ops::Range<usize>) -> impl ExactSizeIterator<Item = i32> + '_ {
        read_i32s(&self.labels[range.start * 4..range.end * 4])
    }

    /// Sample `i`'s ids and labels.
    pub fn sample(&self, i: usize) -> EncodedSample {
        let span = self.span(i);
        EncodedSample {
            input_ids: self.ids(span.clone()).collect(),
            labels: self.labels(span).collect(),
            truncated: self.info(i).truncated,
        }
    }

    /// Where sample `i` came from.
    pub fn info(&self, i: usize) -> SampleInfo {
        let base = i * SAMPLE_ENTRY / 4;
        SampleInfo {
            file: u32_at(&self.samples, base),
            line: u32_at(&self.samples, base + 1),
            truncated: u32_at(&self.samples, base + 2) & 1 != 0,
        }
    }

    /// The source file index of every sample, in order.
    pub fn sample_files(&self) -> Vec<u32> {
        (0..self.len()).map(|i| self.info(i).file).collect()
    }

    /// The path of source file `file`.
    pub fn source_path(&self, file: u32) -> &Path {
        self.manifest
            .sources
            .get(file as usize)
            .map(|s| s.path.as_path())
            .unwrap_or(Path::new("?"))
    }
}
