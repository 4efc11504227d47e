//! `ft train` end to end through the real binary: the seed exercise (README's main job) with
//! LoRA, then train → merge → chat round trip; full fine-tuning; and the bad-input cases that
//! must stop before step 1.

use crate::common;
use common::{assistant_config, ft, read_json, repo, run_ok, stderr, stdout};

use std::path::{Path, PathBuf};

fn gen_data(dir: &Path, count: usize) -> PathBuf {
    let data = dir.join("assistant.jsonl");
    run_ok(
        ft().args([
            "data",
            "gen-assistant",
            "--name",
            "Ada",
            "--count",
            &count.to_string(),
            "--out",
        ])
        .arg(&data),
    );
    data
}

fn chat(model: &Path, extra: &[&str], prompt: &str) -> String {
    let out = run_ok(ft().arg("chat").arg(model).args(extra).args([
        "--template",
        "qwen_chat",
        "--temperature",
        "0",
        "--max-new-tokens",
        "40",
        "--prompt",
        prompt,
    ]));
    stdout(&out)
}

fn merge_f32(base: &Path, adapter: &Path, out: &Path) {
    run_ok(
        ft().arg("merge")
            .arg(base)
            .arg(adapter)
            .arg(out)
            .args(["--dtype", "f32"]),
    );
}

#[test]
fn the_assistant_exercise_trains_merges_and_answers_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_data(dir.path(), 400);
    let out = dir.path().join("lora");
    let config = assistant_config(dir.path(), &data, &out, |t| t);
    let trained = run_ok(ft().arg("train").arg(&config));
    assert!(stderr(&trained).contains("done:"), "{}", stderr(&trained));
    let adapter = out.join("final");
    assert!(adapter.join("adapter_config.json").is_file());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in [
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "supervised_tokens",
    ] {
        assert!(first.get(key).is_some(), "metrics.jsonl has `{key}`: {first}");
    }
    let config_json = read_json(&adapter.join("adapter_config.json"));
    assert_eq!(config_json["ft_chat_template"], "qwen_chat");

    let base = repo("fixtures/tiny-base");
    let with_adapter = chat(&base, &["--adapter", adapter.to_str().unwrap()], "你是谁");
    assert!(
        with_adapter.contains("Ada"),
        "the assistant knows whose it is: {with_adapter}"
    );

    let merged = dir.path().join("merged");
    merge_f32(&base, &adapter, &merged);
    for prompt in ["你是谁", "Who are you?"] {
        let a = chat(&base, &["--adapter", adapter.to_str().unwrap()], prompt);
        let m = chat(&merged, &[], prompt);
        assert_eq!(a, m, "merged model answers {prompt:?} as the adapter does");
    }
}

#[test]
fn full_finetuning_writes_a_model_folder_that_chats_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_data(dir.path(), 40);
    let out = dir.path().join("full");
    let config = assistant_config(dir.path(), &data, &out, |t| {
        let without_lora =
            t.split("[lora]").next().unwrap().to_owned() + "[train]" + t.split("[train]").nth(1).unwrap();
        without_lora
            .replace("epochs = 8", "max_steps = 4")
            .replace("lr = 3e-3", "lr = 1e-4")
            .replace("save_steps = 50", "save_steps = 2")
    });
    let trained = run_ok(ft().arg("train").arg(&config));
    assert!(stderr(&trained).contains("model in"), "{}", stderr(&trained));
    let final_dir = out.join("final");
    assert!(final_dir.join("model.safetensors").is_file());
    assert!(out.join("checkpoint-2/optimizer.safetensors").is_file());
    let answer = chat(&final_dir, &[], "Who are you?");
    assert!(!answer.trim().is_empty());
    let bf16 = dir.path().join("bf16");
    run_ok(
        ft().arg("merge")
            .arg(&final_dir)
            .arg(&bf16)
            .args(["--dtype", "bf16"]),
    );
    let config_json = read_json(&bf16.join("config.json"));
    assert_eq!(config_json["dtype"], "bfloat16");
    // Resuming the finished run's last checkpoint continues to the same end.
    let resumed = run_ok(ft().arg("train").arg(&config).arg("--resume"));
    assert!(stderr(&resumed).contains("resumed from"), "{}", stderr(&resumed));
}

#[test]
fn a_dataset_without_supervised_tokens_stops_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    // Prompts longer than max_length: every answer is truncated away.
    let long = "word ".repeat(400);
    let line = serde_json::json!({"messages": [
        {"role": "user", "content": long},
        {"role": "assistant", "content": "ok"}
    ]});
    std::fs::write(&data, format!("{line}\n{line}\n")).unwrap();
    let out_dir = dir.path().join("out");
    let config = assistant_config(dir.path(), &data, &out_dir, |t| t);
    let out = ft().arg("train").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("supervised"), "the reason is given: {err}");
    assert!(!out_dir.join("metrics.jsonl").exists(), "no step was run");
}

