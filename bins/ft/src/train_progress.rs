//! What `ft train` draws: a progress bar with the step's loss, learning rate, gradient norm and
//! speed, and the sample answers of each evaluation printed above it.

use std::sync::Arc;

use ft_model::{CausalLm, ModelConfig, TrainBackend};
use ft_train::eval_hook::AnswersCallback;
use ft_train::metrics::{EvalMetrics, StepMetrics};
use ft_train::trainer::{StepTimes, TrainHooks};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar, shared with the answers callback so that printing suspends it.
#[derive(Clone)]
pub struct TrainBar(Arc<ProgressBar>);

impl TrainBar {
    /// A bar that stays hidden until the first step.
    pub fn new() -> Self {
        Self(Arc::new(ProgressBar::with_draw_target(
            None,
            ProgressDrawTarget::hidden(),
        )))
    }

    /// Prints each evaluation's answers above the bar.
    pub fn answers_printer(&self) -> AnswersCallback {
        let bar = self.0.clone();
        Box::new(move |step, report| {
            let text = format!("sample answers at step {step}:\n{report}");
            bar.suspend(|| eprintln!("{}", text.trim_end()));
        })
    }

    fn show(&self, m: &StepMetrics, total_steps: usize) {
        let bar = &self.0;
        if bar.length().is_none() {
            bar.set_length(total_steps as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                    .expect("invariant: valid template"),
            );
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_position(m.step as u64);
        bar.set_message(format!(
            "loss {:.4}  lr {:.2e}  grad_norm {:.3}  {:.0} tok/s",
            m.loss, m.lr, m.grad_norm, m.tokens_per_s
        ));
        if m.step == total_steps {
            bar.finish();
        }
    }
}

/// Wraps the library's hooks, drawing the bar at every step.
pub struct WithProgress<H> {
    /// The bar.
    pub bar: TrainBar,
    /// The hooks that do the work.
    pub inner: H,
}

impl<B: TrainBackend, H: TrainHooks<B>> TrainHooks<B> for WithProgress<H> {
    fn on_step(&mut self, metrics: &StepMetrics, total_steps: usize) {
        self.bar.show(metrics, total_steps);
        self.inner.on_step(metrics, total_steps);
    }

    fn on_step_times(&mut self, times: &StepTimes) {
        self.inner.on_step_times(times);
    }

    fn evaluate(
        &mut self,
        model: &CausalLm<B::InnerBackend>,
        config: &ModelConfig,
        vision: Option<&ft_train::llava::EvalVision<'_, B::InnerBackend>>,
        step: usize,
    ) -> Option<EvalMetrics> {
        self.inner.evaluate(model, config, vision, step)
    }
}
