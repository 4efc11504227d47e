//! `hf`: rendering with the model's own Jinja `chat_template` (as transformers'
//! `apply_chat_template`), cut into prompt and answer segments by incremental rendering.

use minijinja::{Environment, Error as JinjaError, ErrorKind, context};
use serde::Serialize;

use super::{Segment, push_prompt_with_image};
use crate::error::{DataError, Result};
use crate::record::{Conversation, Turn};

/// A model's Jinja chat template with the special-token strings it may reference.
#[derive(Debug, Clone)]
pub struct HfTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

/// A conversation rendered turn by turn: its segments, its messages (role, content) and the
/// length of its full rendering.
type RenderedTurns<'a> = (Vec<Segment>, Vec<(&'a str, &'a str)>, usize);

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

impl HfTemplate {
    /// A template from its Jinja source and the tokenizer's bos/eos strings.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        }
    }

    /// The model's own template, from its tokenizer (`None` when it has no `chat_template`).
    pub fn from_tokenizer(tokenizer: &crate::tokenizer::FtTokenizer) -> Option<Self> {
        let special = tokenizer.special();
        let content = |t: &Option<crate::tokenizer::SpecialToken>| {
            t.as_ref().map(|t| t.content.clone()).unwrap_or_default()
        };
        tokenizer
            .chat_template()
            .map(|source| Self::new(source, content(&special.bos), content(&special.eos)))
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Stop strings: the EOS string, plus `<|im_end|>` for ChatML templates.
    pub fn stop_words(&self) -> Vec<String> {
        let mut words = Vec::new();
        if !self.eos_token.is_empty() {
            words.push(self.eos_token.clone());
        }
        if self.source.contains("<|im_end|>") && self.eos_token != "<|im_end|>" {
            words.push("<|im_end|>".to_owned());
        }
        words
    }

    /// Renders `messages` exactly as `apply_chat_template(..., tokenize=False)` would.
    pub fn render(&self, messages: &[(&str, &str)], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template("chat", &self.source)
            .map_err(|e| self.error(e))?;
        let messages: Vec<Message> = messages
            .iter()
            .map(|(role, content)| Message { role, content })
            .collect();
        env.get_template("chat")
            .and_then(|t| {
                t.render(context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => self.bos_token,
                    eos_token => self.eos_token,
                })
            })
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: JinjaError) -> DataError {
        DataError::Template {
            name: "hf".into(),
            message: format!("chat_template: {e:#}"),
        }
    }

    /// Segments by incremental rendering: each user turn's new text is prompt, each assistant
    /// turn's new text is the answer; trailing whitespace after an answer is a separator.
    pub(super) fn segments(
        &self,
        conversation: &Conversation,
        default_system: Option<&str>,
    ) -> Result<Vec<Segment>> {
        Ok(self.render_turns(conversation, default_system)?.0)
    }

    /// The segments of the finished turns, then the text the new user turn and the generation
    /// prompt add (`apply_chat_template(..., add_generation_prompt=True)` of the whole chat).
    pub(super) fn generation_segments(
        &self,
        finished: &Conversation,
        next: &Turn,
        default_system: Option<&str>,
    ) -> Result<Vec<Segment>> {
        let (mut out, mut messages, rendered_len) = self.render_turns(finished, default_system)?;
        let round = finished.conversation.len();
        push_turn_messages(&mut messages, next, round, default_system);
        let prompt = self.render(&messages, true)?;
        let new_prompt = self.suffix_after(&prompt, rendered_len)?;
        push_prompt_with_image(&mut out, "hf", new_prompt.to_owned())?;
        Ok(out)
    }

    /// Renders `conversation` turn by turn; returns its segments, its messages and the length of
    /// its full rendering.
    fn render_turns<'a>(
        &self,
        conversation: &'a Conversation,
        default_system: Option<&'a str>,
    ) -> Result<RenderedTurns<'a>> {
        let mut messages: Vec<(&str, &str)> = Vec::new();
        let mut out = Vec::new();
        let mut rendered_len = 0;
        for (round, turn) in conversation.conversation.iter().enumerate() {
            push_turn_messages(&mut messages, turn, round, default_system);
            let prompt = self.render(&messages, true)?;
            let new_prompt = self.suffix_after(&prompt, rendered_len)?;
            push_prompt_with_image(&mut out, "hf", new_prompt.to_owned())?;
            messages.push(("assistant", &turn.output));
            let full = self.render(&messages, false)?;
            let answer = self.suffix_after(&full, prompt.len())?;
            let trimmed = answer.trim_end();
            out.push(Segment::Answer {
                text: trimmed.to_owned(),
                loss: turn.output_with_loss,
            });
            if trimmed.len() < answer.len() {
                out.push(Segment::Sep(answer[trimmed.len()..].to_owned()));
            }
            rendered_len = full.len();
        }
        Ok((out, messages, rendered_len))
    }

    fn suffix_after<'a>(&self, text: &'a str, prefix_len: usize) -> Result<&'a str> {
        text.get(prefix_len..).ok_or_else(|| DataError::Template {
            name: "hf".into(),
            message: "the chat_template does not render a conversation as a prefix of its continuation; \
                      choose a named template"
                .into(),
        })
    }
}

/// The system message (its own, else the default on the first turn) and the user message of a
/// turn.
fn push_turn_messages<'a>(
    messages: &mut Vec<(&'a str, &'a str)>,
    turn: &'a Turn,
    round: usize,
    default_system: Option<&'a str>,
) {
    if let Some(system) = super::turn_system(turn, round, default_system).filter(|s| !s.is_empty()) {
        messages.push(("system", system));
    }
    messages.push(("user", &turn.input));
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_segments_train_on_answer_and_im_end_only() {
        let t = HfTemplate::new(CHATML, "<|im_start|>", "<|im_end|>");
        let conv = Conversation {
            conversation: vec![Turn::new("Hi", "Hello!"), Turn::new("2+2?", "4")],
            ..Default::default()
        };
        let segs = t.segments(&conv, None).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment::Prompt("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n".into()),
                Segment::Answer { text: "Hello!<|im_end|>".into(), loss: true },
                Segment::Sep("\n".into()),
                Segment::Prompt("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n".into()),
                Segment::Answer { text: "4<|im_end|>".into(), loss: true },
                Segment::Sep("\n".into()),
            ]
        );
    }

    #[test]
    fn raise_exception_becomes_a_template_error() {
        let t = HfTemplate::new("{{ raise_exception('roles must alternate') }}", "", "");
        let err = t.render(&[("user", "x")], true).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }

    #[test]
    fn python_string_methods_work() {
        let t = HfTemplate::new("{{ messages[0]['content'].strip() }}", "", "");
        assert_eq!(t.render(&[("user", "  x  ")], false).unwrap(), "x");
    }
}
