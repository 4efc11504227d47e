//! `llava-chat`: talk with a LLaVA about a picture in the terminal, or answer one `--prompt`.
//! The LLaVA is XTuner's converted layout (`projector/`, optionally `llm_adapter/` and
//! `visual_encoder/`) over its language model; the chat renders every turn as `ft chat` does.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ft_cli::backend::{BackendTask, dispatch};
use ft_cli::chat_cmd::ChatArgs;
use ft_cli::chat_session::{Chat, PictureSupport};
use ft_cli::picture::prefill;
use ft_llava::LlavaParts;
use ft_model::KernelBackend;
use ft_model::session::KvSession;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Chat with a LLaVA about a picture (`IMAGE path` changes it, `RESET`, `EXIT`).
#[derive(Parser, Clone)]
#[command(name = "llava-chat", version, about)]
struct Cli {
    #[command(flatten)]
    chat: ChatArgs,
    /// The LLaVA folder: XTuner's layout (`projector/`, `llm_adapter/`, `visual_encoder/`,
    /// `visual_encoder_adapter/`) or a Hugging Face LLaVA folder (then LLM is that folder too).
    #[arg(long)]
    llava: PathBuf,
    /// The CLIP vision tower (default: the LLaVA folder's `visual_encoder/`).
    #[arg(long)]
    visual_encoder: Option<PathBuf>,
    /// The picture to talk about.
    #[arg(long)]
    image: PathBuf,
    /// The CLIP hidden state the projector takes.
    #[arg(long, default_value_t = -2, allow_hyphen_values = true)]
    visual_select_layer: i64,
}

impl BackendTask for Cli {
    type Output = ();

    fn run<B: KernelBackend>(self, device: B::Device, label: &str) -> anyhow::Result<()> {
        let parts = LlavaParts::find(&self.llava, self.visual_encoder.as_deref())?;
        let mut model_args = self.chat.model.clone();
        if let Some(adapter) = &parts.llm_adapter {
            anyhow::ensure!(
                model_args.adapter.is_none(),
                "--adapter and the LLaVA folder's llm_adapter/ both name an adapter"
            );
            model_args.adapter = Some(adapter.clone());
        }
        let (loaded, template) = model_args.load::<B>(&device)?;
        let (vision, processor) =
            parts.load_vision::<B>(self.visual_select_layer, loaded.config.hidden_size, &device)?;
        tracing::info!(
            "device {label}, template {}, CLIP {}",
            template.name(),
            parts.visual_encoder.display()
        );
        let rows = vision.clip.position_embedding.dims()[0] - 1;
        let support = PictureSupport {
            feed: Box::new(
                |session: &mut KvSession<'_, B>, prompt: &[u32], picture, reused| {
                    prefill(session, &loaded.model, Some(&vision), prompt, picture, reused)
                        .map_err(anyhow::Error::msg)
                },
            ),
            load: Box::new(|path| Ok(ft_llava::load_pixels(path, &processor, true)?)),
            rows,
        };
        let mut session = KvSession::new(&loaded.model, &loaded.config);
        let mut chat =
            Chat::new(&mut session, &loaded.tokenizer, self.chat.options(template)).with_pictures(support);
        chat.set_picture(&self.image)
            .with_context(|| format!("reading {}", self.image.display()))?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match &self.chat.prompt {
            Some(prompt) => {
                chat.answer(prompt, &mut out)?;
            }
            None => chat.interactive(&mut std::io::stdin().lock(), &mut out)?,
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match dispatch(cli.chat.device, cli.chat.dtype, cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
