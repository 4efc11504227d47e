//! `ft bench forward` and `ft bench generate`: tokens per second of a no-grad forward pass and
//! of greedy KV-cache decoding (compare with `benches/bench_transformers.py`, same shapes).

use ft_model::KernelBackend;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use ft_model::ModelInput;
use ft_model::generate::generate;
use ft_model::sampling::{Sampler, SamplingConfig, StopCondition};
use ft_model::session::KvSession;

use crate::backend::{BackendTask, DType, DeviceKind, dispatch};
use crate::model_load::load_model;
use crate::op_profile::OpTimes;

/// Arguments of `ft bench`.
#[derive(Args, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchKind,
    /// Time per fused op, filled by `main`'s tracing layer when `--profile` asks for it.
    #[arg(skip)]
    op_times: Option<OpTimes>,
}

impl BenchArgs {
    /// Whether the command wants the time of each fused op (`ft bench train --profile`).
    pub fn wants_op_times(&self) -> bool {
        matches!(self.what, BenchKind::Train { profile: true, .. })
    }
}

#[derive(Subcommand, Clone)]
enum BenchKind {
    /// Tokens/s of one forward pass over `[batch, seq]` random ids.
    Forward {
        #[command(flatten)]
        common: Common,
        /// Rows.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Tokens per row.
        #[arg(long, default_value_t = 128)]
        seq: usize,
    },
    /// Tokens/s and peak memory of a LoRA training step (the shape of benches/bench_peft.py).
    Train {
        /// Timed steps (after warm-up).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Model shape: `bench-torch` (hidden 256, 4 layers: benches/bench_peft.py's), `135m`
        /// (SmolLM2-135M), `1b` (TinyLlama-1.1B: hidden 2048, 22 layers, 32 heads / 4 kv heads,
        /// intermediate 5632, vocab 32000) or `7b` (Llama-2-7B: hidden 4096, 32 layers).
        #[arg(long, value_enum, default_value_t = crate::bench_train::Shape::BenchTorch)]
        shape: crate::bench_train::Shape,
        /// Rows per step.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Tokens per row.
        #[arg(long, default_value_t = 256)]
        seq: usize,
        /// Compute dtype on a GPU (the CPU computes f32).
        #[arg(long, value_enum, default_value_t = DType::F32)]
        dtype: DType,
        /// The device's peak dense TFLOP/s in the chosen dtype, to report MFU (e.g. 989 for H100/H200
        /// bf16).
        #[arg(long)]
        peak_tflops: Option<f64>,
        /// LoRA rank (alpha 16) on q,k,v,o,gate,up,down.
        #[arg(long, default_value_t = 8)]
        rank: usize,
        /// `nf4`: a QLoRA step over an NF4 base (double-quantised absmax) held on the device.
        #[arg(long, value_enum, default_value_t = crate::model_load::Quantization::None)]
        quantization: crate::model_load::Quantization,
        /// Print `{"tokens_per_s": .., "peak_rss_mb": .., "peak_device_mb": ..}`.
        #[arg(long)]
        json: bool,
        /// A LLaVA stage-2 step: one picture per row through a frozen CLIP of this shape, the
        /// projector and LoRA; tokens/s counts the picture rows the LLM runs.
        #[arg(long, value_enum)]
        llava: Option<crate::bench_train::ClipShape>,
        /// Also print where a step's time goes: forward, backward, optimizer (median seconds and
        /// share); with `--json`, a `phases` object.
        #[arg(long)]
        profile: bool,
        /// Recompute each decoder layer in backward (`[train] gradient_checkpointing`): less
        /// activation memory for about one more forward per step.
        #[arg(long)]
        gradient_checkpointing: bool,
        /// Device.
        #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
        device: DeviceKind,
    },
    /// Load on `ft serve`: requests/s, tokens/s, time to first token, server memory.
    Serve(crate::bench_serve::ServeBenchArgs),
    /// Tokens/s of greedy decoding with the KV cache.
    Generate {
        #[command(flatten)]
        common: Common,
        /// Prompt length.
        #[arg(long, default_value_t = 16)]
        prompt_len: usize,
        /// Tokens to generate.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Model folder (default: the bundled tiny model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    device: DeviceKind,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DType::F32)]
    dtype: DType,
}

impl Common {
    fn model_path(&self) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-base"))
    }
}

