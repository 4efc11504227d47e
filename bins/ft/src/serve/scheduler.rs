//! The scheduler: one thread that decodes every running request together. A request joins
//! after its prompt is processed alone (reusing the longest prefix cached by a finished
//! request), then each step feeds one token of every running request of a model in one forward
//! pass (`BatchDecoder`); a request leaves when it stops, reaches its length, or its client goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use ft_cli::picture::{clamp_to_picture, prefill};
use ft_data::chat::{StreamStep, TextStream};
use ft_model::KernelBackend;
use ft_model::batch::BatchDecoder;
use ft_model::generate::{Limits, LogitsSession, Next, StopReason, next_token};
use ft_model::layers::LayerCache;
use ft_model::sampling::{Sampler, StopCondition};
use ft_model::session::KvSession;

use super::engine::{Catalog, Job, JobEvent, ServedModels};
use super::metrics::Metrics;
use crate::reply::{Finish, Reply, reusable_prefix as shared_prefix, stop_condition};

/// The queue's receiving end and the state shared with the HTTP side.
pub struct Scheduler {
    catalog: Arc<Catalog>,
    jobs: Receiver<Job>,
    admitted: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    max_rows: usize,
}

/// A finished request's cache, kept so that a later prompt sharing its prefix (the next turn
/// of a conversation) skips that part.
struct Cached<B: KernelBackend> {
    model: usize,
    /// The ids in the cache.
    context: Vec<u32>,
    caches: Vec<LayerCache<B>>,
}

/// One running request.
struct Row<'c> {
    job: Job,
    sampler: Sampler,
    stop: StopCondition,
    stream: TextStream<'c>,
    /// Ids the repetition penalty sees (the prompt and every sampled token).
    history: Vec<u32>,
    /// Ids in the model's cache for this request.
    context: Vec<u32>,
    /// The token to feed at the next step.
    pending: u32,
    produced: usize,
    reused: usize,
    max_context: usize,
    started: Instant,
    first_text: Option<Duration>,
}

impl<'c> Row<'c> {
    /// Sends a piece of text; false when the client has gone.
    fn send_text(&mut self, text: String) -> bool {
        if text.is_empty() {
            return !self.job.events.is_closed();
        }
        self.first_text.get_or_insert_with(|| self.started.elapsed());
        self.job.events.send(JobEvent::Text(text)).is_ok()
    }

    /// Picks the next token from `logits`; `Err` ends the request with that finish.
    fn decide(&mut self, logits: &mut [f32]) -> Result<u32, Finish> {
        let limits = Limits {
            produced: self.produced,
            max_new_tokens: self.job.max_tokens,
            context_len: self.context.len(),
            max_context: self.max_context,
        };
        match next_token(&mut self.sampler, &self.stop, logits, &mut self.history, limits) {
            Next::Token(token) => {
                self.produced += 1;
                match self.stream.push(token) {
                    Ok(StreamStep::Continue(text)) => match self.send_text(text) {
                        true => Ok(token),
                        false => Err(Finish::Cancelled),
                    },
                    Ok(StreamStep::Stop(text)) => {
                        self.send_text(text);
                        Err(Finish::Stop)
                    }
                    Err(_) => Err(Finish::Stop),
                }
            }
            Next::Stop(reason) => {
                let rest = self.stream.finish();
                self.send_text(rest);
                Err(match reason {
                    StopReason::MaxTokens | StopReason::ContextFull => Finish::Length,
                    StopReason::StopToken(_) | StopReason::Callback => Finish::Stop,
                })
            }
        }
    }

    fn reply(&self, finish: Finish) -> Reply {
        Reply {
            text: self.stream.text().to_owned(),
            prompt_tokens: self.job.prompt.len(),
            completion_tokens: self.produced,
            reused_tokens: self.reused,
            finish,
        }
    }
}

/// The requests of one model, decoded together.
struct Lane<'m, 'c, B: KernelBackend> {
    decoder: BatchDecoder<'m, B>,
    rows: Vec<Row<'c>>,
}

impl Scheduler {
    /// A scheduler over `catalog`'s models, fed by `jobs`.
    pub fn new(
        catalog: Arc<Catalog>,
        jobs: Receiver<Job>,
        admitted: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
        max_rows: usize,
    ) -> Self {
        Self {
            catalog,
            jobs,
            admitted,
            metrics,
            max_rows,
        }
    }

