//! `ft eval --llava`: the mean loss and the logits of a LLaVA dataset (pictures spliced, image
//! rows included) equal transformers' `LlavaForConditionalGeneration` on the same weights and
//! XTuner's encoding (`fixtures/gen_llava.py`); bad input names the record or file.

use crate::common;

use common::{ft, read_json, repo, run_ok, stderr, stdout};
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
    let peft: Value = read_json(&final_dir.join("llm_adapter/adapter_config.json"));
    assert_eq!(peft["peft_type"], "LORA");
    let trained = std::fs::read(final_dir.join("projector/model.safetensors")).unwrap();
    assert_ne!(
        trained,
        std::fs::read(projector.join("model.safetensors")).unwrap(),
        "the projector trained"
    );

    // The result is a LLaVA folder `ft eval --llava` reads.
    assert_evaluates_below_the_untrained_loss(&final_dir);
}

/// `ft eval --llava DIR` reads the trained folder, and its loss on eval.jsonl is below the
/// untrained LLaVA's (transformers' golden).
fn assert_evaluates_below_the_untrained_loss(final_dir: &std::path::Path) {
    let out = run_ok(
        ft().args(["eval", repo("fixtures/tiny-base").to_str().unwrap(), "--llava"])
            .arg(final_dir)
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
fn lora_on_clip_trains_into_visual_encoder_adapter_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "projector = \"{}\"\n\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n\n\
         [visual_lora]\nr = 4\nalpha = 8\ndropout = 0.0",
        repo("fixtures/llava/xtuner-llava/projector").display()
    );
    let config = llava_config(dir.path(), "clip-lora", &extra);
    let out = run_ok(ft().arg("train").arg(&config));
    assert!(
        stderr(&out).contains("LoRA on CLIP: r=4 alpha=8 on 18 layers"),
        "{}",
        stderr(&out)
    );
    let final_dir = dir.path().join("clip-lora/final");
    let peft: Value = read_json(&final_dir.join("visual_encoder_adapter/adapter_config.json"));
    assert_eq!(peft["peft_type"], "LORA");
    let mut targets: Vec<&str> = peft["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj"]);
    let weights = std::fs::read(final_dir.join("visual_encoder_adapter/adapter_model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&weights).unwrap();
    assert!(
        file.names()
            .contains(&"base_model.model.encoder.layers.0.self_attn.q_proj.lora_B.weight"),
        "PEFT's keys for the tower's own names"
    );
    let loss = losses(&dir.path().join("clip-lora/metrics.jsonl"));
    assert!(loss[5] < loss[0], "{loss:?}");

    // Resuming from the step-3 checkpoint ends on the same three folders.
    let resumed = llava_config(dir.path(), "clip-lora-resumed", &extra);
    run_ok(
        ft().arg("train")
            .arg(&resumed)
            .arg("--resume")
            .arg(dir.path().join("clip-lora/checkpoint-3")),
    );
    for file in [
        "projector/model.safetensors",
        "llm_adapter/adapter_model.safetensors",
        "visual_encoder_adapter/adapter_model.safetensors",
    ] {
        let a = std::fs::read(final_dir.join(file)).unwrap();
        let b = std::fs::read(dir.path().join("clip-lora-resumed/final").join(file)).unwrap();
        assert_eq!(a, b, "exact resume: {file}");
    }

    // ft eval reads the folder, CLIP's adapter included.
    assert_evaluates_below_the_untrained_loss(&final_dir);
}

#[test]
fn merge_folds_the_clip_adapter_as_peft_merge_and_unload_does() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    run_ok(
        ft().args([
            "merge",
            repo("fixtures/tiny-base").to_str().unwrap(),
            repo("fixtures/llava/step").to_str().unwrap(),
        ])
        .arg(&out)
        .args([
            "--visual-encoder",
            repo("fixtures/llava/clip-vision").to_str().unwrap(),
            "--dtype",
            "f32",
        ]),
    );
    let merged = std::fs::read(out.join("model.safetensors")).unwrap();
    let merged = safetensors::SafeTensors::deserialize(&merged).unwrap();
    let golden_bytes = std::fs::read(repo("fixtures/llava/step_golden.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&golden_bytes).unwrap();
    let floats = |t: safetensors::tensor::TensorView<'_>| -> Vec<f32> {
        t.data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut compared = 0;
    for name in golden.names() {
        let Some(key) = name.strip_prefix("merged.") else {
            continue;
        };
        let want = floats(golden.tensor(name).unwrap());
        let got = floats(merged.tensor(&format!("vision_tower.{key}")).unwrap());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{key}: max |Δ| {worst}");
        compared += 1;
    }
    assert_eq!(compared, 18, "every adapted CLIP layer");

    // The export, read back as a Hugging Face LLaVA folder (the LLM and its pictures from one
    // folder), gives the unmerged LLaVA's logits (PEFT's, tests/clip_lora.rs) on every sample.
    let unmerged = eval_logits(
        dir.path(),
        &repo("fixtures/tiny-base"),
        &repo("fixtures/llava/step"),
        Some(&repo("fixtures/llava/clip-vision")),
    );
    let exported = eval_logits(dir.path(), &out, &out, None);
    let worst = max_logit_difference(&unmerged, &exported);
    assert!(worst < 1e-4, "max |Δ logits| {worst}");
}

/// `ft eval LLM --llava LLAVA [--visual-encoder CLIP] --dump-logits` on eval.jsonl: the dump.
fn eval_logits(
    dir: &std::path::Path,
    llm: &std::path::Path,
    llava: &std::path::Path,
    clip: Option<&std::path::Path>,
) -> Vec<u8> {
    let file = dir.join(format!("logits-{}.safetensors", rand_suffix()));
    let mut cmd = ft();
    cmd.arg("eval").arg(llm).arg("--llava").arg(llava);
    if let Some(clip) = clip {
        cmd.arg("--visual-encoder").arg(clip);
    }
    run_ok(
        cmd.args(["--data", repo("fixtures/llava/eval.jsonl").to_str().unwrap()])
            .args(["--image-folder", repo("fixtures/llava/images").to_str().unwrap()])
            .args(["--template", "qwen_chat", "--dump-logits"])
            .arg(&file),
    );
    std::fs::read(file).unwrap()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// The largest logit difference over eval.jsonl's three samples between an unmerged LLaVA's dump
/// and its export's; the export's `<image>` row is its one extra column.
fn max_logit_difference(unmerged: &[u8], exported: &[u8]) -> f32 {
    let unmerged = safetensors::SafeTensors::deserialize(unmerged).unwrap();
    let exported = safetensors::SafeTensors::deserialize(exported).unwrap();
    let floats = |t: safetensors::tensor::TensorView<'_>| -> Vec<f32> {
        t.data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut worst = 0.0f32;
    for k in 0..3 {
        let name = format!("sample.{k}");
        let (a, b) = (unmerged.tensor(&name).unwrap(), exported.tensor(&name).unwrap());
        let vocab = a.shape()[1];
        assert_eq!(b.shape()[1], vocab + 1);
        let (a, b) = (floats(a), floats(b));
        worst = a
            .chunks(vocab)
            .zip(b.chunks(vocab + 1))
            .flat_map(|(x, y)| x.iter().zip(&y[..vocab]).map(|(p, q)| (p - q).abs()))
            .fold(worst, f32::max);
    }
    worst
}

#[test]
fn an_nf4_clip_trains_its_adapter_and_merges_on_its_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "projector = \"{}\"\nvisual_quantization = \"nf4\"\n\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n\n\
         [visual_lora]\nr = 4\nalpha = 8\ndropout = 0.0",
        repo("fixtures/llava/xtuner-llava/projector").display()
    );
    let config = llava_config(dir.path(), "nf4-clip", &extra);
    let out = run_ok(ft().arg("train").arg(&config));
    assert!(
        stderr(&out).contains("CLIP's linear layers are NF4"),
        "{}",
        stderr(&out)
    );
    let final_dir = dir.path().join("nf4-clip/final");
    let meta: Value = read_json(&final_dir.join("visual_encoder_adapter/ft_adapter.json"));
    assert_eq!(meta["quantization"], "nf4", "{meta}");
    let loss = losses(&dir.path().join("nf4-clip/metrics.jsonl"));
    assert!(loss[5] < loss[0], "{loss:?}");

    // ft eval puts the adapter back on an NF4 tower; the export holds the tower's NF4 round trip
    // with the adapter folded in, so both give the same logits.
    let export = dir.path().join("hf");
    let clip = repo("fixtures/llava/clip-vision");
    run_ok(
        ft().arg("merge")
            .arg(repo("fixtures/tiny-base"))
            .arg(&final_dir)
            .arg(&export)
            .arg("--visual-encoder")
            .arg(&clip)
            .args(["--dtype", "f32"]),
    );
    let unmerged = eval_logits(dir.path(), &repo("fixtures/tiny-base"), &final_dir, Some(&clip));
    let exported = eval_logits(dir.path(), &export, &export, None);
    let worst = max_logit_difference(&unmerged, &exported);
    assert!(worst < 1e-4, "max |Δ logits| {worst}");
}

#[test]
fn llava_runs_answer_about_eval_images_and_hold_out_samples_with_their_pictures() {
    let dir = tempfile::tempdir().unwrap();
    // Four copies of one picture record: whichever are held out, their loss is that record's.
    let record = std::fs::read_to_string(repo("fixtures/llava/eval.jsonl"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let data = dir.path().join("four.jsonl");
    std::fs::write(&data, format!("{record}\n").repeat(4)).unwrap();
    // Stage 2 on the fixture projector: fresh LoRA (B = 0) leaves the LLaVA as it is at step 0.
    let extra = format!(
        "projector = \"{}\"\n\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n\n\
         [eval]\ninputs = [\"What is in the picture?\"]\nimages = [\"{}\"]\nevery_steps = 3\nmax_new_tokens = 8",
        repo("fixtures/llava/xtuner-llava/projector").display(),
        repo("fixtures/llava/images/wide_rgb.png").display(),
    );
    let config = llava_config(dir.path(), "evaluated", &extra);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &repo("fixtures/llava/eval.jsonl").display().to_string(),
            &data.display().to_string(),
        )
        .replace("pack = false", "pack = false\neval_split = 0.5")
        .replace("template = \"qwen_chat\"", "template = \"hf\"");
    std::fs::write(&config, text).unwrap();
    run_ok(ft().arg("train").arg(&config));
    let out = dir.path().join("evaluated");

    // The held-out loss before training is `ft eval`'s on that record (pictures padded).
    let single = dir.path().join("one.jsonl");
    std::fs::write(&single, format!("{record}\n")).unwrap();
    let evaluated = run_ok(
        ft().args(["eval", repo("fixtures/tiny-base").to_str().unwrap()])
            .args(["--llava", repo("fixtures/llava/xtuner-llava").to_str().unwrap()])
            .args([
                "--visual-encoder",
                repo("fixtures/llava/clip-vision").to_str().unwrap(),
            ])
            .arg("--data")
            .arg(&single)
            .args(["--image-folder", repo("fixtures/llava/images").to_str().unwrap()])
            .args(["--template", "hf", "--json"]),
    );
    let want: Value = serde_json::from_str(stdout(&evaluated).trim()).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let evals: Vec<Value> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("eval_loss").is_some())
        .collect();
    assert_eq!(
        evals
            .iter()
            .map(|v| v["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 3, 6]
    );
    let at_start = evals[0]["eval_loss"].as_f64().unwrap();
    let expected = want["loss"].as_f64().unwrap();
    assert!(
        (at_start - expected).abs() < 1e-5,
        "held-out loss {at_start} vs ft eval {expected}"
    );
    assert!(
        evals[2]["eval_loss"].as_f64().unwrap() < at_start,
        "training lowers the held-out loss: {evals:?}"
    );

    // The sample answer about the picture, before training, is transformers' greedy answer
    // (the hook's sampling at temperature 0.1 picks the top token on this model).
    let answers = std::fs::read_to_string(out.join("eval_outputs_step_0.txt")).unwrap();
    assert!(answers.contains("wide_rgb.png"), "{answers}");
    let chat: Value = read_json(&repo("fixtures/llava/llava_chat.json"));
    assert!(
        answers.contains(&format!("→ {}", chat["text"].as_str().unwrap())),
        "{answers}"
    );
    assert!(out.join("eval_outputs_step_6.txt").exists());
}

#[test]
fn missing_or_corrupt_pictures_name_the_record_or_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for name in ["wide_rgb.png", "tall_rgba.png"] {
        std::fs::copy(repo("fixtures/llava/images").join(name), images.join(name)).unwrap();
    }
    std::fs::write(images.join("corrupt.png"), b"not a picture at all").unwrap();
    let good = std::fs::read_to_string(repo("fixtures/llava/eval.jsonl")).unwrap();
    let bad_record = |picture: &str| {
        format!(
            "{{\"image\": \"{picture}\", \"conversations\": [{{\"from\": \"human\", \"value\": \"<image>\\nWhat?\"}}, {{\"from\": \"gpt\", \"value\": \"This.\"}}]}}\n"
        )
    };
    let data = dir.path().join("bad.jsonl");
    std::fs::write(
        &data,
        format!("{good}{}{}", bad_record("missing.png"), bad_record("corrupt.png")),
    )
    .unwrap();
    let config = llava_config(dir.path(), "bad", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &repo("fixtures/llava/eval.jsonl").display().to_string(),
            &data.display().to_string(),
        )
        .replace(
            &repo("fixtures/llava/images").display().to_string(),
            &images.display().to_string(),
        );
    std::fs::write(&config, &text).unwrap();
    let out = ft().arg("train").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad.jsonl:4") && err.contains("missing.png") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!dir.path().join("bad/final").exists(), "nothing trained");

    std::fs::write(
        &config,
        text.replace("pack = false", "pack = false\nskip_bad_records = true"),
    )
    .unwrap();
    let out = run_ok(ft().arg("train").arg(&config));
    let err = stderr(&out);
    assert!(
        err.contains("bad.jsonl:4") && err.contains("bad.jsonl:5") && err.contains("corrupt.png"),
        "both bad records are reported: {err}"
    );
    assert!(dir.path().join("bad/final/projector/model.safetensors").exists());
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
    let golden: Value = read_json(&repo("fixtures/llava/export_golden.json"));
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
    let config: Value = read_json(&out.join("config.json"));
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
