//! Tokenizers loaded from a model folder, with the special tokens transformers would use.
//!
//! `tokenizer.json` goes through the `tokenizers` crate; a folder with only a SentencePiece
//! `tokenizer.model` (InternLM2) is converted in Rust by [`sentencepiece`]. Special tokens and the chat
//! template are resolved from the JSON files around it by [`config`]: `tokenizer_config.json`, then
//! `special_tokens_map.json`, then the SentencePiece trainer spec, then `generation_config.json` /
//! `config.json` ids.

pub mod config;
mod fast;
mod head;
pub mod sentencepiece;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::processors::template::TemplateProcessing;

use crate::error::{DataError, Result};
use config::{TokenSource, TokenizerFiles};
use sentencepiece::{AddedTokenSpec, SentencePieceOptions, SentencePieceSpecials};

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
    unk: Option<SpecialToken>,
    eos_ids: Vec<u32>,
    add_eos_token: bool,
    /// The pipeline's steps over `&str`, when its parts are all supported (see [`fast`]).
    fast: Option<Arc<fast::FastPath>>,
}

impl std::fmt::Debug for FtTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtTokenizer")
            .field("source", &self.source)
            .field("special", &self.special)
            .field("family", &self.family)
            .field("unk", &self.unk)
            .field("eos_ids", &self.eos_ids)
            .field("fast_path", &self.fast.is_some())
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
        let eos_ids = special.eos.iter().map(|t| t.id).collect();
        let fast = fast_path_wanted()
            .then(|| fast::FastPath::for_tokenizer(&inner))
            .flatten()
            .map(Arc::new);
        Self {
            fast,
            inner,
            special,
            family,
            chat_template,
            source,
            unk: None,
            eos_ids,
            add_eos_token: false,
        }
    }

    /// Sets the ids that stop generation (the EOS id is kept first if it is not among them).
    pub fn with_eos_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        let mut all: Vec<u32> = self.eos_id().into_iter().collect();
        for id in ids {
            if !all.contains(&id) {
                all.push(id);
            }
        }
        self.eos_ids = all;
        self
    }

    /// Sets the unknown token.
    pub fn with_unk(mut self, unk: Option<SpecialToken>) -> Self {
        self.unk = unk;
        self
    }

    /// Loads a model folder's tokenizer: `tokenizer.json` if there is one, else a SentencePiece
    /// `tokenizer.model`; then its special tokens and chat template.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let files = TokenizerFiles::read(dir)?;
        let json_path = dir.join("tokenizer.json");
        let model_path = dir.join("tokenizer.model");
        let (inner, sp_specials) = if json_path.is_file() {
            (load_tokenizer_json(&json_path)?, None)
        } else if model_path.is_file() {
            let options = sentencepiece_options(&files)?;
            let converted = sentencepiece::load_sentencepiece(&model_path, &options)?;
            (converted.tokenizer, Some(converted.specials))
        } else {
            return Err(DataError::Tokenizer {
                path: dir.to_path_buf(),
                message: "no tokenizer.json or tokenizer.model in the model folder".into(),
            });
        };
        let mut built = Resolver {
            inner,
            files: &files,
            sp_specials: sp_specials.as_ref(),
        }
        .resolve()?;
        built.source = dir.to_path_buf();
        if sp_specials.is_some() {
            built.add_sentencepiece_post_processor();
        }
        Ok(built)
    }

    /// Token ids of `text`, with no special tokens added (special-token strings map to their ids).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_head(text, usize::MAX)
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
    /// Every id that ends generation: the EOS id first, then the other `eos_token_id`s of
    /// `generation_config.json` (else `config.json`).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }
    /// The unknown token, if the tokenizer has one.
    pub fn unk(&self) -> Option<&SpecialToken> {
        self.unk.as_ref()
    }
    /// Unk id, if the tokenizer has one.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk.as_ref().map(|t| t.id)
    }
    /// `add_eos_token` from `tokenizer_config.json` (or what the `tokenizer.json` post-processor does).
    pub fn add_eos_token(&self) -> bool {
        self.add_eos_token
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

/// `FT_TOKENIZER_FAST_PATH=0` turns the fast path off (to compare with, or to rule it out).
fn fast_path_wanted() -> bool {
    std::env::var("FT_TOKENIZER_FAST_PATH").map_or(true, |v| v != "0")
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

fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let bad = |message: String| DataError::Tokenizer {
        path: path.to_path_buf(),
        message: format!("cannot load tokenizer.json: {message}"),
    };
    // The `tokenizers` crate panics on some malformed files (e.g. a decoder object whose keys
    // are not strings: `decoders/mod.rs` unwraps); that is bad input, reported as such.
    match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_file(path)) {
        // transformers encodes with neither the file's truncation nor its padding
        // (`set_truncation_and_padding` turns both off unless a call asks for them).
        Ok(Ok(mut loaded)) => {
            loaded
                .with_truncation(None)
                .map_err(|e| bad(e.to_string()))?
                .with_padding(None);
            Ok(loaded)
        }
        Ok(Err(e)) => Err(bad(e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "malformed".into());
            Err(bad(what))
        }
    }
}

