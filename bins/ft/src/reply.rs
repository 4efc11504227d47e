//! One answer over a KV session, shared by `ft chat` and `ft serve`: the prompt's prefix that
//! is already in the session is reused, the rest is appended, and the answer streams out as text
//! that never shows a stop string.

use std::ops::ControlFlow;

use ft_data::chat::{StopWords, StreamStep, TextStream};
use ft_data::tokenizer::FtTokenizer;
use ft_model::generate::{LogitsSession, StopReason, generate_from};
use ft_model::sampling::{Sampler, StopCondition};

use crate::picture::{PictureRows, clamp_to_picture};

/// Why an answer ended (OpenAI's `finish_reason`, plus the caller's own stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or a stop string.
    Stop,
    /// `max_tokens` or the model's context.
    Length,
    /// The caller stopped it (the client left, the stop button).
    Cancelled,
}

impl Finish {
    /// OpenAI's name for it.
    pub fn as_openai(self) -> &'static str {
        match self {
            Finish::Stop | Finish::Cancelled => "stop",
            Finish::Length => "length",
        }
    }
}

/// What one answer produced.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The answer text, stop string excluded.
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token excluded).
    pub completion_tokens: usize,
    /// Prompt tokens that were already in the session.
    pub reused_tokens: usize,
    /// Why it ended.
    pub finish: Finish,
}

/// A stop condition from stop words.
pub fn stop_condition(words: StopWords) -> StopCondition {
    StopCondition {
        ids: words.ids.into_iter().collect(),
        strings: words.strings,
    }
}

/// Prompt ids without image markers, or an error saying the model takes no image.
pub fn text_ids(ids: Vec<i32>) -> anyhow::Result<Vec<u32>> {
    ids.into_iter()
        .map(|id| {
            u32::try_from(id)
                .map_err(|_| anyhow::anyhow!("the prompt holds `<image>`, but this model takes no images"))
        })
        .collect()
}

/// The settings of one answer.
pub struct ReplyRequest<'a> {
    /// The whole prompt.
    pub prompt: &'a [u32],
    /// Token choice.
    pub sampler: &'a mut Sampler,
    /// Stop ids and strings.
    pub stop: &'a StopCondition,
    /// Longest answer.
    pub max_new_tokens: usize,
    /// The picture some of the prompt's ids stand for (a LLaVA's).
    pub picture: Option<&'a PictureRows>,
}

/// Answers `request.prompt` in `session`, whose context is `context`; every piece of text goes
/// to `on_text`, which may stop the answer.
pub fn reply<S: LogitsSession>(
    session: &mut S,
    context: &mut Vec<u32>,
    tokenizer: &FtTokenizer,
    request: ReplyRequest<'_>,
    on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> anyhow::Result<Reply>
where
    S::Error: std::fmt::Display,
{
    let feed = |session: &mut S, prompt: &[u32], reused: usize| {
        session
            .append(&prompt[reused..])
            .map_err(|e| anyhow::anyhow!("generation failed: {e}"))
    };
    reply_with(session, context, tokenizer, request, feed, on_text)
}

/// [`reply`] with the prompt's new part (`prompt[reused..]`) fed by `feed` (a LLaVA feeds its
/// picture as input embeddings), which returns the next-token logits.
pub fn reply_with<S: LogitsSession>(
    session: &mut S,
    context: &mut Vec<u32>,
    tokenizer: &FtTokenizer,
    request: ReplyRequest<'_>,
    feed: impl FnOnce(&mut S, &[u32], usize) -> anyhow::Result<Vec<f32>>,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> anyhow::Result<Reply>
where
    S::Error: std::fmt::Display,
{
    let prompt = request.prompt;
    anyhow::ensure!(!prompt.is_empty(), "the prompt is empty");
    let reused = clamp_to_picture(reusable_prefix(context, prompt), request.picture);
    session.truncate(reused);
    context.truncate(reused);
    let logits = feed(session, prompt, reused)?;
    context.extend_from_slice(&prompt[reused..]);
    let mut stream = TextStream::new(tokenizer, request.stop.strings.clone());
    let mut stopped_by_string = false;
    let mut cancelled = false;
    let mut stream_error = None;
    let generation = generate_from(
        session,
        logits,
        request.sampler,
        request.stop,
        request.max_new_tokens,
        context,
        |token| match stream.push(token) {
            Ok(StreamStep::Continue(text)) => {
                if !text.is_empty() && on_text(&text).is_break() {
                    cancelled = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
            Ok(StreamStep::Stop(text)) => {
                stopped_by_string = true;
                if !text.is_empty() {
                    let _ = on_text(&text);
                }
                ControlFlow::Break(())
            }
            Err(e) => {
                stream_error = Some(e);
                ControlFlow::Break(())
            }
        },
    )
    .map_err(|e| anyhow::anyhow!("generation failed: {e}"))?;
    if let Some(e) = stream_error {
        return Err(e.into());
    }
    if !stopped_by_string && !cancelled {
        let rest = stream.finish();
        if !rest.is_empty() {
            let _ = on_text(&rest);
        }
    }
    let finish = match generation.stop {
        _ if cancelled => Finish::Cancelled,
        StopReason::StopToken(_) | StopReason::Callback => Finish::Stop,
        StopReason::MaxTokens | StopReason::ContextFull => Finish::Length,
    };
    Ok(Reply {
        text: stream.text().to_owned(),
        prompt_tokens: prompt.len(),
        completion_tokens: generation.tokens.len(),
        reused_tokens: reused,
        finish,
    })
}

/// The longest prefix of `prompt` already in `context`, leaving at least one prompt token to
/// append (its logits start the answer).
pub fn reusable_prefix(context: &[u32], prompt: &[u32]) -> usize {
    let shared = context.iter().zip(prompt).take_while(|(a, b)| a == b).count();
    shared.min(prompt.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_reuses_the_shared_prefix_but_always_appends_a_token() {
        assert_eq!(reusable_prefix(&[1, 2, 3, 9], &[1, 2, 3, 4, 5]), 3);
        assert_eq!(reusable_prefix(&[1, 2, 3], &[1, 2, 3]), 2);
        assert_eq!(reusable_prefix(&[], &[7]), 0);
        assert_eq!(reusable_prefix(&[8], &[7, 1]), 0);
    }
}