    /// Runs until the queue's sending side is gone.
    pub fn run<B: KernelBackend>(self, served: &ServedModels<B>) {
        let catalog = self.catalog.clone();
        let mut lanes: Vec<Lane<'_, '_, B>> = served
            .models
            .iter()
            .map(|model| Lane {
                decoder: BatchDecoder::new(model, &served.config),
                rows: Vec::new(),
            })
            .collect();
        let mut pool: Vec<Cached<B>> = Vec::new();
        loop {
            let running: usize = lanes.iter().map(|l| l.rows.len()).sum();
            if running == 0 {
                match self.jobs.recv() {
                    Ok(job) => self.admit(job, &catalog, served, &mut lanes, &mut pool),
                    Err(_) => return,
                }
            }
            while lanes.iter().map(|l| l.rows.len()).sum::<usize>() < self.max_rows {
                match self.jobs.try_recv() {
                    Ok(job) => self.admit(job, &catalog, served, &mut lanes, &mut pool),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            for (model, lane) in lanes.iter_mut().enumerate() {
                if !lane.rows.is_empty() {
                    self.step(model, lane, &mut pool);
                }
            }
        }
    }

    /// Processes a new request's prompt and adds it to its model's lane.
    fn admit<'m, 'c, B: KernelBackend>(
        &self,
        job: Job,
        catalog: &'c Catalog,
        served: &'m ServedModels<B>,
        lanes: &mut [Lane<'m, 'c, B>],
        pool: &mut Vec<Cached<B>>,
    ) {
        if job.events.is_closed() {
            self.metrics.cancelled();
            self.release();
            return;
        }
        let card = &catalog.models[job.model];
        let model = &served.models[job.model];
        let (mut session, mut context) = match take_longest_prefix(pool, job.model, &job.prompt) {
            Some(cached) => (
                KvSession::from_caches(model, &served.config, cached.caches),
                cached.context,
            ),
            None => (KvSession::new(model, &served.config), Vec::new()),
        };
        let reused = clamp_to_picture(shared_prefix(&context, &job.prompt), job.image.as_ref());
        session.truncate(reused);
        context.truncate(reused);
        let mut words = card.stop.clone();
        words.strings.extend(job.stop_strings.iter().cloned());
        if job.ignore_eos {
            words.ids.clear();
        }
        let mut row = Row {
            sampler: Sampler::new(job.sampling.clone()),
            stop: stop_condition(words.clone()),
            stream: TextStream::new(&card.tokenizer, words.strings),
            history: job.prompt.clone(),
            context,
            pending: 0,
            produced: 0,
            reused,
            max_context: card.max_context,
            started: Instant::now(),
            first_text: None,
            job,
        };
        let job = &row.job;
        let vision = served.vision.as_ref();
        let mut logits = match prefill(
            &mut session,
            model,
            vision,
            &job.prompt,
            job.image.as_ref(),
            reused,
        ) {
            Ok(logits) => logits,
            Err(e) => return self.fail(row, &e),
        };
        row.context.extend_from_slice(&row.job.prompt[reused..]);
        match row.decide(&mut logits) {
            Ok(token) => {
                row.pending = token;
                let lane = &mut lanes[row.job.model];
                match lane.decoder.push(session.into_caches()) {
                    Ok(()) => lane.rows.push(row),
                    Err(e) => self.fail(row, &e.to_string()),
                }
            }
            Err(finish) => {
                let caches = session.into_caches();
                self.finish(row, finish, caches, pool);
            }
        }
    }

    /// Feeds every row of `lane` its pending token; finished rows leave.
    fn step<B: KernelBackend>(&self, model: usize, lane: &mut Lane<'_, '_, B>, pool: &mut Vec<Cached<B>>) {
        let ids: Vec<u32> = lane.rows.iter().map(|r| r.pending).collect();
        self.metrics.stepped(ids.len());
        let logits = match lane.decoder.step(&ids) {
            Ok(logits) => logits,
            Err(e) => {
                for row in (0..lane.rows.len()).rev() {
                    lane.decoder.remove(row);
                    let row = lane.rows.remove(row);
                    self.fail(row, &e.to_string());
                }
                return;
            }
        };
        let mut finished = Vec::new();
        for (k, (row, mut logits)) in lane.rows.iter_mut().zip(logits).enumerate() {
            row.context.push(row.pending);
            match row.decide(&mut logits) {
                Ok(token) => row.pending = token,
                Err(finish) => finished.push((k, finish)),
            }
        }
        for (k, finish) in finished.into_iter().rev() {
            let caches = lane.decoder.remove(k);
            let row = lane.rows.remove(k);
            debug_assert_eq!(row.job.model, model);
            self.finish(row, finish, caches, pool);
        }
    }

    fn finish<B: KernelBackend>(
        &self,
        row: Row<'_>,
        finish: Finish,
        caches: Vec<LayerCache<B>>,
        pool: &mut Vec<Cached<B>>,
    ) {
        let reply = row.reply(finish);
        self.metrics
            .answered(&reply, row.first_text, row.started.elapsed());
        // Counted out before the client hears the end, so that /metrics agrees with it.
        self.release();
        let _ = row.job.events.send(JobEvent::Done(reply));
        pool.push(Cached {
            model: row.job.model,
            context: row.context,
            caches,
        });
        if pool.len() > self.max_rows.max(4) {
            pool.remove(0);
        }
    }

    fn fail(&self, row: Row<'_>, message: &str) {
        self.metrics.failed();
        self.release();
        let _ = row
            .job
            .events
            .send(JobEvent::Failed(format!("generation failed: {message}")));
    }

    /// One admitted request is gone.
    fn release(&self) {
        let left = self.admitted.fetch_sub(1, Ordering::SeqCst) - 1;
        self.metrics.set_queue(left);
    }
}

/// Takes from `pool` the cache of `model` that shares the longest prefix with `prompt`.
fn take_longest_prefix<B: KernelBackend>(
    pool: &mut Vec<Cached<B>>,
    model: usize,
    prompt: &[u32],
) -> Option<Cached<B>> {
    let (index, shared) = pool
        .iter()
        .enumerate()
        .filter(|(_, c)| c.model == model)
        .map(|(i, c)| (i, shared_prefix(&c.context, prompt)))
        .max_by_key(|&(_, shared)| shared)?;
    (shared > 0).then(|| pool.remove(index))
}
