//! Dataset formats (XTuner standard, alpaca, OpenAI messages, LLaVA, raw text) mapped into
//! [`Conversation`]s, detected from the first record's keys unless named.

mod map;
mod reader;
mod stream;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use reader::{RawRecords, read_records};
pub(crate) use stream::hex;
pub use stream::{RawItem, SourceDigest, sha256_file, stream_records};

use crate::error::{DataError, Result};
use crate::record::{Origin, Record};

/// The dataset formats `ft` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// XTuner standard: `{"conversation": [{"system", "input", "output"}, ...]}`.
    Conversation,
    /// `{"instruction", "input", "output"}`.
    Alpaca,
    /// `{"messages": [{"role", "content", "loss"?}]}`.
    Openai,
    /// `{"image"?, "conversations": [{"from", "value"}]}`.
    Llava,
    /// `{"text": ...}`: incremental pretraining, loss on every token.
    Text,
}

impl DatasetFormat {
    /// All formats, for error messages.
    pub const ALL: [DatasetFormat; 5] = [
        DatasetFormat::Conversation,
        DatasetFormat::Alpaca,
        DatasetFormat::Openai,
        DatasetFormat::Llava,
        DatasetFormat::Text,
    ];

    /// The lowercase name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::Conversation => "conversation",
            DatasetFormat::Alpaca => "alpaca",
            DatasetFormat::Openai => "openai",
            DatasetFormat::Llava => "llava",
            DatasetFormat::Text => "text",
        }
    }

    /// Parses a config value; the error lists the known formats.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| DataError::Config {
                key: "data.format".into(),
                message: format!("unknown format `{name}`; expected one of {}", known_formats()),
            })
    }

    /// Detects the format from a record's keys.
    pub fn detect(record: &Value) -> Option<Self> {
        let obj = record.as_object()?;
        [
            ("conversation", DatasetFormat::Conversation),
            ("messages", DatasetFormat::Openai),
            ("conversations", DatasetFormat::Llava),
            ("instruction", DatasetFormat::Alpaca),
            ("text", DatasetFormat::Text),
        ]
        .into_iter()
        .find(|(key, _)| obj.contains_key(*key))
        .map(|(_, f)| f)
    }
}

fn known_formats() -> String {
    DatasetFormat::ALL.map(|f| f.name()).join(", ")
}

/// The records of one file, plus what was skipped or dropped on the way.
#[derive(Debug, Default)]
pub struct FileRecords {
    /// Mapped records, in file order.
    pub records: Vec<Record>,
    /// Bad records skipped (only with `skip_bad_records`).
    pub skipped: Vec<DataError>,
    /// Records that mapped to an empty conversation (e.g. alpaca `<nooutput>`).
    pub empty: usize,
    /// The format used.
    pub format: Option<DatasetFormat>,
}

/// Reads and maps one dataset file. `format = None` detects it from the first record.
pub fn load_file(path: &Path, format: Option<DatasetFormat>, skip_bad_records: bool) -> Result<FileRecords> {
    let raw = read_records(path, skip_bad_records)?;
    let mut out = FileRecords {
        skipped: raw.skipped,
        ..Default::default()
    };
    let Some((first, _)) = raw.records.first() else {
        return Ok(out);
    };
    let format = resolve_format(path, format, first)?;
    out.format = Some(format);
    for (value, line) in raw.records {
        match map_value(path, line, format, &value) {
            Ok(Some(record)) => out.records.push(record),
            Ok(None) => out.empty += 1,
            Err(err) if skip_bad_records => out.skipped.push(err),
            Err(err) => return Err(err),
        }
    }
    Ok(out)
}

/// The format of a file whose first record is `first`: `format` when given, else detected.
pub fn resolve_format(path: &Path, format: Option<DatasetFormat>, first: &Value) -> Result<DatasetFormat> {
    match format {
        Some(f) => Ok(f),
        None => DatasetFormat::detect(first).ok_or_else(|| DataError::UnknownFormat {
            path: path.to_path_buf(),
            keys: first
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default(),
            known: known_formats(),
        }),
    }
}

/// Maps one JSON record of `path` (starting on `line`): `None` for an empty conversation
/// (e.g. alpaca `<nooutput>`), an error naming file and line for a bad record.
pub fn map_value(path: &Path, line: usize, format: DatasetFormat, value: &Value) -> Result<Option<Record>> {
    match map::map_record(format, value) {
        Ok(conversation) if conversation.conversation.is_empty() => Ok(None),
        Ok(conversation) => {
            if format != DatasetFormat::Llava && map::mentions_image(&conversation) {
                return Err(DataError::UnexpectedImage {
                    path: path.to_path_buf(),
                    line,
                });
            }
            Ok(Some(Record {
                conversation,
                origin: Origin {
                    file: path.to_path_buf(),
                    line,
                },
            }))
        }
        Err(message) => Err(DataError::Record {
            path: path.to_path_buf(),
            line,
            message: format!("{} record: {message}", format.name()),
        }),
    }
}
