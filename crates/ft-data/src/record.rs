//! XTuner's standard conversation record, into which every dataset format is mapped.

use serde::{Deserialize, Serialize};

/// One assistant turn: an optional system text, the user input and the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// System text for this turn; only non-empty values are rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The user's input (may be empty for pretraining).
    #[serde(default)]
    pub input: String,
    /// The answer the model learns to produce.
    #[serde(default)]
    pub output: String,
    /// Whether the answer is supervised (XTuner `output_with_loss`, default true).
    #[serde(default = "default_true")]
    pub output_with_loss: bool,
    /// Whether EOS follows the answer; `None` lets the template decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_eos_token: Option<bool>,
    /// Separator after the turn; `None` lets the template decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Turn {
    /// A supervised turn with no system text.
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            system: None,
            input: input.into(),
            output: output.into(),
            output_with_loss: true,
            need_eos_token: None,
            sep: None,
        }
    }

    /// The same turn with a system text.
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        let system = system.into();
        self.system = (!system.is_empty()).then_some(system);
        self
    }
}

/// One training sample: a list of turns, optionally tied to an image (LLaVA).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Conversation {
    /// The assistant turns, in order.
    pub conversation: Vec<Turn>,
    /// Image path (LLaVA), relative to the dataset's image folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Raw text sample (incremental pretraining): no template, loss on every token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pretrain: bool,
}

/// Where a record came from, for error messages and previews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Dataset file.
    pub file: std::path::PathBuf,
    /// 1-based line (JSONL) or record index + 1 (JSON array).
    pub line: usize,
}

impl std::fmt::Display for Origin {
    /// `file:line`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A conversation with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The mapped conversation.
    pub conversation: Conversation,
    /// Where it came from.
    pub origin: Origin,
}
