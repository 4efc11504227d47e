//! The HTTP side: routes, API-key check, body limit, and turning a request into a job whose
//! answer is sent whole or as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ft_data::chat::generation_ids;
use ft_data::encode::bos_ids;
use ft_model::sampling::SamplingConfig;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::api::{self, ChatRequest, CommonFields, CompletionRequest};
use super::engine::{Catalog, Engine, Job, JobEvent};
use super::error::ApiError;
use super::metrics::Metrics;
use super::picture::{Prompt, image_prompt, text_prompt};
use crate::reply::{Reply, text_ids};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Served models.
    pub catalog: Arc<Catalog>,
    /// The queue to the model.
    pub engine: Engine,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// `--api-key`.
    pub api_key: Option<Arc<str>>,
    /// `--max-body-mb`.
    pub max_body_mb: usize,
    /// `--max-tokens`: the longest answer a request may ask for.
    pub max_tokens: usize,
    /// Start time, for `/v1/models`.
    pub created: u64,
}

/// The page.
const PAGE: &str = include_str!("page.html");

/// The router over `state`.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_mb * 1024 * 1024;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .fallback(|uri: Uri| async move { ApiError::no_route(uri.path()) })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if given.trim() == key.as_ref() => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

fn body_bytes(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.max_body_mb)
        } else {
            ApiError::invalid(rejection.body_text(), None)
        }
    })
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let data: Vec<Value> = state
        .catalog
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": state.created,
                "owned_by": "ft",
                "parent": m.parent,
                "max_model_len": m.max_context,
                "vision": m.vision,
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match prepare_chat(&state, &headers, body) {
        Ok((request, model, prompt)) => run(state, Shape::Chat, model, prompt, request.common).await,
        Err(e) => e.into_response(),
    }
}

