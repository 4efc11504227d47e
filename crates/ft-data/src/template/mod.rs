//! Chat templates: XTuner's prompt templates (exact strings), user templates from TOML, and `hf`
//! (the model's own Jinja `chat_template`).
//!
//! A template turns a [`Conversation`] into [`Segment`]s: the text pieces in order, each tagged
//! with whether it is trained on. Encoding ([`crate::encode`]) turns segments into ids and labels,
//! and `ft data preview` colours them.

mod builtin;
mod hf;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use builtin::builtin_templates;
pub use hf::HfTemplate;

use crate::error::{DataError, Result};
use crate::record::{Conversation, Turn};

/// One piece of a rendered sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// The tokenizer's BOS id(s); never trained.
    Bos,
    /// Prompt text (system + instruction); never trained.
    Prompt(String),
    /// Answer text (output + suffix); trained iff `loss`.
    Answer { text: String, loss: bool },
    /// The tokenizer's EOS after an answer; trained iff `loss`.
    Eos { loss: bool },
    /// Separator text; never trained.
    Sep(String),
    /// The image placeholder (LLaVA); never trained.
    Image,
}

/// An XTuner prompt template (`SYSTEM`, `INSTRUCTION`, `SUFFIX`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptTemplate {
    /// Registry name.
    #[serde(default)]
    pub name: String,
    /// Rendered before the first instruction when a system text is given; uses `{system}`.
    #[serde(default)]
    pub system: String,
    /// Wraps each user input; uses `{input}` and optionally `{round}` (1-based).
    pub instruction: String,
    /// Appended to every output (trained).
    #[serde(default)]
    pub suffix: String,
    /// The suffix replaces EOS (no EOS is appended).
    #[serde(default)]
    pub suffix_as_eos: bool,
    /// Separator after every turn (not trained).
    #[serde(default)]
    pub sep: String,
    /// Extra stop strings for generation.
    #[serde(default)]
    pub stop_words: Vec<String>,
}

/// A template: XTuner-style, or the model's own Jinja template.
#[derive(Debug, Clone)]
pub enum Template {
    /// XTuner-style prompt template.
    Prompt(PromptTemplate),
    /// `hf`: the model's `chat_template`.
    Hf(HfTemplate),
}

/// Names of the built-in templates, plus `hf`.
pub fn template_names() -> Vec<String> {
    let mut names: Vec<String> = builtin_templates().into_iter().map(|t| t.name).collect();
    names.push("hf".to_owned());
    names
}

impl Template {
    /// Resolves a template by name: a built-in, `hf` (needs `chat_template` with the
    /// tokenizer's special tokens), or a path to a `.toml` file holding a [`PromptTemplate`].
    pub fn resolve(name: &str, chat_template: Option<&HfTemplate>) -> Result<Self> {
        if name == "hf" {
            return chat_template
                .cloned()
                .map(Template::Hf)
                .ok_or_else(|| DataError::Template {
                    name: "hf".into(),
                    message:
                        "the model has no `chat_template` in tokenizer_config.json; choose a named template"
                            .into(),
                });
        }
        if name.ends_with(".toml") {
            return PromptTemplate::from_toml_file(Path::new(name)).map(Template::Prompt);
        }
        builtin_templates()
            .into_iter()
            .find(|t| t.name == name)
            .map(Template::Prompt)
            .ok_or_else(|| DataError::UnknownTemplate {
                name: name.to_owned(),
                known: template_names().join(", "),
            })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        match self {
            Template::Prompt(t) => &t.name,
            Template::Hf(_) => "hf",
        }
    }

    /// Stop strings for generation (the template's own; the tokenizer's EOS is added by callers).
    pub fn stop_words(&self) -> Vec<String> {
        match self {
            Template::Prompt(t) => t.stop_words.clone(),
            Template::Hf(h) => h.stop_words(),
        }
    }

    /// Renders a conversation into segments. `default_system` is used when the first turn has none.
    pub fn segments(
        &self,
        conversation: &Conversation,
        default_system: Option<&str>,
    ) -> Result<Vec<Segment>> {
        match self {
            Template::Prompt(t) => t.segments(conversation, default_system),
            Template::Hf(h) => h.segments(conversation, default_system),
        }
    }

