//! The whole data path for a `[data]` config: read every file, render, encode, drop what has
//! nothing to train on, and (optionally) shuffle and pack, with statistics for `ft data preview`.

use rayon::prelude::*;

use crate::config::DataConfig;
use crate::encode::{EncodedSample, conversation_segments, encode_segments};
use crate::error::{DataError, Result};
use crate::formats::load_file;
use crate::pack::{PackedRow, pack};
use crate::record::Origin;
use crate::split::{SplitKeys, split_samples};
use crate::template::Template;
use crate::tokenizer::FtTokenizer;

/// An encoded sample and where it came from.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Ids and labels.
    pub encoded: EncodedSample,
    /// Source file and line.
    pub origin: Origin,
    /// Image path, for LLaVA samples.
    pub image: Option<String>,
}

/// Counts over a prepared dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetStats {
    /// Records read (after skipping bad ones).
    pub records: usize,
    /// Malformed records skipped (`skip_bad_records`).
    pub skipped_bad: usize,
    /// Records whose conversation was empty (e.g. alpaca `<nooutput>`).
    pub empty: usize,
    /// Samples dropped because no token was supervised (e.g. a prompt longer than `max_length`).
    pub dropped_unsupervised: usize,
    /// Samples cut to `max_length`.
    pub truncated: usize,
    /// Samples kept.
    pub samples: usize,
    /// Tokens in kept samples.
    pub tokens: usize,
    /// Supervised tokens in kept samples.
    pub supervised_tokens: usize,
    /// Rows after packing (= samples when packing is off).
    pub rows: usize,
    /// Kept samples that hold a picture (LLaVA data).
    #[serde(default)]
    pub pictures: usize,
}

/// A dataset ready for batching.
#[derive(Debug, Clone)]
pub struct PreparedDataset {
    /// Kept samples in dataset order.
    pub samples: Vec<Sample>,
    /// Training rows: packed (shuffled first if asked), or one per sample; held-out samples
    /// excluded and `weights` applied.
    pub rows: Vec<PackedRow>,
    /// Indices (into `samples`) of the held-out samples (`eval_split`).
    pub eval: Vec<usize>,
    /// Indices (into `samples`) of the training samples, in row order when not packed (one row
    /// per entry).
    pub train: Vec<usize>,
    /// Statistics.
    pub stats: DatasetStats,
    /// Warnings about skipped records, each naming file and line.
    pub warnings: Vec<String>,
}

/// Resolves the template a config asks for, defaulting to the model's own (`hf`).
pub fn resolve_template(config: &DataConfig, tokenizer: &FtTokenizer) -> Result<Template> {
    let hf = crate::template::HfTemplate::from_tokenizer(tokenizer);
    match config.template.as_deref() {
        Some(name) => Template::resolve(name, hf.as_ref()),
        None if hf.is_some() => Template::resolve("hf", hf.as_ref()),
        None => Err(DataError::Config {
            key: "data.template".into(),
            message: format!(
                "the model has no chat_template; set a template, one of: {}",
                crate::template::template_names().join(", ")
            ),
        }),
    }
}

/// Reads, renders and encodes every file of `config`; packs when `config.pack`.
pub fn prepare(config: &DataConfig, tokenizer: &FtTokenizer, template: &Template) -> Result<PreparedDataset> {
    let format = config.format()?;
    let mut stats = DatasetStats::default();
    let mut samples = Vec::new();
    let mut warnings = Vec::new();
    let mut sample_files: Vec<u32> = Vec::new();
    for (file_index, file) in config.files.iter().enumerate() {
        let loaded = load_file(file, format, config.skip_bad_records)?;
        stats.skipped_bad += loaded.skipped.len();
        warnings.extend(loaded.skipped.iter().map(|e| format!("skipped: {e}")));
        stats.empty += loaded.empty;
        stats.records += loaded.records.len() + loaded.empty;
        // Encoding is independent per record: spread it over the cores, keeping file order.
        let encoded: Vec<EncodedSample> = loaded
            .records
            .par_iter()
            .map(|record| {
                let segments =
                    conversation_segments(&record.conversation, template, config.system.as_deref())
                        .map_err(|e| with_origin(e, &record.origin))?;
                encode_segments(&segments, tokenizer, config.max_length)
            })
            .collect::<Result<_>>()?;
        for (record, encoded) in loaded.records.into_iter().zip(encoded) {
            if encoded.supervised_tokens() == 0 {
                stats.dropped_unsupervised += 1;
                continue;
            }
            stats.truncated += usize::from(encoded.truncated);
            stats.tokens += encoded.len();
            stats.supervised_tokens += encoded.supervised_tokens();
            stats.pictures += usize::from(encoded.input_ids.contains(&crate::encode::IMAGE_TOKEN_INDEX));
            sample_files.push(file_index as u32);
            samples.push(Sample {
                encoded,
                origin: record.origin,
                image: record.conversation.image,
            });
        }
    }
    stats.samples = samples.len();
    if samples.is_empty() {
        let files: Vec<String> = config.files.iter().map(|f| f.display().to_string()).collect();
        return Err(DataError::EmptyDataset(format!(
            "{} ({} records, {} dropped with no supervised token, {} empty)",
            files.join(", "),
            stats.records,
            stats.dropped_unsupervised,
            stats.empty
        )));
    }
    let split = split_samples(&sample_files, config.files.len(), &SplitKeys::of(config));
    let rows = if config.pack {
        let ordered: Vec<EncodedSample> = split
            .train
            .iter()
            .map(|&i| samples[i as usize].encoded.clone())
            .collect();
        pack(&ordered, config.max_length)
    } else {
        split
            .train
            .iter()
            .map(|&i| PackedRow::single(&samples[i as usize].encoded))
            .collect()
    };
    stats.rows = rows.len();
    Ok(PreparedDataset {
        samples,
        rows,
        eval: split.eval.into_iter().map(|i| i as usize).collect(),
        train: split.train.iter().map(|&i| i as usize).collect(),
        stats,
        warnings,
    })
}

fn with_origin(e: DataError, origin: &Origin) -> DataError {
    DataError::Record {
        path: origin.file.clone(),
        line: origin.line,
        message: e.to_string(),
    }
}

/// A histogram of sample lengths: `buckets` equal-width bins over `[0, max_length]`, as
/// `(upper_bound, count)`.
pub fn length_histogram(samples: &[Sample], max_length: usize, buckets: usize) -> Vec<(usize, usize)> {
    let mut histogram = LengthHistogram::new(max_length, buckets);
    for s in samples {
        histogram.add(s.encoded.len());
    }
    histogram.bins()
}

/// Sample lengths counted in equal-width bins over `[0, max_length]`, one sample at a time.
#[derive(Debug, Clone)]
pub struct LengthHistogram {
    max_length: usize,
    width: usize,
    counts: Vec<usize>,
}

impl LengthHistogram {
    /// An empty histogram of `buckets` bins.
    pub fn new(max_length: usize, buckets: usize) -> Self {
        let buckets = buckets.max(1);
        Self {
            max_length,
            width: max_length.div_ceil(buckets).max(1),
            counts: vec![0; buckets],
        }
    }

    /// Counts one sample of `len` tokens.
    pub fn add(&mut self, len: usize) {
        let b = (len.saturating_sub(1) / self.width).min(self.counts.len() - 1);
        self.counts[b] += 1;
    }

    /// `(upper_bound, count)` per bin.
    pub fn bins(&self) -> Vec<(usize, usize)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (((i + 1) * self.width).min(self.max_length), c))
            .collect()
    }
}
