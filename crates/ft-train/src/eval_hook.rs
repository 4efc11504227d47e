//! XTuner's EvaluateChatHook: answers to `[eval] inputs` before training, every `every_steps`
//! and at the end, rendered with the training template and written to
//! `output_dir/eval_outputs_step_{step}.txt`; plus the progress bar.

use ft_model::TrainBackend;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use ft_data::encode::bos_ids;
use ft_data::template::{Segment, Template};
use ft_data::tokenizer::FtTokenizer;
use ft_model::generate::generate;
use ft_model::sampling::{Sampler, SamplingConfig, StopCondition};
use ft_model::session::KvSession;
use ft_model::{CausalLm, ModelConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::EvalSection;
use crate::metrics::{EvalMetrics, StepMetrics};
use crate::trainer::TrainHooks;

/// Progress display and sample generations.
pub struct ChatEvalHook {
    eval: Option<EvalSection>,
    template: Template,
    tokenizer: FtTokenizer,
    output_dir: PathBuf,
    progress: Option<ProgressBar>,
    /// The last answers, by input (for tests and the final summary).
    pub last_answers: Vec<String>,
}

impl ChatEvalHook {
    /// A hook for `eval` (none: progress only).
    pub fn new(
        eval: Option<EvalSection>,
        template: Template,
        tokenizer: FtTokenizer,
        output_dir: PathBuf,
    ) -> Self {
        Self {
            eval,
            template,
            tokenizer,
            output_dir,
            progress: None,
            last_answers: Vec::new(),
        }
    }

    /// The ids of a single-turn prompt, as training renders it.
    fn prompt_ids(&self, input: &str, system: Option<&str>) -> Option<Vec<u32>> {
        let segments = self.template.prompt_segments(input, system, 0).ok()?;
        let mut ids = Vec::new();
        for segment in &segments {
            if let Segment::Prompt(text) = segment {
                if ids.is_empty() {
                    ids.extend(bos_ids(&self.tokenizer, text).into_iter().map(|i| i as u32));
                }
                ids.extend(self.tokenizer.encode(text).ok()?);
            }
        }
        Some(ids)
    }

    fn stop_condition(&self) -> StopCondition {
        let mut stop = StopCondition::default();
        stop.ids.extend(self.tokenizer.eos_ids());
        for word in self.template.stop_words() {
            match self.tokenizer.token_to_id(&word) {
                Some(id) => {
                    stop.ids.insert(id);
                }
                None => stop.strings.push(word),
            }
        }
        stop
    }
}

impl<B: TrainBackend> TrainHooks<B> for ChatEvalHook {
    fn on_step(&mut self, m: &StepMetrics, total_steps: usize) {
        let bar = self.progress.get_or_insert_with(|| {
            let bar = ProgressBar::new(total_steps as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                    .expect("invariant: valid template"),
            );
            bar
        });
        bar.set_position(m.step as u64);
        bar.set_message(format!(
            "loss {:.4}  lr {:.2e}  grad_norm {:.3}  {:.0} tok/s",
            m.loss, m.lr, m.grad_norm, m.tokens_per_s
        ));
        if m.step as u64 == total_steps as u64 {
            bar.finish();
        }
    }

    fn evaluate(
        &mut self,
        model: &CausalLm<B::InnerBackend>,
        config: &ModelConfig,
        step: usize,
    ) -> Option<EvalMetrics> {
        let eval = self.eval.clone().filter(|e| !e.inputs.is_empty())?;
        let stop = self.stop_condition();
        let mut report = String::new();
        self.last_answers.clear();
        for (k, input) in eval.inputs.iter().enumerate() {
            let Some(prompt) = self.prompt_ids(input, eval.system.as_deref()) else {
                tracing::warn!("eval input {k} could not be rendered");
                continue;
            };
            // XTuner's sampling settings, seeded so that runs are reproducible.
            let mut sampler = Sampler::new(SamplingConfig {
                temperature: 0.1,
                top_k: 40,
                top_p: 0.75,
                repetition_penalty: 1.0,
                seed: step as u64,
            });
            let max_new = if step == 0 {
                eval.max_new_tokens.min(50)
            } else {
                eval.max_new_tokens
            };
            let mut session = KvSession::new(model, config);
            let answer = match generate(
                &mut session,
                &prompt,
                &mut sampler,
                &stop,
                max_new,
                &mut Vec::new(),
                |_| ControlFlow::Continue(()),
            ) {
                Ok(out) => self.tokenizer.decode(&out.tokens, false).unwrap_or_default(),
                Err(e) => format!("<generation failed: {e}>"),
            };
            report.push_str(&format!("Eval output {k}:\n{input}\n→ {answer}\n\n"));
            self.last_answers.push(answer);
        }
        let line = format!("sample answers at step {step}:\n{report}");
        match &self.progress {
            Some(bar) => bar.suspend(|| eprintln!("{}", line.trim_end())),
            None => eprintln!("{}", line.trim_end()),
        }
        let path = self.output_dir.join(format!("eval_outputs_step_{step}.txt"));
        if let Err(e) = std::fs::File::create(&path).and_then(|mut f| f.write_all(report.as_bytes())) {
            tracing::warn!("{}: {e}", path.display());
        }
        None
    }
}
