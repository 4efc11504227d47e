//! `ft bench train`: tokens/s and peak memory of a LoRA (or, with `--quantization nf4`, QLoRA)
//! training step, on the shape of PyTorch + PEFT's bench shape (Llama hidden 256, 4 layers, 4
//! heads, intermediate 688, vocab 4096, batch 4 × seq 256, fp32, LoRA r 8 / alpha 16 on
//! q,k,v,o,gate,up,down), SmolLM2-135M's, or 1B- and 7B-class shapes for GPUs
//! (`--shape 1b --dtype bf16 --peak-tflops 989` reports MFU; on a GPU the peak device memory the
//! backend reserved is reported too).

use ft_model::{KernelBackend, TrainBackend};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use ft_data::pack::PackedRow;
use ft_lora::linear::LoraSpec;
use ft_lora::peft::TargetModules;
use ft_model::adapters::attach_new_lora;
use ft_model::families::linear_names;
use ft_model::weights::{HostTensor, TensorSource, expected_tensors, load_weights_as};
use ft_model::{CausalLm, LinearStorage, ModelConfig, ModelError};
use ft_train::config::TrainConfig;
use ft_train::metrics::StepMetrics;
use ft_train::trainer::{StepTimes, TrainHooks, TrainSetup, train};
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
    phases: Vec<StepTimes>,
    /// Reads the bytes the device's memory pool holds now (`None` on the CPU).
    device_bytes: Box<dyn Fn() -> Option<u64>>,
    peak_device_bytes: Option<u64>,
}

impl<B: TrainBackend> TrainHooks<B> for Timer {
    fn on_step_times(&mut self, times: &StepTimes) {
        self.phases.push(*times);
    }

    fn on_step(&mut self, _m: &StepMetrics, _total: usize) {
        if let Some(bytes) = (self.device_bytes)() {
            self.peak_device_bytes = Some(self.peak_device_bytes.unwrap_or(0).max(bytes));
        }
        let now = Instant::now();
        if let Some(last) = self.last {
            self.steps.push((now - last).as_secs_f64());
        }
        self.last = Some(now);
    }
}

/// The model shape of `ft bench train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// benches/bench_peft.py's Llama: hidden 256, 4 layers, 4 heads, intermediate 688, vocab 4096.
    BenchTorch,
    /// SmolLM2-135M's shape: hidden 576, 30 layers, 9 heads / 3 kv heads, intermediate 1536,
    /// vocab 49152, tied head.
    #[value(name = "135m")]
    Smollm135m,
    /// A 1B-class Llama (TinyLlama-1.1B's shape).
    #[value(name = "1b")]
    OneB,
    /// Llama-2-7B's shape: hidden 4096, 32 layers, 32 heads, intermediate 11008, vocab 32000.
    #[value(name = "7b")]
    SevenB,
}

impl Shape {
    /// The name printed in results.
    pub fn name(self) -> &'static str {
        match self {
            Shape::BenchTorch => "bench-torch",
            Shape::Smollm135m => "135m",
            Shape::OneB => "1b",
            Shape::SevenB => "7b",
        }
    }
}

/// The CLIP of `ft bench train --llava`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClipShape {
    /// XTuner's tower, CLIP ViT-L/14-336: hidden 1024, 24 layers, 16 heads, 576 patches.
    #[value(name = "vit-l-336")]
    VitL336,
    /// A small tower (hidden 256, 4 layers, patch 16 on 224 pixels: 196 patches).
    Small,
}

