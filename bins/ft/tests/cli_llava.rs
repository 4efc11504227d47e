//! `ft eval --llava`: the mean loss and the logits of a LLaVA dataset (pictures spliced, image
//! rows included) equal transformers' `LlavaForConditionalGeneration` on the same weights and
//! XTuner's encoding (`fixtures/gen_llava.py`); bad input names the record or file.

mod common;

use common::{ft, repo, run_ok, stderr, stdout};
use serde_json::Value;

fn eval_args() -> Vec<String> {
    [
        "eval",
        "fixtures/tiny-base",
        "--llava",
        "fixtures/llava/xtuner-llava",
        "--visual-encoder",
        "fixtures/llava/clip-vision",
        "--data",
        "fixtures/llava/eval.jsonl",
        "--template",
        "qwen_chat",
    ]
    .iter()
    .map(|a| {
        if a.starts_with("fixtures/") {
            repo(a).to_str().unwrap().to_owned()
        } else {
            (*a).to_owned()
        }
    })
    .collect()
}

fn golden(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(repo("fixtures/llava/golden.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor(name).unwrap();
    let values = t
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), values)
}

#[test]
fn llava_eval_loss_and_logits_equal_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("logits.safetensors");
    let out = run_ok(
        ft().args(eval_args())
            .args([
                "--image-folder",
                repo("fixtures/llava/images").to_str().unwrap(),
                "--json",
            ])
            .arg("--dump-logits")
            .arg(&dump),
    );
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let (_, loss) = golden("eval.loss");
    let (_, tokens) = golden("eval.tokens");
    assert!(
        (report["loss"].as_f64().unwrap() - f64::from(loss[0])).abs() < 1e-5,
        "{report}"
    );
    assert_eq!(report["tokens"].as_f64(), Some(f64::from(tokens[0])));

    let bytes = std::fs::read(&dump).unwrap();
    let dumped = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for n in 0..3 {
        let (shape, want) = golden(&format!("eval.logits.{n}"));
        let got = dumped.tensor(&format!("sample.{n}")).unwrap();
        assert_eq!(got.shape(), shape, "sample {n}: image rows included");
        let got: Vec<f32> = got
            .data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "sample {n}: logits max |Δ| {diff}");
    }
}

#[test]
fn llava_eval_errors_name_the_record_or_file() {
    let out = ft().args(eval_args()).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("eval.jsonl:1") && stderr(&out).contains("--image-folder"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo("fixtures/llava/images/tall_rgba.png"),
        dir.path().join("tall_rgba.png"),
    )
    .unwrap();
    let out = ft()
        .args(eval_args())
        .arg("--image-folder")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wide_rgb.png") && stderr(&out).contains("eval.jsonl:1"),
        "{}",
        stderr(&out)
    );

    let text_only = ft()
        .args(["eval", repo("fixtures/tiny-base").to_str().unwrap(), "--data"])
        .arg(repo("fixtures/llava/eval.jsonl"))
        .args(["--template", "qwen_chat"])
        .output()
        .unwrap();
    assert!(!text_only.status.success());
    assert!(stderr(&text_only).contains("--llava"), "{}", stderr(&text_only));
}

#[test]
fn pictures_without_a_llava_section_are_refused_clearly_and_preview_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo("fixtures/llava/eval.jsonl");
    let config = common::assistant_config(dir.path(), &data, &dir.path().join("out"), |text| {
        text.replace("format = \"openai\"", "format = \"llava\"")
            .replace("pack = true", "pack = false")
    });
    let out = ft().arg("train").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("2 samples hold a picture") && err.contains("eval.jsonl"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let preview = run_ok(ft().args(["data", "preview"]).arg(&config).args(["--limit", "1"]));
    assert!(
        stdout(&preview).contains("with a picture     2"),
        "{}",
        stdout(&preview)
    );
}

/// A LLaVA training config over the fixture (tiny LLM, tiny CLIP, `eval.jsonl` with two
/// pictures and a text-only record); `extra` is appended.
fn llava_config(dir: &std::path::Path, out: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[model]
path = "{model}"

[data]
files = ["{data}"]
format = "llava"
template = "qwen_chat"
max_length = 128
pack = false
image_folder = "{images}"

[llava]
visual_encoder = "{clip}"
{extra}

[train]
output_dir = "{out}"
max_steps = 6
batch_size = 3
lr = 1e-3
save_steps = 3
log_steps = 1
"#,
        model = repo("fixtures/tiny-base").display(),
        data = repo("fixtures/llava/eval.jsonl").display(),
        images = repo("fixtures/llava/images").display(),
        clip = repo("fixtures/llava/clip-vision").display(),
        out = dir.join(out).display(),
    );
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn losses(metrics: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["loss"].as_f64())
        .collect()
}