fn prepare_chat(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(ChatRequest, usize, Prompt), ApiError> {
    authorize(state, headers)?;
    let request: ChatRequest = api::parse_body(&body_bytes(state, body)?)?;
    let model = find_model(state, &request.common)?;
    let card = &state.catalog.models[model];
    let turns = api::chat_turns(&request.messages, card.vision)?;
    let ids = generation_ids(
        &card.template,
        &card.tokenizer,
        &turns.finished,
        &turns.next,
        state.catalog.default_system.as_deref(),
    )
    .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?;
    let prompt = match (&turns.image, &state.catalog.images) {
        (Some(image), Some((processor, rows))) => image_prompt(ids, image, processor, *rows)?,
        _ => text_prompt(text_ids(ids).map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?),
    };
    Ok((request, model, prompt))
}

async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match prepare_completion(&state, &headers, body) {
        Ok((request, model, prompt)) => {
            run(
                state,
                Shape::Completion,
                model,
                text_prompt(prompt),
                request.common,
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

fn prepare_completion(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(CompletionRequest, usize, Vec<u32>), ApiError> {
    authorize(state, headers)?;
    let request: CompletionRequest = api::parse_body(&body_bytes(state, body)?)?;
    let model = find_model(state, &request.common)?;
    let text = api::completion_prompt(&request)?;
    let tokenizer = &state.catalog.models[model].tokenizer;
    let mut prompt: Vec<u32> = bos_ids(tokenizer, text).into_iter().map(|i| i as u32).collect();
    prompt.extend(
        tokenizer
            .encode(text)
            .map_err(|e| ApiError::invalid(e.to_string(), Some("prompt")))?,
    );
    if prompt.is_empty() {
        return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
    }
    Ok((request, model, prompt))
}

fn find_model(state: &AppState, common: &CommonFields) -> Result<usize, ApiError> {
    state
        .catalog
        .find(common.model.as_deref())
        .ok_or_else(|| ApiError::unknown_model(common.model.as_deref().unwrap_or(""), &state.catalog.names()))
}

/// Checks lengths and sampling, queues the job and answers, streamed or whole.
async fn run(state: AppState, shape: Shape, model: usize, prompt: Prompt, common: CommonFields) -> Response {
    state.metrics.received();
    let job = match job_for(&state, model, prompt, &common) {
        Ok(job) => job,
        Err(e) => return e.into_response(),
    };
    let (job, events) = job;
    if let Err(full) = state.engine.submit(job) {
        state.metrics.rejected();
        return ApiError::overloaded(full.0).into_response();
    }
    let reply_to = ReplyTo {
        shape,
        id: format!("{}-{}", shape.id_prefix(), random_hex()),
        created: unix_now(),
        model: state.catalog.models[model].name.clone(),
    };
    if common.stream {
        let include_usage = common.stream_options.is_some_and(|o| o.include_usage);
        stream(reply_to, events, include_usage).into_response()
    } else {
        whole(reply_to, events).await
    }
}

type Events = mpsc::UnboundedReceiver<JobEvent>;

fn job_for(
    state: &AppState,
    model: usize,
    prompt: Prompt,
    common: &CommonFields,
) -> Result<(Job, Events), ApiError> {
    let Prompt { ids: prompt, image } = prompt;
    let stop_strings = api::check_common(common)?;
    let max_context = state.catalog.models[model].max_context;
    if prompt.len() >= max_context {
        return Err(ApiError::invalid(
            format!(
                "the prompt has {} tokens; the model's context is {max_context}",
                prompt.len()
            ),
            Some("messages"),
        ));
    }
    let room = max_context - prompt.len();
    let (asked, field) = match (common.max_completion_tokens, common.max_tokens) {
        (Some(n), _) => (Some(n), "max_completion_tokens"),
        (None, n) => (n, "max_tokens"),
    };
    if let Some(n) = asked.filter(|&n| n == 0 || n > state.max_tokens) {
        return Err(ApiError::invalid(
            format!("`{field}` is {n}; it must be between 1 and {}", state.max_tokens),
            Some(field),
        ));
    }
    let max_tokens = asked.unwrap_or(state.max_tokens).min(room);
    let sampling = SamplingConfig {
        temperature: common.temperature.unwrap_or(1.0),
        top_k: common.top_k.unwrap_or(0),
        top_p: common.top_p.unwrap_or(1.0),
        repetition_penalty: common.repetition_penalty.unwrap_or(1.0),
        seed: common.seed.unwrap_or_else(rand::random),
    };
    let (sender, events) = mpsc::unbounded_channel();
    let job = Job {
        model,
        prompt,
        sampling,
        stop_strings,
        max_tokens,
        ignore_eos: common.ignore_eos,
        image,
        events: sender,
    };
    Ok((job, events))
}

/// Which endpoint's shapes an answer takes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Chat,
    Completion,
}

impl Shape {
    fn id_prefix(self) -> &'static str {
        match self {
            Shape::Chat => "chatcmpl",
            Shape::Completion => "cmpl",
        }
    }
}

/// The identity every chunk of one answer carries.
struct ReplyTo {
    shape: Shape,
    id: String,
    created: u64,
    model: String,
}

impl ReplyTo {
    fn envelope(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// A streamed piece: `text` (None in the last chunk), `first` adds the role.
    fn chunk(&self, text: Option<&str>, first: bool, finish: Option<&str>) -> Value {
        match self.shape {
            Shape::Chat => {
                let mut delta = json!({});
                if first {
                    delta["role"] = json!("assistant");
                }
                if let Some(text) = text {
                    delta["content"] = json!(text);
                }
                let choice = json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
                self.envelope("chat.completion.chunk", choice)
            }
            Shape::Completion => {
                let choice = json!([{"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}]);
                self.envelope("text_completion", choice)
            }
        }
    }

    fn usage_chunk(&self, reply: &Reply) -> Value {
        let object = match self.shape {
            Shape::Chat => "chat.completion.chunk",
            Shape::Completion => "text_completion",
        };
        let mut chunk = self.envelope(object, json!([]));
        chunk["usage"] = api::usage(reply.prompt_tokens, reply.completion_tokens);
        chunk
    }

    fn whole(&self, reply: &Reply) -> Value {
        let finish = reply.finish.as_openai();
        let mut body = match self.shape {
            Shape::Chat => self.envelope(
                "chat.completion",
                json!([{"index": 0, "message": {"role": "assistant", "content": reply.text},
                        "logprobs": null, "finish_reason": finish}]),
            ),
            Shape::Completion => self.envelope(
                "text_completion",
                json!([{"index": 0, "text": reply.text, "logprobs": null, "finish_reason": finish}]),
            ),
        };
        body["usage"] = api::usage(reply.prompt_tokens, reply.completion_tokens);
        body
    }
}

async fn whole(reply_to: ReplyTo, mut events: Events) -> Response {
    while let Some(event) = events.recv().await {
        match event {
            JobEvent::Text(_) => {}
            JobEvent::Done(reply) => return axum::Json(reply_to.whole(&reply)).into_response(),
            JobEvent::Failed(message) => return ApiError::internal(message).into_response(),
        }
    }
    ApiError::internal("the model worker stopped").into_response()
}

type SseSender = mpsc::Sender<Result<Event, Infallible>>;

/// Streams the answer as server-sent events; a client that leaves drops the job's receiver,
/// which stops the model at its next token.
fn stream(reply_to: ReplyTo, events: Events, include_usage: bool) -> impl IntoResponse {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(forward(reply_to, events, sender, include_usage));
    Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default())
}

async fn forward(reply_to: ReplyTo, mut events: Events, sender: SseSender, include_usage: bool) {
    let send = |value: Value| {
        let mut value = value;
        if include_usage && value.get("usage").is_none() {
            value["usage"] = Value::Null;
        }
        Ok(Event::default().data(value.to_string()))
    };
    let first = match reply_to.shape {
        Shape::Chat => Some(reply_to.chunk(Some(""), true, None)),
        Shape::Completion => None,
    };
    if let Some(first) = first
        && sender.send(send(first)).await.is_err()
    {
        return;
    }
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = sender.closed() => return,
        };
        let (outgoing, ends) = match event {
            Some(JobEvent::Text(text)) => (vec![send(reply_to.chunk(Some(&text), false, None))], false),
            Some(JobEvent::Done(reply)) => {
                let mut last = vec![send(reply_to.chunk(None, false, Some(reply.finish.as_openai())))];
                if include_usage {
                    last.push(send(reply_to.usage_chunk(&reply)));
                }
                last.push(Ok(Event::default().data("[DONE]")));
                (last, true)
            }
            Some(JobEvent::Failed(message)) => (vec![error_event(ApiError::internal(message))], true),
            None => (
                vec![error_event(ApiError::internal("the model worker stopped"))],
                true,
            ),
        };
        for event in outgoing {
            if sender.send(event).await.is_err() {
                return;
            }
        }
        if ends {
            return;
        }
    }
}

/// Inside a stream, an error is one `data: {"error": ...}` event, then the stream ends.
fn error_event(error: ApiError) -> Result<Event, Infallible> {
    Ok(Event::default().data(error.body().to_string()))
}

fn random_hex() -> String {
    format!("{:024x}", rand::random::<u128>() >> 32)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
