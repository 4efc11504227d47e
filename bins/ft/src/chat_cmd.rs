//! `ft chat`: talk with a model in the terminal, or answer one `--prompt` and exit.

use clap::Args;
use ft_model::KernelBackend;
use ft_model::sampling::SamplingConfig;
use ft_model::session::KvSession;

use crate::backend::{BackendTask, DType, DeviceKind, dispatch};
use crate::chat_session::{Chat, ChatOptions};
use crate::model_load::ModelArgs;

/// Arguments of `ft chat` (as `xtuner chat` where they make sense).
#[derive(Args, Clone)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System text for the first turn.
    #[arg(long)]
    pub system: Option<String>,
    /// Answer this prompt and exit.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Longest answer.
    #[arg(long, default_value_t = 2048)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.1)]
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = all.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.75)]
    pub top_p: f32,
    /// Penalty on repeated tokens; 1 = none.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Extra stop words.
    #[arg(long, num_args = 1..)]
    pub stop_words: Vec<String>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    pub device: DeviceKind,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DType::Bf16)]
    pub dtype: DType,
}

impl ChatArgs {
    /// Sampling settings from the flags.
    pub fn sampling(&self) -> SamplingConfig {
        SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        }
    }
}

impl ChatArgs {
    /// The chat's settings, with the template chosen at load.
    pub fn options(&self, template: ft_data::template::Template) -> ChatOptions {
        ChatOptions {
            template,
            system: self.system.clone(),
            max_new_tokens: self.max_new_tokens,
            sampling: self.sampling(),
            stop_words: self.stop_words.clone(),
        }
    }
}

impl BackendTask for ChatArgs {
    type Output = ();

    fn run<B: KernelBackend>(self, device: B::Device, label: &str) -> anyhow::Result<()> {
        let (loaded, template) = self.model.load::<B>(&device)?;
        tracing::info!("device {label}, template {}", template.name());
        let options = self.options(template);
        let mut session = KvSession::new(&loaded.model, &loaded.config);
        let mut chat = Chat::new(&mut session, &loaded.tokenizer, options);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match &self.prompt {
            Some(prompt) => {
                chat.answer(prompt, &mut out)?;
            }
            None => chat.interactive(&mut std::io::stdin().lock(), &mut out)?,
        }
        Ok(())
    }
}

/// Runs `ft chat`.
pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    dispatch(args.device, args.dtype, args)
}