    /// What the model sees before answering `next.input` after the finished `turns` (their
    /// outputs are what was answered): the template's rendering of the whole conversation so far,
    /// the same segments training renders for those turns, then the prompt of the new turn. Used
    /// by `ft chat`, `ft serve` and the evaluation hook, so a chat is tokenised as it was trained.
    pub fn generation_segments(
        &self,
        turns: &[Turn],
        next: &Turn,
        default_system: Option<&str>,
    ) -> Result<Vec<Segment>> {
        let finished = Conversation {
            conversation: turns.to_vec(),
            ..Default::default()
        };
        match self {
            Template::Prompt(t) => {
                let mut out = t.segments(&finished, default_system)?;
                t.push_generation_prompt(&mut out, next, turns.len(), default_system)?;
                Ok(out)
            }
            Template::Hf(h) => h.generation_segments(&finished, next, default_system),
        }
    }
}

/// The system text of turn `round`: its own, else the default on the first turn.
fn turn_system<'a>(turn: &'a Turn, round: usize, default_system: Option<&'a str>) -> Option<&'a str> {
    match (&turn.system, round) {
        (Some(s), _) => Some(s.as_str()),
        (None, 0) => default_system,
        (None, _) => None,
    }
}

impl PromptTemplate {
    /// Reads a user template from a TOML file (keys as in [`PromptTemplate`]).
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut template: PromptTemplate = toml::from_str(&text).map_err(|e| DataError::Template {
            name: path.display().to_string(),
            message: e.to_string(),
        })?;
        if template.name.is_empty() {
            template.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        template.validate()?;
        Ok(template)
    }

    /// Checks that placeholders are the known ones.
    pub fn validate(&self) -> Result<()> {
        check_placeholders(&self.name, "instruction", &self.instruction, &["input", "round"])?;
        check_placeholders(&self.name, "system", &self.system, &["system"])?;
        if !self.instruction.contains("{input}") {
            return Err(DataError::Template {
                name: self.name.clone(),
                message: "`instruction` must contain `{input}`".into(),
            });
        }
        Ok(())
    }

    /// The prompt of one turn: SYSTEM (if `system` is non-empty) + INSTRUCTION.
    pub fn render_prompt(&self, input: &str, system: Option<&str>, round: usize) -> Result<String> {
        let instruction = fill(
            &self.name,
            &self.instruction,
            &[("input", input), ("round", &(round + 1).to_string())],
        )?;
        match system.filter(|s| !s.is_empty()) {
            Some(system) if !self.system.is_empty() => {
                Ok(fill(&self.name, &self.system, &[("system", system)])? + &instruction)
            }
            _ => Ok(instruction),
        }
    }

    /// The prompt of turn `round` after `out` (the finished turns): BOS where a turn starts
    /// after EOS, then the system text (if any) and the instruction.
    fn push_generation_prompt(
        &self,
        out: &mut Vec<Segment>,
        next: &Turn,
        round: usize,
        default_system: Option<&str>,
    ) -> Result<()> {
        if round == 0 || !self.suffix_as_eos {
            out.push(Segment::Bos);
        }
        let prompt = self.render_prompt(&next.input, turn_system(next, round, default_system), round)?;
        push_prompt_with_image(out, &self.name, prompt)
    }

    /// XTuner's `template_map_fn` followed by `encode_fn`'s turn layout.
    fn segments(&self, conversation: &Conversation, default_system: Option<&str>) -> Result<Vec<Segment>> {
        let mut out = Vec::new();
        let mut next_needs_bos = true;
        for (round, turn) in conversation.conversation.iter().enumerate() {
            if next_needs_bos {
                out.push(Segment::Bos);
            }
            let system = turn_system(turn, round, default_system);
            let prompt = self.render_prompt(&turn.input, system, round)?;
            push_prompt_with_image(&mut out, &self.name, prompt)?;
            let loss = turn.output_with_loss;
            out.push(Segment::Answer {
                text: format!("{}{}", turn.output, self.suffix),
                loss,
            });
            if !self.suffix_as_eos {
                out.push(Segment::Eos { loss });
                next_needs_bos = true;
            } else {
                next_needs_bos = false;
            }
            if !self.sep.is_empty() {
                out.push(Segment::Sep(self.sep.clone()));
            }
        }
        Ok(out)
    }
}

/// The image placeholder string in dataset texts.
pub const IMAGE_TOKEN: &str = "<image>";

