//! A chat over a [`LogitsSession`]: every turn's prompt is the training template's rendering of
//! the whole conversation so far; the part already in the model's KV cache is reused.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use anyhow::Context;
use ft_data::chat::{StopWords, generation_ids};
use ft_data::record::Turn;
use ft_data::template::Template;
use ft_data::tokenizer::FtTokenizer;
use ft_model::generate::LogitsSession;
use ft_model::sampling::{Sampler, SamplingConfig, StopCondition};

use crate::picture::{PictureRows, widen_placeholder};
use crate::reply::{Finish, ReplyRequest, reply, reply_with, stop_condition, text_ids};

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

/// Feeds `prompt[reused..]` to a session, the picture's rows as input embeddings.
pub type FeedPicture<'a, S> =
    Box<dyn FnMut(&mut S, &[u32], Option<&PictureRows>, usize) -> anyhow::Result<Vec<f32>> + 'a>;

/// Loads a picture file as pixel values `[3, side, side]`.
pub type LoadPicture<'a> = Box<dyn Fn(&std::path::Path) -> anyhow::Result<(Vec<f32>, [usize; 3])> + 'a>;

/// What a LLaVA adds to a chat.
pub struct PictureSupport<'a, S> {
    /// Feeds prompts that hold the picture.
    pub feed: FeedPicture<'a, S>,
    /// Loads a picture file.
    pub load: LoadPicture<'a>,
    /// Rows one picture takes.
    pub rows: usize,
}

/// A multi-turn conversation with one model.
pub struct Chat<'a, S: LogitsSession> {
    session: &'a mut S,
    tokenizer: &'a FtTokenizer,
    options: ChatOptions,
    sampler: Sampler,
    stop: StopCondition,
    turns: Vec<Turn>,
    context: Vec<u32>,
    pictures: Option<PictureSupport<'a, S>>,
    /// The conversation's picture: pixel values and shape.
    picture: Option<(Vec<f32>, [usize; 3])>,
}