/// The `--quantization` value as printed in results.
fn spec_quantization(quantization: crate::model_load::Quantization) -> &'static str {
    match quantization {
        crate::model_load::Quantization::None => "lora",
        crate::model_load::Quantization::Nf4 => "qlora nf4",
    }
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Deterministic pseudo-random ids in `[3, vocab)`.
fn ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            3 + ((x >> 33) as usize % (vocab - 3)) as u32
        })
        .collect()
}

impl BackendTask for BenchArgs {
    type Output = ();

    fn run<B: KernelBackend>(self, device: B::Device, label: &str) -> anyhow::Result<()> {
        let common = match &self.what {
            BenchKind::Forward { common, .. } | BenchKind::Generate { common, .. } => common.clone(),
            BenchKind::Serve(_) => {
                unreachable!("invariant: `ft bench serve` is a client, run before dispatch")
            }
            BenchKind::Train {
                steps,
                json,
                shape,
                batch,
                seq,
                peak_tflops,
                profile,
                llava,
                rank,
                quantization,
                gradient_checkpointing,
                ..
            } => {
                let spec = crate::bench_train::BenchSpec {
                    steps: *steps,
                    shape: *shape,
                    batch: *batch,
                    seq: *seq,
                    rank: *rank,
                    nf4: *quantization == crate::model_load::Quantization::Nf4,
                    llava: *llava,
                    gradient_checkpointing: *gradient_checkpointing,
                };
                let probe_device = device.clone();
                let device_bytes = Box::new(move || crate::backend::device_memory_reserved(&probe_device));
                let run = crate::bench_train::run::<B>(device, spec, device_bytes)?;
                let peak = crate::bench_train::peak_rss_mb();
                let peak_device_mb = run.peak_device_bytes.map(|b| b as f64 / (1024.0 * 1024.0));
                let achieved_tflops = run.flops_per_step / run.median_step_s / 1e12;
                let mfu = peak_tflops.map(|p| achieved_tflops / p);
                let p = run.phases;
                if *json {
                    let mut report = serde_json::json!({"tokens_per_s": run.tokens_per_s, "peak_rss_mb": peak,
                        "median_step_s": run.median_step_s, "device": label, "shape": shape.name(),
                        "achieved_tflops": achieved_tflops, "mfu": mfu, "peak_device_mb": peak_device_mb,
                        "quantization": spec_quantization(*quantization), "rank": rank});
                    if *profile {
                        report["phases"] = serde_json::json!({"forward_s": p.forward_s,
                            "backward_s": p.backward_s, "optimizer_s": p.optimizer_s});
                        let ops: serde_json::Map<String, serde_json::Value> =
                            op_rows(&self.op_times, run.steps_run)
                                .into_iter()
                                .map(|(name, per_step, calls)| {
                                    (
                                        name.to_owned(),
                                        serde_json::json!({"s_per_step": per_step, "calls_per_step": calls}),
                                    )
                                })
                                .collect();
                        report["ops"] = serde_json::Value::Object(ops);
                    }
                    println!("{report}");
                } else {
                    let mfu = mfu
                        .map(|m| format!(", MFU {:.1}%", m * 100.0))
                        .unwrap_or_default();
                    let device_peak = peak_device_mb
                        .map(|mb| format!(", peak device memory {mb:.0} MB"))
                        .unwrap_or_default();
                    println!(
                        "train step ({}, {}, r {rank}) on {label}: {:.0} tokens/s (median {:.4} s), {achieved_tflops:.3} TFLOP/s{mfu}, peak RSS {peak:.0} MB{device_peak}",
                        shape.name(),
                        spec_quantization(*quantization),
                        run.tokens_per_s,
                        run.median_step_s
                    );
                    if *profile {
                        let total = (p.forward_s + p.backward_s + p.optimizer_s).max(1e-12);
                        for (name, s) in [
                            ("forward", p.forward_s),
                            ("backward", p.backward_s),
                            ("optimizer", p.optimizer_s),
                        ] {
                            println!("  {name:<9} {s:.4} s  {:>5.1}%", 100.0 * s / total);
                        }
                        println!(
                            "  fused ops, seconds per step (the rest is Burn's own ops, autodiff and memory):"
                        );
                        for (name, per_step, calls) in op_rows(&self.op_times, run.steps_run) {
                            println!(
                                "    {name:<24} {per_step:.4} s  {:>5.1}%  {calls:.0} calls",
                                100.0 * per_step / total
                            );
                        }
                    }
                }
                return Ok(());
            }
        };
        let path = common.model_path();
        let loaded = load_model::<B>(&path, &device)?;
        let vocab = loaded.config.vocab_size;
        let repeats = common.repeats.max(1);
        let report = match self.what {
            BenchKind::Forward { batch, seq, .. } => {
                let input = ModelInput {
                    batch,
                    seq,
                    input_ids: ids(batch * seq, vocab, 0).into_iter().map(|i| i as i32).collect(),
                    attention_mask: None,
                    position_ids: None,
                    segment_ids: None,
                };
                let run = || {
                    let t = Instant::now();
                    let logits = loaded.model.forward(&input, &loaded.config);
                    let _ = logits.into_data();
                    t.elapsed().as_secs_f64()
                };
                run();
                let seconds = median((0..repeats).map(|_| run()).collect());
                serde_json::json!({"bench": "forward", "model": path.display().to_string(), "device": label,
                    "batch": batch, "seq": seq, "median_s": seconds, "tokens_per_s": (batch * seq) as f64 / seconds})
            }
            BenchKind::Train { .. } | BenchKind::Serve(_) => unreachable!("invariant: handled above"),
            BenchKind::Generate {
                prompt_len,
                new_tokens,
                ..
            } => {
                let prompt = ids(prompt_len, vocab, 1);
                let run = || -> anyhow::Result<f64> {
                    let mut session = KvSession::new(&loaded.model, &loaded.config);
                    let t = Instant::now();
                    let out = generate(
                        &mut session,
                        &prompt,
                        &mut Sampler::new(SamplingConfig::greedy()),
                        &StopCondition::default(),
                        new_tokens,
                        &mut Vec::new(),
                        |_| std::ops::ControlFlow::Continue(()),
                    )
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                    anyhow::ensure!(out.tokens.len() == new_tokens, "stopped early");
                    Ok(t.elapsed().as_secs_f64())
                };
                run()?;
                let times = (0..repeats.div_ceil(2))
                    .map(|_| run())
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let seconds = median(times);
                serde_json::json!({"bench": "generate", "model": path.display().to_string(), "device": label,
                    "prompt_len": prompt_len, "new_tokens": new_tokens, "median_s": seconds,
                    "tokens_per_s": new_tokens as f64 / seconds})
            }
        };
        if common.json {
            println!("{report}");
        } else {
            println!(
                "{} on {}: {:.1} tokens/s (median {:.4} s)",
                report["bench"].as_str().unwrap_or_default(),
                label,
                report["tokens_per_s"].as_f64().unwrap_or_default(),
                report["median_s"].as_f64().unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Runs `ft bench ...`.
/// `(op, seconds per step, calls per step)` over a run of `steps` steps, the most expensive first.
fn op_rows(times: &Option<OpTimes>, steps: usize) -> Vec<(&'static str, f64, f64)> {
    let steps = steps.max(1) as f64;
    let totals = times.as_ref().map(OpTimes::totals).unwrap_or_default();
    totals
        .into_iter()
        .map(|(name, time, calls)| (name, time.as_secs_f64() / steps, calls as f64 / steps))
        .collect()
}

pub fn run(mut args: BenchArgs, op_times: Option<OpTimes>) -> anyhow::Result<()> {
    args.op_times = op_times;
    let (device, dtype) = match &args.what {
        BenchKind::Serve(serve) => return crate::bench_serve::run(serve.clone()),
        BenchKind::Forward { common, .. } | BenchKind::Generate { common, .. } => {
            (common.device, common.dtype)
        }
        BenchKind::Train { device, dtype, .. } => (*device, *dtype),
    };
    dispatch(device, dtype, args)
}
