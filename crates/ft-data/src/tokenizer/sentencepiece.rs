//! A SentencePiece `tokenizer.model` turned into a `tokenizers` pipeline, in Rust.
//!
//! Follows transformers 5's `SpmConverter.build_tokenizer_from_spm_proto`, which is what
//! `AutoTokenizer` builds for a folder that ships only `tokenizer.model` (InternLM2 without remote
//! code), so the ids equal transformers' and, for plain text, `SentencePieceProcessor.encode`:
//!
//! - **model:** BPE over the piece vocabulary, with merges derived from the vocabulary (every split of a
//!   normal piece into two normal pieces, ranked by the merged piece's score, then its id), byte fallback
//!   and unk as in the trainer spec. Unigram models map to the `Unigram` model with the piece scores.
//! - **normalizer:** the precompiled charsmap (if any), SentencePiece's extra-whitespace removal (spaces
//!   only), spaces → `▁`, and in legacy mode a second `▁` before a text that already starts with one
//!   (SentencePiece always adds its dummy prefix; Metaspace would skip it).
//! - **pre-tokenizer:** Metaspace (dummy prefix on every chunk in legacy mode, the first only otherwise,
//!   no splitting), then user-defined pieces isolated so they come out whole, as SentencePiece emits them.
//! - **decoder:** `▁` → space, byte fallback, fuse, and the dummy prefix stripped once.
//! - **added tokens:** the unk and control pieces (`<s>`, `</s>`) and the caller's tokens (from
//!   `added_tokens_decoder` and the special-token keys), matched on the raw text, never normalized.
//!
//! The `.model` protobuf is parsed by the `sentencepiece-model` crate.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sentencepiece_model::{ModelProto, ModelType, NormalizerSpec, SentencePieceModel, Type};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{NormalizerWrapper, Precompiled, Replace};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{DataError, Result};

/// The SentencePiece whitespace marker.
pub const METASPACE: char = '▁';

/// A token to add on top of the SentencePiece vocabulary (from `added_tokens_decoder` or a special-token key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedTokenSpec {
    /// The token's text.
    pub content: String,
    /// Special tokens are dropped by `decode(skip_special = true)`.
    pub special: bool,
    /// Strip whitespace on the left when matching.
    pub lstrip: bool,
    /// Strip whitespace on the right when matching.
    pub rstrip: bool,
    /// Match only as a whole word.
    pub single_word: bool,
}

impl AddedTokenSpec {
    /// A special token with default matching flags.
    pub fn special(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            special: true,
            lstrip: false,
            rstrip: false,
            single_word: false,
        }
    }

    fn to_added_token(&self) -> AddedToken {
        // Matched on the raw text so that each chunk between added tokens gets its own dummy prefix,
        // as transformers does for SentencePiece folders.
        AddedToken::from(self.content.clone(), self.special)
            .normalized(false)
            .lstrip(self.lstrip)
            .rstrip(self.rstrip)
            .single_word(self.single_word)
    }
}

/// Conversion settings that come from `tokenizer_config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentencePieceOptions {
    /// transformers' `legacy` flag (default `true`): a dummy prefix on every chunk between added tokens.
    pub legacy: bool,
    /// Extra tokens to add (they usually already have a piece id).
    pub added_tokens: Vec<AddedTokenSpec>,
}

impl Default for SentencePieceOptions {
    fn default() -> Self {
        Self {
            legacy: true,
            added_tokens: Vec::new(),
        }
    }
}

/// The special pieces a SentencePiece trainer spec names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentencePieceSpecials {
    /// `bos_piece` when `bos_id >= 0`.
    pub bos: Option<String>,
    /// `eos_piece` when `eos_id >= 0`.
    pub eos: Option<String>,
    /// `unk_piece` when `unk_id >= 0`.
    pub unk: Option<String>,
    /// `pad_piece` when `pad_id >= 0`.
    pub pad: Option<String>,
}

/// A converted SentencePiece model.
#[derive(Clone)]
pub struct SentencePieceTokenizer {
    /// The `tokenizers` pipeline.
    pub tokenizer: tokenizers::Tokenizer,
    /// Special pieces from the trainer spec.
    pub specials: SentencePieceSpecials,
    /// The pieces of type USER_DEFINED, which always encode whole.
    pub user_defined: Vec<String>,
}

