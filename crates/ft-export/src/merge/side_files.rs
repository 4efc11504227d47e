//! Everything of the merged folder besides the weights: `config.json` (dtype updated),
//! `generation_config.json` (template stop tokens added to `eos_token_id`), tokenizer files.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::io_err;
use crate::{Dtype, Result};
use ft_io::dtype::torch_dtype_name;
use ft_io::json::read_json_object;

/// Tokenizer and processor files copied as they are (plus every `*.py` remote-code file).
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
];

/// Writes `<out>/config.json`: the base's with its dtype key (`dtype` or `torch_dtype`, whichever
/// the base used; `torch_dtype` when it had none) set to `dtype`. Keys keep their order.
pub fn write_config(config: &Map<String, Value>, dtype: Option<Dtype>, out: &Path) -> Result<()> {
    let mut config = config.clone();
    if let Some(name) = dtype.and_then(torch_dtype_name) {
        let keys: Vec<&str> = ["dtype", "torch_dtype"]
            .into_iter()
            .filter(|k| config.contains_key(*k))
            .collect();
        let keys = if keys.is_empty() {
            vec!["torch_dtype"]
        } else {
            keys
        };
        for key in keys {
            config.insert(key.to_string(), Value::String(name.to_string()));
        }
    }
    write_json(&out.join("config.json"), &config)
}

/// Writes `<out>/generation_config.json`. With `extra_eos_ids`, `eos_token_id` becomes a list: the
/// base's EOS id(s) (from `generation_config.json`, else `config.json`) followed by the extra ids
/// not already there. Without a base `generation_config.json`, one is created only when there are
/// extra ids. Returns the final `eos_token_id` list when it was changed or created.
pub fn write_generation_config(
    base_dir: &Path,
    config: Option<&Map<String, Value>>,
    extra_eos_ids: &[u32],
    out: &Path,
) -> Result<Option<Vec<u64>>> {
    let path = base_dir.join("generation_config.json");
    let exists = path.exists();
    if extra_eos_ids.is_empty() {
        if exists {
            copy_file(&path, &out.join("generation_config.json"))?;
        }
        return Ok(None);
    }
    let mut generation = if exists {
        read_json_object(&path)?
    } else {
        let mut generation = Map::new();
        for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
            if let Some(v) = config.and_then(|c| c.get(key)).filter(|v| !v.is_null()) {
                generation.insert(key.to_string(), v.clone());
            }
        }
        generation
    };
    let current = generation
        .get("eos_token_id")
        .filter(|v| !v.is_null())
        .or_else(|| config.and_then(|c| c.get("eos_token_id")));
    let mut ids: Vec<u64> = match current {
        Some(Value::Number(n)) => n.as_u64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).collect(),
        _ => Vec::new(),
    };
    for &id in extra_eos_ids {
        if !ids.contains(&u64::from(id)) {
            ids.push(u64::from(id));
        }
    }
    generation.insert("eos_token_id".into(), Value::from(ids.clone()));
    write_json(&out.join("generation_config.json"), &generation)?;
    Ok(Some(ids))
}

/// Copies the tokenizer files and `*.py` remote code of `base_dir` into `out`; returns their names.
pub fn copy_tokenizer_files(base_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = TOKENIZER_FILES
        .iter()
        .filter(|n| base_dir.join(n).is_file())
        .map(|n| n.to_string())
        .collect();
    let entries = std::fs::read_dir(base_dir).map_err(io_err("listing", base_dir))?;
    let mut code = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing", base_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".py") && entry.path().is_file() {
            code.push(name);
        }
    }
    code.sort();
    names.extend(code);
    for name in &names {
        copy_file(&base_dir.join(name), &out.join(name))?;
    }
    Ok(names)
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map_err(io_err("copying", from))?;
    Ok(())
}

fn write_json(path: &Path, value: &Map<String, Value>) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("invariant: JSON map serialises");
    text.push('\n');
    std::fs::write(path, text).map_err(io_err("writing", path))
}