/// Pushes a prompt, split around the image placeholder when it holds one (at most one image
/// per sample, as in XTuner's LLaVA).
pub(crate) fn push_prompt_with_image(out: &mut Vec<Segment>, name: &str, prompt: String) -> Result<()> {
    match prompt.matches(IMAGE_TOKEN).count() {
        0 => out.push(Segment::Prompt(prompt)),
        1 => {
            let (before, after) = prompt.split_once(IMAGE_TOKEN).expect("invariant: counted one");
            out.push(Segment::Prompt(before.to_owned()));
            out.push(Segment::Image);
            out.push(Segment::Prompt(after.to_owned()));
        }
        n => {
            return Err(DataError::Template {
                name: name.to_owned(),
                message: format!(
                    "a prompt holds {n} `{IMAGE_TOKEN}` placeholders; one image per sample is supported"
                ),
            });
        }
    }
    Ok(())
}

/// Fills `{key}` placeholders; an unknown placeholder is an error naming it.
fn fill(name: &str, pattern: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(pattern.len() + 64);
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if values.iter().any(|(k, _)| *k == &after[..end]) => {
                let key = &after[..end];
                let value = values
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| *v)
                    .unwrap_or("");
                out.push_str(value);
                rest = &after[end + 1..];
            }
            Some(end) if is_identifier(&after[..end]) => {
                return Err(DataError::Template {
                    name: name.to_owned(),
                    message: format!("unknown placeholder `{{{}}}` in `{pattern}`", &after[..end]),
                });
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_placeholders(name: &str, field: &str, pattern: &str, allowed: &[&str]) -> Result<()> {
    let values: Vec<(&str, &str)> = allowed.iter().map(|k| (*k, "")).collect();
    fill(name, pattern, &values).map(|_| ()).map_err(|e| match e {
        DataError::Template { name, message } => DataError::Template {
            name,
            message: format!("{field}: {message}"),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internlm2_chat_two_turns_have_one_bos_and_no_eos() {
        let t = Template::resolve("internlm2_chat", None).unwrap();
        let conv = Conversation {
            conversation: vec![Turn::new("hi", "hello").with_system("sys"), Turn::new("a", "b")],
            ..Default::default()
        };
        let segs = t.segments(&conv, None).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment::Bos,
                Segment::Prompt("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n".into()),
                Segment::Answer { text: "hello<|im_end|>".into(), loss: true },
                Segment::Sep("\n".into()),
                Segment::Prompt("<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n".into()),
                Segment::Answer { text: "b<|im_end|>".into(), loss: true },
                Segment::Sep("\n".into()),
            ]
        );
    }

    #[test]
    fn default_template_appends_eos_then_sep_then_bos() {
        let t = Template::resolve("default", None).unwrap();
        let conv = Conversation {
            conversation: vec![Turn::new("q1", "a1"), Turn::new("q2", "a2")],
            ..Default::default()
        };
        let segs = t.segments(&conv, None).unwrap();
        assert_eq!(segs[3], Segment::Eos { loss: true });
        assert_eq!(segs[4], Segment::Sep("\n".into()));
        assert_eq!(segs[5], Segment::Bos);
    }

    #[test]
    fn chatglm2_fills_round() {
        let t = Template::resolve("chatglm2", None).unwrap();
        let conv = Conversation {
            conversation: vec![Turn::new("x", "y"), Turn::new("z", "w")],
            ..Default::default()
        };
        let segs = t.segments(&conv, None).unwrap();
        assert!(matches!(&segs[1], Segment::Prompt(p) if p == "[Round 1]\n\n问：x\n\n答："));
        assert!(segs.contains(&Segment::Prompt("[Round 2]\n\n问：z\n\n答：".into())));
    }

    #[test]
    fn unknown_template_lists_known_ones() {
        let err = Template::resolve("nope", None).unwrap_err().to_string();
        assert!(
            err.contains("internlm2_chat") && err.contains("qwen_chat"),
            "{err}"
        );
    }

    #[test]
    fn braces_in_user_text_are_kept() {
        let t = Template::resolve("default", None).unwrap();
        let p = match t {
            Template::Prompt(p) => p,
            _ => unreachable!(),
        };
        let text = p.render_prompt("f(x) = {x}", Some("use {braces}"), 0).unwrap();
        assert_eq!(text, "<|System|>:use {braces}\n<|User|>:f(x) = {x}\n<|Bot|>:");
    }

    #[test]
    fn unknown_placeholder_in_user_template_is_an_error() {
        let t = PromptTemplate {
            name: "mine".into(),
            instruction: "{input} {oops}".into(),
            ..toml::from_str("instruction = \"{input}\"").unwrap()
        };
        let err = t.validate().unwrap_err().to_string();
        assert!(err.contains("{oops}"), "{err}");
    }
}
