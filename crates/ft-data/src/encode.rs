//! XTuner's `encode_fn`: segments → `input_ids` and `labels`, loss only where the template says.
//!
//! Each segment is tokenized on its own with no special tokens added. Labels are set by
//! position (never by token id, so a pad id equal to EOS cannot hide an EOS label).

use crate::error::{DataError, Result};
use crate::record::Conversation;
use crate::template::{Segment, Template};
use crate::tokenizer::{FtTokenizer, TokenizerFamily};

/// Label of a position that is not trained on.
pub const IGNORE_INDEX: i32 = -100;
/// Placeholder id where image features are spliced in (LLaVA).
pub const IMAGE_TOKEN_INDEX: i32 = -200;
/// ChatGLM tokenizers' BOS pair.
const CHATGLM_BOS: [i32; 2] = [64790, 64792];

/// One encoded sample.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncodedSample {
    /// Token ids (`IMAGE_TOKEN_INDEX` marks the image).
    pub input_ids: Vec<i32>,
    /// Training targets, `IGNORE_INDEX` where not trained; same length as `input_ids`.
    pub labels: Vec<i32>,
    /// Whether the sample was cut to `max_length`.
    pub truncated: bool,
}

impl EncodedSample {
    /// Number of positions with a label.
    pub fn supervised_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    /// Whether the sample has no token.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// The segments of a raw-text (pretraining) sample: BOS, the text and EOS, all text trained.
pub fn pretrain_segments(conversation: &Conversation) -> Vec<Segment> {
    let text: String = conversation
        .conversation
        .iter()
        .map(|t| format!("{}{}", t.input, t.output))
        .collect();
    vec![
        Segment::Bos,
        Segment::Answer {
            text: text.trim().to_owned(),
            loss: true,
        },
        Segment::Eos { loss: true },
    ]
}

/// Renders a conversation with `template` (or as raw text when it is a pretraining sample).
pub fn conversation_segments(
    conversation: &Conversation,
    template: &Template,
    default_system: Option<&str>,
) -> Result<Vec<Segment>> {
    if conversation.pretrain {
        Ok(pretrain_segments(conversation))
    } else {
        template.segments(conversation, default_system)
    }
}

/// Token ids and labels of `segments`, truncated (head kept) to `max_length`.
///
/// Text past `max_length + 1` ids (one more tells whether the sample was cut) is not run
/// through the tokenizer's model: [`FtTokenizer::encode_head`] gives the same ids.
pub fn encode_segments(
    segments: &[Segment],
    tokenizer: &FtTokenizer,
    max_length: usize,
) -> Result<EncodedSample> {
    let limit = max_length.saturating_add(1);
    let mut sample = EncodedSample::default();
    for (i, segment) in segments.iter().enumerate() {
        let room = limit.saturating_sub(sample.len());
        match segment {
            Segment::Bos => {
                let next_text = segments.get(i + 1).and_then(segment_text).unwrap_or("");
                for id in bos_ids(tokenizer, next_text) {
                    sample.push(id, IGNORE_INDEX);
                }
            }
            Segment::Prompt(text) | Segment::Sep(text) => {
                for id in tokenizer.encode_head(text, room)? {
                    sample.push(id as i32, IGNORE_INDEX);
                }
            }
            Segment::Answer { text, loss } => {
                for id in tokenizer.encode_head(text, room)? {
                    let id = id as i32;
                    sample.push(id, if *loss { id } else { IGNORE_INDEX });
                }
            }
            Segment::Eos { loss } => {
                let eos = tokenizer.eos_id().ok_or_else(|| DataError::Tokenizer {
                    path: tokenizer.source().to_path_buf(),
                    message: "the template appends EOS but the tokenizer has no eos_token".into(),
                })? as i32;
                sample.push(eos, if *loss { eos } else { IGNORE_INDEX });
            }
            Segment::Image => sample.push(IMAGE_TOKEN_INDEX, IGNORE_INDEX),
        }
    }
    if sample.input_ids.len() > max_length {
        sample.input_ids.truncate(max_length);
        sample.labels.truncate(max_length);
        sample.truncated = true;
    }
    Ok(sample)
}

impl EncodedSample {
    fn push(&mut self, id: i32, label: i32) {
        self.input_ids.push(id);
        self.labels.push(label);
    }
}

fn segment_text(segment: &Segment) -> Option<&str> {
    match segment {
        Segment::Prompt(t) | Segment::Sep(t) => Some(t),
        Segment::Answer { text, .. } => Some(text),
        _ => None,
    }
}

/// XTuner's BOS list, never doubling a token: nothing for Qwen tokenizers, tokenizers without
/// BOS, or when the text that follows already starts with the BOS string (ChatML models whose
/// BOS is `<|im_start|>`, Jinja templates that render `bos_token`).
pub fn bos_ids(tokenizer: &FtTokenizer, next_text: &str) -> Vec<i32> {
    match tokenizer.family() {
        TokenizerFamily::Qwen => Vec::new(),
        TokenizerFamily::ChatGlm => CHATGLM_BOS.to_vec(),
        TokenizerFamily::Standard => match &tokenizer.special().bos {
            Some(bos) if !next_text.starts_with(&bos.content) => vec![bos.id as i32],
            _ => Vec::new(),
        },
    }
}
