//! `ft serve`: an OpenAI-compatible API and a chat page over a model and any number of LoRA
//! adapters, each picked by name per request.

mod api;
mod engine;
mod error;
mod metrics;
mod picture;
mod routes;
mod scheduler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ft_data::chat::StopWords;
use ft_model::KernelBackend;
use ft_model::generate::LogitsSession;
use ft_model::session::KvSession;

use crate::backend::{BackendTask, DType, DeviceKind, dispatch};
use crate::model_load::{LoadedModel, ModelArgs, Quantization, attach_adapter, choose_template};
use engine::{Catalog, ModelCard, ServedModels};
use metrics::Metrics;
use routes::AppState;

/// Arguments of `ft serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Model folder (Hugging Face layout) or GGUF file.
    pub model: PathBuf,
    /// A LoRA adapter served beside the base, as NAME=DIR (repeatable); requests pick it with
    /// `"model": "NAME"`.
    #[arg(long = "adapter", value_parser = parse_adapter)]
    pub adapters: Vec<(String, PathBuf)>,
    /// A LLaVA folder (XTuner's layout: `projector/`, optionally `llm_adapter/`,
    /// `visual_encoder/`, `visual_encoder_adapter/`; or a Hugging Face LLaVA folder, then MODEL
    /// is that folder): MODEL is its language model, and requests may send pictures.
    #[arg(long)]
    pub llava: Option<PathBuf>,
    /// The LLaVA's CLIP vision tower (default: the LLaVA folder's `visual_encoder/`).
    #[arg(long, requires = "llava")]
    pub visual_encoder: Option<PathBuf>,
    /// The CLIP hidden state the projector takes (−2: the second-to-last layer's output).
    #[arg(long, default_value_t = -2, allow_hyphen_values = true)]
    pub visual_select_layer: i64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Chat template of every served model; default: each adapter's training template, else
    /// the model's own (`hf`).
    #[arg(long)]
    pub template: Option<String>,
    /// System text for conversations that bring none.
    #[arg(long)]
    pub system: Option<String>,
    /// Quantise the base to NF4 at load (default: what the adapters record).
    #[arg(long, value_enum)]
    pub quantization: Option<Quantization>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Auto)]
    pub device: DeviceKind,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DType::Bf16)]
    pub dtype: DType,
    /// Requests decoded together (one forward pass per step over all of them); more wait.
    #[arg(long, default_value_t = 8)]
    pub max_concurrency: usize,
    /// Requests that may wait beyond those running; more get 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Require `Authorization: Bearer KEY` on the API.
    #[arg(long, env = "FT_API_KEY")]
    pub api_key: Option<String>,
    /// The base model's name in the API (default: the model's file or folder name).
    #[arg(long)]
    pub served_name: Option<String>,
    /// Largest request body, in MB (413 beyond).
    #[arg(long, default_value_t = 20)]
    pub max_body_mb: usize,
    /// Longest answer a request may ask for, in tokens.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Allow browsers on this origin to call the API (CORS is off otherwise).
    #[arg(long)]
    pub cors: Option<String>,
}

fn parse_adapter(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => Ok((name.to_owned(), PathBuf::from(dir))),
        _ => Err(format!("`{text}`: expected NAME=DIR")),
    }
}

/// Runs `ft serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.max_concurrency > 0, "--max-concurrency must be at least 1");
    dispatch(args.device, args.dtype, args)
}

impl BackendTask for ServeArgs {
    type Output = ();

