//! The tokenizer a GGUF describes in its `tokenizer.*` metadata, rebuilt as a `tokenizers::Tokenizer`.
//!
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE from `tokens` + `merges`, with the split
//!   regex that `tokenizer.ggml.pre` names (e.g. `smollm` isolates every digit first).
//! - `tokenizer.ggml.model = "llama"`: SentencePiece-style BPE with byte fallback, as transformers'
//!   `LlamaTokenizer` builds it; merges come from the file, or are recovered from `scores`.
//!
//! Tokens typed 3 (control) become special added tokens, so `<|im_start|>` is one id; tokens typed
//! 4 (user-defined) become plain added tokens. This follows transformers' GGUF tokenizer import.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::{GgufError, Result};
use crate::file::GgufFile;

/// llama.cpp's token type for control tokens (`<|im_start|>`, `<s>` …).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// llama.cpp's token type for user-defined tokens (matched whole, not special).
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split regex (also used by several other `pre` names).
pub(crate) const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's split regex: digits one at a time.
pub(crate) const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A special token: its text and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufSpecialToken {
    /// The token's text, e.g. `<|im_start|>`.
    pub content: String,
    /// Its id.
    pub id: u32,
}

/// The special tokens and flags from `tokenizer.ggml.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GgufSpecialTokens {
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<GgufSpecialToken>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<GgufSpecialToken>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<GgufSpecialToken>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<GgufSpecialToken>,
    /// `tokenizer.ggml.add_bos_token` (default: true for `llama`, false otherwise, as transformers).
    pub add_bos_token: bool,
    /// `tokenizer.ggml.add_eos_token` (default false).
    pub add_eos_token: bool,
}

/// A tokenizer rebuilt from GGUF metadata.
#[derive(Clone)]
pub struct GgufTokenizer {
    /// The pipeline. When `add_bos_token`/`add_eos_token` is set, its post-processor adds them
    /// (as `transformers` does for `add_special_tokens=True`).
    pub tokenizer: Tokenizer,
    /// bos/eos/unk/pad and the add flags.
    pub special: GgufSpecialTokens,
    /// `tokenizer.chat_template`, if any.
    pub chat_template: Option<String>,
    /// `tokenizer.ggml.model` (`gpt2` or `llama`).
    pub model: String,
    /// `tokenizer.ggml.pre`, if any.
    pub pre: Option<String>,
}

/// The `tokenizer.ggml.pre` names llama.cpp splits as GPT-2 does (its `default` included).
const GPT2_PRE: [&str; 11] = [
    "default",
    "gpt-2",
    "gpt2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
];

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("model", &self.model)
            .field("pre", &self.pre)
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("special", &self.special)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// GPT-2's byte → printable-char table (`bytes_to_unicode`): printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100 onwards in byte order.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(next).expect("invariant: U+0100..U+0143 are chars");
            next += 1;
            c
        };
    }
    table
}

impl GgufFile {
    fn tokenizer_error(&self, what: impl Into<String>) -> GgufError {
        GgufError::Tokenizer {
            file: self.path().to_path_buf(),
            what: what.into(),
        }
    }

    /// Rebuilds the tokenizer, its special tokens and its chat template from the metadata.
    pub fn tokenizer(&self) -> Result<GgufTokenizer> {
        let md = self.metadata();
        let model = md.require_str("tokenizer.ggml.model")?.to_string();
        let pre = md.get_str("tokenizer.ggml.pre")?.map(str::to_string);
        let tokens: Vec<String> = md
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| self.tokenizer_error("`tokenizer.ggml.tokens` is missing"))?
            .into_iter()
            .map(str::to_string)
            .collect();
        let token_types = md.get_int_array("tokenizer.ggml.token_type")?.unwrap_or_default();
        if !token_types.is_empty() && token_types.len() != tokens.len() {
            return Err(self.tokenizer_error(format!(
                "{} token types for {} tokens",
                token_types.len(),
                tokens.len()
            )));
        }

        let special_token = |key: &str| -> Result<Option<GgufSpecialToken>> {
            let Some(id) = md.get_u64(key)? else {
                return Ok(None);
            };
            let content = tokens.get(id as usize).ok_or_else(|| {
                self.tokenizer_error(format!("{key} = {id} is past the {} tokens", tokens.len()))
            })?;
            Ok(Some(GgufSpecialToken {
                content: content.clone(),
                id: id as u32,
            }))
        };
        let special = GgufSpecialTokens {
            bos: special_token("tokenizer.ggml.bos_token_id")?,
            eos: special_token("tokenizer.ggml.eos_token_id")?,
            unk: special_token("tokenizer.ggml.unknown_token_id")?,
            pad: special_token("tokenizer.ggml.padding_token_id")?,
            add_bos_token: md
                .get_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(model == "llama"),
            add_eos_token: md.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
        };