impl ClipShape {
    fn config(self) -> ft_llava::ClipVisionConfig {
        let json = match self {
            ClipShape::VitL336 => serde_json::json!({"hidden_size": 1024, "intermediate_size": 4096,
                "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14}),
            ClipShape::Small => serde_json::json!({"hidden_size": 256, "intermediate_size": 1024,
                "num_hidden_layers": 4, "num_attention_heads": 4, "image_size": 224, "patch_size": 16}),
        };
        serde_json::from_value(json).expect("invariant: valid CLIP shape")
    }
}

/// A stage-2 LLaVA around the bench model: a zero-initialised CLIP of `shape` (frozen; its cost
/// does not depend on the values), a fresh projector, one random picture for every row.
fn llava_side<B: TrainBackend>(
    shape: ClipShape,
    llm_hidden: usize,
    rows: usize,
    dir: &Path,
    device: &B::Device,
) -> anyhow::Result<ft_train::llava::LlavaTraining<B>> {
    use burn::module::Module;
    let clip_config = shape.config();
    let clip = ft_llava::ClipVision::<B>::init(&clip_config, device).no_grad();
    let projector_config = ft_llava::ProjectorConfig::new(clip_config.hidden_size, llm_hidden);
    let projector = ft_llava::Projector::init(&projector_config, 0, device);
    let vision = ft_llava::VisionSide::new(
        (clip, &clip_config),
        (projector, &projector_config),
        -2,
        llm_hidden,
    )?;
    let side = clip_config.image_size as u32;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let picture = image::RgbImage::from_fn(side + 40, side, |_, _| {
        image::Rgb([rng.random(), rng.random(), rng.random()])
    });
    picture.save(dir.join("bench.png"))?;
    Ok(ft_train::llava::LlavaTraining {
        vision,
        projector_config,
        picture_reader: ft_llava::PictureReader {
            processor: ft_llava::ImageProcessor::clip(side),
            folder: Some(dir.to_path_buf()),
            pad: true,
        },
        pictures: vec![Some("bench.png".to_owned()); rows],
        visual_lora: None,
        clip_key_prefix: String::new(),
        visual_encoder: dir.to_path_buf(),
        visual_nf4: None,
    })
}

/// What one benchmark run measured.
pub struct TrainBench {
    /// Median seconds per optimizer step.
    pub median_step_s: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// Model FLOPs of one step (LoRA: forward 2·N + input gradients 2·N per token over the frozen
    /// base's N matrix parameters, plus attention scores/values forward and backward; the
    /// adapters' own FLOPs are negligible and not counted).
    pub flops_per_step: f64,
    /// Seconds per phase of the median step (after the warm-up step).
    pub phases: StepTimes,
    /// Steps run, warm-up included (what per-op totals are divided by).
    pub steps_run: usize,
    /// The most device memory the backend's pool held at the end of a step, in bytes (as
    /// `torch.cuda.max_memory_reserved`); `None` on the CPU.
    pub peak_device_bytes: Option<u64>,
}

/// The median step's time and its phases, over the steps after the warm-up: the phases of one
/// step, so they are parts of its time (medians taken phase by phase may come from different
/// steps and add up to more). `times[i]` runs from the end of step `i` to the end of step
/// `i + 1`, so it holds `phases[i + 1]`.
fn median_step(times: &[f64], phases: &[StepTimes]) -> (f64, StepTimes) {
    let mut measured: Vec<(f64, StepTimes)> = times
        .iter()
        .copied()
        .zip(phases.iter().skip(1).copied())
        .skip(1)
        .collect();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    let nan = StepTimes {
        forward_s: f64::NAN,
        backward_s: f64::NAN,
        optimizer_s: f64::NAN,
    };
    measured
        .get(measured.len() / 2)
        .copied()
        .unwrap_or((f64::NAN, nan))
}

fn bench_config(shape: Shape) -> ModelConfig {
    let json = match shape {
        Shape::BenchTorch => serde_json::json!({"model_type": "llama", "hidden_size": 256,
            "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 4, "vocab_size": 4096, "max_position_embeddings": 512, "rms_norm_eps": 1e-6}),
        Shape::Smollm135m => serde_json::json!({"model_type": "llama", "hidden_size": 576,
            "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
            "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "rope_theta": 100000.0}),
        Shape::OneB => serde_json::json!({"model_type": "llama", "hidden_size": 2048,
            "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
            "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}),
        Shape::SevenB => serde_json::json!({"model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}),
    };
    let hf: ft_model::HfConfig = serde_json::from_value(json).expect("invariant: valid bench config");
    ft_model::ModelConfig::from_hf(&hf, Path::new("bench")).expect("invariant: valid bench config")
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

/// Model FLOPs of one LoRA step (see [`TrainBench::flops_per_step`]).
fn lora_step_flops(config: &ModelConfig, batch: usize, seq: usize) -> f64 {
    let matrix_params: usize = expected_tensors(config)
        .iter()
        .filter(|(name, shape)| shape.len() == 2 && !name.contains("embed"))
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum();
    let head = if config.tie_word_embeddings {
        config.vocab_size * config.hidden_size
    } else {
        0
    };
    let tokens = (batch * seq) as f64;
    let linear = 4.0 * (matrix_params + head) as f64 * tokens;
    // q·kᵀ and p·v: 2 matmuls × 2 FLOPs × seq per token per head dim, forward + 2× backward.
    let attention =
        3.0 * 4.0 * (config.num_layers * config.num_heads * config.head_dim) as f64 * seq as f64 * tokens;
    linear + attention
}

/// What one `ft bench train` run trains.
#[derive(Debug, Clone, Copy)]
pub struct BenchSpec {
    /// Timed steps (after warm-up).
    pub steps: usize,
    /// Model shape.
    pub shape: Shape,
    /// Rows per step.
    pub batch: usize,
    /// Tokens per row.
    pub seq: usize,
    /// LoRA rank (alpha 16).
    pub rank: usize,
    /// An NF4 base (QLoRA, double-quantised absmax) instead of a dense one.
    pub nf4: bool,
    /// A LLaVA stage-2 step through a CLIP of this shape.
    pub llava: Option<ClipShape>,
    /// Recompute each decoder layer in backward (`[train] gradient_checkpointing`).
    pub gradient_checkpointing: bool,
}

/// Runs the benchmark on backend `B` (trained through `Autodiff<B>`); `device_bytes` reads the
/// device memory the backend holds (see [`TrainBench::peak_device_bytes`]).
pub fn run<B: KernelBackend>(
    device: B::Device,
    spec: BenchSpec,
    device_bytes: Box<dyn Fn() -> Option<u64>>,
) -> anyhow::Result<TrainBench> {
    type A<B> = Autodiff<B>;
    let BenchSpec {
        steps,
        shape,
        batch,
        seq,
        rank,
        nf4,
        llava,
        gradient_checkpointing,
    } = spec;
    let config = bench_config(shape);
    let vocab = config.vocab_size;
    let storage = if nf4 {
        LinearStorage::Nf4 { double_quant: true }
    } else {
        LinearStorage::Dense
    };
    let mut model = CausalLm::<A<B>>::init_as(&config, &device, storage);
    let source = RandomWeights {
        shapes: expected_tensors(&config),
        origin: PathBuf::from("random"),
    };
    load_weights_as(&mut model, &config, &source, storage)?;
    A::<B>::seed(&device, 0);
    let spec = LoraSpec {
        r: rank,
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
    let chosen = attach_new_lora(&mut model, &config, spec, &targets, 0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let rows: Vec<PackedRow> = (0..batch)
        .map(|_| {
            let mut ids: Vec<i32> = (0..seq).map(|_| rng.random_range(0..vocab as i32)).collect();
            let mut labels = ids.clone();
            if llava.is_some() {
                // The picture after the first token, as XTuner's templates place `<image>`.
                ids[1] = ft_data::encode::IMAGE_TOKEN_INDEX;
                labels[..2].fill(ft_data::encode::IGNORE_INDEX);
            }
            PackedRow {
                labels,
                input_ids: ids,
                position_ids: (0..seq as i32).collect(),
                cu_seqlens: vec![0, seq],
            }
        })
        .collect();
    let dir = tempfile_dir()?;
    let llava_side = match llava {
        Some(clip) => Some(llava_side::<A<B>>(
            clip,
            config.hidden_size,
            batch,
            &dir,
            &device,
        )?),
        None => None,
    };
    // Rows the LLM runs: each picture's patches replace its one placeholder.
    let llm_seq = seq + llava.map_or(0, |c| c.config().patches() - 1);
    std::fs::write(dir.join("d.jsonl"), "{\"text\": \"x\"}\n")?;
    let quantization = if nf4 { "nf4" } else { "none" };
    let toml = format!(
        "[model]\npath = \"random\"\ndtype = \"f32\"\nquantization = \"{quantization}\"\n[data]\nfiles = [\"d.jsonl\"]\n[lora]\nr = {rank}\nalpha = 16\ndropout = 0.0\n\
         [train]\noutput_dir = \"out\"\nmax_steps = {}\nbatch_size = {batch}\nlr = 1e-4\nsave_steps = 0\n\
         gradient_checkpointing = {gradient_checkpointing}\n",
        steps + 2
    );
    std::fs::write(dir.join("c.toml"), toml)?;
    let train_config = TrainConfig::from_file(&dir.join("c.toml"))?;
    let model_config_for_flops = config.clone();
    let setup = TrainSetup {
        linear_names: linear_names(&config),
        model,
        model_config: config,
        rows: Box::new(rows),
        targets: chosen,
        template_name: "none".into(),
        rendered_example: None,
        device,
        resume_from: None,
        stop: Arc::new(AtomicBool::new(false)),
        base_files: None,
        llava: llava_side,
        config: train_config,
    };
    let mut timer = Timer {
        last: None,
        steps: Vec::new(),
        phases: Vec::new(),
        device_bytes,
        peak_device_bytes: None,
    };
    train(setup, &mut timer)?;
    let _ = std::fs::remove_dir_all(&dir);
    let (median, phases) = median_step(&timer.steps, &timer.phases);
    Ok(TrainBench {
        median_step_s: median,
        tokens_per_s: (batch * llm_seq) as f64 / median,
        flops_per_step: lora_step_flops(&model_config_for_flops, batch, llm_seq),
        phases,
        steps_run: timer.phases.len(),
        peak_device_bytes: timer.peak_device_bytes,
    })
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ft-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
