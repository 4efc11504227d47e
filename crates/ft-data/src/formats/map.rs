//! XTuner's map functions: each format's record → the standard conversation.
//! Errors are plain messages; the caller adds file and line.

use serde_json::{Map, Value};

use super::DatasetFormat;
use crate::record::{Conversation, Turn};
use crate::template::IMAGE_TOKEN;

type MapResult = std::result::Result<Conversation, String>;

/// Maps one JSON record of `format`.
pub(super) fn map_record(format: DatasetFormat, value: &Value) -> MapResult {
    let obj = value.as_object().ok_or("expected a JSON object")?;
    match format {
        DatasetFormat::Conversation => conversation(value),
        DatasetFormat::Alpaca => alpaca(obj),
        DatasetFormat::Openai => openai(obj),
        DatasetFormat::Llava => llava(obj),
        DatasetFormat::Text => text(obj),
    }
}

/// Whether any input or output holds `<image>`.
pub(super) fn mentions_image(conversation: &Conversation) -> bool {
    conversation
        .conversation
        .iter()
        .any(|t| t.input.contains(IMAGE_TOKEN) || t.output.contains(IMAGE_TOKEN))
}

fn conversation(value: &Value) -> MapResult {
    let mut conv: Conversation =
        serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    for turn in &mut conv.conversation {
        if turn.system.as_deref() == Some("") {
            turn.system = None;
        }
    }
    Ok(conv)
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> std::result::Result<&'a str, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Ok(""),
        Some(other) => Err(format!("`{key}` must be a string, found {other}")),
    }
}

fn alpaca(obj: &Map<String, Value>) -> MapResult {
    let output = str_field(obj, "output")?;
    if output == "<nooutput>" {
        return Ok(Conversation::default());
    }
    let input = format!(
        "{}\n{}",
        str_field(obj, "instruction")?,
        str_field(obj, "input")?
    );
    Ok(Conversation {
        conversation: vec![Turn::new(input, output)],
        ..Default::default()
    })
}

/// `loss`: a bool, or the strings "true"/"false" in any case; missing means true.
fn loss_flag(message: &Map<String, Value>) -> std::result::Result<bool, String> {
    match message.get("loss") {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!("`loss` must be true or false, found {other}")),
    }
}

fn openai(obj: &Map<String, Value>) -> MapResult {
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be a list")?;
    let mut turns = Vec::new();
    let (mut system, mut input) = (String::new(), String::new());
    let mut seen_user_or_system = false;
    for (i, message) in messages.iter().enumerate() {
        let message = message
            .as_object()
            .ok_or_else(|| format!("messages[{i}] must be an object"))?;
        let role = str_field(message, "role")?;
        let content = str_field(message, "content")?;
        match role {
            "system" => {
                system = content.to_owned();
                seen_user_or_system = true;
            }
            "user" => {
                input.push_str(content);
                seen_user_or_system = true;
            }
            "assistant" if !seen_user_or_system => {}
            "assistant" => {
                let mut turn = Turn::new(std::mem::take(&mut input), content)
                    .with_system(std::mem::take(&mut system));
                turn.output_with_loss =
                    loss_flag(message).map_err(|e| format!("messages[{i}]: {e}"))?;
                turns.push(turn);
            }
            other => {
                return Err(format!(
                    "messages[{i}] has role `{other}`; expected system, user or assistant"
                ));
            }
        }
    }
    Ok(Conversation {
        conversation: turns,
        ..Default::default()
    })
}

fn llava(obj: &Map<String, Value>) -> MapResult {
    let messages = obj
        .get("conversations")
        .and_then(Value::as_array)
        .ok_or("`conversations` must be a list of {from, value}")?;
    let mut turns = Vec::new();
    let mut input = String::new();
    let mut seen_human = false;
    for (i, message) in messages.iter().enumerate() {
        let message = message
            .as_object()
            .ok_or_else(|| format!("conversations[{i}] must be an object"))?;
        let from = str_field(message, "from")?;
        let value = str_field(message, "value")?;
        match from {
            "human" => {
                seen_human = true;
                if value.contains(IMAGE_TOKEN) {
                    let text = value.replace(IMAGE_TOKEN, "");
                    input.push_str(&format!("{IMAGE_TOKEN}\n{}", text.trim()));
                } else {
                    input.push_str(value);
                }
            }
            "gpt" if !seen_human => {}
            "gpt" => turns.push(Turn::new(std::mem::take(&mut input), value)),
            other => {
                return Err(format!(
                    "conversations[{i}] has from `{other}`; expected human or gpt"
                ));
            }
        }
    }
    let image = match obj.get("image") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => return Err(format!("`image` must be a path string, found {other}")),
    };
    Ok(Conversation {
        conversation: turns,
        image,
        pretrain: false,
    })
}

fn text(obj: &Map<String, Value>) -> MapResult {
    let text = match obj.get("text") {
        Some(Value::String(s)) => s.trim(),
        _ => return Err("`text` must be a string".into()),
    };
    if text.is_empty() {
        return Ok(Conversation::default());
    }
    Ok(Conversation {
        conversation: vec![Turn::new("", text)],
        image: None,
        pretrain: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(format: DatasetFormat, v: Value) -> Conversation {
        map_record(format, &v).unwrap()
    }

    #[test]
    fn alpaca_joins_instruction_and_input_with_newline() {
        let c = map(
            DatasetFormat::Alpaca,
            json!({"instruction": "Sum", "input": "", "output": "0"}),
        );
        assert_eq!(c.conversation, vec![Turn::new("Sum\n", "0")]);
        let empty = map(
            DatasetFormat::Alpaca,
            json!({"instruction": "x", "input": "", "output": "<nooutput>"}),
        );
        assert!(empty.conversation.is_empty());
    }

    #[test]
    fn openai_skips_leading_assistant_and_concatenates_users() {
        let c = map(
            DatasetFormat::Openai,
            json!({"messages": [
                {"role": "assistant", "content": "ignored"},
                {"role": "system", "content": "S"},
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c", "loss": "False"},
                {"role": "user", "content": "d"},
                {"role": "assistant", "content": "e"}
            ]}),
        );
        let mut first = Turn::new("ab", "c").with_system("S");
        first.output_with_loss = false;
        assert_eq!(c.conversation, vec![first, Turn::new("d", "e")]);
    }

    #[test]
    fn openai_rejects_unknown_roles() {
        let err = map_record(
            DatasetFormat::Openai,
            &json!({"messages": [{"role": "tool", "content": "x"}]}),
        )
        .unwrap_err();
        assert!(err.contains("tool"), "{err}");
    }

    #[test]
    fn llava_moves_image_token_to_front() {
        let c = map(
            DatasetFormat::Llava,
            json!({"image": "a.jpg", "conversations": [
                {"from": "human", "value": "What is this?\n<image>"},
                {"from": "gpt", "value": "A cat."}
            ]}),
        );
        assert_eq!(c.image.as_deref(), Some("a.jpg"));
        assert_eq!(
            c.conversation,
            vec![Turn::new("<image>\nWhat is this?", "A cat.")]
        );
    }

    #[test]
    fn text_is_stripped_and_marked_pretrain() {
        let c = map(DatasetFormat::Text, json!({"text": "  hello world \n"}));
        assert!(c.pretrain);
        assert_eq!(c.conversation[0].output, "hello world");
    }
}
