//! The held-out loss (`[data] eval_split`): the mean cross-entropy over supervised tokens of
//! the held-out samples, one sample per forward (the same number `ft eval` reports; a LLaVA
//! sample with its picture spliced in), computed
//! whenever the loop evaluates (`[eval] every_steps`, and at the end) and handed to the loop, which
//! appends `{"step": N, "eval_loss": X, "eval_tokens": T}` to `output_dir/metrics.jsonl` and
//! `eval/loss` to the TensorBoard events.

use ft_model::{KernelBackend, TrainBackend};

use burn::tensor::ElementConversion;
use ft_data::rows::RowSource;
use ft_model::{CausalLm, ModelConfig, ModelInput};

use crate::error::{Result, TrainError};
use crate::llava::EvalVision;
use crate::metrics::{EvalMetrics, StepMetrics};
use crate::trainer::{StepTimes, TrainHooks};
use ft_llava::SpliceSample;

/// A held-out loss measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalLoss {
    /// Optimizer step it was measured after.
    pub step: usize,
    /// Mean cross-entropy over `tokens`.
    pub loss: f64,
    /// Supervised targets (labels ≠ −100 after the shift).
    pub tokens: usize,
}

/// Mean loss of `model` over `rows`, one row per forward; `None` when no token is supervised.
/// Row `i` holds the picture `pictures[i]` (a LLaVA's rows), spliced in by `vision`.
///
/// # Shapes
/// - each row: `input_ids`, `labels` `[seq]` → a `[1, seq]` forward
pub fn held_out_loss<B: KernelBackend>(
    model: &CausalLm<B>,
    config: &ModelConfig,
    rows: &dyn RowSource,
    pictures: &[Option<String>],
    vision: Option<&EvalVision<'_, B>>,
) -> Result<Option<(f64, usize)>> {
    let (mut sum, mut count) = (0f64, 0usize);
    for i in 0..rows.len() {
        let row = rows.row(i);
        let out = match (pictures.get(i).and_then(Option::as_ref), vision) {
            (Some(picture), Some(eval)) => {
                let pixels = eval.reader.tensor(picture, &model.embed.device())?;
                let sample = SpliceSample {
                    input_ids: row.input_ids,
                    labels: row.labels,
                };
                let spliced = eval.vision.spliced_sample(model, pixels, sample)?;
                model.loss_sum_of_embeddings(spliced.embeddings, &spliced.input, &spliced.labels, config)
            }
            (Some(picture), None) => {
                return Err(TrainError::Training(format!(
                    "held-out sample {i} has the picture `{picture}`, and the run has no [llava]"
                )));
            }
            (None, _) => {
                let ids: Vec<u32> = row.input_ids.iter().map(|&id| id as u32).collect();
                model.loss_sum(&ModelInput::from_ids(&ids), &row.labels, config)
            }
        };
        if out.count == 0 {
            continue;
        }
        sum += out.sum.into_scalar().elem::<f64>();
        count += out.count;
    }
    Ok((count > 0).then(|| (sum / count as f64, count)))
}

/// Wraps other hooks, adding the held-out loss to every evaluation.
pub struct EvalLossHook<H> {
    inner: H,
    rows: Box<dyn RowSource>,
    pictures: Vec<Option<String>>,
    /// Every measurement so far.
    pub history: Vec<EvalLoss>,
}

impl<H> EvalLossHook<H> {
    /// Measures over `rows` (the held-out samples).
    pub fn new(inner: H, rows: Box<dyn RowSource>) -> Self {
        Self {
            inner,
            rows,
            pictures: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The picture of each held-out row (a LLaVA run's).
    pub fn with_pictures(mut self, pictures: Vec<Option<String>>) -> Self {
        self.pictures = pictures;
        self
    }
}

impl<B: TrainBackend, H: TrainHooks<B>> TrainHooks<B> for EvalLossHook<H> {
    fn on_step(&mut self, metrics: &StepMetrics, total_steps: usize) {
        self.inner.on_step(metrics, total_steps);
    }

    fn on_step_times(&mut self, times: &StepTimes) {
        self.inner.on_step_times(times);
    }

    fn evaluate(
        &mut self,
        model: &CausalLm<B::InnerBackend>,
        config: &ModelConfig,
        vision: Option<&EvalVision<'_, B::InnerBackend>>,
        step: usize,
    ) -> Option<EvalMetrics> {
        let inner = self.inner.evaluate(model, config, vision, step);
        if self.history.last().is_some_and(|m| m.step == step) {
            return inner;
        }
        let measured = held_out_loss(model, config, self.rows.as_ref(), &self.pictures, vision);
        let (loss, tokens) = match measured {
            Ok(Some(measured)) => measured,
            Ok(None) => return inner,
            Err(e) => {
                tracing::warn!("step {step}: held-out loss not measured: {e}");
                return inner;
            }
        };
        tracing::info!("step {step}: eval loss {loss:.4} over {tokens} held-out tokens");
        self.history.push(EvalLoss { step, loss, tokens });
        Some(EvalMetrics {
            step,
            eval_loss: loss,
            eval_tokens: tokens,
        })
    }
}
