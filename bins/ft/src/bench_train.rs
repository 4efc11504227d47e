//! `ft bench train`: tokens/s and peak memory of a LoRA training step, on the shape of
//! `shared/bench/bench_torch.py` (Llama hidden 256, 4 layers, 4 heads, intermediate 688, vocab
//! 4096, batch 4 × seq 256, fp32, LoRA r 8 / alpha 16 on q,k,v,o,gate,up,down).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use ft_data::pack::PackedRow;
use ft_lora::linear::LoraSpec;
use ft_lora::peft::TargetModules;
use ft_model::adapters::attach_new_lora;
use ft_model::families::linear_names;
use ft_model::weights::{HostTensor, TensorSource, expected_tensors, load_weights};
use ft_model::{CausalLm, ModelConfig, ModelError};
use ft_train::config::TrainConfig;
use ft_train::metrics::StepMetrics;
use ft_train::trainer::{TrainHooks, TrainSetup, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random N(0, 0.02²) weights for every tensor a config expects.
struct RandomWeights {
    shapes: Vec<(String, Vec<usize>)>,
    origin: PathBuf,
}

impl TensorSource for RandomWeights {
    fn names(&self) -> Vec<String> {
        self.shapes.iter().map(|(n, _)| n.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }
    fn read(&self, name: &str) -> Result<HostTensor, ModelError> {
        let shape = self.shape(name).unwrap_or_default();
        let n: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(name.len() as u64);
        let data = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| (rng.random::<f32>() - 0.5) * 0.07).collect()
        };
        Ok(HostTensor { shape, data })
    }
    fn origin(&self) -> &Path {
        &self.origin
    }
}

struct Timer {
    last: Option<Instant>,
    steps: Vec<f64>,
}

impl<B: AutodiffBackend> TrainHooks<B> for Timer {
    fn on_step(&mut self, _m: &StepMetrics, _total: usize) {
        let now = Instant::now();
        if let Some(last) = self.last {
            self.steps.push((now - last).as_secs_f64());
        }
        self.last = Some(now);
    }
}

fn bench_config() -> ModelConfig {
    let json = serde_json::json!({"model_type": "llama", "hidden_size": 256, "intermediate_size": 688,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 4096,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-6});
    let hf: ft_model::HfConfig = serde_json::from_value(json).expect("invariant: valid bench config");
    hf.to_config(Path::new("bench"))
        .expect("invariant: valid bench config")
}

/// Peak resident memory of this process in MB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs the benchmark on backend `B` (trained through `Autodiff<B>`); returns (median step s, tokens/s).
pub fn run<B: Backend>(device: B::Device, steps: usize) -> anyhow::Result<(f64, f64)> {
    type A<B> = Autodiff<B>;
    let config = bench_config();
    let (batch, seq) = (4usize, 256usize);
    let mut model = CausalLm::<A<B>>::init(&config, &device);
    let source = RandomWeights {
        shapes: expected_tensors(&config),
        origin: PathBuf::from("random"),
    };
    load_weights(&mut model, &config, &source)?;
    A::<B>::seed(&device, 0);
    let spec = LoraSpec {
        r: 8,
        alpha: 16.0,
        dropout: 0.0,
        use_rslora: false,
    };
    let targets = TargetModules::names(&[
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]);
    let chosen = attach_new_lora(&mut model, &config, spec, &targets)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let rows: Vec<PackedRow> = (0..batch)
        .map(|_| {
            let ids: Vec<i32> = (0..seq).map(|_| rng.random_range(0..4096)).collect();
            PackedRow {
                labels: ids.clone(),
                input_ids: ids,
                position_ids: (0..seq as i32).collect(),
                cu_seqlens: vec![0, seq],
            }
        })
        .collect();
    let dir = tempfile_dir()?;
    std::fs::write(dir.join("d.jsonl"), "{\"text\": \"x\"}\n")?;
    let toml = format!(
        "[model]\npath = \"random\"\ndtype = \"f32\"\n[data]\nfiles = [\"d.jsonl\"]\n[lora]\nr = 8\nalpha = 16\ndropout = 0.0\n\
         [train]\noutput_dir = \"out\"\nmax_steps = {}\nbatch_size = {batch}\nlr = 1e-4\nsave_steps = 0\n",
        steps + 2
    );
    std::fs::write(dir.join("c.toml"), toml)?;
    let train_config = TrainConfig::from_file(&dir.join("c.toml"))?;
    let setup = TrainSetup {
        linear_names: linear_names(&config),
        model,
        model_config: config,
        rows,
        targets: chosen,
        template_name: "none".into(),
        rendered_example: None,
        device,
        resume_from: None,
        stop: Arc::new(AtomicBool::new(false)),
        base_files: None,
        config: train_config,
    };
    let mut timer = Timer {
        last: None,
        steps: Vec::new(),
    };
    train(setup, &mut timer)?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut measured: Vec<f64> = timer.steps.into_iter().skip(1).collect();
    measured.sort_by(f64::total_cmp);
    let median = measured.get(measured.len() / 2).copied().unwrap_or(f64::NAN);
    Ok((median, (batch * seq) as f64 / median))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ft-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
