//! OpenAI's request and response shapes for `/v1/chat/completions` and `/v1/completions`, and
//! their validation into a generation job. Unknown request fields are ignored (clients send
//! many); the ones ft cannot honour are refused with a 400 naming them.

use ft_data::record::Turn;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;

/// Stop sequences a request may give (as OpenAI).
const MAX_STOP_SEQUENCES: usize = 4;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling and length fields both endpoints share.
#[derive(Debug, Default, Deserialize)]
pub struct CommonFields {
    /// Base model or adapter name.
    pub model: Option<String>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Softmax temperature (default 1; 0 = greedy).
    pub temperature: Option<f32>,
    /// Nucleus mass (default 1).
    pub top_p: Option<f32>,
    /// Extension: keep the k most likely tokens (default 0 = all).
    pub top_k: Option<usize>,
    /// Extension: CTRL repetition penalty (default 1 = none).
    pub repetition_penalty: Option<f32>,
    /// Longest answer.
    pub max_tokens: Option<usize>,
    /// Longest answer (newer name).
    pub max_completion_tokens: Option<usize>,
    /// Stop sequences.
    pub stop: Option<StopField>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Extension (as vLLM): keep generating past EOS and the template's stop tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    /// Refused unless 0.
    pub presence_penalty: Option<f32>,
    /// Refused unless 0.
    pub frequency_penalty: Option<f32>,
    /// Only 1.
    pub n: Option<u32>,
    /// Refused unless null or false.
    pub logprobs: Option<Value>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The text to continue: a string or a list of one string.
    pub prompt: PromptField,
    /// Refused when true.
    #[serde(default)]
    pub echo: bool,
    /// Refused when given.
    pub suffix: Option<String>,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonFields,
}

/// `prompt`: one string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// One prompt.
    One(String),
    /// A batch of prompts (only one is served per request).
    Many(Vec<String>),
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text, or content parts; null for an assistant message without text.
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image (`image_url` with a `data:` URL).
    ImageUrl {
        /// `{"url": ..., "detail": ...}`.
        image_url: ImageUrl,
    },
    /// Audio or files: not served.
    #[serde(other)]
    Other,
}

/// An image part's reference.
#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    /// A `data:image/...;base64,...` URL.
    pub url: String,
}

/// The picture of a conversation: its `data:` URL and the field it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    /// The URL.
    pub url: String,
    /// Where it was, e.g. `messages[0].content[1]`.
    pub param: String,
}

/// Parses a JSON body, naming the offending field in the error. The shared fields are
/// flattened into each request, which hides their path; they are parsed alone to find it.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let error = match parse_with_path::<T>(body) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    if error.param.is_none()
        && let Err(common) = parse_with_path::<CommonFields>(body)
        && common.param.is_some()
    {
        return Err(common);
    }
    Err(error)
}

fn parse_with_path<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let param = (path != ".").then_some(path);
        ApiError::invalid(format!("invalid request body: {}", e.inner()), param.as_deref())
    })
}

/// A conversation as ft's chat renders it: finished turns and the new user turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTurns {
    /// Turns with their answers.
    pub finished: Vec<Turn>,
    /// The turn to answer (its output is empty).
    pub next: Turn,
    /// The conversation's picture (a LLaVA's): its user message starts with `<image>` and a
    /// newline, as XTuner's chat writes it.
    pub image: Option<ImageRef>,
}

/// Turns OpenAI messages into turns: system messages set the system text of the next turn,
/// consecutive user messages join, each assistant message closes a turn; the last message must
/// be the user's. One picture per conversation when `vision`, else none.
pub fn chat_turns(messages: &[Message], vision: bool) -> Result<ChatTurns, ApiError> {
    let mut finished = Vec::new();
    let mut system: Option<String> = None;
    let mut input: Option<String> = None;
    let mut image: Option<ImageRef> = None;
    for (k, message) in messages.iter().enumerate() {
        let param = format!("messages[{k}]");
        let (mut text, picture) = message_text(message, &param, vision)?;
        if let Some(picture) = picture {
            if message.role != "user" {
                return Err(ApiError::invalid(
                    "only user messages may hold a picture",
                    Some(&picture.param),
                ));
            }
            if image.is_some() {
                return Err(ApiError::invalid(
                    "one picture per conversation is supported",
                    Some(&picture.param),
                ));
            }
            text = format!("{}\n{text}", ft_data::template::IMAGE_TOKEN);
            image = Some(picture);
        } else if text.contains(ft_data::template::IMAGE_TOKEN) {
            return Err(ApiError::invalid(
                format!(
                    "`{}` may not appear in text; send the picture as an image_url part",
                    ft_data::template::IMAGE_TOKEN
                ),
                Some(&format!("{param}.content")),
            ));
        }
        match message.role.as_str() {
            "system" | "developer" => join(&mut system, text),
            "user" => join(&mut input, text),
            "assistant" => {
                let user = input.take().ok_or_else(|| {
                    ApiError::invalid(
                        "an assistant message must follow a user message",
                        Some(&format!("{param}.role")),
                    )
                })?;
                let mut turn = Turn::new(user, text);
                turn.system = system.take();
                finished.push(turn);
            }
            other => {
                return Err(ApiError::invalid(
                    format!("role `{other}` is not supported (system, developer, user, assistant)"),
                    Some(&format!("{param}.role")),
                ));
            }
        }
    }
    let input =
        input.ok_or_else(|| ApiError::invalid("the last message must be the user's", Some("messages")))?;
    let mut next = Turn::new(input, "");
    next.system = system;
    Ok(ChatTurns {
        finished,
        next,
        image,
    })
}

