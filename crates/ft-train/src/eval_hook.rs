//! XTuner's EvaluateChatHook: answers to `[eval] inputs` before training, every `every_steps`
//! and at the end, rendered with the training template, written atomically to
//! `output_dir/eval_outputs_step_{step}.txt` and handed to a callback (the binary shows them).
//! A LLaVA run asks about `[eval] images`: the prompt is `<image>` + newline + the input, and the
//! picture (padded to a square, as XTuner's hook pads it) is spliced in as input embeddings.

use ft_model::{KernelBackend, TrainBackend};
use std::ops::ControlFlow;
use std::path::PathBuf;

use ft_data::chat::{StopWords, generation_ids};
use ft_data::encode::IMAGE_TOKEN_INDEX;
use ft_data::record::Turn;
use ft_data::template::IMAGE_TOKEN;
use ft_data::template::Template;
use ft_data::tokenizer::FtTokenizer;
use ft_llava::{PictureReader, rows_with_image};
use ft_model::generate::{LogitsSession, generate_from};
use ft_model::sampling::{Sampler, SamplingConfig, StopCondition};
use ft_model::session::KvSession;
use ft_model::{CausalLm, ModelConfig};

use crate::config::EvalSection;
use crate::llava::EvalVision;
use crate::metrics::EvalMetrics;
use crate::trainer::TrainHooks;

/// Receives each evaluation's report: the step and the text of every input and its answer.
pub type AnswersCallback = Box<dyn FnMut(usize, &str)>;

/// Sample generations.
pub struct ChatEvalHook {
    eval: Option<EvalSection>,
    template: Template,
    tokenizer: FtTokenizer,
    output_dir: PathBuf,
    on_answers: Option<AnswersCallback>,
    /// The last answers, by input (for tests and the final summary).
    pub last_answers: Vec<String>,
}

impl ChatEvalHook {
    /// A hook for `eval` (none: nothing to answer).
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
            on_answers: None,
            last_answers: Vec::new(),
        }
    }

    /// Hands every report to `callback` as well (a binary prints it).
    pub fn with_answers_callback(mut self, callback: AnswersCallback) -> Self {
        self.on_answers = Some(callback);
        self
    }

    /// The ids of a single-turn prompt, as training renders it (`IMAGE_TOKEN_INDEX` where a
    /// picture goes).
    fn prompt_ids(&self, input: &str, system: Option<&str>) -> Option<Vec<i32>> {
        generation_ids(
            &self.template,
            &self.tokenizer,
            &[],
            &Turn::new(input, ""),
            system,
        )
        .ok()
    }

    fn stop_condition(&self) -> StopCondition {
        let words = StopWords::new(&self.template, &self.tokenizer, &[]);
        StopCondition {
            ids: words.ids.into_iter().collect(),
            strings: words.strings,
        }
    }
}

impl<B: TrainBackend> TrainHooks<B> for ChatEvalHook {
    fn evaluate(
        &mut self,
        model: &CausalLm<B::InnerBackend>,
        config: &ModelConfig,
        vision: Option<&EvalVision<'_, B::InnerBackend>>,
        step: usize,
    ) -> Option<EvalMetrics> {
        let eval = self.eval.clone().filter(|e| !e.inputs.is_empty())?;
        let stop = self.stop_condition();
        let mut report = String::new();
        self.last_answers.clear();
        for (k, input) in eval.inputs.iter().enumerate() {
            let picture = match eval.images.len() {
                0 => None,
                1 => eval.images.first(),
                _ => eval.images.get(k),
            };
            let text = match picture {
                Some(_) => format!("{IMAGE_TOKEN}\n{input}"),
                None => input.clone(),
            };
            let Some(prompt) = self.prompt_ids(&text, eval.system.as_deref()) else {
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
            let answer = match prefill(&mut session, model, &prompt, picture, vision).and_then(|logits| {
                generate_from(
                    &mut session,
                    logits,
                    &mut sampler,
                    &stop,
                    max_new,
                    &mut Vec::new(),
                    |_| ControlFlow::Continue(()),
                )
                .map_err(|e| e.to_string())
            }) {
                Ok(out) => self.tokenizer.decode(&out.tokens, false).unwrap_or_default(),
                Err(e) => format!("<generation failed: {e}>"),
            };
            match picture {
                Some(p) => report.push_str(&format!(
                    "Eval output {k} ({}):\n{input}\n→ {answer}\n\n",
                    p.display()
                )),
                None => report.push_str(&format!("Eval output {k}:\n{input}\n→ {answer}\n\n")),
            }
            self.last_answers.push(answer);
        }
        let path = self.output_dir.join(format!("eval_outputs_step_{step}.txt"));
        if let Err(e) = ft_io::write_file_atomically(&path, report.as_bytes()) {
            tracing::warn!("{}: {e}", path.display());
        }
        if let Some(callback) = self.on_answers.as_mut() {
            callback(step, &report);
        }
        None
    }
}

/// Feeds a prompt to a fresh session: its ids, or, with a picture, the text around the
/// placeholder and the picture's rows as input embeddings; returns the next-token logits.
fn prefill<B: KernelBackend>(
    session: &mut KvSession<'_, B>,
    model: &CausalLm<B>,
    prompt: &[i32],
    picture: Option<&PathBuf>,
    vision: Option<&EvalVision<'_, B>>,
) -> Result<Vec<f32>, String> {
    let at = prompt.iter().position(|&id| id == IMAGE_TOKEN_INDEX);
    let ids = |part: &[i32]| -> Result<Vec<u32>, String> {
        part.iter()
            .map(|&id| u32::try_from(id).map_err(|_| "one picture per prompt".to_owned()))
            .collect()
    };
    let (Some(at), Some(picture), Some(eval)) = (at, picture, vision) else {
        if picture.is_some() && vision.is_none() {
            return Err("a picture needs a LLaVA run".into());
        }
        return session.append(&ids(prompt)?).map_err(|e| e.to_string());
    };
    // XTuner's hook pads every picture to a square.
    let reader = PictureReader {
        pad: true,
        ..eval.reader.clone()
    };
    let pixels = reader
        .tensor(&picture.display().to_string(), &model.embed.device())
        .map_err(|e| e.to_string())?;
    let rows = eval.vision.image_rows(pixels);
    let [_, patches, hidden] = rows.dims();
    let embeddings = rows_with_image(
        model,
        &ids(&prompt[..at])?,
        rows.reshape([patches, hidden]),
        &ids(&prompt[at + 1..])?,
    );
    session.append_embeddings(embeddings).map_err(|e| e.to_string())
}
