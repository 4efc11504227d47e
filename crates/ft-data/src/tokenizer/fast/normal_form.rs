//! Unicode normalisers that leave a text as it is: a text already in NFC is its own NFC, and so
//! on. Checked with the normalisation crate (and so the Unicode tables) the library normalises
//! with.

use tokenizers::normalizers::NormalizerWrapper;
use unicode_normalization_alignments::{is_nfc, is_nfd, is_nfkc, is_nfkd};

/// One Unicode normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
}

/// The normal forms a normaliser applies, in order (none for no normaliser).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NormalForms {
    forms: Vec<Form>,
}

impl NormalForms {
    /// The forms of `normalizer`, or `None` if it does anything else.
    pub fn of(normalizer: Option<&NormalizerWrapper>) -> Option<Self> {
        let mut forms = Vec::new();
        if let Some(normalizer) = normalizer {
            push_forms(normalizer, &mut forms)?;
        }
        Some(Self { forms })
    }

    /// No normalisation at all.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Whether `text` is in every form, so that each normalisation step leaves it as it is.
    pub fn hold_for(&self, text: &str) -> bool {
        self.forms.iter().all(|form| match form {
            Form::Nfc => is_nfc(text),
            Form::Nfd => is_nfd(text),
            Form::Nfkc => is_nfkc(text),
            Form::Nfkd => is_nfkd(text),
        })
    }
}

fn push_forms(normalizer: &NormalizerWrapper, forms: &mut Vec<Form>) -> Option<()> {
    match normalizer {
        NormalizerWrapper::NFC(_) => forms.push(Form::Nfc),
        NormalizerWrapper::NFD(_) => forms.push(Form::Nfd),
        NormalizerWrapper::NFKC(_) => forms.push(Form::Nfkc),
        NormalizerWrapper::NFKD(_) => forms.push(Form::Nfkd),
        NormalizerWrapper::Sequence(sequence) => {
            for inner in sequence.as_ref() {
                push_forms(inner, forms)?;
            }
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::normalizers::unicode::NFC;
    use tokenizers::{NormalizedString, Normalizer};

    #[test]
    fn a_text_in_nfc_is_left_as_it_is_and_others_are_not() {
        let forms = NormalForms::of(Some(&NFC.into())).expect("NFC is supported");
        for text in ["plain", "café 你好", "cafe\u{301}", "\u{212B}ngström", "\u{301}a"] {
            let mut normalized = NormalizedString::from(text);
            NFC.normalize(&mut normalized).expect("normalizes");
            assert_eq!(forms.hold_for(text), normalized.get() == text, "{text:?}");
        }
    }
}
