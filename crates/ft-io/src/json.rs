//! JSON side files of a model folder (`config.json`, `tokenizer_config.json`, the shard index…).

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{IoError, Result};

/// Reads a JSON file that must hold an object.
pub fn read_json_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(IoError::at("reading", path))?;
    serde_json::from_str(&text).map_err(|e| IoError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
