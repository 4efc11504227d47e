//! One training step equals PyTorch's (`fixtures/gen_train.py`): same model, same batch,
//! global-norm clipping active, torch.optim.AdamW with weight decay — for a PEFT LoRA adapter
//! and for full fine-tuning.

use std::path::Path;

use burn::backend::Autodiff;
use burn_flex::Flex;
use ft_lora::peft::Adapter;
use ft_model::adapters::attach_peft_adapter;
use ft_train::config::TrainConfig;
use ft_train::model_folder::BaseFiles;
use ft_train::trainer::{NoHooks, TrainOutcome, train};
use safetensors::SafeTensors;

use crate::common;
use common::{f32s, fixtures, gen_train_setup};

type A = Autodiff<Flex>;

/// One step on gen_train.py's batch: LoRA with its PEFT adapter, or full fine-tuning.
fn one_step(model: &str, lora: bool) -> (tempfile::TempDir, TrainOutcome) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.jsonl"), "{\"text\": \"x\"}\n").unwrap();
    let base = fixtures().join("models").join(model);
    let lora_section = if lora {
        "[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n"
    } else {
        ""
    };
    let config_text = format!(
        "[model]\npath = \"{}\"\ndtype = \"f32\"\n[data]\nfiles = [\"d.jsonl\"]\n{lora_section}\
         [train]\noutput_dir = \"out\"\nmax_steps = 1\nbatch_size = 2\nlr = 1e-2\nwarmup_ratio = 0.0\n\
         weight_decay = 0.1\nmax_grad_norm = 0.05\nsave_steps = 0\n",
        base.display()
    );
    std::fs::write(dir.path().join("c.toml"), config_text).unwrap();
    let config = TrainConfig::from_file(&dir.path().join("c.toml")).unwrap();
    let device = Default::default();
    let (mut model, model_config) = ft_model::load_hf::<A>(&base, &device).unwrap();
    let (targets, base_files) = if lora {
        let adapter = Adapter::read(fixtures().join("lora/llama/adapter")).unwrap();
        (
            attach_peft_adapter(&mut model, &model_config, &adapter).unwrap(),
            None,
        )
    } else {
        (Vec::new(), Some(BaseFiles::Folder(base)))
    };
    let setup = gen_train_setup(config, (model, model_config), targets, base_files, device);
    let out = train(setup, &mut NoHooks).unwrap();
    (dir, out)
}

fn check_loss_and_norm(dir: &Path, out: &TrainOutcome, golden: &SafeTensors) {
    let loss = f32s(golden, "loss")[0] as f64;
    assert!(
        (out.losses[0] - loss).abs() < 1e-5,
        "loss {} vs {loss}",
        out.losses[0]
    );
    let metrics = std::fs::read_to_string(dir.join("out/metrics.jsonl")).unwrap();
    let logged: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let norm = logged["grad_norm"].as_f64().unwrap();
    let want = f32s(golden, "grad_norm")[0] as f64;
    assert!((norm - want).abs() < 1e-4 * norm, "grad norm {norm} vs {want}");
}

// Adam's first step moves each element by about lr·g/|g|; elements whose gradient is near eps
// amplify the 1e-6-level gradient differences, so both tests allow 1% of lr.
const PARAM_BOUND: f32 = 1e-4;

#[test]
fn one_lora_step_matches_torch_adamw_with_clipping() {
    let (dir, out) = one_step("llama", true);
    let bytes = std::fs::read(fixtures().join("train/adamw_step.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    check_loss_and_norm(dir.path(), &out, &golden);
    let trained = Adapter::read(&out.saved).unwrap();
    let mut worst = 0f32;
    for (module, pair) in &trained.weights.modules {
        for (half, got) in [("lora_A", &pair.a.data), ("lora_B", &pair.b.data)] {
            let want = f32s(&golden, &format!("{module}.{half}.weight"));
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((g - w).abs());
            }
        }
    }
    eprintln!("LoRA step: max abs param diff vs torch {worst:e}");
    assert!(
        worst < PARAM_BOUND,
        "max |param − torch param| after one step: {worst}"
    );
}

/// Full fine-tuning of `model` for one step against `golden` (gen_train.py's `main_full`).
fn check_full_step(model: &str, golden_file: &str) {
    let (dir, out) = one_step(model, false);
    let bytes = std::fs::read(fixtures().join("train").join(golden_file)).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    check_loss_and_norm(dir.path(), &out, &golden);
    let saved_bytes = std::fs::read(out.saved.join("model.safetensors")).unwrap();
    let saved = SafeTensors::deserialize(&saved_bytes).unwrap();
    let names: Vec<String> = golden
        .names()
        .into_iter()
        .filter(|n| n.contains('.'))
        .map(String::from)
        .collect();
    assert_eq!(
        names.len(),
        saved.names().len(),
        "every weight is saved: {:?}",
        saved.names()
    );
    let mut worst = 0f32;
    for name in &names {
        let (got, want) = (f32s(&saved, name), f32s(&golden, name));
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            worst = worst.max((g - w).abs());
        }
    }
    eprintln!("{model} full step: max abs param diff vs torch {worst:e}");
    assert!(
        worst < PARAM_BOUND,
        "{model}: max |param − torch param| after one full step: {worst}"
    );
    // The checkpoint is a complete HF folder: it loads as a model.
    assert!(out.saved.join("config.json").is_file());
    let (_, reloaded) = ft_model::load_hf::<Flex>(&out.saved, &Default::default()).unwrap();
    assert_eq!(reloaded.num_layers, 2);
}

#[test]
fn one_full_finetuning_step_matches_torch_adamw_with_clipping() {
    check_full_step("llama", "full_step.safetensors");
}

#[test]
fn one_full_step_of_a_tied_model_with_biases_matches_torch() {
    check_full_step("qwen2", "full_step_qwen2.safetensors");
}
