//! `ft data prepare` and the token cache through the real binary: the cache gives what the
//! in-memory path gives for every format, is reused when valid, rebuilt (saying why) when
//! stale or damaged, and `ft train` trains from it and reports the held-out loss.

use crate::common;
use common::{ft, run_ok, tensorboard_series};

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn write_config(dir: &Path, tokenizer: &str, data: &str) -> PathBuf {
    let path = dir.join("train.toml");
    let text = format!(
        "[model]\npath = \"{}\"\n\n[data]\n{data}\n\n[train]\noutput_dir = \"{}\"\n",
        fixtures().join("tokenizers").join(tokenizer).display(),
        dir.join("out").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn preview_json(config: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = run_ok(
        ft().args(["data", "preview"])
            .arg(config)
            .arg("--json")
            .args(extra),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_cache_gives_the_in_memory_samples_for_every_format() {
    for (file, format, tokenizer, template) in [
        (
            "conversation.json",
            "conversation",
            "tiny-llama",
            "internlm2_chat",
        ),
        ("alpaca.jsonl", "alpaca", "tiny-chatml", "qwen_chat"),
        ("openai.jsonl", "openai", "tiny-llama", "llama3_chat"),
        ("llava.jsonl", "llava", "tiny-llama", "internlm2_chat"),
        ("text.jsonl", "text", "tiny-chatml", "qwen_chat"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = format!(
            "files = [\"{}\"]\nformat = \"{format}\"\ntemplate = \"{template}\"\nmax_length = 512",
            fixtures().join("data").join(file).display()
        );
        let config = write_config(dir.path(), tokenizer, &data);
        let out = run_ok(ft().args(["data", "prepare"]).arg(&config));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("written"), "{format}: {text}");
        assert!(dir.path().join("out/data-cache/manifest.json").is_file());
        let cached = preview_json(&config, &[]);
        let memory = preview_json(&config, &["--no-cache"]);
        assert!(!cached.is_empty(), "{format}");
        assert_eq!(cached, memory, "{format}: cache vs memory");
    }
}

#[test]
fn prepare_reuses_a_valid_cache_and_rebuilds_a_stale_or_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("d.jsonl");
    let lines: Vec<String> = (0..50)
        .map(|i| {
            serde_json::json!({"text": format!("record {i} says hello {}", "again ".repeat(i % 7))})
                .to_string()
        })
        .collect();
    std::fs::write(&data_file, lines.join("\n")).unwrap();
    let cache = dir.path().join("my-cache");
    let data = |max_length: usize| {
        format!(
            "files = [\"{}\"]\nformat = \"text\"\ntemplate = \"default\"\nmax_length = {max_length}\ncache_dir = \"{}\"",
            data_file.display(),
            cache.display()
        )
    };
    let config = write_config(dir.path(), "tiny-llama", &data(64));
    run_ok(ft().args(["data", "prepare"]).arg(&config));
    assert!(cache.join("tokens.bin").is_file(), "[data] cache_dir is used");
    let want = preview_json(&config, &["--no-cache"]);

    let out = run_ok(ft().args(["data", "prepare"]).arg(&config));
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));

    let config = write_config(dir.path(), "tiny-llama", &data(16));
    let out = run_ok(ft().args(["data", "prepare"]).arg(&config));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data.max_length") && err.contains("64 → 16"),
        "{err}"
    );
    let config = write_config(dir.path(), "tiny-llama", &data(64));
    run_ok(ft().args(["data", "prepare"]).arg(&config));

    // A damaged cache is rebuilt by the next command that needs it, never read.
    let tokens = cache.join("tokens.bin");
    let mut bytes = std::fs::read(&tokens).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&tokens, bytes).unwrap();
    let out = run_ok(ft().args(["data", "preview"]).arg(&config).arg("--json"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupted"), "{err}");
    let got: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, want);

    // --out writes elsewhere; --force rebuilds a valid cache.
    let other = dir.path().join("other");
    run_ok(
        ft().args(["data", "prepare"])
            .arg(&config)
            .arg("--out")
            .arg(&other),
    );
    assert!(other.join("manifest.json").is_file());
    let out = run_ok(
        ft().args(["data", "prepare"])
            .arg(&config)
            .arg("--out")
            .arg(&other)
            .arg("--force"),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("written"));
}

#[test]
fn train_uses_the_cache_logs_the_held_out_loss_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("d.jsonl.gz");
    let lines: Vec<String> = (0..40)
        .map(|i| serde_json::json!({"text": format!("The number {i} is {}. ", if i % 2 == 0 { "even" } else { "odd" }).repeat(3)}).to_string())
        .collect();
    {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(lines.join("\n").as_bytes()).unwrap();
        std::fs::write(&data_file, enc.finish().unwrap()).unwrap();
    }
    let out_dir = dir.path().join("out");
    let config = dir.path().join("train.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = \"{}\"\ndtype = \"f32\"\n\n[data]\nfiles = [\"{}\"]\nformat = \"text\"\ntemplate = \"qwen_chat\"\nmax_length = 64\neval_split = 0.1\n\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n\n[train]\noutput_dir = \"{}\"\nmax_steps = 4\nbatch_size = 2\nlr = 1e-3\nsave_steps = 2\ndevice = \"cpu\"\nreport_to = [\"tensorboard\"]\n\n[eval]\nevery_steps = 2\n",
            fixtures().join("tiny-base").display(),
            data_file.display(),
            out_dir.display()
        ),
    )
    .unwrap();
    let out = run_ok(ft().arg("train").arg(&config));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built the token cache"), "{err}");
    assert!(err.contains("4 held out"), "{err}");
    let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("eval_loss").is_some())
        .collect();
    let steps: Vec<u64> = evals.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 2, 4], "{metrics}");
    for v in &evals {
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["step", "eval_loss", "eval_tokens"]);
        assert!(v["eval_loss"].as_f64().unwrap().is_finite());
        assert!(v["eval_tokens"].as_u64().unwrap() > 0);
    }
    assert!(
        metrics.lines().any(|l| l.contains("\"grad_norm\"")),
        "step lines stay"
    );
    // The held-out loss reaches TensorBoard too, point for point.
    let board = tensorboard_series(&out_dir.join("runs"), "eval/loss");
    let board_steps: Vec<u64> = board.iter().map(|(s, _)| *s as u64).collect();
    assert_eq!(board_steps, steps);
    for ((_, shown), logged) in board.iter().zip(&evals) {
        assert!((f64::from(*shown) - logged["eval_loss"].as_f64().unwrap()).abs() < 1e-5);
    }

    // Resumed from checkpoint-2 over the cache (a hit): the same losses at steps 3 and 4.
    let losses = |text: &str| -> Vec<f64> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v.get("loss").and_then(|x| x.as_f64()))
            .collect()
    };
    let first = losses(&metrics);
    assert_eq!(first.len(), 4, "{metrics}");
    std::fs::remove_dir_all(out_dir.join("final")).unwrap();
    let out = run_ok(
        ft().arg("train")
            .arg(&config)
            .arg("--resume")
            .arg(out_dir.join("checkpoint-2")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is up to date"), "{err}");
    let resumed = losses(&std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap());
    assert_eq!(resumed.len(), 4, "one line per step after the resume");
    for (a, b) in first.iter().zip(&resumed) {
        assert!((a - b).abs() < 1e-6, "{first:?} vs {resumed:?}");
    }
}
