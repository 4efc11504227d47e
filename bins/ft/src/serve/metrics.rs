//! `/metrics`: Prometheus text with requests, tokens, queue depth and latencies.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::reply::Reply;

/// The server's counters.
pub struct Metrics {
    registry: Registry,
    requests: Counter,
    rejected: Counter,
    failed: Counter,
    cancelled: Counter,
    prompt_tokens: Counter,
    completion_tokens: Counter,
    reused_tokens: Counter,
    in_queue: Gauge,
    decode_steps: Counter,
    decode_rows: Counter,
    latency: Histogram,
    first_token: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("ft"),
            requests: Counter::default(),
            rejected: Counter::default(),
            failed: Counter::default(),
            cancelled: Counter::default(),
            prompt_tokens: Counter::default(),
            completion_tokens: Counter::default(),
            reused_tokens: Counter::default(),
            in_queue: Gauge::default(),
            decode_steps: Counter::default(),
            decode_rows: Counter::default(),
            latency: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            first_token: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        };
        metrics.register();
        metrics
    }
}

impl Metrics {
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register("requests", "Generation requests received", self.requests.clone());
        r.register(
            "requests_rejected",
            "Requests refused because the queue was full",
            self.rejected.clone(),
        );
        r.register(
            "requests_failed",
            "Requests whose generation failed",
            self.failed.clone(),
        );
        r.register(
            "requests_cancelled",
            "Requests whose client left before the answer ended",
            self.cancelled.clone(),
        );
        r.register(
            "prompt_tokens",
            "Prompt tokens processed",
            self.prompt_tokens.clone(),
        );
        r.register(
            "completion_tokens",
            "Tokens generated",
            self.completion_tokens.clone(),
        );
        r.register(
            "prompt_tokens_reused",
            "Prompt tokens found in a KV cache",
            self.reused_tokens.clone(),
        );
        r.register(
            "requests_in_flight",
            "Requests running or queued",
            self.in_queue.clone(),
        );
        r.register(
            "decode_steps",
            "Forward passes of the decoding batch",
            self.decode_steps.clone(),
        );
        r.register(
            "decode_rows",
            "Requests fed by those passes (rows / steps = mean batch)",
            self.decode_rows.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from the model's start to the answer's end",
            self.latency.clone(),
        );
        r.register(
            "time_to_first_token_seconds",
            "Time from the model's start to the first text",
            self.first_token.clone(),
        );
    }

    /// A generation request arrived.
    pub fn received(&self) {
        self.requests.inc();
    }

    /// A request was refused (429).
    pub fn rejected(&self) {
        self.rejected.inc();
    }

    /// Generation failed.
    pub fn failed(&self) {
        self.failed.inc();
    }

    /// The client left before its job started.
    pub fn cancelled(&self) {
        self.cancelled.inc();
    }

    /// One decoding step fed `rows` requests.
    pub fn stepped(&self, rows: usize) {
        self.decode_steps.inc();
        self.decode_rows.inc_by(rows as u64);
    }

    /// Requests running or queued now.
    pub fn set_queue(&self, in_flight: usize) {
        self.in_queue.set(in_flight as i64);
    }

    /// An answer ended.
    pub fn answered(&self, reply: &Reply, first_text: Option<Duration>, total: Duration) {
        self.prompt_tokens.inc_by(reply.prompt_tokens as u64);
        self.completion_tokens.inc_by(reply.completion_tokens as u64);
        self.reused_tokens.inc_by(reply.reused_tokens as u64);
        if reply.finish == crate::reply::Finish::Cancelled {
            self.cancelled.inc();
        }
        if let Some(first) = first_text {
            self.first_token.observe(first.as_secs_f64());
        }
        self.latency.observe(total.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("invariant: writing to a String cannot fail");
        text
    }
}