#[test]
fn stage_one_trains_the_projector_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let config = llava_config(dir.path(), "stage1", "");
    let preview = run_ok(ft().args(["data", "preview"]).arg(&config).args(["--limit", "1"]));
    assert!(
        stdout(&preview).contains("<image: 16 rows>"),
        "{}",
        stdout(&preview)
    );
    run_ok(ft().arg("train").arg(&config));
    let out = dir.path().join("stage1");
    let loss = losses(&out.join("metrics.jsonl"));
    assert_eq!(loss.len(), 6);
    // Batches hold only picture rows or only text rows. The text-only batch's loss never moves
    // (the LLM is frozen); the picture batches' loss falls as the projector learns.
    let same = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let text = loss
        .iter()
        .copied()
        .find(|&a| loss.iter().filter(|&&b| same(a, b)).count() > 1);
    let pictured: Vec<f64> = loss
        .iter()
        .copied()
        .filter(|&l| text.is_none_or(|t| !same(l, t)))
        .collect();
    assert!(text.is_some() && pictured.len() >= 2, "{loss:?}");
    assert!(
        pictured[pictured.len() - 1] < pictured[0] - 0.5,
        "the projector learns: {loss:?}"
    );
    let final_dir = out.join("final");
    for file in [
        "projector/config.json",
        "projector/model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(final_dir.join(file).exists(), "{file}");
    }
    assert!(
        !final_dir.join("llm_adapter").exists(),
        "stage 1 trains no adapter"
    );

    // Resuming from the step-3 checkpoint in another folder ends on the same projector.
    let resumed = llava_config(dir.path(), "resumed", "");
    run_ok(
        ft().arg("train")
            .arg(&resumed)
            .arg("--resume")
            .arg(out.join("checkpoint-3")),
    );
    let a = std::fs::read(final_dir.join("projector/model.safetensors")).unwrap();
    let b = std::fs::read(dir.path().join("resumed/final/projector/model.safetensors")).unwrap();
    assert_eq!(a, b, "exact resume");
}

