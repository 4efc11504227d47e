//! A GGUF base all the way: `ft convert hf` turns it into a Hugging Face folder whose tensors are
//! gguf-py's dequantisation (`fixtures/gen_gguf.py`) and whose tokenizer gives the recorded ids;
//! `ft merge` takes it as a base; `ft data preview` reads its tokenizer.
//! (`fixtures/check_convert_hf.py` has transformers load the folder: logits equal to its own GGUF
//! import.)

use crate::common;

use common::{ft, read_json, repo, run_ok, stderr, stdout};
use serde_json::Value;

fn tensors(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn convert_hf_writes_gguf_pys_tensors_config_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    let gguf = repo("fixtures/gguf/tiny_llama.gguf");
    let printed = run_ok(ft().args(["convert", "hf"]).arg(&gguf).arg(&out));
    assert!(stdout(&printed).contains("f32 weights"), "{}", stdout(&printed));

    let ours = tensors(&out.join("model.safetensors"));
    let want = tensors(&repo("fixtures/gguf/tiny_llama_hf.safetensors"));
    assert_eq!(
        ours.iter().map(|t| &t.0).collect::<Vec<_>>(),
        want.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    for ((name, shape, got), (_, want_shape, want)) in ours.iter().zip(&want) {
        assert_eq!(shape, want_shape, "{name}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{name}: max |Δ| {worst} against gguf-py");
    }

    let expected: Value = read_json(&repo("fixtures/gguf/tiny_llama.json"));
    let config: Value = read_json(&out.join("config.json"));
    for key in [
        "hidden_size",
        "num_hidden_layers",
        "num_key_value_heads",
        "rope_theta",
    ] {
        assert_eq!(config[key], expected["config"][key], "config.json {key}");
    }
    let tokenizer = ft_data::tokenizer::FtTokenizer::from_dir(&out).unwrap();
    for case in expected["cases"].as_array().unwrap() {
        let ids: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode(case["text"].as_str().unwrap()).unwrap();
        assert_eq!(got, ids, "{}", case["text"]);
    }
    assert!(tokenizer.chat_template().is_some(), "the chat template travels");
    let generation: Value = read_json(&out.join("generation_config.json"));
    assert_eq!(generation["eos_token_id"], config["eos_token_id"]);

    // An existing OUT is kept unless --force; --dtype casts once.
    let refused = ft()
        .args(["convert", "hf"])
        .arg(&gguf)
        .arg(&out)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("exists"), "{}", stderr(&refused));
    run_ok(
        ft().args(["convert", "hf"])
            .arg(&gguf)
            .arg(&out)
            .args(["--dtype", "bf16", "--force"]),
    );
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(
        file.tensors()
            .iter()
            .all(|(_, v)| v.dtype() == safetensors::Dtype::BF16)
    );

    // A folder is not a GGUF file.
    let folder = ft()
        .args(["convert", "hf"])
        .arg(repo("fixtures/tiny-base"))
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!folder.status.success());
    assert!(stderr(&folder).contains("GGUF file"), "{}", stderr(&folder));
}

/// A LoRA training config on the GGUF fixture.
fn gguf_config(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "[model]\npath = \"{}\"\ndtype = \"f32\"\n\n[data]\nfiles = [\"{}\"]\nformat = \"openai\"\n\
         template = \"qwen_chat\"\nmax_length = 64\n\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n\n\
         [train]\noutput_dir = \"{}\"\nmax_steps = 3\nbatch_size = 2\nlr = 1e-2\nsave_steps = 0\n",
        repo("fixtures/gguf/tiny_llama.gguf").display(),
        repo("fixtures/data/openai.jsonl").display(),
        dir.join("run").display(),
    );
    let path = dir.join("gguf.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_gguf_base_previews_trains_and_merges_into_a_folder_with_the_adapters_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let config = gguf_config(dir.path());
    let preview = run_ok(ft().args(["data", "preview"]).arg(&config).args(["--limit", "1"]));
    assert!(stdout(&preview).contains("<|im_start|>"), "{}", stdout(&preview));

    run_ok(ft().arg("train").arg(&config));
    let adapter = dir.path().join("run/final");
    let merged = dir.path().join("merged");
    run_ok(
        ft().arg("merge")
            .arg(repo("fixtures/gguf/tiny_llama.gguf"))
            .arg(&adapter)
            .arg(&merged),
    );
    assert!(merged.join("tokenizer.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ft-merge-base-"))
        .collect();
    assert!(leftovers.is_empty(), "the dequantised base is removed");

    // The merged folder gives the adapter-on-GGUF model's loss.
    let loss = |args: &[&std::ffi::OsStr]| -> f64 {
        let out = run_ok(
            ft().arg("eval")
                .args(args)
                .args(["--data", repo("fixtures/data/openai.jsonl").to_str().unwrap()])
                .args(["--template", "qwen_chat", "--json"]),
        );
        let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        report["loss"].as_f64().unwrap()
    };
    let gguf = repo("fixtures/gguf/tiny_llama.gguf");
    let with_adapter = loss(&[gguf.as_os_str(), "--adapter".as_ref(), adapter.as_os_str()]);
    let folded = loss(&[merged.as_os_str()]);
    assert!(
        (with_adapter - folded).abs() < 1e-4,
        "adapter on the GGUF {with_adapter} vs merged {folded}"
    );
}
