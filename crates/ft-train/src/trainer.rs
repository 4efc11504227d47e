//! The training loop: token-normalised gradient accumulation, global-norm clipping, AdamW,
//! warm-up + cosine, checkpoints every `save_steps` (+ `final/`), exact resume, Ctrl-C saving,
//! metrics and sample generations.

use ft_model::TrainBackend;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Tensor};
use ft_data::batch::{Batch, collate};
use ft_data::pack::{PackedRow, shuffled_indices};
use ft_data::rows::RowSource;
use ft_lora::peft::{Adapter, AdapterConfig, AdapterDtype, FtAdapterMeta, TargetModules};
use ft_model::{CausalLm, ModelConfig, ModelInput};

use crate::adamw::{AdamW, AdamWConfig};
use crate::checkpoint::{
    TrainerState, changed_keys, checkpoint_dir, ensure_writable, rotate_checkpoints, write_atomically,
};
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::llava::{EvalVision, LlavaTraining};
use crate::metrics::{EvalMetrics, RunLog, StepMetrics};
use crate::model_folder::{BaseFiles, read_model_folder, write_model_folder};
use crate::parallel::Peer;
use crate::params::{TrainMode, TrainParam, trainable_params};
use crate::schedule::WarmupCosine;
use ft_export::Dtype;
use ft_model::adapters::adapter_weights;

/// Things the loop reports to (progress display, sample generations).
pub trait TrainHooks<B: TrainBackend> {
    /// After every optimizer step.
    fn on_step(&mut self, _metrics: &StepMetrics, _total_steps: usize) {}
    /// Where the step's time went (before [`TrainHooks::on_step`]).
    fn on_step_times(&mut self, _times: &StepTimes) {}
    /// Before training (step 0), every `[eval] every_steps`, and at the end; `vision` is a
    /// LLaVA run's. A hook that measures a held-out loss returns it; the loop logs it
    /// (`metrics.jsonl`, TensorBoard).
    fn evaluate(
        &mut self,
        _model: &CausalLm<B::InnerBackend>,
        _config: &ModelConfig,
        _vision: Option<&EvalVision<'_, B::InnerBackend>>,
        _step: usize,
    ) -> Option<EvalMetrics> {
        None
    }
}

/// Seconds one optimizer step spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimes {
    /// Forward passes and losses of the window's micro-batches.
    pub forward_s: f64,
    /// Backward passes and gathering the trained parameters' gradients.
    pub backward_s: f64,
    /// Gradient norm, clipping and the AdamW updates.
    pub optimizer_s: f64,
}

/// Hooks that do nothing.
pub struct NoHooks;
impl<B: TrainBackend> TrainHooks<B> for NoHooks {}

/// Everything a run needs.
pub struct TrainSetup<B: AutodiffBackend> {
    /// The run's config.
    pub config: TrainConfig,
    /// The model with adapters attached (base frozen).
    pub model: CausalLm<B>,
    /// Its configuration.
    pub model_config: ModelConfig,
    /// Training rows (packed or one per sample): a list in memory or rows over a token cache.
    pub rows: Box<dyn RowSource>,
    /// Adapted module names (for the saved `target_modules`).
    pub targets: Vec<String>,
    /// Every linear name of the model.
    pub linear_names: Vec<String>,
    /// Template name used to render the data (recorded with the adapter).
    pub template_name: String,
    /// One rendered training example (recorded with the adapter).
    pub rendered_example: Option<String>,
    /// Device.
    pub device: B::Device,
    /// Checkpoint to resume from.
    pub resume_from: Option<PathBuf>,
    /// Set to stop after the current step (Ctrl-C); a checkpoint is saved.
    pub stop: Arc<AtomicBool>,
    /// For full fine-tuning: where the checkpoint's `config.json` and tokenizer files come from.
    pub base_files: Option<BaseFiles>,
    /// A LLaVA run's vision side (`[llava]`).
    pub llava: Option<LlavaTraining<B>>,
}