#[test]
fn stage_two_trains_lora_and_the_projector_into_xtuners_layout() {
    let dir = tempfile::tempdir().unwrap();
    let projector = repo("fixtures/llava/xtuner-llava/projector");
    let extra = format!(
        "projector = \"{}\"\n\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\ntarget_modules = [\"q_proj\", \"v_proj\"]",
        projector.display()
    );
    let config = llava_config(dir.path(), "stage2", &extra);
    run_ok(ft().arg("train").arg(&config));
    let final_dir = dir.path().join("stage2/final");
    for file in [
        "projector/model.safetensors",
        "llm_adapter/adapter_config.json",
        "llm_adapter/adapter_model.safetensors",
    ] {
        assert!(final_dir.join(file).exists(), "{file}");
    }
    let loss = losses(&dir.path().join("stage2/metrics.jsonl"));
    assert!(loss[5] < loss[0], "{loss:?}");
    let peft: Value = serde_json::from_str(
        &std::fs::read_to_string(final_dir.join("llm_adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(peft["peft_type"], "LORA");
    let trained = std::fs::read(final_dir.join("projector/model.safetensors")).unwrap();
    assert_ne!(
        trained,
        std::fs::read(projector.join("model.safetensors")).unwrap(),
        "the projector trained"
    );

    // The result is a LLaVA folder `ft eval --llava` reads.
    let out = run_ok(
        ft().args(["eval", repo("fixtures/tiny-base").to_str().unwrap(), "--llava"])
            .arg(&final_dir)
            .args([
                "--visual-encoder",
                repo("fixtures/llava/clip-vision").to_str().unwrap(),
            ])
            .args(["--data", repo("fixtures/llava/eval.jsonl").to_str().unwrap()])
            .args(["--image-folder", repo("fixtures/llava/images").to_str().unwrap()])
            .args(["--template", "qwen_chat", "--json"]),
    );
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let (_, before) = golden("eval.loss");
    assert!(
        report["loss"].as_f64().unwrap() < f64::from(before[0]),
        "training lowered the loss: {report}"
    );
}

#[test]
fn llava_configs_that_cannot_work_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = llava_config(dir.path(), "packed", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("pack = false", "pack = true");
    std::fs::write(&config, text).unwrap();
    let out = ft().arg("train").arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("data.pack"), "{}", stderr(&out));

    let config = llava_config(dir.path(), "no-folder", "");
    let text = std::fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("image_folder"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, text).unwrap();
    let out = ft().arg("train").arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("image_folder") && !stderr(&out).contains("panicked"),
        "{}",
        stderr(&out)
    );
}

/// SHA-256 of a file, hex.
fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_llava_export_is_the_folder_transformers_read_with_fts_logits() {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("fixtures/llava/export_golden.json")).unwrap())
            .unwrap();
    assert!(golden["max_abs_logit_diff"].as_f64().unwrap() < 1e-4, "{golden}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    let printed = run_ok(
        ft().args([
            "merge",
            repo("fixtures/tiny-base").to_str().unwrap(),
            repo("fixtures/llava/trained").to_str().unwrap(),
        ])
        .arg(&out)
        .args([
            "--visual-encoder",
            repo("fixtures/llava/clip-vision").to_str().unwrap(),
            "--dtype",
            "f32",
        ]),
    );
    assert!(
        stdout(&printed).contains("<image> = token 568"),
        "{}",
        stdout(&printed)
    );
    assert_eq!(
        sha256(&out.join("model.safetensors")),
        golden["model_safetensors_sha256"].as_str().unwrap(),
        "ft writes the bytes transformers was checked on (fixtures/gen_llava_export.py)"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlavaForConditionalGeneration");
    assert_eq!(config["image_token_index"], golden["image_token_index"]);
    assert_eq!(
        config["text_config"]["vocab_size"], 569,
        "the embeddings grew by the <image> row"
    );
    let tokenizer = std::fs::read_to_string(out.join("tokenizer.json")).unwrap();
    assert!(tokenizer.contains("\"<image>\""));
    for file in [
        "preprocessor_config.json",
        "processor_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }

    // A projector transformers' LLaVA cannot hold is refused, naming it.
    let deep = dir.path().join("deep");
    std::fs::create_dir_all(deep.join("projector")).unwrap();
    std::fs::copy(
        repo("fixtures/llava/trained/projector/model.safetensors"),
        deep.join("projector/model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(repo("fixtures/llava/trained/projector/config.json")).unwrap();
    std::fs::write(
        deep.join("projector/config.json"),
        config.replace("\"depth\": 2", "\"depth\": 3"),
    )
    .unwrap();
    let refused = ft()
        .args(["merge", repo("fixtures/tiny-base").to_str().unwrap()])
        .arg(&deep)
        .arg(dir.path().join("hf3"))
        .args([
            "--visual-encoder",
            repo("fixtures/llava/clip-vision").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("2-layer projector"),
        "{}",
        stderr(&refused)
    );
}

/// The example's config `examples/llava/NAME.toml` with this test's paths.
fn example_config(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo(&format!("examples/llava/{name}.toml")))
        .unwrap()
        .replace("@MODEL@", repo("fixtures/tiny-base").to_str().unwrap())
        .replace("@DATA@", dir.join("data").to_str().unwrap())
        .replace("@CLIP@", repo("fixtures/llava/clip-vision").to_str().unwrap())
        .replace("@OUT@", dir.to_str().unwrap());
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `examples/llava/`: both stages on generated pictures of shapes, then questions about
/// pictures the model never saw, answered through `ft serve --llava`.
#[test]
fn the_llava_example_learns_to_name_the_colour_of_unseen_pictures() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let held_out = dir.path().join("held-out");
    run_ok(
        ft().args(["data", "gen-shapes", "--out"])
            .arg(&data)
            .args(["--count", "300"]),
    );
    run_ok(ft().args(["data", "gen-shapes", "--out"]).arg(&held_out).args([
        "--count",
        "6",
        "--seed",
        "99",
        "--prefix",
        "held-out-",
    ]));
    run_ok(ft().arg("train").arg(example_config(dir.path(), "stage1")));
    run_ok(ft().arg("train").arg(example_config(dir.path(), "stage2")));

    let llava = dir.path().join("stage2/final");
    let server = common::serve::Server::start(&[
        "--llava",
        llava.to_str().unwrap(),
        "--visual-encoder",
        repo("fixtures/llava/clip-vision").to_str().unwrap(),
        "--template",
        "qwen_chat",
    ]);
    let mut right = 0;
    let questions = std::fs::read_to_string(held_out.join("questions.jsonl")).unwrap();
    let colour_questions: Vec<Value> = questions
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| {
            r["conversations"][0]["value"]
                .as_str()
                .unwrap()
                .contains("colour")
        })
        .collect();
    assert_eq!(colour_questions.len(), 6);
    for record in &colour_questions {
        let bytes = std::fs::read(held_out.join("images").join(record["image"].as_str().unwrap())).unwrap();
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        let body = serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What colour is the shape?"},
            {"type": "image_url", "image_url": {"url": url}}]}], "temperature": 0, "max_tokens": 6});
        let (status, answer) = server.post("/v1/chat/completions", body);
        assert_eq!(status, 200, "{answer}");
        let said = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        right += usize::from(said == record["conversations"][1]["value"].as_str().unwrap());
    }
    assert!(right >= 5, "{right} of 6 held-out pictures named right");
}