    fn run<B: KernelBackend>(self, device: B::Device, label: &str) -> anyhow::Result<()> {
        let (catalog, models) = self.load::<B>(&device)?;
        tracing::info!("device {label}, {} model(s)", catalog.models.len());
        let catalog = Arc::new(catalog);
        let metrics = Arc::new(Metrics::default());
        let engine = engine::start(
            catalog.clone(),
            models,
            self.max_concurrency,
            self.max_queue,
            metrics.clone(),
        );
        let state = AppState {
            catalog,
            engine,
            metrics,
            api_key: self.api_key.clone().map(Arc::from),
            max_body_mb: self.max_body_mb,
            max_tokens: self.max_tokens,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let mut app = routes::router(state);
        if let Some(origin) = &self.cors {
            let origin: axum::http::HeaderValue = origin.parse().context("--cors: not a valid origin")?;
            app = app.layer(
                tower_http::cors::CorsLayer::new()
                    .allow_origin(origin)
                    .allow_methods(tower_http::cors::Any)
                    .allow_headers(tower_http::cors::Any),
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(listen(app, &self.host, self.port))
    }
}

async fn listen(app: axum::Router, host: &str, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("listening on {host}:{port}"))?;
    let addr: SocketAddr = listener.local_addr()?;
    let shown = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("ft serve: chat page http://{shown}/");
    println!("ft serve: OpenAI API http://{shown}/v1");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

impl ServeArgs {
    /// Loads the base (with a LLaVA's `llm_adapter/` and vision side when `--llava`), then each
    /// adapter on its own copy of the base (weights shared).
    fn load<B: KernelBackend>(&self, device: &B::Device) -> anyhow::Result<(Catalog, ServedModels<B>)> {
        let quantization = self.quantization.or_else(|| self.recorded_quantization());
        let llava = match &self.llava {
            Some(dir) => Some(ft_llava::LlavaParts::find(dir, self.visual_encoder.as_deref())?),
            None => None,
        };
        let base_args = ModelArgs {
            model: self.model.clone(),
            adapter: llava.as_ref().and_then(|p| p.llm_adapter.clone()),
            quantization,
            no_double_quant: false,
            template: self.template.clone(),
        };
        let (base, base_template) = base_args.load::<B>(device)?;
        let vision = match &llava {
            Some(parts) => {
                let (vision, processor) =
                    parts.load_vision::<B>(self.visual_select_layer, base.config.hidden_size, device)?;
                tracing::info!(
                    "LLaVA: CLIP {}, projector {}",
                    parts.visual_encoder.display(),
                    parts.projector.display()
                );
                Some((vision, processor))
            }
            None => None,
        };
        let image_rows = vision
            .as_ref()
            .map(|(v, _)| v.clip.position_embedding.dims()[0] - 1);
        let base_name = self
            .served_name
            .clone()
            .unwrap_or_else(|| model_name(&self.model));
        let mut cards = vec![card(
            &base,
            base_name.clone(),
            None,
            base_template,
            image_rows.is_some(),
        )];
        let mut models = vec![base.model.clone()];
        for (name, dir) in &self.adapters {
            anyhow::ensure!(
                cards.iter().all(|c| &c.name != name),
                "--adapter {name}: the name is taken"
            );
            let mut loaded = LoadedModel {
                model: base.model.clone(),
                config: base.config.clone(),
                tokenizer: base.tokenizer.clone(),
            };
            let trained_with = attach_adapter(&mut loaded, dir)?;
            let template = choose_template(
                self.template.as_deref().or(trained_with.as_deref()),
                &loaded.tokenizer,
            )?;
            cards.push(card(
                &loaded,
                name.clone(),
                Some(base_name.clone()),
                template,
                image_rows.is_some(),
            ));
            models.push(loaded.model);
        }
        let (vision, processor) = vision.unzip();
        let catalog = Catalog {
            models: cards,
            default_system: self.system.clone(),
            images: processor.zip(image_rows),
        };
        Ok((
            catalog,
            ServedModels {
                models,
                config: base.config,
                vision,
            },
        ))
    }

    /// NF4 when every adapter was trained on an NF4 base (QLoRA).
    fn recorded_quantization(&self) -> Option<Quantization> {
        let nf4 = |dir: &PathBuf| {
            ft_lora::peft::FtAdapterMeta::read(dir)
                .ok()
                .flatten()
                .is_some_and(|m| m.quantization.as_deref() == Some("nf4"))
        };
        (!self.adapters.is_empty() && self.adapters.iter().all(|(_, dir)| nf4(dir)))
            .then_some(Quantization::Nf4)
    }
}

fn card<B: KernelBackend>(
    loaded: &LoadedModel<B>,
    name: String,
    parent: Option<String>,
    template: ft_data::template::Template,
    vision: bool,
) -> ModelCard {
    let stop = StopWords::new(&template, &loaded.tokenizer, &[]);
    let max_context = KvSession::new(&loaded.model, &loaded.config).max_context();
    ModelCard {
        name,
        parent,
        template,
        tokenizer: loaded.tokenizer.clone(),
        stop,
        max_context,
        vision,
    }
}

/// A model's name from its path: the GGUF file's stem or the folder's name.
fn model_name(path: &std::path::Path) -> String {
    let name = if path.is_file() {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "model".to_owned())
}
