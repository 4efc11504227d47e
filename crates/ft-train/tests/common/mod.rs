//! What the ft-train suites share: fixture paths and reading golden tensors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

/// `fixtures/` of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// An F32 tensor of a safetensors file, flat.
pub fn f32s(st: &SafeTensors, key: &str) -> Vec<f32> {
    st.tensor(key)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// gen_train.py's batch (`IDS`, `LABELS` without the padding) as two packed rows.
pub fn gen_train_rows() -> Vec<ft_data::pack::PackedRow> {
    let row = |ids: &[i32], labels: &[i32]| ft_data::pack::PackedRow {
        input_ids: ids.to_vec(),
        labels: labels.to_vec(),
        position_ids: (0..ids.len() as i32).collect(),
        cu_seqlens: vec![0, ids.len()],
    };
    vec![
        row(&[5, 17, 99, 3, 64, 12, 7], &[-100, -100, 99, 3, 64, -100, 7]),
        row(&[9, 31, 2, 44], &[-100, 31, 2, 44]),
    ]
}

/// A run of `config` over `model` on gen_train.py's batch (no template, no LLaVA, no resume).
pub fn gen_train_setup<B: burn::tensor::backend::AutodiffBackend>(
    config: ft_train::config::TrainConfig,
    (model, model_config): (ft_model::CausalLm<B>, ft_model::ModelConfig),
    targets: Vec<String>,
    base_files: Option<ft_train::model_folder::BaseFiles>,
    device: B::Device,
) -> ft_train::trainer::TrainSetup<B> {
    ft_train::trainer::TrainSetup {
        linear_names: ft_model::families::linear_names(&model_config),
        model,
        model_config,
        rows: Box::new(gen_train_rows()),
        targets,
        template_name: "none".into(),
        rendered_example: None,
        device,
        resume_from: None,
        stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        base_files,
        llava: None,
        config,
    }
}

/// The bundled tiny Llama.
pub fn tiny() -> PathBuf {
    fixtures().join("tiny-base")
}

/// A run of the tiny model over `samples` assistant samples: `[lora]` as `lora` (empty: full
/// fine-tuning), `[train]` keys `train` added to the suites' defaults. Written as `DIR/c.toml`.
pub fn write_tiny_config(dir: &Path, samples: usize, train: &str, pack: bool, lora: &str) -> PathBuf {
    ft_data::assistant::write_assistant_dataset("Ada", samples, 0, &dir.join("a.jsonl")).unwrap();
    let text = format!(
        "[model]\npath = \"{}\"\ndtype = \"f32\"\n[data]\nfiles = [\"a.jsonl\"]\ntemplate = \"qwen_chat\"\nmax_length = 64\npack = {pack}\n\
         {lora}[train]\noutput_dir = \"out\"\nlr = 1e-2\nwarmup_ratio = 0.0\n{train}\n",
        tiny().display()
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The run `config` describes on the tiny model (a fresh r4 adapter with `[lora] dropout`, drawn
/// from a host-side generator seeded per call, or full fine-tuning) over `rows`, on the CPU.
pub fn tiny_setup(
    config: &ft_train::config::TrainConfig,
    rows: Box<dyn ft_data::rows::RowSource>,
    resume_from: Option<PathBuf>,
    stop: bool,
) -> ft_train::trainer::TrainSetup<burn::backend::Autodiff<burn_flex::Flex>> {
    type A = burn::backend::Autodiff<burn_flex::Flex>;
    let device = Default::default();
    let (mut model, model_config) = ft_model::load_hf::<A>(&config.model.path, &device).unwrap();
    let (targets, base_files) = if let Some(lora) = &config.lora {
        let spec = ft_lora::linear::LoraSpec {
            r: 4,
            alpha: 8.0,
            dropout: lora.dropout,
            use_rslora: false,
        };
        let all = ft_lora::peft::TargetModules::AllLinear;
        let targets = ft_model::adapters::attach_new_lora(&mut model, &model_config, spec, &all, 0).unwrap();
        (targets, None)
    } else {
        let base = ft_train::model_folder::BaseFiles::Folder(config.model.path.clone());
        (Vec::new(), Some(base))
    };
    ft_train::trainer::TrainSetup {
        linear_names: ft_model::families::linear_names(&model_config),
        model,
        model_config,
        rows,
        targets,
        template_name: "qwen_chat".into(),
        rendered_example: None,
        device,
        resume_from,
        stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(stop)),
        base_files,
        llava: None,
        config: config.clone(),
    }
}

/// The prepared training rows of `config`'s data.
pub fn tiny_rows(config: &ft_train::config::TrainConfig) -> Vec<ft_data::pack::PackedRow> {
    let tokenizer = ft_data::tokenizer::FtTokenizer::from_dir(&config.model.path).unwrap();
    let template = ft_data::dataset::resolve_template(&config.data, &tokenizer).unwrap();
    ft_data::dataset::prepare(&config.data, &tokenizer, &template)
        .unwrap()
        .rows
}

/// Every value of an adapter folder's A and B matrices.
pub fn adapter_values(dir: &Path) -> Vec<f32> {
    let adapter = ft_lora::peft::Adapter::read(dir).unwrap();
    let modules = adapter.weights.modules.values();
    modules
        .flat_map(|p| p.a.data.iter().chain(&p.b.data).copied())
        .collect()
}

/// Every value of a model folder's safetensors, in name order.
pub fn model_values(dir: &Path) -> Vec<f32> {
    use ft_model::weights::TensorSource;
    let source = ft_model::weights::SafetensorsSource::open_dir(dir).unwrap();
    source
        .names()
        .iter()
        .flat_map(|n| source.read(n).unwrap().data)
        .collect()
}

/// The largest absolute difference between two equally long lists.
pub fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
