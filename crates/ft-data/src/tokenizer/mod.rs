//! Tokenizers loaded from a model folder, with the special tokens transformers would use.
//!
//! `tokenizer.json` goes through the `tokenizers` crate; bos/eos/pad come from
//! `tokenizer_config.json` (then `special_tokens_map.json`, then `generation_config.json`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};

/// Tokenizer families whose BOS handling differs in XTuner's `encode_fn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerFamily {
    /// `[bos_token_id]` before a turn that needs it.
    Standard,
    /// Qwen tokenizers: never a BOS.
    Qwen,
    /// ChatGLM tokenizers: BOS = `[64790, 64792]`.
    ChatGlm,
}

/// A special token: its text and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    /// The token's text, e.g. `<s>`.
    pub content: String,
    /// Its id in the vocabulary.
    pub id: u32,
}

/// The special tokens of a tokenizer, as transformers resolves them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<SpecialToken>,
    /// End of sequence.
    pub eos: Option<SpecialToken>,
    /// Padding.
    pub pad: Option<SpecialToken>,
    /// `add_bos_token` from `tokenizer_config.json`.
    pub add_bos_token: bool,
}

/// A `tokenizers` pipeline plus the facts `ft` needs around it.
#[derive(Clone)]
pub struct FtTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    family: TokenizerFamily,
    chat_template: Option<String>,
    source: PathBuf,
}

impl std::fmt::Debug for FtTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtTokenizer")
            .field("source", &self.source)
            .field("special", &self.special)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl FtTokenizer {
    /// Builds a tokenizer from its parts (used by GGUF loading and tests).
    pub fn from_parts(
        inner: tokenizers::Tokenizer,
        special: SpecialTokens,
        family: TokenizerFamily,
        chat_template: Option<String>,
        source: PathBuf,
    ) -> Self {
        Self {
            inner,
            special,
            family,
            chat_template,
            source,
        }
    }

    /// Loads `tokenizer.json` and the special-token files of a model folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let json_path = dir.join("tokenizer.json");
        if !json_path.exists() {
            return Err(DataError::Tokenizer {
                path: dir.to_path_buf(),
                message: "no tokenizer.json in the model folder".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&json_path).map_err(|e| DataError::Tokenizer {
            path: json_path.clone(),
            message: e.to_string(),
        })?;
        let config = read_json_if_exists(&dir.join("tokenizer_config.json"))?;
        let token = |key: &str| -> Option<SpecialToken> {
            let content = config.as_ref().and_then(|c| token_content(c.get(key)?))?;
            let id = inner.token_to_id(&content)?;
            Some(SpecialToken { content, id })
        };
        let special = SpecialTokens {
            bos: token("bos_token"),
            eos: token("eos_token"),
            pad: token("pad_token"),
            add_bos_token: config
                .as_ref()
                .and_then(|c| c.get("add_bos_token")?.as_bool())
                .unwrap_or(false),
        };
        let class = config
            .as_ref()
            .and_then(|c| c.get("tokenizer_class")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        let chat_template = config
            .as_ref()
            .and_then(|c| c.get("chat_template")?.as_str().map(str::to_owned));
        Ok(Self {
            inner,
            special,
            family: family_from_class(&class),
            chat_template,
            source: dir.to_path_buf(),
        })
    }

    /// Token ids of `text`, with no special tokens added (special-token strings map to their ids).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| DataError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| DataError::Encode(e.to_string()))
    }

    /// The special tokens.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }
    /// BOS id, if the tokenizer has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos.as_ref().map(|t| t.id)
    }
    /// EOS id, if the tokenizer has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos.as_ref().map(|t| t.id)
    }
    /// Pad id, if the tokenizer has one.
    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad.as_ref().map(|t| t.id)
    }
    /// The family that decides BOS handling.
    pub fn family(&self) -> TokenizerFamily {
        self.family
    }
    /// The model's own Jinja chat template, if it has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
    /// Id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
    /// String of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    /// The underlying `tokenizers` pipeline.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
    /// Where the tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }
}

/// Qwen and ChatGLM tokenizers are recognised by their transformers class name.
fn family_from_class(class: &str) -> TokenizerFamily {
    let lower = class.to_ascii_lowercase();
    if lower.contains("qwen") {
        TokenizerFamily::Qwen
    } else if lower.contains("chatglm") {
        TokenizerFamily::ChatGlm
    } else {
        TokenizerFamily::Standard
    }
}

/// A special token in a config is either a string or `{"content": "..."}`.
fn token_content(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn read_json_if_exists(path: &Path) -> Result<Option<Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DataError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            message: e.to_string(),
        })
}
