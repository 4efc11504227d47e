//! A Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) as GGUF `tokenizer.*` metadata,
//! following llama.cpp's converter:
//!
//! - byte-level BPE → `tokenizer.ggml.model "gpt2"`: tokens, token_type, merges and `pre` (named
//!   from the pre-tokenizer: `gpt-2`, `llama-bpe`, `qwen2` or `smollm`);
//! - BPE with byte fallback (SentencePiece style) → `"llama"`: tokens, scores, token_type (bytes
//!   `<0xNN>` typed 6), merges, `add_space_prefix`.
//!
//! Ids the tokenizer lacks up to `vocab_size` become `[PADn]` typed unused (5). Special ids come
//! from `tokenizer_config.json` tokens looked up among the added tokens, else from `config.json`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{GgufError, Result};
use crate::metadata::MetadataValue;
use crate::tokenizer::{LLAMA3_SPLIT, QWEN2_SPLIT};
use crate::writer::GgufWriter;

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;
/// GGUF value type ids used for arrays.
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_STRING: u32 = 8;

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| GgufError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| GgufError::Export {
            file: path.to_path_buf(),
            what: format!("invalid JSON: {e}"),
        })
}

fn strings(items: Vec<String>) -> MetadataValue {
    MetadataValue::Array(
        TYPE_STRING,
        items.into_iter().map(MetadataValue::String).collect(),
    )
}

/// Adds the `tokenizer.*` keys for the tokenizer in `dir` to `w`, for a model of `vocab_size`
/// ids. Returns `false` (and adds nothing) when `dir` has no `tokenizer.json`.
pub fn export_tokenizer(dir: &Path, vocab_size: usize, w: &mut GgufWriter) -> Result<bool> {
    let path = dir.join("tokenizer.json");
    let Some(json) = read_json(&path)? else {
        return Ok(false);
    };
    let err = |what: String| GgufError::Export {
        file: path.clone(),
        what,
    };
    let model = &json["model"];
    let kind = model["type"].as_str().unwrap_or("?");
    if kind != "BPE" {
        return Err(err(format!(
            "tokenizer model `{kind}` cannot be exported (supported: BPE)"
        )));
    }
    let byte_fallback = model["byte_fallback"].as_bool().unwrap_or(false);
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![NORMAL; vocab_size];
    let mut put = |id: u64, token: &str, ty: i32| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            err(format!(
                "token `{token}` has id {id}, past config.json vocab_size {vocab_size}"
            ))
        })?;
        *slot = Some(token.to_string());
        types[id as usize] = ty;
        Ok(())
    };
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| err("`model.vocab` is missing".into()))?;
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| err(format!("token `{token}` has no integer id")))?;
        let is_byte = byte_fallback && token.len() == 6 && token.starts_with("<0x") && token.ends_with('>');
        put(id, token, if is_byte { BYTE } else { NORMAL })?;
    }
    let added: Vec<(u64, String, bool)> = json["added_tokens"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|t| {
                    let id = t["id"].as_u64()?;
                    let content = t["content"].as_str()?.to_string();
                    Some((id, content, t["special"].as_bool().unwrap_or(false)))
                })
                .collect()
        })
        .unwrap_or_default();
    for (id, content, special) in &added {
        put(*id, content, if *special { CONTROL } else { USER_DEFINED })?;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = UNUSED;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges = merges(&model["merges"]).map_err(err)?;

    w.set(
        "tokenizer.ggml.model",
        MetadataValue::String(if byte_fallback { "llama" } else { "gpt2" }.into()),
    );
    let pre = if byte_fallback {
        "default"
    } else {
        byte_level_pre(&json["pre_tokenizer"]).map_err(err)?
    };
    w.set("tokenizer.ggml.pre", MetadataValue::String(pre.into()));
    if byte_fallback {
        let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let mut scores = vec![0f32; tokens.len()];
        for (rank, m) in merges.iter().enumerate().rev() {
            if let Some(&id) = ids.get(m.replace(' ', "").as_str()) {
                scores[id] = -(rank as f32);
            }
        }
        w.set("tokenizer.ggml.tokens", strings(tokens));
        w.set(
            "tokenizer.ggml.scores",
            MetadataValue::Array(TYPE_F32, scores.into_iter().map(MetadataValue::F32).collect()),
        );
    } else {
        w.set("tokenizer.ggml.tokens", strings(tokens));
    }
    w.set(
        "tokenizer.ggml.token_type",
        MetadataValue::Array(TYPE_I32, types.into_iter().map(MetadataValue::I32).collect()),
    );
    if !merges.is_empty() {
        w.set("tokenizer.ggml.merges", strings(merges));
    }
    if byte_fallback {
        w.set(
            "tokenizer.ggml.add_space_prefix",
            MetadataValue::Bool(prepends_space(&json)),
        );
    }
    special_tokens(dir, &json, &added, vocab_size, w)?;
    Ok(true)
}

