//! The model side of the server: a bounded queue in front of the scheduler thread, which
//! decodes the requests together (see `scheduler.rs`). The async runtime never runs the model.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use ft_cli::picture::PictureRows;
use ft_data::chat::StopWords;
use ft_data::template::Template;
use ft_data::tokenizer::FtTokenizer;
use ft_llava::{ImageProcessor, VisionSide};
use ft_model::sampling::SamplingConfig;
use ft_model::{CausalLm, KernelBackend, ModelConfig};
use tokio::sync::mpsc::UnboundedSender;

use super::metrics::Metrics;
use super::scheduler::Scheduler;
use crate::reply::Reply;

/// What the HTTP side knows of one served model (the base or an adapter on it).
pub struct ModelCard {
    /// The name requests pick it by.
    pub name: String,
    /// The base's name, for an adapter.
    pub parent: Option<String>,
    /// Its template.
    pub template: Template,
    /// Its tokenizer.
    pub tokenizer: FtTokenizer,
    /// EOS and the template's stop words.
    pub stop: StopWords,
    /// Longest context.
    pub max_context: usize,
    /// Whether requests may send a picture (a LLaVA).
    pub vision: bool,
}

/// Every served model, by index.
pub struct Catalog {
    /// The base first, then the adapters.
    pub models: Vec<ModelCard>,
    /// System text for conversations without one (`--system`).
    pub default_system: Option<String>,
    /// A LLaVA's picture processor and the rows one picture takes.
    pub images: Option<(ImageProcessor, usize)>,
}

impl Catalog {
    /// The index of the model named `name`; no name picks the base.
    pub fn find(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None | Some("") => Some(0),
            Some(name) => self.models.iter().position(|m| m.name == name),
        }
    }

    /// Every name.
    pub fn names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name.clone()).collect()
    }
}

/// One request for the model.
pub struct Job {
    /// Index in the catalog.
    pub model: usize,
    /// The whole prompt.
    pub prompt: Vec<u32>,
    /// Token choice.
    pub sampling: SamplingConfig,
    /// Stop strings of the request, beside the model's own.
    pub stop_strings: Vec<String>,
    /// Longest answer.
    pub max_tokens: usize,
    /// Generate past EOS and stop tokens (benchmarks).
    pub ignore_eos: bool,
    /// The picture of a LLaVA request; its rows are `prompt[at..at + rows]`.
    pub image: Option<PictureRows>,
    /// Where the answer goes; dropping the receiver cancels the job.
    pub events: UnboundedSender<JobEvent>,
}

/// What a job sends back.
#[derive(Debug)]
pub enum JobEvent {
    /// A piece of the answer.
    Text(String),
    /// The answer is complete.
    Done(Reply),
    /// Generation failed.
    Failed(String),
}

/// The queue in front of the workers.
#[derive(Clone)]
pub struct Engine {
    jobs: Sender<Job>,
    admitted: Arc<AtomicUsize>,
    limit: usize,
    metrics: Arc<Metrics>,
}

/// A job the queue refused: the number of requests already admitted.
#[derive(Debug)]
pub struct QueueFull(pub usize);

impl Engine {
    /// Queues `job`, or refuses it when `max_rows + queue` requests are already in.
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        let admitted = self.admitted.fetch_add(1, Ordering::SeqCst);
        if admitted >= self.limit {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(QueueFull(self.limit));
        }
        self.metrics.set_queue(self.admitted.load(Ordering::SeqCst));
        self.jobs.send(job).map_err(|_| QueueFull(self.limit))
    }
}

/// The networks the scheduler runs, in catalog order, and their shared configuration.
pub struct ServedModels<B: KernelBackend> {
    /// The base, then each adapter on its copy of the base.
    pub models: Vec<CausalLm<B>>,
    /// The shared configuration.
    pub config: ModelConfig,
    /// A LLaVA's CLIP and projector.
    pub vision: Option<VisionSide<B>>,
}

/// Starts the scheduler thread, which decodes up to `max_rows` requests together, and returns
/// the queue that feeds it; `queue` more requests may wait.
pub fn start<B: KernelBackend>(
    catalog: Arc<Catalog>,
    models: ServedModels<B>,
    max_rows: usize,
    queue: usize,
    metrics: Arc<Metrics>,
) -> Engine {
    let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
    let admitted = Arc::new(AtomicUsize::new(0));
    let max_rows = max_rows.max(1);
    let scheduler = Scheduler::new(catalog, receiver, admitted.clone(), metrics.clone(), max_rows);
    std::thread::Builder::new()
        .name("ft-serve-model".into())
        .spawn(move || scheduler.run(&models))
        .expect("invariant: a thread can be spawned at start-up");
    Engine {
        jobs: sender,
        admitted,
        limit: max_rows + queue,
        metrics,
    }
}