impl<B: TrainBackend> TrainSetup<B> {
    /// LoRA when the config has a `[lora]` section, else full fine-tuning; a LLaVA trains its
    /// LLM's adapters only (none in stage 1).
    pub fn mode(&self) -> TrainMode {
        if self.config.lora.is_some() || self.llava.is_some() {
            TrainMode::Lora
        } else {
            TrainMode::Full
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// `output_dir/final` (or the last checkpoint when stopped early).
    pub saved: PathBuf,
    /// Optimizer steps done in total.
    pub steps: usize,
    /// Loss of every step run in this call.
    pub losses: Vec<f64>,
    /// Whether the run was stopped before the end.
    pub interrupted: bool,
}

/// Optimizer steps of a run with `micro_per_epoch` micro-batches per epoch.
pub fn total_steps(config: &TrainConfig, micro_per_epoch: usize) -> usize {
    let t = &config.train;
    t.max_steps
        .unwrap_or_else(|| (t.epochs * micro_per_epoch).div_ceil(t.grad_accum))
        .max(1)
}

/// Which rows form each micro-batch, epoch after epoch.
struct DataOrder {
    rows: usize,
    batch_size: usize,
    seed: u64,
    /// A LLaVA run's rows that hold a picture: batches never mix them with text-only rows (so
    /// neither pads to the other's length), as XTuner's modality-grouped sampler does.
    pictured: Option<Vec<bool>>,
    cached: Option<(usize, Vec<Vec<usize>>)>,
}

impl DataOrder {
    /// Micro-batches per epoch.
    fn per_epoch(&self) -> usize {
        match &self.pictured {
            None => self.rows.div_ceil(self.batch_size),
            Some(pictured) => {
                let with = pictured.iter().filter(|&&p| p).count();
                with.div_ceil(self.batch_size) + (self.rows - with).div_ceil(self.batch_size)
            }
        }
    }

    /// Row indices of micro-batch `k` (epochs cycle; each epoch is shuffled by seed + epoch).
    fn micro_batch(&mut self, k: usize) -> Vec<usize> {
        let per_epoch = self.per_epoch();
        let (epoch, within) = (k / per_epoch, k % per_epoch);
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.cached = Some((epoch, self.epoch_batches(epoch)));
        }
        self.cached.as_ref().expect("invariant: just filled").1[within].clone()
    }

    /// The micro-batches of `epoch`: the shuffled rows cut in order, or, for a LLaVA run, cut
    /// within each modality and then the batches shuffled together.
    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let seed = self.seed.wrapping_add(epoch as u64);
        let order = shuffled_indices(self.rows, seed);
        let Some(pictured) = &self.pictured else {
            return order.chunks(self.batch_size).map(<[usize]>::to_vec).collect();
        };
        let (with, without): (Vec<usize>, Vec<usize>) = order.iter().partition(|&&i| pictured[i]);
        let batches: Vec<Vec<usize>> = with
            .chunks(self.batch_size)
            .chain(without.chunks(self.batch_size))
            .map(<[usize]>::to_vec)
            .collect();
        let mix = shuffled_indices(batches.len(), seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        mix.into_iter().map(|b| batches[b].clone()).collect()
    }
}

fn model_input(batch: &Batch) -> ModelInput {
    ModelInput {
        batch: batch.batch_size,
        seq: batch.seq_len,
        input_ids: batch.input_ids.clone(),
        attention_mask: Some(batch.attention_mask.clone()),
        position_ids: Some(batch.position_ids.clone()),
        segment_ids: Some(batch.segment_ids.clone()),
    }
}

/// Runs (or resumes) training on one device.
pub fn train<B: TrainBackend>(setup: TrainSetup<B>, hooks: &mut dyn TrainHooks<B>) -> Result<TrainOutcome> {
    train_peer(setup, hooks, &Peer::single())
}

/// Runs (or resumes) one peer's share of a data-parallel run (see [`crate::parallel`]): every
/// peer reads the same rows in the same order and takes its slice of each micro-batch; only the
/// main peer (rank 0) writes checkpoints and metrics and runs the hooks' evaluation. The peer
/// must have joined the collective when the run has several.
pub fn train_peer<B: TrainBackend>(
    mut setup: TrainSetup<B>,
    hooks: &mut dyn TrainHooks<B>,
    peer: &Peer,
) -> Result<TrainOutcome> {
    let cfg = setup.config.clone();
    let t = &cfg.train;
    let main = peer.is_main();
    setup.model_config.gradient_checkpointing = t.gradient_checkpointing;
    if main {
        ensure_writable(&t.output_dir)?;
        for stale in ft_io::remove_stale_staging(&t.output_dir)? {
            tracing::info!("removed {}, left by an interrupted save", stale.display());
        }
    }
    if setup.rows.is_empty() {
        return Err(TrainError::Training(
            "the dataset produced no training rows".into(),
        ));
    }
    let mode = setup.mode();
    let params = trainable_params(&setup.model, &setup.model_config, mode);
    if params.is_empty() && setup.llava.is_none() {
        return Err(TrainError::Lora(match mode {
            TrainMode::Lora => "no trainable adapter in the model".into(),
            TrainMode::Full => {
                "no dense weight to train (full fine-tuning needs quantization = \"none\")".into()
            }
        }));
    }
    if mode == TrainMode::Full
        && let Some(low) = params.first().and_then(|p| {
            let dtype = p.value(&setup.model, &setup.model_config).dtype();
            (dtype != DType::F32).then(|| (p.name(), dtype))
        })
    {
        return Err(TrainError::Training(format!(
            "full fine-tuning would train `{}` in {:?}: ft keeps no f32 master copy of the weights, \
             so AdamW's small updates would be lost to rounding; set [model] dtype = \"f32\" \
             (LoRA and QLoRA keep f32 adapters over a bf16 base)",
            low.0, low.1
        )));
    }
    if mode == TrainMode::Full && setup.base_files.is_none() {
        return Err(TrainError::Training(
            "full fine-tuning needs the base's config and tokenizer files for its checkpoints".into(),
        ));
    }
    let mut order = DataOrder {
        rows: setup.rows.len(),
        batch_size: t.batch_size,
        seed: t.seed,
        pictured: setup
            .llava
            .as_ref()
            .map(|l| l.pictures.iter().map(Option::is_some).collect()),
        cached: None,
    };
    let per_epoch = order.per_epoch();
    let total = total_steps(&cfg, per_epoch);
    let total_micro = cfg
        .train
        .max_steps
        .map(|s| s * t.grad_accum)
        .unwrap_or(t.epochs * per_epoch);
    let schedule = WarmupCosine::new(t.lr, t.warmup_ratio, total);
    let adam = AdamWConfig {
        betas: t.betas,
        eps: t.eps,
        weight_decay: t.weight_decay,
    };
    let config_hash = config_hash(&cfg);
    let mut state = TrainerState {
        global_step: 0,
        micro_step: 0,
        epoch: 0,
        cursor: 0,
        total_steps: total,
        seed: t.seed,
        config_hash: config_hash.clone(),
        config: serde_json::to_value(&cfg).ok(),
        log_history: Vec::new(),
    };
    let mut optimizer = AdamW::<B::InnerBackend>::new(adam);
    if let Some(dir) = &setup.resume_from {
        let current = state.config.take();
        state = TrainerState::read(dir)?;
        if state.config_hash != config_hash {
            let changed = match (&state.config, &current) {
                (Some(old), Some(new)) => changed_keys(old, new).join(", "),
                _ => "(this checkpoint does not record its config)".into(),
            };
            tracing::warn!(
                "{}: the config changed since this checkpoint was written: {changed}",
                dir.display()
            );
        }
        state.config_hash = config_hash.clone();
        state.config = current;
        if let Some(llava) = &mut setup.llava {
            llava.load(dir, &setup.device)?;
        }
        match mode {
            TrainMode::Lora if setup.llava.is_some() && setup.config.lora.is_none() => {}
            TrainMode::Lora => {
                let adapter = Adapter::read(adapter_dir(&setup, dir))?;
                crate::adapter::load_adapter_weights(
                    &mut setup.model,
                    &setup.model_config,
                    &adapter.weights,
                    &setup.device,
                )?;
            }
            TrainMode::Full => read_model_folder(&mut setup.model, &setup.model_config, dir)?,
        }
        let optimizer_file = dir.join("optimizer.safetensors");
        optimizer = AdamW::load(adam, &optimizer_file, &setup.device)?;
        optimizer.check_against(&trained_shapes(&setup, &params), &optimizer_file)?;
        tracing::info!("resumed from {} at step {}", dir.display(), state.global_step);
    }
    let mut log = main.then(|| RunLog::open(&cfg, state.global_step)).transpose()?;
    let eval_every = cfg.eval.as_ref().map(|e| e.every_steps).unwrap_or(0);
    if let Some(log) = log.as_mut()
        && state.global_step == 0
        && cfg.eval.is_some()
    {
        evaluate(hooks, &setup, 0, log)?;
    }
    let mut losses = Vec::new();
    let mut interrupted = false;
    while state.global_step < total {
        let step = state.global_step;
        B::seed(
            &setup.device,
            t.seed.wrapping_mul(1_000_003).wrapping_add(step as u64),
        );
        let started = Instant::now();
        let first = step * t.grad_accum;
        let last = ((step + 1) * t.grad_accum).min(total_micro.max(first + 1));
        let mut window_rows = Vec::new();
        let (mut targets, mut real_tokens) = (0, 0);
        let micro: Vec<MicroBatch> = (first..last)
            .map(|k| {
                let mut indices = order.micro_batch(k);
                let mut rows: Vec<PackedRow> = indices.iter().map(|&i| setup.rows.row(i)).collect();
                window_rows.extend(indices.iter().copied());
                targets += rows.iter().map(PackedRow::supervised_targets).sum::<usize>();
                real_tokens += rows.iter().map(|r| r.input_ids.len()).sum::<usize>();
                let share = peer.share(rows.len());
                (indices, rows) = (
                    indices.drain(share.clone()).collect(),
                    rows.drain(share).collect(),
                );
                let batch = collate(&rows.iter().collect::<Vec<_>>());
                MicroBatch { indices, rows, batch }
            })
            .collect();
        let mut times = StepTimes::default();
        let asked_to_stop = setup.stop.load(Ordering::SeqCst);
        let (loss, grad_norm, agreed_stop) = if targets == 0 {
            tracing::warn!(
                "step {}: no supervised token in rows {window_rows:?} (micro-batches {first}..{last}); skipped",
                step + 1
            );
            let totals = match peer.world {
                1 => None,
                _ => Some(peer.all_reduce_step::<B::InnerBackend>(
                    &mut [],
                    &[],
                    0.0,
                    asked_to_stop,
                    &setup.device,
                )?),
            };
            (f64::NAN, 0.0, totals.map(|t| t.stop))
        } else {
            optimizer_step(
                &mut setup,
                &params,
                &micro,
                (targets, asked_to_stop),
                &mut optimizer,
                (schedule.lr(step), t.max_grad_norm),
                &mut times,
                peer,
            )?
        };
        hooks.on_step_times(&times);
        if targets > 0 && !loss.is_finite() {
            tracing::warn!(
                "step {}: non-finite loss {loss} on rows {window_rows:?}; the update was skipped",
                step + 1
            );
        }
        state.global_step += 1;
        state.micro_step = last;
        state.epoch = last / per_epoch;
        state.cursor = last;
        let m = StepMetrics {
            step: state.global_step,
            loss,
            lr: schedule.lr(step),
            grad_norm,
            tokens_per_s: real_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
            supervised_tokens: targets,
        };
        losses.push(loss);
        hooks.on_step(&m, total);
        if state.global_step.is_multiple_of(t.log_steps) || state.global_step == total {
            if let Some(log) = log.as_mut() {
                log.log_step(&m)?;
            }
            state
                .log_history
                .push(serde_json::to_value(&m).expect("invariant: metrics serialise"));
        }
        // Peers stop together: at the step where any of them was asked to.
        let stopping = agreed_stop.unwrap_or_else(|| setup.stop.load(Ordering::SeqCst));
        let finished = state.global_step == total;
        let Some(log) = log.as_mut() else {
            if stopping && !finished {
                interrupted = true;
                break;
            }
            continue;
        };
        if eval_every > 0 && state.global_step.is_multiple_of(eval_every) && !finished {
            evaluate(hooks, &setup, state.global_step, log)?;
        }
        if (t.save_steps > 0 && state.global_step.is_multiple_of(t.save_steps) && !finished)
            || (stopping && !finished)
        {
            save_checkpoint(
                &setup,
                &state,
                &optimizer,
                &checkpoint_dir(&t.output_dir, state.global_step),
            )?;
            rotate_checkpoints(&t.output_dir, t.save_total_limit)?;
            log.draw();
        }
        if stopping && !finished {
            interrupted = true;
            break;
        }
    }
    let saved = if interrupted {
        checkpoint_dir(&t.output_dir, state.global_step)
    } else {
        let final_dir = t.output_dir.join("final");
        if let Some(log) = log.as_mut() {
            save_checkpoint(&setup, &state, &optimizer, &final_dir)?;
            if cfg.eval.is_some() {
                evaluate(hooks, &setup, state.global_step, log)?;
            }
            log.draw();
        }
        final_dir
    };
    peer.finish::<B::InnerBackend>();
    Ok(TrainOutcome {
        saved,
        steps: state.global_step,
        losses,
        interrupted,
    })
}

/// Runs the hooks' evaluation and logs the held-out loss they return.
fn evaluate<B: TrainBackend>(
    hooks: &mut dyn TrainHooks<B>,
    setup: &TrainSetup<B>,
    step: usize,
    log: &mut RunLog,
) -> Result<()> {
    let vision = setup
        .llava
        .as_ref()
        .map(|l| (l.vision.valid(), &l.picture_reader));
    let eval_vision = vision
        .as_ref()
        .map(|(vision, reader)| EvalVision { vision, reader });
    if let Some(m) = hooks.evaluate(
        &setup.model.valid(),
        &setup.model_config,
        eval_vision.as_ref(),
        step,
    ) {
        log.log_eval(&m)?;
    }
    Ok(())
}

/// One micro-batch: its rows, their indices in the dataset, and the collated batch.
struct MicroBatch {
    indices: Vec<usize>,
    rows: Vec<PackedRow>,
    batch: Batch,
}

/// One optimizer step over a window of micro-batches (this peer's share of each); `targets`
/// counts the whole window's supervised tokens, over every peer. Returns (window loss, grad
/// norm, and in a several-peer run whether any peer was asked to stop).
#[allow(clippy::too_many_arguments)]
fn optimizer_step<B: TrainBackend>(
    setup: &mut TrainSetup<B>,
    params: &[TrainParam],
    micro: &[MicroBatch],
    (targets, asked_to_stop): (usize, bool),
    optimizer: &mut AdamW<B::InnerBackend>,
    (lr, max_grad_norm): (f64, f64),
    times: &mut StepTimes,
    peer: &Peer,
) -> Result<(f64, f64, Option<bool>)> {
    let mut grads: Vec<Option<Tensor<B::InnerBackend, 2>>> = vec![None; params.len()];
    let projector_names = setup
        .llava
        .as_ref()
        .map(LlavaTraining::param_names)
        .unwrap_or_default();
    let mut projector_grads: Vec<Option<Tensor<B::InnerBackend, 2>>> = vec![None; projector_names.len()];
    let mut loss_sum = 0f64;
    for m in micro.iter().filter(|m| !m.rows.is_empty()) {
        let started = Instant::now();
        let out = match &setup.llava {
            Some(llava) => llava.loss_sum(&setup.model, &setup.model_config, &m.rows, &m.indices)?,
            None => setup
                .model
                .loss_sum(&model_input(&m.batch), &m.batch.labels, &setup.model_config),
        };
        if out.count == 0 {
            continue;
        }
        loss_sum += out.sum.clone().into_scalar().elem::<f64>();
        times.forward_s += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let gradients = out.sum.div_scalar(targets as f64).backward();
        for (slot, p) in grads.iter_mut().zip(params) {
            accumulate(slot, p.grad(&setup.model, &setup.model_config, &gradients));
        }
        if let Some(llava) = &setup.llava {
            for (slot, g) in projector_grads.iter_mut().zip(llava.grads(&gradients)) {
                accumulate(slot, g);
            }
        }
        times.backward_s += started.elapsed().as_secs_f64();
    }
    let mut agreed_stop = None;
    if peer.world > 1 {
        let started = Instant::now();
        let shapes: Vec<[usize; 2]> = trained_shapes(setup, params)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let mut all: Vec<_> = grads.into_iter().chain(projector_grads).collect();
        let totals = peer.all_reduce_step(&mut all, &shapes, loss_sum, asked_to_stop, &setup.device)?;
        projector_grads = all.split_off(params.len());
        grads = all;
        (loss_sum, agreed_stop) = (totals.loss_sum, Some(totals.stop));
        times.backward_s += started.elapsed().as_secs_f64();
    }
    let started = Instant::now();
    let loss = loss_sum / targets as f64;
    if !loss.is_finite() {
        return Ok((loss, f64::NAN, agreed_stop));
    }
    let squares: f64 = grads
        .iter()
        .chain(&projector_grads)
        .flatten()
        .map(|g| g.clone().powi_scalar(2).sum().into_scalar().elem::<f64>())
        .sum();
    let norm = squares.sqrt();
    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1.
    let coef = if max_grad_norm > 0.0 {
        (max_grad_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    optimizer.begin_step();
    for (g, p) in grads.into_iter().zip(params) {
        let Some(g) = g else { continue };
        let current = p.value(&setup.model, &setup.model_config).inner();
        let updated = optimizer.update(&p.name(), current, g.mul_scalar(coef), lr);
        p.set(&mut setup.model, &setup.model_config, Tensor::from_inner(updated));
    }
    if let Some(llava) = &mut setup.llava {
        let current = llava.values();
        let mut updated = Vec::with_capacity(current.len());
        for ((value, g), name) in current.into_iter().zip(projector_grads).zip(&projector_names) {
            updated.push(match g {
                Some(g) => Tensor::from_inner(optimizer.update(name, value.inner(), g.mul_scalar(coef), lr)),
                None => value,
            });
        }
        llava.set(updated);
    }
    times.optimizer_s = started.elapsed().as_secs_f64();
    Ok((loss, norm, agreed_stop))
}

/// The name and shape of every tensor the run trains (the LLM's, then a LLaVA's).
fn trained_shapes<B: TrainBackend>(
    setup: &TrainSetup<B>,
    params: &[TrainParam],
) -> Vec<(String, [usize; 2])> {
    let mut shapes: Vec<(String, [usize; 2])> = params
        .iter()
        .map(|p| (p.name(), p.value(&setup.model, &setup.model_config).dims()))
        .collect();
    if let Some(llava) = &setup.llava {
        shapes.extend(
            llava
                .param_names()
                .into_iter()
                .zip(llava.values().iter().map(Tensor::dims)),
        );
    }
    shapes
}

/// Adds a micro-batch's gradient to the window's.
fn accumulate<T: std::ops::Add<Output = T>>(slot: &mut Option<T>, g: Option<T>) {
    if let Some(g) = g {
        *slot = Some(match slot.take() {
            Some(acc) => acc + g,
            None => g,
        });
    }
}

/// Where a checkpoint's LoRA adapter lives: the folder itself, or `llm_adapter/` for a LLaVA
/// (XTuner's layout).
fn adapter_dir<B: TrainBackend>(setup: &TrainSetup<B>, dir: &Path) -> PathBuf {
    match setup.llava {
        Some(_) => dir.join("llm_adapter"),
        None => dir.to_path_buf(),
    }
}

fn save_checkpoint<B: TrainBackend>(
    setup: &TrainSetup<B>,
    state: &TrainerState,
    optimizer: &AdamW<B::InnerBackend>,
    dir: &Path,
) -> Result<()> {
    let adapter = setup.config.lora.as_ref().map(|lora| llm_adapter(setup, lora));
    match (&setup.llava, &adapter) {
        (None, None) => {
            let base = setup
                .base_files
                .as_ref()
                .ok_or_else(|| TrainError::Training("full fine-tuning needs the base's side files".into()))?;
            write_atomically(dir, |tmp| {
                write_model_folder(&setup.model.valid(), &setup.model_config, base, tmp, Dtype::F32)?;
                optimizer.save(&tmp.join("optimizer.safetensors"))?;
                state.write(tmp)
            })?;
        }
        (llava, adapter) => write_atomically(dir, |tmp| {
            if let Some(llava) = llava {
                llava.save(tmp)?;
            }
            if let Some(adapter) = adapter {
                adapter.write(adapter_dir(setup, tmp), AdapterDtype::F32)?;
            }
            optimizer.save(&tmp.join("optimizer.safetensors"))?;
            state.write(tmp)
        })?,
    }
    tracing::info!("saved {}", dir.display());
    Ok(())
}

/// The LLM's adapter as PEFT saves it, with ft's side file.
fn llm_adapter<B: TrainBackend>(setup: &TrainSetup<B>, lora: &crate::config::LoraSection) -> Adapter {
    let mut config = AdapterConfig::new(
        lora.r,
        lora.alpha,
        TargetModules::for_saving(&setup.targets, &setup.linear_names),
    );
    config.lora_dropout = lora.dropout;
    config.use_rslora = lora.use_rslora;
    config.base_model_name_or_path = Some(setup.config.model.path.display().to_string());
    config.chat_template = Some(setup.template_name.clone());
    Adapter {
        config,
        weights: adapter_weights(&setup.model, &setup.model_config),
        ft_meta: Some(adapter_meta(setup)),
    }
}

/// What `ft` records beside the adapter: template, an example, and the base's quantisation
/// (so `ft merge` rebuilds the weights a QLoRA adapter was trained on).
fn adapter_meta<B: TrainBackend>(setup: &TrainSetup<B>) -> FtAdapterMeta {
    let mut meta = FtAdapterMeta::new(Some(setup.template_name.clone()), setup.rendered_example.clone());
    let model = &setup.config.model;
    if model.quantization == "nf4" {
        meta.quantization = Some("nf4".into());
        meta.double_quant = Some(model.double_quant);
    }
    meta
}

/// A short hash of the config (FNV-1a of its TOML form), to warn when a resume changes it.
fn config_hash(config: &TrainConfig) -> String {
    let text = toml::to_string(config).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

use burn::module::AutodiffModule;
use burn::tensor::ElementConversion;

#[cfg(test)]
mod order_tests {
    use super::DataOrder;

    #[test]
    fn picture_rows_and_text_rows_never_share_a_batch_and_every_row_comes_once_per_epoch() {
        let pictured: Vec<bool> = (0..23).map(|i| i % 3 != 0).collect();
        let mut order = DataOrder {
            rows: 23,
            batch_size: 4,
            seed: 5,
            pictured: Some(pictured.clone()),
            cached: None,
        };
        let per_epoch = order.per_epoch();
        assert_eq!(per_epoch, 15_usize.div_ceil(4) + 8_usize.div_ceil(4));
        for epoch in 0..2 {
            let mut seen = Vec::new();
            for k in 0..per_epoch {
                let batch = order.micro_batch(epoch * per_epoch + k);
                assert!(
                    batch.iter().all(|&i| pictured[i] == pictured[batch[0]]),
                    "mixed batch {batch:?}"
                );
                seen.extend(batch);
            }
            seen.sort();
            assert_eq!(seen, (0..23).collect::<Vec<_>>(), "epoch {epoch}");
        }
        let mut plain = DataOrder {
            rows: 23,
            batch_size: 4,
            seed: 5,
            pictured: None,
            cached: None,
        };
        assert_eq!(plain.per_epoch(), 6);
        assert_eq!(plain.micro_batch(5).len(), 3);
    }
}