/// Reads and converts a SentencePiece `tokenizer.model`.
pub fn load_sentencepiece(path: &Path, options: &SentencePieceOptions) -> Result<SentencePieceTokenizer> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    convert_sentencepiece(&bytes, path, options)
}

/// Converts the bytes of a SentencePiece model; `path` only names the source in errors.
pub fn convert_sentencepiece(
    bytes: &[u8],
    path: &Path,
    options: &SentencePieceOptions,
) -> Result<SentencePieceTokenizer> {
    let fail = |message: String| DataError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    let model = SentencePieceModel::from_slice(bytes)
        .map_err(|e| fail(format!("not a SentencePiece model (protobuf: {e})")))?;
    let proto: &ModelProto = model.model();
    if proto.pieces.is_empty() {
        return Err(fail("the SentencePiece model has no pieces".into()));
    }
    let converter = Converter {
        proto,
        path: path.to_path_buf(),
        options,
    };
    converter.convert()
}

struct Converter<'a> {
    proto: &'a ModelProto,
    path: PathBuf,
    options: &'a SentencePieceOptions,
}

impl Converter<'_> {
    fn fail(&self, message: impl Into<String>) -> DataError {
        DataError::Tokenizer {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn convert(&self) -> Result<SentencePieceTokenizer> {
        let trainer = self.proto.trainer_spec.clone().unwrap_or_default();
        let normalizer_spec = self.proto.normalizer_spec.clone().unwrap_or_default();
        let byte_fallback = trainer.byte_fallback();
        let user_defined: Vec<String> = self
            .proto
            .pieces
            .iter()
            .filter(|p| p.r#type() == Type::UserDefined)
            .map(|p| p.piece().to_owned())
            .collect();

        let mut tokenizer = match trainer.model_type() {
            ModelType::Bpe => tokenizers::Tokenizer::new(self.bpe(
                trainer.unk_piece(),
                byte_fallback,
                !user_defined.is_empty(),
            )?),
            ModelType::Unigram => {
                let unk_id = usize::try_from(trainer.unk_id()).ok();
                tokenizers::Tokenizer::new(self.unigram(unk_id, byte_fallback)?)
            }
            other => {
                return Err(self.fail(format!(
                    "SentencePiece model type {} is not supported (only BPE and UNIGRAM)",
                    other.as_str_name()
                )));
            }
        };

        tokenizer.with_normalizer(Some(self.normalizer(&normalizer_spec)?));
        if let Some(pre) = self.pre_tokenizer(&normalizer_spec, &user_defined)? {
            tokenizer.with_pre_tokenizer(Some(pre));
        }
        tokenizer.with_decoder(Some(decoder(&normalizer_spec, byte_fallback)));

        let specials = trainer_specials(self.proto);
        tokenizer.add_special_tokens(&self.added_tokens(&specials));
        let (special, plain): (Vec<_>, Vec<_>) = self.options.added_tokens.iter().partition(|t| t.special);
        let special: Vec<AddedToken> = special.iter().map(|t| t.to_added_token()).collect();
        let plain: Vec<AddedToken> = plain.iter().map(|t| t.to_added_token()).collect();
        tokenizer.add_special_tokens(&special);
        tokenizer.add_tokens(&plain);

        Ok(SentencePieceTokenizer {
            tokenizer,
            specials,
            user_defined,
        })
    }

    /// BPE over the pieces; merges come from the vocabulary and the piece scores.
    fn bpe(&self, unk_piece: &str, byte_fallback: bool, ignore_merges: bool) -> Result<BPE> {
        let vocab: Vocab = self
            .proto
            .pieces
            .iter()
            .enumerate()
            .map(|(id, p)| (p.piece().to_owned(), id as u32))
            .collect();
        let mut builder = BPE::builder()
            .vocab_and_merges(vocab, merges_from_pieces(self.proto))
            .fuse_unk(true)
            .byte_fallback(byte_fallback)
            .ignore_merges(ignore_merges);
        if self.proto.pieces.iter().any(|p| p.piece() == unk_piece) {
            builder = builder.unk_token(unk_piece.to_owned());
        }
        builder
            .build()
            .map_err(|e| self.fail(format!("building the BPE model failed: {e}")))
    }

    fn unigram(&self, unk_id: Option<usize>, byte_fallback: bool) -> Result<Unigram> {
        let vocab = self
            .proto
            .pieces
            .iter()
            .map(|p| (p.piece().to_owned(), f64::from(p.score())))
            .collect();
        Unigram::from(vocab, unk_id, byte_fallback)
            .map_err(|e| self.fail(format!("building the Unigram model failed: {e}")))
    }

    /// SentencePiece's normalization, step by step in its own order.
    fn normalizer(&self, spec: &NormalizerSpec) -> Result<NormalizerWrapper> {
        let mut steps: Vec<NormalizerWrapper> = Vec::new();
        let charsmap = spec.precompiled_charsmap();
        if !charsmap.is_empty() {
            let precompiled = Precompiled::from(charsmap)
                .map_err(|e| self.fail(format!("bad precompiled_charsmap: {e}")))?;
            steps.push(precompiled.into());
        }
        if spec.remove_extra_whitespaces() {
            // Only spaces: SentencePiece leaves newlines and tabs alone.
            steps.push(self.replace_regex(r"\A +| +\z", "")?.into());
            steps.push(self.replace_regex(" {2,}", " ")?.into());
        }
        if spec.escape_whitespaces() {
            let replace = Replace::new(" ", METASPACE.to_string())
                .map_err(|e| self.fail(format!("normalizer: {e}")))?;
            steps.push(replace.into());
        }
        if spec.add_dummy_prefix() && self.options.legacy {
            // Metaspace skips the dummy prefix when the text already starts with `▁`; SentencePiece doesn't.
            steps.push(self.replace_regex(r"\A▁", "▁▁")?.into());
        }
        Ok(tokenizers::normalizers::Sequence::new(steps).into())
    }

    fn replace_regex(&self, pattern: &str, content: &str) -> Result<Replace> {
        Replace::new(ReplacePattern::Regex(pattern.to_owned()), content)
            .map_err(|e| self.fail(format!("normalizer regex `{pattern}`: {e}")))
    }

    fn pre_tokenizer(
        &self,
        spec: &NormalizerSpec,
        user_defined: &[String],
    ) -> Result<Option<PreTokenizerWrapper>> {
        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        if spec.add_dummy_prefix() {
            let scheme = if self.options.legacy {
                PrependScheme::Always
            } else {
                PrependScheme::First
            };
            steps.push(Metaspace::new(METASPACE, scheme, false).into());
        }
        if !user_defined.is_empty() {
            // Longest first, so a piece that is a prefix of another never wins.
            let mut ordered: Vec<&String> = user_defined.iter().collect();
            ordered.sort_by_key(|piece| std::cmp::Reverse(piece.chars().count()));
            let pattern = ordered
                .iter()
                .map(|piece| regex::escape(piece))
                .collect::<Vec<_>>()
                .join("|");
            let split = Split::new(
                SplitPattern::Regex(pattern),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| self.fail(format!("user-defined pieces pattern: {e}")))?;
            steps.push(split.into());
        }
        Ok(match steps.len() {
            0 => None,
            _ => Some(tokenizers::pre_tokenizers::sequence::Sequence::new(steps).into()),
        })
    }

    /// The unk and control pieces, matched whole in any text.
    fn added_tokens(&self, specials: &SentencePieceSpecials) -> Vec<AddedToken> {
        let mut seen = HashSet::new();
        let unk = specials.unk.iter().cloned();
        let control = self
            .proto
            .pieces
            .iter()
            .filter(|p| p.r#type() == Type::Control)
            .map(|p| p.piece().to_owned());
        unk.chain(control)
            .filter(|piece| seen.insert(piece.clone()))
            .map(|piece| AddedTokenSpec::special(piece).to_added_token())
            .collect()
    }
}

/// Merges implied by a BPE vocabulary: each normal piece split into two normal pieces, ranked by the
/// merged piece's score (highest first), then by its id.
pub fn merges_from_pieces(proto: &ModelProto) -> Merges {
    let normal: std::collections::HashMap<&str, (f32, usize)> = proto
        .pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.r#type() == Type::Normal)
        .map(|(id, p)| (p.piece(), (p.score(), id)))
        .collect();
    let mut ranked: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (&piece, &(score, id)) in &normal {
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if normal.contains_key(left) && normal.contains_key(right) {
                ranked.push((score, id, left, right));
            }
        }
    }
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(b.2))
            .then(a.3.cmp(b.3))
    });
    ranked
        .into_iter()
        .map(|(_, _, left, right)| (left.to_owned(), right.to_owned()))
        .collect()
}