        let mut tokenizer = match model.as_str() {
            "gpt2" => self.byte_level_bpe(&tokens, pre.as_deref())?,
            "llama" => self.sentencepiece_bpe(&tokens, special.unk.as_ref())?,
            other => {
                return Err(self.tokenizer_error(format!(
                    "tokenizer.ggml.model `{other}` is not supported (supported: gpt2, llama)"
                )));
            }
        };

        let byte_alphabet: Option<HashSet<char>> =
            (model == "gpt2").then(|| byte_to_char().into_iter().collect());
        let typed = |wanted: i64| {
            tokens
                .iter()
                .zip(&token_types)
                .filter(move |&(_, &t)| t == wanted)
                .map(|(token, _)| token)
        };
        // A control token outside the byte alphabet in a byte-level vocabulary is a llama.cpp
        // mislabel; transformers skips those, and so do we.
        let control: Vec<AddedToken> = typed(TOKEN_TYPE_CONTROL)
            .filter(|t| {
                byte_alphabet
                    .as_ref()
                    .is_none_or(|a| t.chars().all(|c| a.contains(&c)))
            })
            .map(|t| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tokenizer.add_special_tokens(&control);
        let user_defined: Vec<AddedToken> = typed(TOKEN_TYPE_USER_DEFINED)
            .filter(|t| tokenizer.get_vocab(false).contains_key(t.as_str()))
            .map(|t| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        tokenizer.add_tokens(&user_defined);

        self.add_post_processor(&mut tokenizer, &special)?;
        Ok(GgufTokenizer {
            tokenizer,
            special,
            chat_template: md.get_str("tokenizer.chat_template")?.map(str::to_string),
            model,
            pre,
        })
    }

    fn merges_from_file(&self) -> Result<Option<Vec<(String, String)>>> {
        let Some(merges) = self.metadata().get_str_array("tokenizer.ggml.merges")? else {
            return Ok(None);
        };
        merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| self.tokenizer_error(format!("merge {i} `{m}` has no space")))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn build_bpe(
        &self,
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
        unk: Option<&GgufSpecialToken>,
        byte_fallback: bool,
    ) -> Result<BPE> {
        let mut builder = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
            .byte_fallback(byte_fallback)
            .fuse_unk(byte_fallback);
        if let Some(unk) = unk {
            builder = builder.unk_token(unk.content.clone());
        }
        builder
            .build()
            .map_err(|e| self.tokenizer_error(format!("cannot build BPE: {e}")))
    }

    /// GPT-2 style byte-level BPE.
    fn byte_level_bpe(&self, tokens: &[String], pre: Option<&str>) -> Result<Tokenizer> {
        let table = byte_to_char();
        let alphabet: HashSet<char> = table.iter().copied().collect();
        // Tokens outside the byte alphabet are respelled byte by byte (transformers does the same).
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let spelled = if t.chars().all(|c| alphabet.contains(&c)) {
                    t.clone()
                } else {
                    t.bytes().map(|b| table[b as usize]).collect()
                };
                (spelled, i as u32)
            })
            .collect();
        let merges = self
            .merges_from_file()?
            .ok_or_else(|| self.tokenizer_error("byte-level BPE needs `tokenizer.ggml.merges`"))?;
        let bpe = self.build_bpe(vocab, merges, None, false)?;

