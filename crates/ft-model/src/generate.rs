//! Autoregressive generation over any model session that keeps its own KV cache: feed the
//! prompt once, then one token at a time, streaming each token to the caller.

use std::ops::ControlFlow;

use crate::sampling::{Sampler, StopCondition};

/// A model with a growing context (a KV cache): appending tokens returns the logits of the next
/// token. History is kept as ids, never re-encoded text.
pub trait LogitsSession {
    /// The session's error type.
    type Error;

    /// Appends `ids` to the context and returns the next-token logits `[vocab]`.
    fn append(&mut self, ids: &[u32]) -> Result<Vec<f32>, Self::Error>;

    /// Forgets the whole context.
    fn reset(&mut self);

    /// Keeps the first `len` tokens of the context (a chat or a server reuses the prefix a new
    /// prompt shares with the context).
    fn truncate(&mut self, len: usize);

    /// Tokens in the context.
    fn context_len(&self) -> usize;

    /// The longest context the model supports.
    fn max_context(&self) -> usize;
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token (EOS or a template stop token) was produced; it is not in the output.
    StopToken(u32),
    /// The caller's callback asked to stop (e.g. a stop string was seen).
    Callback,
    /// `max_new_tokens` was reached.
    MaxTokens,
    /// The model's context is full.
    ContextFull,
}

/// What one call to [`generate`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Generated ids, without the stop token.
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub stop: StopReason,
}

/// What to do after one set of next-token logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Emit this token and feed it to the model.
    Token(u32),
    /// Generation ends (a stop token was already added to `history`).
    Stop(StopReason),
}

/// The limits one answer runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tokens produced so far.
    pub produced: usize,
    /// Longest answer.
    pub max_new_tokens: usize,
    /// Tokens in the model's context now.
    pub context_len: usize,
    /// The model's longest context.
    pub max_context: usize,
}

/// One decision of [`generate`], shared by every decoding loop (alone or batched): stop at the
/// limits, else sample a token from `logits` (which `history` penalises) and append it to
/// `history`; a stop token ends generation.
pub fn next_token(
    sampler: &mut Sampler,
    stop: &StopCondition,
    logits: &mut [f32],
    history: &mut Vec<u32>,
    limits: Limits,
) -> Next {
    if limits.produced >= limits.max_new_tokens {
        return Next::Stop(StopReason::MaxTokens);
    }
    if limits.context_len >= limits.max_context {
        return Next::Stop(StopReason::ContextFull);
    }
    let token = sampler.next_token(logits, history);
    history.push(token);
    if stop.is_stop_token(token) {
        Next::Stop(StopReason::StopToken(token))
    } else {
        Next::Token(token)
    }
}

/// Generates after `prompt`: every produced token goes to `on_token` (which may stop early),
/// and is appended to `history` (the ids the repetition penalty sees). A stop token is fed to
/// the session too, so that a chat's next turn continues after it.
pub fn generate<S: LogitsSession>(
    session: &mut S,
    prompt: &[u32],
    sampler: &mut Sampler,
    stop: &StopCondition,
    max_new_tokens: usize,
    history: &mut Vec<u32>,
    on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation, S::Error> {
    history.extend_from_slice(prompt);
    let logits = session.append(prompt)?;
    generate_from(session, logits, sampler, stop, max_new_tokens, history, on_token)
}

/// [`generate`] after a prompt the caller already fed (e.g. as input embeddings), starting from
/// its next-token `logits`; `history` already holds the prompt.
pub fn generate_from<S: LogitsSession>(
    session: &mut S,
    mut logits: Vec<f32>,
    sampler: &mut Sampler,
    stop: &StopCondition,
    max_new_tokens: usize,
    history: &mut Vec<u32>,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation, S::Error> {
    let mut tokens = Vec::new();
    loop {
        let limits = Limits {
            produced: tokens.len(),
            max_new_tokens,
            context_len: session.context_len(),
            max_context: session.max_context(),
        };
        match next_token(sampler, stop, &mut logits, history, limits) {
            Next::Stop(StopReason::StopToken(token)) => {
                session.append(&[token])?;
                return Ok(Generation {
                    tokens,
                    stop: StopReason::StopToken(token),
                });
            }
            Next::Stop(stop) => return Ok(Generation { tokens, stop }),
            Next::Token(token) => {
                tokens.push(token);
                let flow = on_token(token);
                logits = session.append(&[token])?;
                if flow.is_break() {
                    return Ok(Generation {
                        tokens,
                        stop: StopReason::Callback,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::sampling::SamplingConfig;

    /// Predicts `last + 1` (mod vocab): a deterministic toy model.
    struct Counter {
        context: Vec<u32>,
        vocab: usize,
    }

    impl LogitsSession for Counter {
        type Error = ();
        fn append(&mut self, ids: &[u32]) -> Result<Vec<f32>, ()> {
            self.context.extend_from_slice(ids);
            let next = (*self.context.last().ok_or(())? as usize + 1) % self.vocab;
            let mut logits = vec![0.0; self.vocab];
            logits[next] = 1.0;
            Ok(logits)
        }
        fn reset(&mut self) {
            self.context.clear();
        }
        fn truncate(&mut self, len: usize) {
            self.context.truncate(len);
        }
        fn context_len(&self) -> usize {
            self.context.len()
        }
        fn max_context(&self) -> usize {
            64
        }
    }

    #[test]
    fn stops_on_stop_token_and_keeps_it_in_the_context() {
        let mut model = Counter {
            context: vec![],
            vocab: 10,
        };
        let stop = StopCondition {
            ids: HashSet::from([7]),
            strings: vec![],
        };
        let mut streamed = Vec::new();
        let mut history = Vec::new();
        let out = generate(
            &mut model,
            &[3],
            &mut Sampler::new(SamplingConfig::greedy()),
            &stop,
            100,
            &mut history,
            |t| {
                streamed.push(t);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(out.tokens, vec![4, 5, 6]);
        assert_eq!(out.stop, StopReason::StopToken(7));
        assert_eq!(streamed, out.tokens);
        assert_eq!(model.context, vec![3, 4, 5, 6, 7]);
        assert_eq!(history, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn max_tokens_and_callback_end_generation() {
        let mut model = Counter {
            context: vec![],
            vocab: 100,
        };
        let mut sampler = Sampler::new(SamplingConfig::greedy());
        let none = StopCondition::default();
        let out = generate(&mut model, &[0], &mut sampler, &none, 3, &mut vec![], |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!((out.tokens, out.stop), (vec![1, 2, 3], StopReason::MaxTokens));
        model.reset();
        let out = generate(&mut model, &[0], &mut sampler, &none, 10, &mut vec![], |t| {
            if t == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!((out.tokens, out.stop), (vec![1, 2], StopReason::Callback));
    }
}
