//! The `[data]` section of the training TOML.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::formats::DatasetFormat;

/// `[data]`: which files, how to read, render, cut and pack them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset files (JSON array or JSON Lines, optionally `.gz` / `.zst` compressed), relative
    /// to the config file.
    pub files: Vec<PathBuf>,
    /// Mixing weight of each file (same length as `files`): per epoch, a file contributes
    /// `weight × its samples`, whole copies for the integer part and a seeded subset for the
    /// fraction. Absent: every file once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Fraction of samples held out (seeded, deterministic) for the eval loss; 0 = none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eval_split: f64,
    /// Where the token cache lives (relative to the config). Absent: `output_dir/data-cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// `conversation`, `alpaca`, `openai`, `llava` or `text`; detected from the first record
    /// when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// Template name (`ft templates`), `hf`, or a path to a `.toml` template. Absent: `hf` when
    /// the model has a `chat_template`.
    #[serde(default)]
    pub template: Option<String>,
    /// System text for samples whose first turn has none.
    #[serde(default)]
    pub system: Option<String>,
    /// Samples are cut to this many tokens (head kept); packed rows have this length.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Pack samples into rows of `max_length`.
    #[serde(default = "default_true")]
    pub pack: bool,
    /// Shuffle samples (seeded) before packing.
    #[serde(default = "default_true")]
    pub shuffle_before_pack: bool,
    /// Seed for shuffling.
    #[serde(default)]
    pub seed: u64,
    /// Skip malformed records (counted and reported) instead of stopping.
    #[serde(default)]
    pub skip_bad_records: bool,
    /// Folder the records' `image` paths are relative to (LLaVA data), relative to the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_folder: Option<PathBuf>,
}

fn default_max_length() -> usize {
    2048
}
fn default_true() -> bool {
    true
}
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl DataConfig {
    /// A config for `files` with every other key at its default.
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self {
            files,
            weights: None,
            eval_split: 0.0,
            cache_dir: None,
            format: None,
            template: None,
            system: None,
            max_length: default_max_length(),
            pack: true,
            shuffle_before_pack: true,
            seed: 0,
            skip_bad_records: false,
            image_folder: None,
        }
    }

    /// Checks values and resolves relative file paths against `base_dir`.
    pub fn validate(&mut self, base_dir: &Path) -> Result<()> {
        if self.files.is_empty() {
            return Err(DataError::Config {
                key: "data.files".into(),
                message: "list at least one dataset file".into(),
            });
        }
        if self.max_length < 2 {
            return Err(DataError::Config {
                key: "data.max_length".into(),
                message: format!("must be at least 2, found {}", self.max_length),
            });
        }
        self.format()?;
        if let Some(weights) = &self.weights {
            if weights.len() != self.files.len() {
                return Err(DataError::Config {
                    key: "data.weights".into(),
                    message: format!(
                        "has {} values for {} files; give one weight per file",
                        weights.len(),
                        self.files.len()
                    ),
                });
            }
            if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
                return Err(DataError::Config {
                    key: "data.weights".into(),
                    message: format!("weights must be finite and ≥ 0, found {w}"),
                });
            }
            if weights.iter().all(|w| *w == 0.0) {
                return Err(DataError::Config {
                    key: "data.weights".into(),
                    message: "at least one weight must be positive".into(),
                });
            }
        }
        if !(0.0..1.0).contains(&self.eval_split) {
            return Err(DataError::Config {
                key: "data.eval_split".into(),
                message: format!("must be in [0, 1), found {}", self.eval_split),
            });
        }
        if let Some(dir) = &mut self.cache_dir
            && dir.is_relative()
        {
            *dir = base_dir.join(&*dir);
        }
        if let Some(dir) = &mut self.image_folder {
            if dir.is_relative() {
                *dir = base_dir.join(&*dir);
            }
            if !dir.is_dir() {
                return Err(DataError::Config {
                    key: "data.image_folder".into(),
                    message: format!("{} is not a folder", dir.display()),
                });
            }
        }
        for file in &mut self.files {
            if file.is_relative() {
                *file = base_dir.join(&*file);
            }
            if !file.exists() {
                return Err(DataError::Config {
                    key: "data.files".into(),
                    message: format!("{} does not exist", file.display()),
                });
            }
        }
        Ok(())
    }

    /// The parsed `format`, if given.
    pub fn format(&self) -> Result<Option<DatasetFormat>> {
        self.format.as_deref().map(DatasetFormat::parse).transpose()
    }
}
