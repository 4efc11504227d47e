//! One training step equals PyTorch + PEFT's (`fixtures/gen_train.py`): same model, same PEFT
//! adapter, same batch, global-norm clipping active, torch.optim.AdamW with weight decay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use burn::backend::Autodiff;
use burn_flex::Flex;
use ft_data::pack::PackedRow;
use ft_lora::peft::Adapter;
use ft_model::adapters::attach_peft_adapter;
use ft_model::families::linear_names;
use ft_train::config::TrainConfig;
use ft_train::model_folder::BaseFiles;
use ft_train::trainer::{NoHooks, TrainSetup, train};
use safetensors::SafeTensors;

type A = Autodiff<Flex>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn row(ids: &[i32], labels: &[i32]) -> PackedRow {
    PackedRow {
        input_ids: ids.to_vec(),
        labels: labels.to_vec(),
        position_ids: (0..ids.len() as i32).collect(),
        cu_seqlens: vec![0, ids.len()],
    }
}

#[test]
fn one_lora_step_matches_torch_adamw_with_clipping() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.jsonl"), "{\"text\": \"x\"}\n").unwrap();
    let config_text = format!(
        "[model]\npath = \"{}\"\ndtype = \"f32\"\n[data]\nfiles = [\"d.jsonl\"]\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n\
         [train]\noutput_dir = \"out\"\nmax_steps = 1\nbatch_size = 2\nlr = 1e-2\nwarmup_ratio = 0.0\n\
         weight_decay = 0.1\nmax_grad_norm = 0.05\nsave_steps = 0\n",
        fixtures().join("models/llama").display()
    );
    std::fs::write(dir.path().join("c.toml"), config_text).unwrap();
    let config = TrainConfig::from_file(&dir.path().join("c.toml")).unwrap();
    let device = Default::default();
    let (mut model, model_config) =
        ft_model::load_hf::<A>(&fixtures().join("models/llama"), &device).unwrap();
    let adapter = Adapter::read(fixtures().join("lora/llama/adapter")).unwrap();
    let targets = attach_peft_adapter(&mut model, &model_config, &adapter).unwrap();
    let rows = vec![
        row(&[5, 17, 99, 3, 64, 12, 7], &[-100, -100, 99, 3, 64, -100, 7]),
        row(&[9, 31, 2, 44], &[-100, 31, 2, 44]),
    ];
    let setup = TrainSetup {
        linear_names: linear_names(&model_config),
        model,
        model_config,
        rows,
        targets,
        template_name: "none".into(),
        rendered_example: None,
        device,
        resume_from: None,
        stop: Arc::new(AtomicBool::new(false)),
        base_files: None,
        config,
    };
    let out = train(setup, &mut NoHooks).unwrap();
    let bytes = std::fs::read(fixtures().join("train/adamw_step.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |key: &str| -> Vec<f32> {
        golden
            .tensor(key)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    assert!(
        (out.losses[0] - f32s("loss")[0] as f64).abs() < 1e-5,
        "loss {}",
        out.losses[0]
    );
    let metrics = std::fs::read_to_string(dir.path().join("out/metrics.jsonl")).unwrap();
    let logged: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let norm = logged["grad_norm"].as_f64().unwrap();
    assert!(
        (norm - f32s("grad_norm")[0] as f64).abs() < 1e-4 * norm,
        "grad norm {norm}"
    );
    let trained = Adapter::read(&out.saved).unwrap();
    let mut worst = 0f32;
    for (module, pair) in &trained.weights.modules {
        for (half, got) in [("lora_A", &pair.a.data), ("lora_B", &pair.b.data)] {
            let want = f32s(&format!("{module}.{half}.weight"));
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((g - w).abs());
            }
        }
    }
    // Adam's first step moves each element by about lr·g/|g|; elements whose gradient is near eps
    // amplify the 1e-6-level gradient differences, so allow 1% of lr.
    assert!(worst < 1e-4, "max |param − torch param| after one step: {worst}");
}

#[test]
fn one_full_finetuning_step_matches_torch_adamw_with_clipping() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.jsonl"), "{\"text\": \"x\"}\n").unwrap();
    let base = fixtures().join("models/llama");
    let config_text = format!(
        "[model]\npath = \"{}\"\ndtype = \"f32\"\n[data]\nfiles = [\"d.jsonl\"]\n\
         [train]\noutput_dir = \"out\"\nmax_steps = 1\nbatch_size = 2\nlr = 1e-2\nwarmup_ratio = 0.0\n\
         weight_decay = 0.1\nmax_grad_norm = 0.05\nsave_steps = 0\n",
        base.display()
    );
    std::fs::write(dir.path().join("c.toml"), config_text).unwrap();
    let config = TrainConfig::from_file(&dir.path().join("c.toml")).unwrap();
    let device = Default::default();
    let (model, model_config) = ft_model::load_hf::<A>(&base, &device).unwrap();
    let rows = vec![
        row(&[5, 17, 99, 3, 64, 12, 7], &[-100, -100, 99, 3, 64, -100, 7]),
        row(&[9, 31, 2, 44], &[-100, 31, 2, 44]),
    ];
    let setup = TrainSetup {
        linear_names: linear_names(&model_config),
        model,
        model_config,
        rows,
        targets: Vec::new(),
        template_name: "none".into(),
        rendered_example: None,
        device,
        resume_from: None,
        stop: Arc::new(AtomicBool::new(false)),
        base_files: Some(BaseFiles::Folder(base.clone())),
        config,
    };
    let out = train(setup, &mut NoHooks).unwrap();
    let golden_bytes = std::fs::read(fixtures().join("train/full_step.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&golden_bytes).unwrap();
    let saved_bytes = std::fs::read(out.saved.join("model.safetensors")).unwrap();
    let saved = SafeTensors::deserialize(&saved_bytes).unwrap();
    let f32s = |st: &SafeTensors, key: &str| -> Vec<f32> {
        st.tensor(key)
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    assert!(
        (out.losses[0] - f32s(&golden, "loss")[0] as f64).abs() < 1e-5,
        "loss {}",
        out.losses[0]
    );
    let mut names: Vec<String> = golden
        .names()
        .into_iter()
        .filter(|n| n.contains('.'))
        .map(String::from)
        .collect();
    names.sort();
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
    eprintln!("full step: max abs param diff vs torch {worst:e}");
    // Same bound as the LoRA step: 1% of lr (Adam's first step amplifies tiny gradient differences).
    assert!(
        worst < 1e-4,
        "max |param − torch param| after one full step: {worst}"
    );
    // The checkpoint is a complete HF folder: it loads as a model.
    assert!(out.saved.join("config.json").is_file());
    let (_, reloaded_config) = ft_model::load_hf::<Flex>(&out.saved, &Default::default()).unwrap();
    assert_eq!(reloaded_config.num_layers, 2);
}