        let split = |regex: &str| -> Result<PreTokenizerWrapper> {
            Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(PreTokenizerWrapper::Split)
            .map_err(|e| self.tokenizer_error(format!("split regex: {e}")))
        };
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            Some("smollm") => PreTokenizerWrapper::Sequence(PreSequence::new(vec![
                split(r"\p{N}")?,
                ByteLevel::new(false, true, true).into(),
            ])),
            Some(
                "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "dbrx"
                | "smaug-bpe",
            ) => PreTokenizerWrapper::Sequence(PreSequence::new(vec![
                split(LLAMA3_SPLIT)?,
                ByteLevel::new(false, true, false).into(),
            ])),
            Some("qwen2" | "deepseek-r1-qwen") => PreTokenizerWrapper::Sequence(PreSequence::new(vec![
                split(QWEN2_SPLIT)?,
                ByteLevel::new(false, true, false).into(),
            ])),
            // llama.cpp's GPT-2 family (its `default`, and a file without the key, use nearly
            // the same split).
            None => ByteLevel::new(false, true, true).into(),
            Some(name) if GPT2_PRE.contains(&name) => ByteLevel::new(false, true, true).into(),
            Some(other) => {
                return Err(self.tokenizer_error(format!(
                    "unknown `tokenizer.ggml.pre` `{other}`; supported: smollm, llama3, llama-v3, \
                     llama-bpe, falcon3, falcon-h1, pixtral, dbrx, smaug-bpe, qwen2, \
                     deepseek-r1-qwen, {}",
                    GPT2_PRE.join(", ")
                )));
            }
        };
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        Ok(tokenizer)
    }

    /// SentencePiece-style BPE with byte fallback (transformers' `LlamaTokenizer` layout).
    fn sentencepiece_bpe(&self, tokens: &[String], unk: Option<&GgufSpecialToken>) -> Result<Tokenizer> {
        let mut vocab: HashMap<String, u32> = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            vocab.insert(t.clone(), i as u32);
        }
        let merges = match self.merges_from_file()? {
            Some(m) => m,
            None => {
                let scores = self
                    .metadata()
                    .get_f32_array("tokenizer.ggml.scores")?
                    .ok_or_else(|| {
                        self.tokenizer_error("no `merges` and no `scores` to recover them from")
                    })?;
                if scores.len() != tokens.len() {
                    return Err(self.tokenizer_error(format!(
                        "{} scores for {} tokens",
                        scores.len(),
                        tokens.len()
                    )));
                }
                merges_from_scores(tokens, &scores, &vocab)
            }
        };
        let bpe = self.build_bpe(vocab, merges, unk, true)?;
        let prefix_space = self
            .metadata()
            .get_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(true);
        let scheme = if prefix_space {
            PrependScheme::First
        } else {
            PrependScheme::Never
        };
        let mut decoders: Vec<DecoderWrapper> = vec![
            DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| self.tokenizer_error(e.to_string()))?),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ];
        if prefix_space {
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer
            .with_pre_tokenizer(Some(Metaspace::new('▁', scheme, false)))
            .with_decoder(Some(DecoderSequence::new(decoders)));
        Ok(tokenizer)
    }

    fn add_post_processor(&self, tokenizer: &mut Tokenizer, special: &GgufSpecialTokens) -> Result<()> {
        let bos = special.bos.as_ref().filter(|_| special.add_bos_token);
        let eos = special.eos.as_ref().filter(|_| special.add_eos_token);
        if bos.is_none() && eos.is_none() {
            return Ok(());
        }
        let mut single = Vec::new();
        let mut pair = Vec::new();
        let mut specials = Vec::new();
        if let Some(b) = bos {
            single.push(b.content.clone());
            pair.push(b.content.clone());
            specials.push((b.content.clone(), b.id));
        }
        single.push("$A".to_string());
        pair.push("$A".to_string());
        if let Some(e) = eos {
            single.push(e.content.clone());
            pair.push(e.content.clone());
            if specials.iter().all(|(c, _)| *c != e.content) {
                specials.push((e.content.clone(), e.id));
            }
        }
        if let Some(b) = bos {
            pair.push(format!("{}:1", b.content));
        }
        pair.push("$B:1".to_string());
        if let Some(e) = eos {
            pair.push(format!("{}:1", e.content));
        }
        let err = |e: String| self.tokenizer_error(format!("post-processor: {e}"));
        let processor = TemplateProcessing::builder()
            .try_single(single)
            .map_err(err)?
            .try_pair(pair)
            .map_err(err)?
            .special_tokens(specials)
            .build()
            .map_err(|e| err(e.to_string()))?;
        tokenizer.with_post_processor(Some(processor));
        Ok(())
    }
}

/// Merges recovered from a SentencePiece vocabulary and its scores, as transformers'
/// `generate_merges`: every split of every token into two known tokens, grouped per token in
/// vocabulary order, then stably sorted by (score, left length, right length), highest first.
fn merges_from_scores(
    tokens: &[String],
    scores: &[f32],
    vocab: &HashMap<String, u32>,
) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    let mut merges: Vec<(String, String, f32)> = Vec::new();
    // The last score of a duplicated token wins, at the position of its first occurrence.
    let last_score: HashMap<&str, f32> = tokens
        .iter()
        .map(String::as_str)
        .zip(scores.iter().copied())
        .collect();
    for token in tokens {
        if !seen.insert(token.as_str()) {
            continue;
        }
        let score = last_score[token.as_str()];
        let mut local: Vec<(&str, &str)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r))
            .collect();
        local.sort_by_key(|(l, r)| (vocab[*l], vocab[*r]));
        merges.extend(
            local
                .into_iter()
                .map(|(l, r)| (l.to_string(), r.to_string(), score)),
        );
    }
    merges.sort_by(|a, b| {
        let key = |m: &(String, String, f32)| (m.2, m.0.chars().count(), m.1.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0], '\u{100}');
    }

    #[test]
    fn merges_from_scores_prefers_high_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -3.0, -2.0];
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = merges_from_scores(&tokens, &scores, &vocab);
        let expected: Vec<(String, String)> = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]
            .iter()
            .map(|(l, r)| (l.to_string(), r.to_string()))
            .collect();
        assert_eq!(merges, expected);
    }
}