/// The `legacy` flag, `added_tokens_decoder` and special-token strings become added tokens.
fn sentencepiece_options(files: &TokenizerFiles) -> Result<SentencePieceOptions> {
    let mut added: Vec<AddedTokenSpec> = files
        .added_tokens_decoder()?
        .into_iter()
        .map(|(_, token)| token)
        .collect();
    for name in ["bos", "eos", "unk", "pad"] {
        if let Some(TokenSource::Content(content)) = files.token_source(name, None)
            && !added.iter().any(|t| t.content == content)
        {
            added.push(AddedTokenSpec::special(content));
        }
    }
    Ok(SentencePieceOptions {
        legacy: files.config_bool("legacy").unwrap_or(true),
        added_tokens: added,
    })
}

/// Turns the files' special-token sources into tokens of a loaded vocabulary.
struct Resolver<'a> {
    inner: tokenizers::Tokenizer,
    files: &'a TokenizerFiles,
    sp_specials: Option<&'a SentencePieceSpecials>,
}

impl Resolver<'_> {
    fn resolve(self) -> Result<FtTokenizer> {
        let decoder = self.files.added_tokens_decoder()?;
        let token = |name: &str| -> Option<SpecialToken> {
            let found = match self.files.token_source(name, self.sp_specials)? {
                TokenSource::Content(content) => {
                    let id = self.inner.token_to_id(&content).or_else(|| {
                        decoder
                            .iter()
                            .find(|(_, t)| t.content == content)
                            .map(|(id, _)| *id)
                    });
                    id.map(|id| SpecialToken {
                        content: content.clone(),
                        id,
                    })
                    .ok_or(content)
                }
                TokenSource::Id(id) => self
                    .inner
                    .id_to_token(id)
                    .or_else(|| {
                        decoder
                            .iter()
                            .find(|(i, _)| *i == id)
                            .map(|(_, t)| t.content.clone())
                    })
                    .map(|content| SpecialToken { content, id })
                    .ok_or_else(|| format!("id {id}")),
            };
            match found {
                Ok(token) => Some(token),
                Err(what) => {
                    tracing::warn!("{name}_token {what} is not in the vocabulary; ignored");
                    None
                }
            }
        };
        let special = SpecialTokens {
            bos: token("bos"),
            eos: token("eos"),
            pad: token("pad"),
            add_bos_token: false,
        };
        let unk = token("unk");
        let (post_bos, post_eos) = post_processor_adds(&self.inner, &special);
        let special = SpecialTokens {
            add_bos_token: self.files.config_bool("add_bos_token").unwrap_or(post_bos),
            ..special
        };
        let add_eos_token = self.files.config_bool("add_eos_token").unwrap_or(post_eos);
        let family = family_from_class(self.files.tokenizer_class());
        let chat_template = self.files.chat_template();
        let extra_eos = self.files.config_token_ids("eos_token_id");
        let mut tokenizer =
            FtTokenizer::from_parts(self.inner, special, family, chat_template, PathBuf::new())
                .with_unk(unk)
                .with_eos_ids(extra_eos);
        tokenizer.add_eos_token = add_eos_token;
        Ok(tokenizer)
    }
}

/// Whether the pipeline's post-processor adds BOS at the start / EOS at the end of one sequence.
fn post_processor_adds(inner: &tokenizers::Tokenizer, special: &SpecialTokens) -> (bool, bool) {
    let Ok(with) = inner.encode("a", true) else {
        return (false, false);
    };
    let Ok(without) = inner.encode("a", false) else {
        return (false, false);
    };
    let (with, without) = (with.get_ids(), without.get_ids());
    if with.len() <= without.len() {
        return (false, false);
    }
    let bos = special.bos.as_ref().is_some_and(|t| with.first() == Some(&t.id));
    let eos = special.eos.as_ref().is_some_and(|t| with.last() == Some(&t.id));
    (bos, eos)
}

impl FtTokenizer {
    /// For a converted SentencePiece model: BOS/EOS added on `encode(text, true)` as transformers does.
    fn add_sentencepiece_post_processor(&mut self) {
        let mut single = Vec::new();
        let mut tokens = Vec::new();
        if self.special.add_bos_token
            && let Some(bos) = &self.special.bos
        {
            single.push(bos.content.clone());
            tokens.push((bos.content.clone(), bos.id));
        }
        single.push("$A".to_owned());
        if self.add_eos_token
            && let Some(eos) = &self.special.eos
        {
            single.push(eos.content.clone());
            tokens.push((eos.content.clone(), eos.id));
        }
        if tokens.is_empty() {
            return;
        }
        let template = TemplateProcessing::builder()
            .try_single(single.join(" "))
            .map_err(|e| e.to_string())
            .and_then(|b| b.special_tokens(tokens).build().map_err(|e| e.to_string()));
        match template {
            Ok(processor) => {
                self.inner.with_post_processor(Some(processor));
            }
            Err(e) => tracing::warn!("BOS/EOS post-processor not built: {e}"),
        }
    }
}
