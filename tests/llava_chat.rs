//! `llava-chat` on the fixture LLaVA (the bundled tiny LLM, a tiny CLIP, a projector in XTuner's
//! layout): its greedy answer about a picture equals transformers' `LlavaForConditionalGeneration`
//! (`fixtures/llava/llava_chat.json`, from `fixtures/gen_llava.py`); pictures change
//! interactively; bad input names what is wrong.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

fn llava_chat(image: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llava-chat"));
    cmd.arg(repo("fixtures/tiny-base"))
        .arg("--llava")
        .arg(repo("fixtures/llava/xtuner-llava"))
        .arg("--visual-encoder")
        .arg(repo("fixtures/llava/clip-vision"))
        .arg("--image")
        .arg(repo("fixtures/llava/images").join(image))
        .args(["--temperature", "0", "--max-new-tokens", "8"]);
    cmd
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo("fixtures/llava/llava_chat.json")).unwrap()).unwrap()
}

#[test]
fn a_prompt_about_a_picture_is_answered_as_transformers_does() {
    let golden = golden();
    let out = llava_chat(golden["picture"].as_str().unwrap())
        .args(["--prompt", golden["question"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
        golden["text"].as_str().unwrap()
    );
}

#[test]
fn interactive_chats_change_pictures_and_reset() {
    let golden = golden();
    let question = golden["question"].as_str().unwrap();
    let mut child = llava_chat("tall_rgba.png")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let script = format!(
        "{question}\n\nIMAGE {}\n\n{question}\n\nIMAGE {}\n\nRESET\n\nEXIT\n\n",
        repo("fixtures/llava/images/wide_rgb.png").display(),
        repo("fixtures/llava/images/missing.png").display()
    );
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(picture ") && text.contains("wide_rgb.png; history cleared)"),
        "{text}"
    );
    assert!(
        text.contains(golden["text"].as_str().unwrap()),
        "the second picture's answer: {text}"
    );
    assert!(
        text.contains("(no picture:") && text.contains("missing.png"),
        "{text}"
    );
    assert!(text.contains("(history cleared)"), "{text}");
}

#[test]
fn a_missing_picture_or_projector_is_a_clear_error() {
    let out = llava_chat("absent.png")
        .args(["--prompt", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.png"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llava-chat"))
        .arg(repo("fixtures/tiny-base"))
        .arg("--llava")
        .arg(dir.path())
        .arg("--image")
        .arg(repo("fixtures/llava/images/wide_rgb.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("projector/"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
