//! Generation-side chat helpers shared by `ft chat`, `ft serve` and the evaluation hook: the ids
//! of a conversation so far (exactly as the template renders the whole conversation), the stop
//! words split into token ids and strings, and a text stream that never shows a stop string.

use crate::encode::encode_segments;
use crate::error::Result;
use crate::record::Turn;
use crate::template::Template;
use crate::tokenizer::FtTokenizer;

/// The ids the model sees before answering `next.input` after the finished `turns`: the
/// template's rendering of the whole conversation, tokenised as training tokenises it.
/// `IMAGE_TOKEN_INDEX` marks where an image goes.
pub fn generation_ids(
    template: &Template,
    tokenizer: &FtTokenizer,
    turns: &[Turn],
    next: &Turn,
    default_system: Option<&str>,
) -> Result<Vec<i32>> {
    let segments = template.generation_segments(turns, next, default_system)?;
    Ok(encode_segments(&segments, tokenizer, usize::MAX)?.input_ids)
}

/// What ends an answer: single-token stop words (and EOS) as ids, longer ones as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopWords {
    /// Token ids that end generation: the tokenizer's EOS list and single-token stop words.
    pub ids: Vec<u32>,
    /// Stop words that are not one token, matched on the decoded text.
    pub strings: Vec<String>,
}

impl StopWords {
    /// The tokenizer's EOS ids, the template's stop words and `extra` (a user's).
    pub fn new(template: &Template, tokenizer: &FtTokenizer, extra: &[String]) -> Self {
        let mut stop = StopWords {
            ids: tokenizer.eos_ids().to_vec(),
            strings: Vec::new(),
        };
        for word in template.stop_words().iter().chain(extra) {
            if word.is_empty() {
                continue;
            }
            match tokenizer.token_to_id(word) {
                Some(id) if !stop.ids.contains(&id) => stop.ids.push(id),
                Some(_) => {}
                None if !stop.strings.contains(word) => stop.strings.push(word.clone()),
                None => {}
            }
        }
        stop
    }
}

/// One step of a [`TextStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStep {
    /// Text that is safe to show now (may be empty while a character or a possible stop string
    /// is incomplete).
    Continue(String),
    /// A stop string was completed: the last text to show (the stop string excluded).
    Stop(String),
}

/// Turns generated ids into text deltas: waits for complete UTF-8 characters and holds back
/// text that may be the start of a stop string, so a stop string is never shown.
pub struct TextStream<'a> {
    tokenizer: &'a FtTokenizer,
    stop_strings: Vec<String>,
    tokens: Vec<u32>,
    text: String,
    shown: usize,
}

impl<'a> TextStream<'a> {
    /// A stream that ends at any of `stop_strings`.
    pub fn new(tokenizer: &'a FtTokenizer, stop_strings: Vec<String>) -> Self {
        Self {
            tokenizer,
            stop_strings: stop_strings.into_iter().filter(|s| !s.is_empty()).collect(),
            tokens: Vec::new(),
            text: String::new(),
            shown: 0,
        }
    }

    /// Adds one generated token.
    pub fn push(&mut self, token: u32) -> Result<StreamStep> {
        self.tokens.push(token);
        let text = self.tokenizer.decode(&self.tokens, false)?;
        if text.ends_with('\u{FFFD}') || !text.is_char_boundary(self.shown) {
            return Ok(StreamStep::Continue(String::new()));
        }
        self.text = text;
        if let Some(at) = self.first_stop() {
            self.text.truncate(at);
            return Ok(StreamStep::Stop(self.take_until(at)));
        }
        let safe = self.text.len() - self.stop_prefix_len();
        Ok(StreamStep::Continue(self.take_until(safe)))
    }

    /// The text not shown yet when generation ends without a stop string.
    pub fn finish(&mut self) -> String {
        self.take_until(self.text.len())
    }

    /// The answer so far (a stop string cut off).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The generated ids so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn take_until(&mut self, end: usize) -> String {
        if end <= self.shown {
            return String::new();
        }
        let delta = self.text[self.shown..end].to_owned();
        self.shown = end;
        delta
    }

    /// Where the earliest stop string starts.
    fn first_stop(&self) -> Option<usize> {
        self.stop_strings
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
    }

    /// Bytes at the end of the text that could begin a stop string.
    fn stop_prefix_len(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stop_strings {
            for (cut, _) in stop.char_indices().skip(1) {
                if cut > longest && self.text.ends_with(&stop[..cut]) {
                    longest = cut;
                }
            }
        }
        longest
    }
}
