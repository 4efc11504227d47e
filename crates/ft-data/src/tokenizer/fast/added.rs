//! Added tokens split off a text match by match, as `AddedVocabulary::extract_and_normalize`
//! splits them: first the tokens matched on the raw text (`normalized: false`), then, in each
//! remaining gap, the tokens matched on the normalised text; leftmost-longest, with the same
//! `single_word`, `lstrip` and `rstrip` rules (`find_matches` in `added_vocabulary.rs`).

use std::collections::HashSet;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use tokenizers::{AddedToken, Tokenizer};

use super::{Halt, Walk};

/// A part of a text: an added token, or text between added tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'t> {
    /// An added token's id.
    Added(u32),
    /// Text with no added token in it.
    Text(&'t str),
}

/// The flags an added token is matched with.
#[derive(Debug, Clone, Copy)]
struct Matched {
    id: u32,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
}

/// One leftmost-longest automaton over added tokens' contents, and each pattern's token.
#[derive(Debug, Clone)]
struct Trie {
    automaton: AhoCorasick,
    tokens: Vec<Matched>,
}

/// The two passes over a text: raw-matched tokens, then normalised-matched ones in the gaps.
#[derive(Debug, Clone)]
pub struct AddedTokens {
    raw: Trie,
    normalized: Trie,
}

impl AddedTokens {
    /// The library's added vocabulary, or `None` where the splitting could differ from it:
    /// special tokens encoded as text, two tokens with one content, or tokens matched on
    /// normalised text while a normaliser is set (their patterns would be normalised).
    pub fn of(tokenizer: &Tokenizer) -> Option<Self> {
        let vocabulary = tokenizer.get_added_vocabulary();
        if vocabulary.get_encode_special_tokens() {
            return None;
        }
        let decoder = vocabulary.get_added_tokens_decoder();
        let mut tokens: Vec<&AddedToken> = decoder.values().collect();
        tokens.sort_by(|a, b| a.content.cmp(&b.content));
        let mut contents = HashSet::new();
        if !tokens.iter().all(|t| contents.insert(t.content.as_str())) {
            return None;
        }
        if tokenizer.get_normalizer().is_some() && tokens.iter().any(|t| t.normalized) {
            return None;
        }
        let matched = |token: &AddedToken| -> Option<Matched> {
            // The library looks the id up by content and the flags up by that id.
            let id = vocabulary.token_to_id(&token.content, tokenizer.get_model())?;
            let flags = decoder.get(&id)?;
            Some(Matched {
                id,
                single_word: flags.single_word,
                lstrip: flags.lstrip,
                rstrip: flags.rstrip,
            })
        };
        let (normalized, raw): (Vec<&AddedToken>, Vec<&AddedToken>) =
            tokens.into_iter().partition(|t| t.normalized);
        Some(Self {
            raw: Trie::new(&raw, matched)?,
            normalized: Trie::new(&normalized, matched)?,
        })
    }

    /// Calls `visit` with each part of `text` in order, until it halts.
    pub fn split<'t>(&self, text: &'t str, visit: &mut dyn FnMut(Part<'t>) -> Walk) -> Walk {
        self.raw.split(text, &mut |part| match part {
            Part::Text(gap) => self.normalized.split(gap, visit),
            added => visit(added),
        })
    }

    /// The text between raw-matched added tokens: what the library's normaliser sees.
    pub fn raw_gaps<'t>(&self, text: &'t str, visit: &mut dyn FnMut(&'t str) -> bool) -> bool {
        let mut all = true;
        let walked = self.raw.split(text, &mut |part| match part {
            Part::Text(gap) if !visit(gap) => {
                all = false;
                Err(Halt::Enough)
            }
            _ => Ok(()),
        });
        walked.is_ok() && all
    }
}

impl Trie {
    fn new(tokens: &[&AddedToken], matched: impl Fn(&AddedToken) -> Option<Matched>) -> Option<Self> {
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(tokens.iter().map(|t| &t.content))
            .ok()?;
        let tokens = tokens.iter().map(|t| matched(t)).collect::<Option<Vec<_>>>()?;
        Some(Self { automaton, tokens })
    }

    /// `find_matches` of the library, one part at a time.
    fn split<'t>(&self, sentence: &'t str, visit: &mut dyn FnMut(Part<'t>) -> Walk) -> Walk {
        let mut start_offset = 0;
        for found in self.automaton.find_iter(sentence) {
            let token = self.tokens[found.pattern().as_usize()];
            let (mut start, mut stop) = (found.start(), found.end());
            if token.single_word && !stands_alone(sentence, start, stop) {
                continue;
            }
            if token.lstrip {
                start = space_leftmost_at_end(&sentence[..start]).max(start_offset);
            }
            if token.rstrip {
                stop += space_rightmost_at_start(&sentence[stop..]);
            }
            if start_offset < start {
                visit(Part::Text(&sentence[start_offset..start]))?;
            }
            visit(Part::Added(token.id))?;
            start_offset = stop;
        }
        if start_offset < sentence.len() {
            visit(Part::Text(&sentence[start_offset..]))?;
        }
        Ok(())
    }
}

/// A `regex` pattern of the library's, which always compiles.
fn library_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("invariant: the library's added-token patterns compile")
}

static STARTS_WITH_WORD: LazyLock<Regex> = LazyLock::new(|| library_regex(r"^\w"));
static ENDS_WITH_WORD: LazyLock<Regex> = LazyLock::new(|| library_regex(r"\w$"));
static RIGHTMOST_SPACE_AT_START: LazyLock<Regex> = LazyLock::new(|| library_regex(r"^\s*"));
static LEFTMOST_SPACE_AT_END: LazyLock<Regex> = LazyLock::new(|| library_regex(r"\s*$"));

/// Whether a `single_word` token at `start..stop` has no word character right before or after it.
fn stands_alone(sentence: &str, start: usize, stop: usize) -> bool {
    let start_space = start == 0 || !ENDS_WITH_WORD.is_match(&sentence[..start]);
    let stop_space = stop == sentence.len() || !STARTS_WITH_WORD.is_match(&sentence[stop..]);
    start_space && stop_space
}

/// Where the whitespace that ends `sentence` starts.
fn space_leftmost_at_end(sentence: &str) -> usize {
    LEFTMOST_SPACE_AT_END
        .find(sentence)
        .map_or(sentence.len(), |m| m.start())
}

/// How many bytes of whitespace start `sentence`.
fn space_rightmost_at_start(sentence: &str) -> usize {
    RIGHTMOST_SPACE_AT_START.find(sentence).map_or(0, |m| m.end())
}
