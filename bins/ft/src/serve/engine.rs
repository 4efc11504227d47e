//! The model side of the server: worker threads that each answer one request at a time over
//! their own KV sessions (reusing the prefix a new prompt shares with the last one), fed by a
//! bounded queue. The async runtime never runs the model.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use ft_data::chat::StopWords;
use ft_data::template::Template;
use ft_data::tokenizer::FtTokenizer;
use ft_model::sampling::{Sampler, SamplingConfig};
use ft_model::session::KvSession;
use ft_model::{CausalLm, KernelBackend, ModelConfig};
use tokio::sync::mpsc::UnboundedSender;

use super::metrics::Metrics;
use crate::reply::{Reply, ReplyRequest, reply, stop_condition};

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
}

/// Every served model, by index.
pub struct Catalog {
    /// The base first, then the adapters.
    pub models: Vec<ModelCard>,
    /// System text for conversations without one (`--system`).
    pub default_system: Option<String>,
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
    /// Where the answer goes; dropping the receiver cancels the job.
    pub events: UnboundedSender<JobEvent>,
}

/// What a job sends back.
#[derive(Debug)]
pub enum JobEvent {
    /// The model started on the job.
    Started,
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
    /// Queues `job`, or refuses it when `workers + queue` requests are already in.
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

/// Per-worker model state: the network and one KV session's context per served model.
pub struct WorkerModels<B: KernelBackend> {
    /// The networks, in catalog order.
    pub models: Vec<CausalLm<B>>,
    /// The shared configuration.
    pub config: ModelConfig,
}

/// Starts `workers` threads, each with its own copy of the models (weights shared), and returns
/// the queue that feeds them. `queue` requests may wait beyond those running.
pub fn start<B: KernelBackend>(
    catalog: Arc<Catalog>,
    models: &WorkerModels<B>,
    workers: usize,
    queue: usize,
    metrics: Arc<Metrics>,
) -> Engine {
    let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
    let admitted = Arc::new(AtomicUsize::new(0));
    for k in 0..workers.max(1) {
        let own = WorkerModels {
            models: models.models.clone(),
            config: models.config.clone(),
        };
        let worker = Worker {
            catalog: catalog.clone(),
            jobs: receiver.clone(),
            admitted: admitted.clone(),
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name(format!("ft-serve-{k}"))
            .spawn(move || worker.run(own))
            .expect("invariant: a thread can be spawned at start-up");
    }
    Engine {
        jobs: sender,
        admitted,
        limit: workers.max(1) + queue,
        metrics,
    }
}

struct Worker {
    catalog: Arc<Catalog>,
    jobs: Receiver<Job>,
    admitted: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run<B: KernelBackend>(self, own: WorkerModels<B>) {
        let mut sessions: Vec<(KvSession<'_, B>, Vec<u32>)> = own
            .models
            .iter()
            .map(|model| (KvSession::new(model, &own.config), Vec::new()))
            .collect();
        for job in self.jobs.iter() {
            let (session, context) = &mut sessions[job.model];
            self.answer(&job, session, context);
            let left = self.admitted.fetch_sub(1, Ordering::SeqCst) - 1;
            self.metrics.set_queue(left);
        }
    }

    fn answer<B: KernelBackend>(&self, job: &Job, session: &mut KvSession<'_, B>, context: &mut Vec<u32>) {
        if job.events.is_closed() {
            self.metrics.cancelled();
            return;
        }
        let card = &self.catalog.models[job.model];
        let mut words = card.stop.clone();
        words.strings.extend(job.stop_strings.iter().cloned());
        if job.ignore_eos {
            words.ids.clear();
        }
        let stop = stop_condition(words);
        let mut sampler = Sampler::new(job.sampling.clone());
        let started = Instant::now();
        let mut first_token = None;
        let _ = job.events.send(JobEvent::Started);
        let request = ReplyRequest {
            prompt: &job.prompt,
            sampler: &mut sampler,
            stop: &stop,
            max_new_tokens: job.max_tokens,
        };
        let result = reply(session, context, &card.tokenizer, request, |text| {
            first_token.get_or_insert_with(|| started.elapsed());
            match job.events.send(JobEvent::Text(text.to_owned())) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        });
        match result {
            Ok(answer) => {
                self.metrics.answered(&answer, first_token, started.elapsed());
                let _ = job.events.send(JobEvent::Done(answer));
            }
            Err(e) => {
                use ft_model::generate::LogitsSession;
                session.reset();
                context.clear();
                self.metrics.failed();
                let _ = job.events.send(JobEvent::Failed(format!("{e:#}")));
            }
        }
    }
}