fn decoder(spec: &NormalizerSpec, byte_fallback: bool) -> DecoderWrapper {
    let metaspace = Replace::new(METASPACE.to_string(), " ")
        .expect("invariant: a literal replace pattern always compiles");
    let mut steps: Vec<DecoderWrapper> = vec![metaspace.into()];
    if byte_fallback {
        steps.push(ByteFallback::new().into());
    }
    if spec.add_dummy_prefix() {
        // `Strip` works per token: fuse first so only the start of the text loses its space.
        steps.push(Fuse::new().into());
        steps.push(Strip::new(' ', 1, 0).into());
    } else if byte_fallback {
        steps.push(Fuse::new().into());
    }
    tokenizers::decoders::sequence::Sequence::new(steps).into()
}

fn trainer_specials(proto: &ModelProto) -> SentencePieceSpecials {
    let trainer = proto.trainer_spec.clone().unwrap_or_default();
    let piece = |id: i32, name: &str| -> Option<String> {
        let index = usize::try_from(id).ok()?;
        let piece = proto.pieces.get(index)?.piece();
        // The piece at that id is what the vocabulary holds; the spec's name only fills a blank.
        Some(if piece.is_empty() {
            name.to_owned()
        } else {
            piece.to_owned()
        })
    };
    SentencePieceSpecials {
        bos: piece(trainer.bos_id(), trainer.bos_piece()),
        eos: piece(trainer.eos_id(), trainer.eos_piece()),
        unk: piece(trainer.unk_id(), trainer.unk_piece()),
        pad: piece(trainer.pad_id(), trainer.pad_piece()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentencepiece_model::{SentencePiece, TrainerSpec};

    fn piece(text: &str, score: f32, kind: Type) -> SentencePiece {
        SentencePiece {
            piece: Some(text.into()),
            score: Some(score),
            r#type: Some(kind as i32),
        }
    }

    fn tiny_proto() -> ModelProto {
        ModelProto {
            pieces: vec![
                piece("<unk>", 0.0, Type::Unknown),
                piece("<s>", 0.0, Type::Control),
                piece("</s>", 0.0, Type::Control),
                piece("▁a", -1.0, Type::Normal),
                piece("ab", -2.0, Type::Normal),
                piece("▁ab", -3.0, Type::Normal),
                piece("▁", -4.0, Type::Normal),
                piece("a", -5.0, Type::Normal),
                piece("b", -6.0, Type::Normal),
            ],
            trainer_spec: Some(TrainerSpec {
                model_type: Some(ModelType::Bpe as i32),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn merges_are_ranked_by_the_merged_piece_score() {
        let merges = merges_from_pieces(&tiny_proto());
        let merges: Vec<(&str, &str)> = merges.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        // "▁ab" splits two ways ("▁"+"ab", "▁a"+"b"); both rank with its score, after "▁a" and "ab".
        assert_eq!(merges, vec![("▁", "a"), ("a", "b"), ("▁", "ab"), ("▁a", "b")]);
    }

    #[test]
    fn tiny_model_encodes_with_dummy_prefix_and_control_tokens() {
        use prost::Message;
        let bytes = tiny_proto().encode_to_vec();
        let converted =
            convert_sentencepiece(&bytes, Path::new("tiny.model"), &SentencePieceOptions::default())
                .expect("tiny model converts");
        let ids = converted
            .tokenizer
            .encode("ab<s>ab", false)
            .expect("encodes")
            .get_ids()
            .to_vec();
        assert_eq!(ids, vec![5, 1, 5]);
        assert_eq!(converted.specials.bos.as_deref(), Some("<s>"));
        assert_eq!(converted.specials.unk.as_deref(), Some("<unk>"));
    }

    #[test]
    fn garbage_bytes_are_an_error_naming_the_file() {
        let err = convert_sentencepiece(
            b"\xff\xff\xff not a proto",
            Path::new("dir/tokenizer.model"),
            &SentencePieceOptions::default(),
        )
        .err()
        .expect("garbage must fail");
        assert!(err.to_string().contains("dir/tokenizer.model"), "{err}");
    }
}
