//! A chat's prompt before every turn equals the rendering of the whole conversation so far:
//! XTuner's (built-in templates) or transformers' `apply_chat_template` (`hf`), from
//! `fixtures/gen_chat.py`.

use std::path::{Path, PathBuf};

use ft_data::chat::{StopWords, StreamStep, TextStream, generation_ids};
use ft_data::record::Turn;
use ft_data::template::{HfTemplate, Template};
use ft_data::tokenizer::FtTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    system: String,
    turns: Vec<(String, String)>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    tokenizer: String,
    prompts: Vec<Vec<i32>>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(fixtures().join("data/chat_goldens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tokenizer(name: &str) -> FtTokenizer {
    FtTokenizer::from_dir(fixtures().join("tokenizers").join(name)).unwrap()
}

#[test]
fn every_turn_of_a_three_turn_chat_renders_as_the_whole_conversation() {
    let golden = golden();
    assert!(golden.cases.len() >= 15, "every built-in template and hf");
    for case in &golden.cases {
        let tokenizer = tokenizer(&case.tokenizer);
        let hf = HfTemplate::from_tokenizer(&tokenizer);
        let template = Template::resolve(&case.template, hf.as_ref()).unwrap();
        let finished: Vec<Turn> = golden.turns.iter().map(|(i, o)| Turn::new(i, o)).collect();
        for (k, expected) in case.prompts.iter().enumerate() {
            let next = Turn::new(&golden.turns[k].0, "");
            let ids =
                generation_ids(&template, &tokenizer, &finished[..k], &next, Some(&golden.system)).unwrap();
            assert_eq!(
                &ids,
                expected,
                "{} on {}: the prompt of turn {} differs from the reference rendering",
                case.template,
                case.tokenizer,
                k + 1
            );
        }
    }
}

#[test]
fn stop_words_split_into_single_tokens_and_strings() {
    let tokenizer = tokenizer("tiny-llama");
    let template = Template::resolve("internlm2_chat", None).unwrap();
    let words = StopWords::new(&template, &tokenizer, &["<|im_end|>".into(), "END OF".into()]);
    let im_end = tokenizer.token_to_id("<|im_end|>").unwrap();
    assert!(words.ids.contains(&im_end) && words.ids.contains(&tokenizer.eos_id().unwrap()));
    assert_eq!(
        words.ids.iter().filter(|&&i| i == im_end).count(),
        1,
        "no duplicates"
    );
    assert_eq!(words.strings, vec!["END OF".to_owned()]);
}

#[test]
fn a_text_stream_never_shows_a_stop_string_nor_its_start() {
    let tokenizer = tokenizer("tiny-chatml");
    let ids = tokenizer.encode("The answer is 42. STOP here").unwrap();
    let mut stream = TextStream::new(&tokenizer, vec!["STOP".into()]);
    let mut shown = String::new();
    let mut stopped = false;
    for id in ids {
        match stream.push(id).unwrap() {
            StreamStep::Continue(text) => {
                assert!(!shown.ends_with(' ') || !text.starts_with('S') || text.len() > 4 || text.is_empty());
                shown.push_str(&text);
            }
            StreamStep::Stop(text) => {
                shown.push_str(&text);
                stopped = true;
                break;
            }
        }
    }
    assert!(stopped, "the stop string ends the stream");
    assert_eq!(shown, "The answer is 42. ");
    assert_eq!(stream.text(), "The answer is 42. ");
    assert!(!shown.contains('S'));
}

#[test]
fn a_text_stream_without_stop_shows_everything_once() {
    let tokenizer = tokenizer("tiny-chatml");
    let text = "你好，我是你的助手。 S";
    let mut stream = TextStream::new(&tokenizer, vec!["STOP".into()]);
    let mut shown = String::new();
    for id in tokenizer.encode(text).unwrap() {
        if let StreamStep::Continue(t) = stream.push(id).unwrap() {
            assert!(!t.contains('\u{FFFD}'), "no half characters");
            shown.push_str(&t);
        }
    }
    assert!(!shown.ends_with('S'), "a possible stop start is held back");
    shown.push_str(&stream.finish());
    assert_eq!(shown, text);
}
