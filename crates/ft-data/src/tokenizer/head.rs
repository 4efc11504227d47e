//! The head of an encoding without the tail's cost: samples are cut to `max_length`, and a long
//! text's tail need not go through the tokenizer's model (BPE merges, Unigram lattice).
//!
//! The `tokenizers` pipeline is run step by step with its own public parts, in its own order:
//! added tokens are split off and the rest normalised, the pre-tokenizer splits the text into
//! pieces, and the model turns each piece into tokens independently of the others. The ids of
//! [`tokenizers::Tokenizer::encode`] (without special tokens, truncation or padding) are the
//! pieces' tokens in order, so stopping once the limit is reached gives the same ids as
//! encoding everything and truncating. Normalising and pre-tokenizing still see the whole text.
//!
//! Tokenizers whose parts are all common ones take a faster route to the same ids (see `fast`):
//! the same steps over `&str`, which also stop pre-tokenizing once enough ids are found.
//!
//! Unicode normalisation (NFC, NFD, NFKC, NFKD) leaves ASCII text as it is, so an ASCII text
//! skips a normaliser made only of those.

use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizer};

use super::FtTokenizer;
use super::fast::FastPath;
use crate::error::{DataError, Result};

impl FtTokenizer {
    /// The first `limit` ids of [`encode`](Self::encode)`(text)`; the model only runs on the
    /// pieces of text those ids come from.
    pub fn encode_head(&self, text: &str, limit: usize) -> Result<Vec<u32>> {
        if text.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let encode_error = |e: tokenizers::Error| DataError::Encode(e.to_string());
        if let Some(fast) = self.fast_path_for(text) {
            return fast
                .encode_head(inner.get_model(), text, limit)
                .map_err(encode_error);
        }
        let normalizer = inner
            .get_normalizer()
            .filter(|n| !(text.is_ascii() && keeps_ascii(n)));
        let mut pieces = inner
            .get_added_vocabulary()
            .extract_and_normalize(normalizer, text);
        if let Some(pre_tokenizer) = inner.get_pre_tokenizer() {
            pre_tokenizer.pre_tokenize(&mut pieces).map_err(encode_error)?;
        }
        let mut ids = Vec::new();
        for (piece, _, tokens) in pieces.get_splits(OffsetReferential::Original, OffsetType::None) {
            if ids.len() >= limit {
                break;
            }
            match tokens {
                Some(tokens) => ids.extend(tokens.iter().map(|t| t.id)),
                None => ids.extend(
                    inner
                        .get_model()
                        .tokenize(piece)
                        .map_err(encode_error)?
                        .iter()
                        .map(|t| t.id),
                ),
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }
}

impl FtTokenizer {
    /// Whether [`encode_head`](Self::encode_head) of `text` takes the fast path (see `fast`)
    /// rather than the library's own steps.
    pub fn uses_fast_path(&self, text: &str) -> bool {
        self.fast_path_for(text).is_some()
    }

    fn fast_path_for(&self, text: &str) -> Option<&FastPath> {
        self.fast.as_deref().filter(|fast| fast.applies_to(text))
    }
}

/// Whether `normalizer` changes no ASCII text: Unicode normalisation forms, alone or in sequence.
fn keeps_ascii(normalizer: &NormalizerWrapper) -> bool {
    match normalizer {
        NormalizerWrapper::NFC(_)
        | NormalizerWrapper::NFD(_)
        | NormalizerWrapper::NFKC(_)
        | NormalizerWrapper::NFKD(_) => true,
        NormalizerWrapper::Sequence(sequence) => sequence.as_ref().iter().all(keeps_ascii),
        _ => false,
    }
}