impl<'a, S: LogitsSession> Chat<'a, S>
where
    S::Error: std::fmt::Display,
{
    /// A fresh chat.
    pub fn new(session: &'a mut S, tokenizer: &'a FtTokenizer, options: ChatOptions) -> Self {
        let stop = stop_condition(StopWords::new(&options.template, tokenizer, &options.stop_words));
        let sampler = Sampler::new(options.sampling.clone());
        Self {
            session,
            tokenizer,
            options,
            sampler,
            stop,
            turns: Vec::new(),
            context: Vec::new(),
            pictures: None,
            picture: None,
        }
    }

    /// The same chat about pictures (a LLaVA).
    pub fn with_pictures(mut self, support: PictureSupport<'a, S>) -> Self {
        self.pictures = Some(support);
        self
    }

    /// Starts a new conversation about the picture at `path`.
    pub fn set_picture(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        let support = self
            .pictures
            .as_ref()
            .context("this model takes no pictures (chat with a LLaVA)")?;
        let picture = (support.load)(path)?;
        self.reset();
        self.picture = Some(picture);
        Ok(())
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) {
        self.session.reset();
        self.turns.clear();
        self.context.clear();
    }

    /// The ids in the model's context: the whole conversation so far.
    #[cfg(test)]
    pub fn context(&self) -> &[u32] {
        &self.context
    }

    /// The ids that make the model answer `input` next: the template's rendering of the whole
    /// conversation so far, then the new turn's prompt; and the picture's place in them.
    pub fn prompt_ids(&self, input: &str) -> anyhow::Result<(Vec<u32>, Option<PictureRows>)> {
        let ids = generation_ids(
            &self.options.template,
            self.tokenizer,
            &self.turns,
            &Turn::new(input, ""),
            self.options.system.as_deref(),
        )?;
        match (&self.picture, &self.pictures) {
            (Some((pixels, shape)), Some(support)) => {
                let (ids, rows) = widen_placeholder(&ids, pixels.clone(), *shape, support.rows)
                    .map_err(anyhow::Error::msg)?;
                Ok((ids, Some(rows)))
            }
            _ => Ok((text_ids(ids)?, None)),
        }
    }

    /// The user's text as the conversation records it: XTuner's LLaVA chat opens the first turn
    /// about a picture with `<image>` and a newline.
    fn turn_input(&self, input: &str) -> String {
        match self.picture.is_some() && self.turns.is_empty() {
            true => format!("{}\n{input}", ft_data::template::IMAGE_TOKEN),
            false => input.to_owned(),
        }
    }

    /// Answers one user turn, streaming the text to `out`; returns the answer.
    pub fn answer(&mut self, input: &str, out: &mut impl Write) -> anyhow::Result<String> {
        let input = self.turn_input(input);
        let (prompt, picture) = self.prompt_ids(&input)?;
        let mut write_error = None;
        let request = ReplyRequest {
            prompt: &prompt,
            sampler: &mut self.sampler,
            stop: &self.stop,
            max_new_tokens: self.options.max_new_tokens,
            picture: picture.as_ref(),
        };
        let on_text = |text: &str| match write!(out, "{text}").and_then(|_| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        };
        let answer = match &mut self.pictures {
            Some(support) => {
                let feed = |session: &mut S, prompt: &[u32], reused: usize| {
                    (support.feed)(session, prompt, picture.as_ref(), reused)
                };
                reply_with(
                    self.session,
                    &mut self.context,
                    self.tokenizer,
                    request,
                    feed,
                    on_text,
                )
            }
            None => reply(self.session, &mut self.context, self.tokenizer, request, on_text),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        if let Some(e) = write_error {
            return Err(e).context("writing the answer");
        }
        writeln!(out)?;
        if answer.finish == Finish::Length {
            // XTuner drops the history when an answer hits the limit.
            self.reset();
        } else {
            self.turns.push(Turn::new(input, answer.text.clone()));
        }
        Ok(answer.text)
    }

    /// XTuner's interactive loop: lines until an empty line, `RESET`, `EXIT`; `IMAGE path`
    /// starts a conversation about another picture (a LLaVA).
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
                command if command.starts_with("IMAGE ") => {
                    let path = std::path::Path::new(command["IMAGE ".len()..].trim());
                    match self.set_picture(path) {
                        Ok(()) => writeln!(out, "(picture {}; history cleared)", path.display())?,
                        Err(e) => writeln!(out, "(no picture: {e:#})")?,
                    }
                }
                _ => {
                    self.answer(&text, out)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ft_data::template::HfTemplate;
    use ft_model::sampling::SamplingConfig;

    use super::*;

    /// Answers with scripted token lists, one per turn, and records its context.
    struct Scripted {
        context: Vec<u32>,
        answers: Vec<Vec<u32>>,
        emitted: usize,
        vocab: usize,
        prompts_seen: Vec<Vec<u32>>,
    }

    impl LogitsSession for Scripted {
        type Error = String;
        fn append(&mut self, ids: &[u32]) -> Result<Vec<f32>, String> {
            self.context.extend_from_slice(ids);
            let mut logits = vec![0.0; self.vocab];
            let answer = self.answers.first().ok_or("no answer left")?;
            if self.emitted == answer.len() {
                // The stop token is fed back; the next append is a new prompt.
                self.answers.remove(0);
                self.emitted = 0;
                return Ok(logits);
            }
            if self.emitted == 0 {
                self.prompts_seen.push(self.context.clone());
            }
            logits[answer[self.emitted] as usize] = 1.0;
            self.emitted += 1;
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
            4096
        }
    }

    #[derive(serde::Deserialize)]
    struct Golden {
        system: String,
        turns: Vec<(String, String)>,
        cases: Vec<GoldenCase>,
    }

    #[derive(serde::Deserialize)]
    struct GoldenCase {
        template: String,
        tokenizer: String,
        prompts: Vec<Vec<u32>>,
    }

    /// The regression of a two-turn chat forgetting the name: every turn's prompt, as the model
    /// sees it through the KV cache, equals transformers' rendering of the whole conversation.
    #[test]
    fn every_turn_sees_the_whole_conversation_as_transformers_renders_it() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let text = std::fs::read_to_string(fixtures.join("data/chat_goldens.json")).unwrap();
        let golden: Golden = serde_json::from_str(&text).unwrap();
        for case in golden
            .cases
            .iter()
            .filter(|c| c.template == "hf" || c.template == "internlm2_chat")
        {
            let tokenizer = FtTokenizer::from_dir(fixtures.join("tokenizers").join(&case.tokenizer)).unwrap();
            let template =
                Template::resolve(&case.template, HfTemplate::from_tokenizer(&tokenizer).as_ref()).unwrap();
            // The template's own end-of-answer token (its stop word, else EOS).
            let stop_id = *StopWords::new(&template, &tokenizer, &[]).ids.last().unwrap();
            let answers = golden
                .turns
                .iter()
                .map(|(_, answer)| {
                    let mut ids = tokenizer.encode(answer).unwrap();
                    ids.push(stop_id);
                    ids
                })
                .collect();
            let mut session = Scripted {
                context: vec![],
                answers,
                emitted: 0,
                vocab: tokenizer.vocab_size(),
                prompts_seen: vec![],
            };
            let options = ChatOptions {
                template,
                system: Some(golden.system.clone()),
                max_new_tokens: 64,
                sampling: SamplingConfig::greedy(),
                stop_words: vec![],
            };
            let mut chat = Chat::new(&mut session, &tokenizer, options);
            for (input, answer) in &golden.turns {
                assert_eq!(&chat.answer(input, &mut Vec::new()).unwrap(), answer);
            }
            let context_len = chat.context().len();
            drop(chat);
            assert_eq!(context_len, session.context.len(), "the chat mirrors the session");
            assert_eq!(
                session.prompts_seen, case.prompts,
                "{} on {}: the model saw another conversation than the template renders",
                case.template, case.tokenizer
            );
        }
    }
}