fn join(slot: &mut Option<String>, text: String) {
    match slot {
        Some(existing) => {
            existing.push('\n');
            existing.push_str(&text);
        }
        None => *slot = Some(text),
    }
}

/// A message's text and its picture, if any.
fn message_text(
    message: &Message,
    param: &str,
    vision: bool,
) -> Result<(String, Option<ImageRef>), ApiError> {
    match &message.content {
        None => Ok((String::new(), None)),
        Some(Content::Text(text)) => Ok((text.clone(), None)),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            let mut picture = None;
            for (k, part) in parts.iter().enumerate() {
                let part_param = format!("{param}.content[{k}]");
                match part {
                    Part::Text { text: t } => text.push_str(t),
                    Part::ImageUrl { .. } if !vision => {
                        return Err(ApiError::invalid(
                            "this model takes no images (serve a LLaVA model to send images)",
                            Some(&part_param),
                        ));
                    }
                    Part::ImageUrl { image_url } if picture.is_none() => {
                        picture = Some(ImageRef {
                            url: image_url.url.clone(),
                            param: part_param,
                        });
                    }
                    Part::ImageUrl { .. } => {
                        return Err(ApiError::invalid(
                            "one picture per conversation is supported",
                            Some(&part_param),
                        ));
                    }
                    Part::Other => {
                        return Err(ApiError::invalid(
                            "only text and image_url content parts are supported",
                            Some(&format!("{part_param}.type")),
                        ));
                    }
                }
            }
            Ok((text, picture))
        }
    }
}

/// The completion prompt, refusing batches.
pub fn completion_prompt(request: &CompletionRequest) -> Result<&str, ApiError> {
    if request.echo {
        return Err(ApiError::invalid("`echo` is not supported", Some("echo")));
    }
    if request.suffix.is_some() {
        return Err(ApiError::invalid("`suffix` is not supported", Some("suffix")));
    }
    match &request.prompt {
        PromptField::One(text) => Ok(text),
        PromptField::Many(texts) if texts.len() == 1 => Ok(&texts[0]),
        PromptField::Many(_) => Err(ApiError::invalid(
            "send one prompt per request (a list of one string at most)",
            Some("prompt"),
        )),
    }
}

/// Checks the fields ft serves only partly; returns the stop strings.
pub fn check_common(common: &CommonFields) -> Result<Vec<String>, ApiError> {
    if common.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("only n = 1 is supported", Some("n")));
    }
    for (value, name) in [
        (common.presence_penalty, "presence_penalty"),
        (common.frequency_penalty, "frequency_penalty"),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid(
                format!("`{name}` is not supported; use `repetition_penalty` (1 = none)"),
                Some(name),
            ));
        }
    }
    if common
        .logprobs
        .as_ref()
        .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
    {
        return Err(ApiError::invalid("`logprobs` is not supported", Some("logprobs")));
    }
    if let Some(t) = common.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        return Err(ApiError::invalid(
            format!("temperature {t} is outside [0, 2]"),
            Some("temperature"),
        ));
    }
    if let Some(p) = common.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        return Err(ApiError::invalid(
            format!("top_p {p} is outside (0, 1]"),
            Some("top_p"),
        ));
    }
    if let Some(r) = common.repetition_penalty.filter(|r| *r <= 0.0) {
        return Err(ApiError::invalid(
            format!("repetition_penalty {r} must be positive"),
            Some("repetition_penalty"),
        ));
    }
    let stops = match &common.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s.clone()],
        Some(StopField::Many(list)) => list.clone(),
    };
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(
            format!("at most {MAX_STOP_SEQUENCES} stop sequences"),
            Some("stop"),
        ));
    }
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

/// Token counts of a finished answer.
pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(json: &str) -> Vec<Message> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn messages_become_turns_with_their_system_texts() {
        let turns = chat_turns(
            &messages(
                r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},
                {"role":"assistant","content":"Hello"},{"role":"user","content":[{"type":"text","text":"Name?"}]}]"#,
            ),
            false,
        )
        .unwrap();
        assert_eq!(
            turns.finished,
            vec![Turn::new("Hi", "Hello").with_system("Be brief.")]
        );
        assert_eq!(turns.next, Turn::new("Name?", ""));
    }

    #[test]
    fn a_chat_must_end_with_the_user_and_take_no_image() {
        let err = chat_turns(
            &messages(r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]"#),
            false,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
        let err = chat_turns(
            &messages(r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]}]"#),
            false,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content[0]"));
        let err = chat_turns(&messages(r#"[{"role":"tool","content":"x"}]"#), false).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn a_picture_opens_its_user_message_as_xtuner_writes_it() {
        let turns = chat_turns(
            &messages(
                r#"[{"role":"user","content":[{"type":"text","text":"What is it?"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]}]"#,
            ),
            true,
        )
        .unwrap();
        assert_eq!(turns.next.input, "<image>\nWhat is it?");
        assert_eq!(turns.image.unwrap().param, "messages[0].content[1]");
        let two = r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:,"}},
            {"type":"image_url","image_url":{"url":"data:,"}}]}]"#;
        assert_eq!(
            chat_turns(&messages(two), true).unwrap_err().param.as_deref(),
            Some("messages[0].content[1]")
        );
        let typed = r#"[{"role":"user","content":"look: <image>"}]"#;
        assert_eq!(
            chat_turns(&messages(typed), true).unwrap_err().param.as_deref(),
            Some("messages[0].content")
        );
    }

    #[test]
    fn an_ill_typed_field_is_named() {
        let err = parse_body::<ChatRequest>(br#"{"messages":[],"temperature":"hot"}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("temperature"));
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
