//! The JSON files around a tokenizer, and the special tokens transformers resolves from them.
//!
//! Order for each of bos/eos/pad/unk: `tokenizer_config.json` (a string, `{"content": ...}`, or an
//! explicit `null` that means "no such token"), then `special_tokens_map.json`, then the SentencePiece
//! trainer spec (for a `tokenizer.model` folder), then the `<name>_token_id` of `generation_config.json`
//! and `config.json` (an int or a list; the first id names the token).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::sentencepiece::{AddedTokenSpec, SentencePieceSpecials};
use crate::error::{DataError, Result};

/// The optional JSON files of a model folder that say something about its tokenizer.
#[derive(Debug, Clone, Default)]
pub struct TokenizerFiles {
    /// `tokenizer_config.json`.
    pub tokenizer_config: Option<Value>,
    /// `special_tokens_map.json`.
    pub special_tokens_map: Option<Value>,
    /// `generation_config.json`.
    pub generation_config: Option<Value>,
    /// `config.json`.
    pub model_config: Option<Value>,
    /// `chat_template.jinja`, if the folder has one.
    pub chat_template_file: Option<String>,
}

/// What a special-token key resolves to before it is looked up in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A token string.
    Content(String),
    /// Only an id (from `generation_config.json` / `config.json`).
    Id(u32),
}

impl TokenizerFiles {
    /// Reads whichever of the files exist; a file that exists but is not valid JSON is an error naming it.
    pub fn read(dir: &Path) -> Result<Self> {
        let jinja = dir.join("chat_template.jinja");
        let chat_template_file = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).map_err(|e| DataError::io(&jinja, e))?)
        } else {
            None
        };
        Ok(Self {
            tokenizer_config: read_json_if_exists(&dir.join("tokenizer_config.json"))?,
            special_tokens_map: read_json_if_exists(&dir.join("special_tokens_map.json"))?,
            generation_config: read_json_if_exists(&dir.join("generation_config.json"))?,
            model_config: read_json_if_exists(&dir.join("config.json"))?,
            chat_template_file,
        })
    }

    fn config_key(&self, key: &str) -> Option<&Value> {
        self.tokenizer_config.as_ref()?.get(key)
    }

    /// A boolean of `tokenizer_config.json`.
    pub fn config_bool(&self, key: &str) -> Option<bool> {
        self.config_key(key)?.as_bool()
    }

    /// `tokenizer_class` of `tokenizer_config.json`, or "".
    pub fn tokenizer_class(&self) -> &str {
        self.config_key("tokenizer_class")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The chat template: `chat_template.jinja`, else `chat_template` of `tokenizer_config.json` (a string,
    /// or a list of `{name, template}` of which the one named `default` is taken).
    pub fn chat_template(&self) -> Option<String> {
        if let Some(text) = &self.chat_template_file {
            return Some(text.clone());
        }
        match self.config_key("chat_template")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => items
                .iter()
                .find(|item| item.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|item| item.get("template")?.as_str().map(str::to_owned)),
            _ => None,
        }
    }

    /// Where `<name>_token` (`bos`, `eos`, `pad`, `unk`) comes from; `None` when no file names it or
    /// `tokenizer_config.json` sets it to `null`.
    pub fn token_source(
        &self,
        name: &str,
        sentencepiece: Option<&SentencePieceSpecials>,
    ) -> Option<TokenSource> {
        let key = format!("{name}_token");
        if let Some(value) = self.config_key(&key) {
            return token_content(value).map(TokenSource::Content);
        }
        if let Some(value) = self.special_tokens_map.as_ref().and_then(|m| m.get(&key)) {
            return token_content(value).map(TokenSource::Content);
        }
        if let Some(specials) = sentencepiece {
            let piece = match name {
                "bos" => &specials.bos,
                "eos" => &specials.eos,
                "unk" => &specials.unk,
                "pad" => &specials.pad,
                _ => &None,
            };
            if let Some(piece) = piece {
                return Some(TokenSource::Content(piece.clone()));
            }
        }
        self.config_token_ids(&format!("{name}_token_id"))
            .first()
            .copied()
            .map(TokenSource::Id)
    }

    /// `<key>` of `generation_config.json`, else of `config.json`, as a list of ids (an int or a list).
    pub fn config_token_ids(&self, key: &str) -> Vec<u32> {
        [&self.generation_config, &self.model_config]
            .into_iter()
            .flatten()
            .find_map(|file| file.get(key).map(ids_of))
            .unwrap_or_default()
    }

    /// `added_tokens_decoder` of `tokenizer_config.json`: (id, token), in id order.
    pub fn added_tokens_decoder(&self) -> Result<Vec<(u32, AddedTokenSpec)>> {
        let Some(decoder) = self.config_key("added_tokens_decoder") else {
            return Ok(Vec::new());
        };
        let bad = |message: String| DataError::Config {
            key: "tokenizer_config.json: added_tokens_decoder".into(),
            message,
        };
        let map = decoder
            .as_object()
            .ok_or_else(|| bad("expected an object of id -> token".into()))?;
        let mut tokens = Vec::with_capacity(map.len());
        for (id, token) in map {
            let id: u32 = id
                .parse()
                .map_err(|_| bad(format!("key `{id}` is not a token id")))?;
            let content = token_content(token).ok_or_else(|| bad(format!("entry {id} has no `content`")))?;
            let flag =
                |name: &str, default: bool| token.get(name).and_then(Value::as_bool).unwrap_or(default);
            tokens.push((
                id,
                AddedTokenSpec {
                    content,
                    special: flag("special", true),
                    lstrip: flag("lstrip", false),
                    rstrip: flag("rstrip", false),
                    single_word: flag("single_word", false),
                },
            ));
        }
        tokens.sort_by_key(|(id, _)| *id);
        Ok(tokens)
    }
}

/// A special token in a config is either a string or `{"content": "..."}`.
pub fn token_content(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// An id field that is an int or a list of ints.
fn ids_of(value: &Value) -> Vec<u32> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .into_iter()
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads a JSON file if it exists; invalid JSON is an error naming the file and line.
pub fn read_json_if_exists(path: &Path) -> Result<Option<Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DataError::Json {
            path: PathBuf::from(path),
            line: e.line(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn explicit_null_in_tokenizer_config_stops_the_fallback() {
        let files = TokenizerFiles {
            tokenizer_config: Some(json!({"bos_token": null})),
            model_config: Some(json!({"bos_token_id": 7})),
            ..Default::default()
        };
        assert_eq!(files.token_source("bos", None), None);
    }

    #[test]
    fn ids_fall_back_from_generation_config_to_config() {
        let files = TokenizerFiles {
            generation_config: Some(json!({"eos_token_id": [5, 6]})),
            model_config: Some(json!({"eos_token_id": 9, "bos_token_id": 1})),
            ..Default::default()
        };
        assert_eq!(files.token_source("eos", None), Some(TokenSource::Id(5)));
        assert_eq!(files.config_token_ids("eos_token_id"), vec![5, 6]);
        assert_eq!(files.token_source("bos", None), Some(TokenSource::Id(1)));
    }

    #[test]
    fn chat_template_list_takes_the_default_entry() {
        let files = TokenizerFiles {
            tokenizer_config: Some(json!({"chat_template": [
                {"name": "tool_use", "template": "T"},
                {"name": "default", "template": "D"}
            ]})),
            ..Default::default()
        };
        assert_eq!(files.chat_template().as_deref(), Some("D"));
    }
}
