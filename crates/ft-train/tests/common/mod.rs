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