/// `model.merges` as `"a b"` strings (the pair form has spaces inside parts respelled `Ġ`).
fn merges(value: &Value) -> std::result::Result<Vec<String>, String> {
    let Some(list) = value.as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) if pair.len() == 2 => {
                let part = |v: &Value| v.as_str().map(|s| s.replace(' ', "\u{120}"));
                match (part(&pair[0]), part(&pair[1])) {
                    (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                    _ => Err(format!("merge {m} is not a pair of strings")),
                }
            }
            other => Err(format!("merge {other} is neither \"a b\" nor [a, b]")),
        })
        .collect()
}

/// llama.cpp's `tokenizer.ggml.pre` name for a byte-level pre-tokenizer.
fn byte_level_pre(pre: &Value) -> std::result::Result<&'static str, String> {
    let ty = |v: &Value| v["type"].as_str().unwrap_or("").to_string();
    let uses_regex = |v: &Value| v["use_regex"].as_bool().unwrap_or(true);
    if ty(pre) == "ByteLevel" && uses_regex(pre) {
        return Ok("gpt-2");
    }
    if let Some([first, second]) = pre["pretokenizers"].as_array().map(Vec::as_slice)
        && ty(second) == "ByteLevel"
    {
        let regex = first["pattern"]["Regex"].as_str().unwrap_or("");
        let digits = (ty(first) == "Digits" && first["individual_digits"].as_bool() == Some(true))
            || (ty(first) == "Split" && regex == r"\p{N}");
        match (uses_regex(second), regex) {
            (false, r) if ty(first) == "Split" && r == QWEN2_SPLIT => return Ok("qwen2"),
            (false, r) if ty(first) == "Split" && r == LLAMA3_SPLIT => return Ok("llama-bpe"),
            (true, _) if digits => return Ok("smollm"),
            _ => {}
        }
    }
    Err(format!(
        "byte-level pre-tokenizer {pre} is not one llama.cpp names here \
         (supported: GPT-2 ByteLevel, Llama 3 split, Qwen2 split, SmolLM digits)"
    ))
}

/// Whether a SentencePiece-style pipeline prepends `▁` (Metaspace or a Prepend normalizer).
fn prepends_space(json: &Value) -> bool {
    let pre = &json["pre_tokenizer"];
    let metaspace =
        |v: &Value| v["type"] == "Metaspace" && v["prepend_scheme"].as_str().is_none_or(|s| s != "never");
    let prepend = |v: &Value| v["type"] == "Prepend";
    let any = |v: &Value, key: &str, f: &dyn Fn(&Value) -> bool| {
        f(v) || v[key].as_array().is_some_and(|list| list.iter().any(f))
    };
    any(pre, "pretokenizers", &metaspace) || any(&json["normalizer"], "normalizers", &prepend)
}

/// bos/eos/unk/pad ids, add_bos/add_eos and the chat template.
fn special_tokens(
    dir: &Path,
    json: &Value,
    added: &[(u64, String, bool)],
    vocab_size: usize,
    w: &mut GgufWriter,
) -> Result<()> {
    let tok_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let config = read_json(&dir.join("config.json"))?.unwrap_or(Value::Null);
    let content = |typ: &str| -> Option<String> {
        match &tok_config[format!("{typ}_token")] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        }
    };
    for (typ, key) in [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("unk", "unknown_token_id"),
        ("pad", "padding_token_id"),
    ] {
        let from_added = content(typ).and_then(|c| added.iter().find(|(_, a, _)| *a == c).map(|a| a.0));
        let id = from_added.or_else(|| config[format!("{typ}_token_id")].as_u64());
        if let Some(id) = id.filter(|&id| (id as usize) < vocab_size) {
            w.set(format!("tokenizer.ggml.{key}"), MetadataValue::U32(id as u32));
        }
    }
    // The post-processor says whether bos/eos are added; tokenizer_config.json overrides it.
    let processors = match &json["post_processor"] {
        Value::Object(p) if p.get("type").and_then(Value::as_str) == Some("Sequence") => p
            .get("processors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    for typ in ["bos", "eos"] {
        let from_template = processors
            .iter()
            .filter(|p| p["type"] == "TemplateProcessing")
            .find_map(|p| {
                let single = p["single"].as_array().filter(|s| s.len() > 1)?;
                let edge = if typ == "bos" {
                    single.first()
                } else {
                    single.last()
                }?;
                let special = edge["SpecialToken"]["id"].as_str()?;
                Some(content(typ).as_deref() == Some(special))
            });
        if let Some(add) = tok_config[format!("add_{typ}_token")].as_bool().or(from_template) {
            w.set(
                format!("tokenizer.ggml.add_{typ}_token"),
                MetadataValue::Bool(add),
            );
        }
    }
    let template = match &tok_config["chat_template"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
    };
    if let Some(template) = template {
        w.set("tokenizer.chat_template", MetadataValue::String(template));
    }
    Ok(())
}
