//! LoRA over a bf16 base, as PEFT does it: the adapters, their gradients and AdamW's moments stay
//! f32 while the base computes in bf16, and the run's losses follow PyTorch + PEFT's bf16 run
//! (`fixtures/gen_bf16_lora.py`) and track the f32 run. The whole process computes in bf16
//! (burn-flex's default float dtype, set before any tensor exists), so these tests live in a
//! binary of their own.

use std::sync::Once;

use burn::backend::Autodiff;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use burn_flex::Flex;
use ft_lora::linears::{Linears, lora_params};
use ft_lora::peft::Adapter;
use ft_model::adapters::{ModelLinears, attach_peft_adapter};
use ft_model::{CausalLm, ModelConfig};
use ft_train::adamw::{AdamW, AdamWConfig};
use ft_train::config::TrainConfig;
use ft_train::llava::EvalVision;
use ft_train::metrics::EvalMetrics;
use ft_train::trainer::{TrainHooks, TrainOutcome, train};
use safetensors::SafeTensors;

mod common;
use common::{f32s, fixtures, gen_train_setup};

type A = Autodiff<Flex>;

/// Makes bf16 the default float dtype of the (one) burn-flex device, once per process.
fn bf16_device() -> burn_flex::FlexDevice {
    static INIT: Once = Once::new();
    let device = Default::default();
    INIT.call_once(|| {
        burn::tensor::backend::set_default_float_dtype::<Flex>(&device, FloatDType::BF16)
            .expect("no tensor exists before the first test sets the dtype");
    });
    device
}

/// Records the dtype of every adapter tensor whenever the loop evaluates (at the end too).
#[derive(Default)]
struct AdapterDtypes(Vec<(String, DType)>);

impl TrainHooks<A> for AdapterDtypes {
    fn evaluate(
        &mut self,
        model: &CausalLm<Flex>,
        config: &ModelConfig,
        _vision: Option<&EvalVision<'_, Flex>>,
        _step: usize,
    ) -> Option<EvalMetrics> {
        let set = ModelLinears { model, config };
        self.0 = lora_params(&set)
            .iter()
            .map(|p| (p.name(), p.get(&set).dtype()))
            .collect();
        None
    }
}

/// A bf16 run of the tiny Llama fixture over a one-record file, its sections after `[data]` as
/// `sections`, written as `DIR/c.toml`.
fn bf16_config(dir: &std::path::Path, sections: &str) -> TrainConfig {
    std::fs::write(dir.join("d.jsonl"), "{\"text\": \"x\"}\n").unwrap();
    let text = format!(
        "[model]\npath = \"{}\"\ndtype = \"bf16\"\n[data]\nfiles = [\"d.jsonl\"]\n{sections}",
        fixtures().join("models/llama").display()
    );
    std::fs::write(dir.join("c.toml"), text).unwrap();
    TrainConfig::from_file(&dir.join("c.toml")).unwrap()
}

/// gen_bf16_lora.py's run: 4 steps on gen_train.py's batch with its PEFT adapter.
fn four_steps(hooks: &mut AdapterDtypes) -> (tempfile::TempDir, TrainOutcome) {
    let device = bf16_device();
    let dir = tempfile::tempdir().unwrap();
    let base = fixtures().join("models/llama");
    let config = bf16_config(
        dir.path(),
        "[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n\
         [train]\noutput_dir = \"out\"\nmax_steps = 4\nbatch_size = 2\nlr = 1e-2\nwarmup_ratio = 0.0\n\
         weight_decay = 0.1\nmax_grad_norm = 1.0\nsave_steps = 0\n[eval]\nevery_steps = 1000\n",
    );
    let (mut model, model_config) = ft_model::load_hf::<A>(&base, &device).unwrap();
    let adapter = Adapter::read(fixtures().join("lora/llama/adapter")).unwrap();
    let targets = attach_peft_adapter(&mut model, &model_config, &adapter).unwrap();
    let setup = gen_train_setup(config, (model, model_config), targets, None, device);
    let out = train(setup, hooks).unwrap();
    (dir, out)
}

#[test]
fn the_base_is_bf16_while_adapters_and_moments_stay_f32() {
    let device = bf16_device();
    let (model, config) = ft_model::load_hf::<Flex>(&fixtures().join("models/llama"), &device).unwrap();
    let set = ModelLinears {
        model: &model,
        config: &config,
    };
    let q = set.linear("model.layers.0.self_attn.q_proj").unwrap();
    assert_eq!(
        q.base_weight().dtype(),
        DType::BF16,
        "the process computes in bf16"
    );

    let mut hooks = AdapterDtypes::default();
    let (_dir, out) = four_steps(&mut hooks);
    assert_eq!(hooks.0.len(), 28, "A and B of 14 adapted layers: {:?}", hooks.0);
    for (name, dtype) in &hooks.0 {
        assert_eq!(*dtype, DType::F32, "{name} after training");
    }
    // The moments, read back onto this bf16 device as a resume does, stay f32.
    let optimizer = AdamW::<Flex>::load(
        AdamWConfig {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.1,
        },
        &out.saved.join("optimizer.safetensors"),
        &device,
    )
    .unwrap();
    let moments = optimizer.moment_dtypes();
    assert_eq!(moments.len(), 28);
    for (name, dtypes) in &moments {
        assert_eq!(*dtypes, [DType::F32; 2], "{name}");
    }
}

