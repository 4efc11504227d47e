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
fn training_on_pictures_is_refused_clearly_and_preview_counts_them() {
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
