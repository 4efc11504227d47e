//! The supported pre-tokenizers as steps over `&str`, each applied to every piece the previous
//! step left, as `PreTokenizedString::split` applies them; empty pieces are dropped between steps.
//!
//! - `Split` (a regex or a literal) with behaviour `Isolated` (matches and the text between them
//!   are pieces; `invert` changes nothing) or `Removed` (the matches, or with `invert` the text
//!   between them, are dropped); the pieces come from the library's own compiled regex.
//! - `Digits`: each numeric char alone (`individual_digits`), else runs of numeric and
//!   non-numeric chars.
//! - `ByteLevel`: a space before a piece that does not start with one (`add_prefix_space`), then
//!   GPT-2's regex split (`use_regex`), then each piece in the byte-level alphabet.
//! - `Sequence` of these, in order.

use tokenizers::SplitDelimiterBehavior;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::utils::SysRegex;

use super::Walk;
use super::byte_level::{GPT2_PATTERN, map_bytes};

/// Which pieces of a regex split are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Matches and the text between them.
    All,
    /// Only the text between matches.
    Gaps,
    /// Only the matches.
    Matches,
}

/// One pre-tokenizer, over `&str`.
#[derive(Debug)]
pub enum Step {
    /// A `Split` (its regex is the library's, cloned).
    Split { split: Split, keep: Keep },
    /// `Digits`.
    Digits { individual: bool },
    /// `ByteLevel`; `regex` is GPT-2's when `use_regex` is set.
    ByteLevel {
        add_prefix_space: bool,
        regex: Option<SysRegex>,
    },
}

/// The steps of `pre_tokenizer` (none for none), or `None` if a part of it is not supported.
pub fn plan(pre_tokenizer: Option<&PreTokenizerWrapper>) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    if let Some(pre_tokenizer) = pre_tokenizer {
        push_steps(pre_tokenizer, &mut steps)?;
    }
    Some(steps)
}

fn push_steps(pre_tokenizer: &PreTokenizerWrapper, steps: &mut Vec<Step>) -> Option<()> {
    match pre_tokenizer {
        PreTokenizerWrapper::Sequence(sequence) => {
            for inner in sequence.as_ref() {
                push_steps(inner, steps)?;
            }
        }
        PreTokenizerWrapper::Split(split) => {
            let keep = match (split.behavior, split.invert) {
                (SplitDelimiterBehavior::Isolated, _) => Keep::All,
                (SplitDelimiterBehavior::Removed, false) => Keep::Gaps,
                (SplitDelimiterBehavior::Removed, true) => Keep::Matches,
                _ => return None,
            };
            steps.push(Step::Split {
                split: split.clone(),
                keep,
            });
        }
        PreTokenizerWrapper::Digits(digits) => steps.push(Step::Digits {
            individual: digits.individual_digits,
        }),
        PreTokenizerWrapper::ByteLevel(byte_level) => {
            let regex = match byte_level.use_regex {
                true => Some(SysRegex::new(GPT2_PATTERN).ok()?),
                false => None,
            };
            steps.push(Step::ByteLevel {
                add_prefix_space: byte_level.add_prefix_space,
                regex,
            });
        }
        _ => return None,
    }
    Some(())
}

/// Buffers for byte-level pieces, reused from piece to piece (one per nested `ByteLevel`).
pub type Buffers = Vec<String>;

/// Runs `steps` over `piece` (not empty) and calls `emit` with each final piece, in order.
pub fn walk(steps: &[Step], piece: &str, buffers: &mut Buffers, emit: &mut dyn FnMut(&str) -> Walk) -> Walk {
    let Some((step, rest)) = steps.split_first() else {
        return emit(piece);
    };
    match step {
        Step::Split { split, keep } => split_regex(&split.regex, piece, *keep, &mut |sub| {
            walk_non_empty(rest, sub, buffers, emit)
        }),
        Step::Digits { individual } => split_digits(piece, *individual, &mut |sub| {
            walk_non_empty(rest, sub, buffers, emit)
        }),
        Step::ByteLevel {
            add_prefix_space,
            regex,
        } => {
            let mut mapped = buffers.pop().unwrap_or_default();
            let walked = byte_level(piece, *add_prefix_space, regex.as_ref(), &mut |sub| {
                mapped.clear();
                map_bytes(sub, &mut mapped);
                walk_non_empty(rest, &mapped, buffers, emit)
            });
            buffers.push(mapped);
            walked
        }
    }
}

/// [`walk`], skipping an empty piece as the library drops it.
fn walk_non_empty(
    steps: &[Step],
    piece: &str,
    buffers: &mut Buffers,
    emit: &mut dyn FnMut(&str) -> Walk,
) -> Walk {
    match piece.is_empty() {
        true => Ok(()),
        false => walk(steps, piece, buffers, emit),
    }
}

/// The pieces of `text` around `regex`'s matches (leftmost-first, match by match).
fn split_regex(regex: &SysRegex, text: &str, keep: Keep, visit: &mut dyn FnMut(&str) -> Walk) -> Walk {
    let (gaps, matches) = (keep != Keep::Matches, keep != Keep::Gaps);
    let mut previous_end = 0;
    for (start, end) in regex.find_iter(text) {
        if gaps && previous_end != start {
            visit(&text[previous_end..start])?;
        }
        if matches {
            visit(&text[start..end])?;
        }
        previous_end = end;
    }
    if gaps && previous_end != text.len() {
        visit(&text[previous_end..])?;
    }
    Ok(())
}

/// Numeric chars alone (`individual`) or in runs, and runs of the other chars.
fn split_digits(text: &str, individual: bool, visit: &mut dyn FnMut(&str) -> Walk) -> Walk {
    let mut run_start = 0;
    let mut previous_numeric = None;
    for (at, c) in text.char_indices() {
        let numeric = c.is_numeric();
        let cut = previous_numeric.is_some_and(|previous: bool| match individual {
            true => previous || numeric,
            false => previous != numeric,
        });
        if cut {
            visit(&text[run_start..at])?;
            run_start = at;
        }
        previous_numeric = Some(numeric);
    }
    visit(&text[run_start..])
}

/// `ByteLevel`'s split of `piece` (before mapping): the prefix space, then GPT-2's regex.
fn byte_level(
    piece: &str,
    add_prefix_space: bool,
    regex: Option<&SysRegex>,
    visit: &mut dyn FnMut(&str) -> Walk,
) -> Walk {
    let prefixed;
    let piece = match add_prefix_space && !piece.starts_with(' ') {
        true => {
            prefixed = format!(" {piece}");
            prefixed.as_str()
        }
        false => piece,
    };
    match regex {
        Some(regex) => split_regex(regex, piece, Keep::All, visit),
        None => visit(piece),
    }
}