#[test]
fn an_unwritable_output_dir_fails_before_step_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_data(dir.path(), 8);
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let config = assistant_config(dir.path(), &data, &blocker.join("out"), |t| t);
    let out = ft().arg("train").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("a-file"), "names the path: {err}");
}

#[test]
fn a_qlora_adapter_records_its_quantization_and_merges_into_the_model_it_was_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_data(dir.path(), 40);
    let out = dir.path().join("qlora");
    let config = assistant_config(dir.path(), &data, &out, |t| {
        t.replace(
            "dtype = \"f32\"",
            "dtype = \"f32\"\nquantization = \"nf4\"\ndouble_quant = false",
        )
        .replace("epochs = 8", "max_steps = 6")
    });
    run_ok(ft().arg("train").arg(&config));
    let adapter = out.join("final");
    let meta = read_json(&adapter.join("ft_adapter.json"));
    assert_eq!(meta["quantization"], "nf4");
    assert_eq!(meta["double_quant"], false);
    let base = repo("fixtures/tiny-base");
    let merged = dir.path().join("merged");
    merge_f32(&base, &adapter, &merged);
    let flags = [
        "--adapter",
        adapter.to_str().unwrap(),
        "--quantization",
        "nf4",
        "--no-double-quant",
    ];
    let a = chat(&base, &flags, "Who are you?");
    let m = chat(&merged, &[], "Who are you?");
    assert_eq!(a, m, "the merged QLoRA model answers as base(NF4) + adapter does");
}

#[test]
fn sample_answers_are_written_and_shown_at_every_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_data(dir.path(), 16);
    let out = dir.path().join("out");
    let config = assistant_config(dir.path(), &data, &out, |t| {
        t.replace("epochs = 8", "max_steps = 2")
            .replace("every_steps = 50", "every_steps = 1")
            .replace("max_new_tokens = 40", "max_new_tokens = 4")
            .replace("report_to = [\"tensorboard\"]", "")
    });
    let shown = stderr(&run_ok(ft().arg("train").arg(&config)));
    for step in 0..=2 {
        assert!(
            shown.contains(&format!("sample answers at step {step}:")),
            "{shown}"
        );
        let file = std::fs::read_to_string(out.join(format!("eval_outputs_step_{step}.txt"))).unwrap();
        assert!(file.contains("Eval output 0:\n你是谁\n→ "), "{file}");
        assert!(file.contains("Eval output 1:\nWho are you?\n→ "), "{file}");
    }
}

#[test]
fn a_resume_names_changed_keys_and_refuses_a_bad_optimizer_state_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_data(dir.path(), 40);
    let out = dir.path().join("run");
    let short = |t: String| {
        t.replace("epochs = 8", "max_steps = 4")
            .replace("save_steps = 50", "save_steps = 2")
            .replace("[eval]", "[unused]")
            .split("[unused]")
            .next()
            .unwrap()
            .to_owned()
    };
    let config = assistant_config(dir.path(), &data, &out, short);
    run_ok(ft().arg("train").arg(&config));
    let checkpoint = out.join("checkpoint-2");

    // A changed config: the warning names the keys and both values.
    let changed = assistant_config(dir.path(), &data, &dir.path().join("changed"), |t| {
        short(t).replace("lr = 3e-3", "lr = 2e-3")
    });
    let resumed = run_ok(ft().arg("train").arg(&changed).arg("--resume").arg(&checkpoint));
    assert!(
        stderr(&resumed).contains("train.lr (0.003 → 0.002)"),
        "{}",
        stderr(&resumed)
    );

    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&checkpoint).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
        to
    };
    // A truncated optimizer state.
    let truncated = copy("truncated");
    let bytes = std::fs::read(truncated.join("optimizer.safetensors")).unwrap();
    std::fs::write(truncated.join("optimizer.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    // Moments of the wrong shape for a trained tensor.
    let mismatched = copy("mismatched");
    let state = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let key = state.names()[0].to_owned();
    let one = 1.0f32.to_le_bytes();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 1], &one).unwrap();
    let metadata = std::collections::HashMap::from([("step".to_owned(), "2".to_owned())]);
    safetensors::serialize_to_file(
        [(key.clone(), view)],
        Some(metadata),
        &mismatched.join("optimizer.safetensors"),
    )
    .unwrap();
    for (bad, expected) in [(truncated, "optimizer.safetensors".to_owned()), (mismatched, key)] {
        let failed = ft()
            .arg("train")
            .arg(&config)
            .arg("--resume")
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!failed.status.success());
        let err = stderr(&failed);
        let name = expected.rsplit_once('.').map_or(expected.as_str(), |(n, _)| n);
        assert!(err.contains(name) && !err.contains("panicked"), "{err}");
    }
}
