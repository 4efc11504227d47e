//! A chat over a [`LogitsSession`]: prompts rendered by the training template, history kept as
//! token ids in the model's KV cache (never re-encoded text), stop on token ids.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use anyhow::Context;
use ft_data::encode::bos_ids;
use ft_data::template::{Segment, Template};
use ft_data::tokenizer::FtTokenizer;
use ft_model::generate::{LogitsSession, StopReason, generate};
use ft_model::sampling::{Sampler, SamplingConfig, StopCondition};

/// The prompt XTuner's chat shows.
pub const PROMPT: &str = "double enter to end input (EXIT: exit chat, RESET: reset history) >>> ";

/// Chat settings.
pub struct ChatOptions {
    /// The template the model was trained with.
    pub template: Template,
    /// System text for the first turn.
    pub system: Option<String>,
    /// Longest answer.
    pub max_new_tokens: usize,
    /// Sampling.
    pub sampling: SamplingConfig,
    /// Extra stop words.
    pub stop_words: Vec<String>,
}

/// A multi-turn conversation with one model.
pub struct Chat<'a, S: LogitsSession> {
    session: &'a mut S,
    tokenizer: &'a FtTokenizer,
    options: ChatOptions,
    sampler: Sampler,
    stop: StopCondition,
    history: Vec<u32>,
    round: usize,
    next_needs_bos: bool,
}

impl<'a, S: LogitsSession> Chat<'a, S>
where
    S::Error: std::fmt::Display,
{
    /// A fresh chat.
    pub fn new(session: &'a mut S, tokenizer: &'a FtTokenizer, options: ChatOptions) -> Self {
        let stop = stop_condition(tokenizer, &options);
        let sampler = Sampler::new(options.sampling.clone());
        Self {
            session,
            tokenizer,
            options,
            sampler,
            stop,
            history: Vec::new(),
            round: 0,
            next_needs_bos: true,
        }
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) {
        self.session.reset();
        self.history.clear();
        self.round = 0;
        self.next_needs_bos = true;
    }

    /// The ids of the next user turn, exactly as training renders it.
    pub fn turn_ids(&self, input: &str) -> anyhow::Result<Vec<u32>> {
        let system = if self.round == 0 {
            self.options.system.as_deref()
        } else {
            None
        };
        let segments = self.options.template.prompt_segments(input, system, self.round)?;
        let mut ids = Vec::new();
        for segment in &segments {
            if let Segment::Prompt(text) = segment {
                if self.next_needs_bos && ids.is_empty() {
                    ids.extend(bos_ids(self.tokenizer, text).into_iter().map(|i| i as u32));
                }
                ids.extend(self.tokenizer.encode(text)?);
            }
        }
        Ok(ids)
    }

    /// Answers one user turn, streaming the text to `out`; returns the answer.
    pub fn answer(&mut self, input: &str, out: &mut impl Write) -> anyhow::Result<String> {
        let prompt = self.turn_ids(input)?;
        let mut printed = String::new();
        let mut generated: Vec<u32> = Vec::new();
        let tokenizer = self.tokenizer;
        let stop_strings = self.stop.strings.clone();
        let mut write_error = None;
        let generation = generate(
            self.session,
            &prompt,
            &mut self.sampler,
            &self.stop,
            self.options.max_new_tokens,
            &mut self.history,
            |token| {
                generated.push(token);
                let text = tokenizer.decode(&generated, false).unwrap_or_default();
                if !text.ends_with('\u{FFFD}')
                    && text.len() > printed.len()
                    && text.starts_with(printed.as_str())
                {
                    if let Err(e) = write!(out, "{}", &text[printed.len()..]).and_then(|_| out.flush()) {
                        write_error = Some(e);
                        return ControlFlow::Break(());
                    }
                    printed = text.clone();
                }
                if stop_strings.iter().any(|s| text.ends_with(s.as_str())) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .map_err(|e| anyhow::anyhow!("generation failed: {e}"))?;
        if let Some(e) = write_error {
            return Err(e).context("writing the answer");
        }
        let mut answer = self.tokenizer.decode(&generation.tokens, false)?;
        for s in &self.stop.strings {
            if let Some(stripped) = answer.strip_suffix(s.as_str()) {
                answer = stripped.to_owned();
            }
        }
        if answer.len() > printed.len() && answer.starts_with(printed.as_str()) {
            write!(out, "{}", &answer[printed.len()..])?;
        }
        writeln!(out)?;
        match generation.stop {
            StopReason::MaxTokens | StopReason::ContextFull => {
                // XTuner drops the history when an answer hits the limit.
                self.reset();
            }
            _ => {
                let sep = self.options.template.sep().to_owned();
                if !sep.is_empty() {
                    let ids = self.tokenizer.encode(&sep)?;
                    self.session
                        .append(&ids)
                        .map_err(|e| anyhow::anyhow!("generation failed: {e}"))?;
                    self.history.extend(ids);
                }
                self.next_needs_bos = self.options.template.needs_eos();
                self.round += 1;
            }
        }
        Ok(answer)
    }

    /// XTuner's interactive loop: lines until an empty line, `RESET`, `EXIT`.
    pub fn interactive(&mut self, input: &mut impl BufRead, out: &mut impl Write) -> anyhow::Result<()> {
        loop {
            write!(out, "\n{PROMPT}")?;
            out.flush()?;
            let mut text = String::new();
            loop {
                let mut line = String::new();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    break;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(line);
            }
            match text.trim() {
                "" => continue,
                "EXIT" => return Ok(()),
                "RESET" => {
                    self.reset();
                    writeln!(out, "(history cleared)")?;
                }
                _ => {
                    self.answer(&text, out)?;
                }
            }
        }
    }
}

/// Stop on EOS ids and on template/user stop words that are single tokens; longer stop words
/// are matched on the decoded text.
fn stop_condition(tokenizer: &FtTokenizer, options: &ChatOptions) -> StopCondition {
    let mut stop = StopCondition::default();
    stop.ids.extend(tokenizer.eos_ids());
    for word in options
        .template
        .stop_words()
        .into_iter()
        .chain(options.stop_words.iter().cloned())
    {
        match tokenizer.token_to_id(&word) {
            Some(id) => {
                stop.ids.insert(id);
            }
            None => stop.strings.push(word),
        }
    }
    stop
}