#[test]
fn adamw_keeps_f32_moments_for_an_f32_tensor_on_a_bf16_device() {
    let device = bf16_device();
    let f32_matrix =
        |v: Vec<f32>| Tensor::<Flex, 2>::from_data(TensorData::new(v, [2, 2]), (&device, DType::F32));
    let mut optimizer = AdamW::new(AdamWConfig {
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 0.0,
    });
    optimizer.begin_step();
    // An update of 1e-4 on 1.0 is lost in bf16 (its spacing there is 2^-7): f32 keeps it.
    let param = f32_matrix(vec![1.0; 4]);
    let updated = optimizer.update("w", param, f32_matrix(vec![0.5, -0.5, 1.0, -1.0]), 1e-4);
    assert_eq!(updated.dtype(), DType::F32);
    assert_eq!(optimizer.moment_dtypes()["w"], [DType::F32; 2]);
    let values: Vec<f32> = updated.into_data().into_vec().unwrap();
    assert!(values.iter().all(|&v| v != 1.0), "{values:?}");
}

#[test]
fn a_bf16_lora_run_follows_peft_and_tracks_the_f32_run() {
    let mut hooks = AdapterDtypes::default();
    let (_dir, out) = four_steps(&mut hooks);
    let bytes = std::fs::read(fixtures().join("train/bf16_lora.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let (torch_bf16, torch_f32) = (f32s(&golden, "bf16_losses"), f32s(&golden, "f32_losses"));
    eprintln!(
        "ft bf16 {:?}\ntorch bf16 {torch_bf16:?}\ntorch f32 {torch_f32:?}",
        out.losses
    );
    assert_eq!(out.losses.len(), 4);
    assert!(out.losses[3] < out.losses[0], "the run learns: {:?}", out.losses);
    for (step, ((ft, bf16), f32)) in out.losses.iter().zip(&torch_bf16).zip(&torch_f32).enumerate() {
        let (bf16, f32) = (*bf16 as f64, *f32 as f64);
        assert!(
            (ft - bf16).abs() <= BF16_LOSS_TOLERANCE * bf16,
            "step {}: ft {ft} vs torch bf16 {bf16}",
            step + 1
        );
        assert!(
            (ft - f32).abs() <= TRACK_F32_TOLERANCE * f32,
            "step {}: ft {ft} vs torch f32 {f32}",
            step + 1
        );
    }
    // The trained adapter (saved in f32) follows PEFT's bf16 run.
    let trained = Adapter::read(&out.saved).unwrap();
    let (mut worst, mut sum, mut count) = (0f32, 0f64, 0usize);
    for (module, pair) in &trained.weights.modules {
        for (half, got) in [("lora_A", &pair.a.data), ("lora_B", &pair.b.data)] {
            let want = f32s(&golden, &format!("{module}.{half}.weight"));
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((g - w).abs());
                sum += (g - w).abs() as f64;
                count += 1;
            }
        }
    }
    let mean = sum / count as f64;
    eprintln!("bf16 LoRA: adapter diff vs torch: mean {mean:e}, max {worst:e}");
    assert!(
        mean < ADAPTER_MEAN_BOUND,
        "mean |adapter − torch adapter| after 4 steps: {mean}"
    );
    assert!(
        worst < ADAPTER_MAX_BOUND,
        "max |adapter − torch adapter| after 4 steps: {worst}"
    );
}

// bf16 keeps 8 significant bits (relative spacing 2^-8 ≈ 3.9e-3). ft and PyTorch round in
// different places (PyTorch rounds every matmul's output and the logits to bf16; ft's CPU
// kernels compute in f32 from bf16 inputs), so losses agree to about one bf16 step.
const BF16_LOSS_TOLERANCE: f64 = 1e-2;
// The bf16 run tracks the f32 run within a few bf16 steps.
const TRACK_F32_TOLERANCE: f64 = 3e-2;
// Adam moves each element by about lr per step whatever its gradient's size (Σ lr over the 4
// steps: 2.5e-2), so an element whose gradient is near zero can move the other way when bf16
// rounding flips its sign: up to 2·Σ lr apart. On average the adapters agree to a tenth of Σ lr.
const ADAPTER_MEAN_BOUND: f64 = 2.5e-3;
const ADAPTER_MAX_BOUND: f32 = 5e-2;

#[test]
fn full_fine_tuning_of_a_bf16_model_is_refused_naming_the_dtype_key() {
    let device = bf16_device();
    let dir = tempfile::tempdir().unwrap();
    let base = fixtures().join("models/llama");
    let config = bf16_config(
        dir.path(),
        "[train]\noutput_dir = \"out\"\nmax_steps = 1\nbatch_size = 2\nsave_steps = 0\n",
    );
    let loaded = ft_model::load_hf::<A>(&base, &device).unwrap();
    let base_files = Some(ft_train::model_folder::BaseFiles::Folder(base));
    let setup = gen_train_setup(config, loaded, Vec::new(), base_files, device);
    let err = train(setup, &mut AdapterDtypes::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("[model] dtype") && err.contains("BF16"), "{err}");
}
