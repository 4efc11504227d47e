//! `ft serve` against a real server on 127.0.0.1: every endpoint, streamed and not, answers
//! equal to `ft chat`'s, adapters by name, every error status, cancellation and concurrency.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use common::serve::{Server, strong_adapter};
use common::{ft, repo, run_ok, stdout};
use serde_json::{Value, json};

const PROMPT: &str = "Who are you?";
const MAX_TOKENS: usize = 24;

/// What `ft chat --prompt PROMPT --temperature 0` answers.
fn chat_answer(adapter: Option<&str>) -> String {
    let mut cmd = ft();
    cmd.args([
        "chat",
        repo("fixtures/tiny-base").to_str().unwrap(),
        "--prompt",
        PROMPT,
    ])
    .args(["--temperature", "0", "--max-new-tokens", &MAX_TOKENS.to_string()]);
    if let Some(dir) = adapter {
        cmd.args(["--adapter", dir]);
    }
    stdout(&run_ok(&mut cmd)).trim_end_matches('\n').to_owned()
}

fn greedy_chat(model: Option<&str>) -> Value {
    let mut body = json!({
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
    });
    if let Some(model) = model {
        body["model"] = json!(model);
    }
    body
}

#[test]
fn chat_answers_equal_ft_chat_streamed_or_not_and_adapters_are_picked_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter_dir = strong_adapter(tmp.path());
    let adapter = format!("tuned={adapter_dir}");
    let server = Server::start(&["--adapter", &adapter]);

    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&models).unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny-base", "tuned"]);
    assert_eq!(models["data"][1]["parent"], "tiny-base");

    let (status, answer) = server.post("/v1/chat/completions", greedy_chat(None));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(content, chat_answer(None), "the API answers as ft chat does");
    let usage = &answer["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap())
    );

    let (_, tuned) = server.post("/v1/chat/completions", greedy_chat(Some("tuned")));
    let tuned = tuned["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        tuned,
        chat_answer(Some(&adapter_dir)),
        "the adapter answers as ft chat --adapter"
    );
    assert_ne!(tuned, content, "the adapter changes the answer");

    let mut body = greedy_chat(None);
    body["stream"] = json!(true);
    let events = server.stream("/v1/chat/completions", body.clone());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c.get("usage").is_none())
    );
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, content, "streamed pieces join to the whole answer");
    let last = chunks.last().unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string());

    body["stream_options"] = json!({"include_usage": true});
    let events = server.stream("/v1/chat/completions", body);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], answer["usage"]);
    assert!(
        rest.iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
}

#[test]
fn completions_health_and_metrics() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/health"), (200, r#"{"status":"ok"}"#.to_owned()));
    let body = json!({"prompt": "The quick brown fox", "max_tokens": 8, "temperature": 0});
    let (status, whole) = server.post("/v1/completions", body.clone());
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "text_completion");
    let text = whole["choices"][0]["text"].as_str().unwrap().to_owned();
    let mut streamed_body = body;
    streamed_body["stream"] = json!(true);
    let events = server.stream("/v1/completions", streamed_body);
    let streamed: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(server.metric("ft_requests_total"), 2.0);
    assert!(server.metric("ft_completion_tokens_total") >= 2.0);
    assert_eq!(server.metric("ft_requests_in_flight"), 0.0);
    let (status, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<html") && page.contains("/v1/chat/completions"));
}

fn error_of(response: (u16, Value)) -> (u16, Option<String>, Option<String>) {
    let (status, body) = response;
    let error = &body["error"];
    assert!(
        error["message"].is_string() && error["type"].is_string(),
        "OpenAI's shape: {body}"
    );
    (
        status,
        error["param"].as_str().map(str::to_owned),
        error["code"].as_str().map(str::to_owned),
    )
}

#[test]
fn bad_requests_get_openai_errors_with_fitting_statuses() {
    let server = Server::start(&["--max-body-mb", "1", "--max-tokens", "64"]);
    let chat = "/v1/chat/completions";
    let user = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(error_of(server.post_raw(chat, b"{not json", None)).0, 400);
    let ill_typed = server.post(chat, json!({"messages": user, "temperature": "hot"}));
    assert_eq!(error_of(ill_typed), (400, Some("temperature".into()), None));
    let unknown = server.post(chat, json!({"messages": user, "model": "nope"}));
    assert_eq!(
        error_of(unknown),
        (404, Some("model".into()), Some("model_not_found".into()))
    );
    assert_eq!(
        error_of(server.post(chat, json!({"messages": user, "n": 2})))
            .1
            .as_deref(),
        Some("n")
    );
    let too_long = server.post(chat, json!({"messages": user, "max_tokens": 65}));
    assert_eq!(error_of(too_long), (400, Some("max_tokens".into()), None));
    let image = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]);
    let refused = server.post(chat, json!({"messages": image}));
    assert_eq!(
        error_of(refused),
        (400, Some("messages[0].content[0]".into()), None)
    );
    let penalty = server.post(chat, json!({"messages": user, "presence_penalty": 0.5}));
    assert_eq!(error_of(penalty).1.as_deref(), Some("presence_penalty"));
    let prompt = "word ".repeat(600);
    let long = server.post(chat, json!({"messages": [{"role": "user", "content": prompt}]}));
    assert_eq!(error_of(long), (400, Some("messages".into()), None));
    let big = vec![b' '; 1024 * 1024 + 10];
    assert_eq!(error_of(server.post_raw(chat, &big, None)).0, 413);
    let (status, body) = server.get("/v2/nothing");
    assert_eq!(status, 404, "{body}");

    let keyed = Server::start(&["--api-key", "sesame"]);
    let body = json!({"messages": user, "max_tokens": 2}).to_string();
    assert_eq!(error_of(keyed.post_raw(chat, body.as_bytes(), None)).0, 401);
    assert_eq!(
        error_of(keyed.post_raw(chat, body.as_bytes(), Some("wrong"))).0,
        401
    );
    assert_eq!(keyed.post_raw(chat, body.as_bytes(), Some("sesame")).0, 200);
}

/// A request that keeps the model busy: no EOS, many tokens.
fn long_request(max_tokens: usize) -> Value {
    json!({"prompt": "Once upon a time", "max_tokens": max_tokens, "ignore_eos": true, "stream": true})
}

#[test]
fn a_full_queue_answers_429_and_a_client_that_leaves_stops_its_generation() {
    let server = Server::start(&[
        "--max-concurrency",
        "1",
        "--max-queue",
        "0",
        "--max-tokens",
        "100000",
    ]);
    let mut response = Server::agent()
        .post(format!("{}/v1/completions", server.url))
        .send_json(long_request(400))
        .unwrap();
    let mut reader = BufReader::new(response.body_mut().as_reader());
    let mut first = String::new();
    while !first.starts_with("data: ") {
        first.clear();
        reader.read_line(&mut first).unwrap();
    }
    let refused = server.post("/v1/completions", json!({"prompt": "hi", "max_tokens": 2}));
    assert_eq!(error_of(refused), (429, None, Some("queue_full".into())));
    drop(reader);
    drop(response);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("ft_requests_in_flight") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the generation did not stop after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.metric("ft_requests_cancelled_total"), 1.0);
    assert!(
        server.metric("ft_completion_tokens_total") < 400.0,
        "stopped early"
    );
    let (status, _) = server.post("/v1/completions", json!({"prompt": "hi", "max_tokens": 2}));
    assert_eq!(status, 200, "the server takes requests again");
}

#[test]
fn many_concurrent_streams_all_finish() {
    let server = Server::start(&["--max-concurrency", "2"]);
    let url = server.url.clone();
    let clients: Vec<_> = (0..16)
        .map(|k| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("Story {k}:"), "max_tokens": 8, "ignore_eos": true, "stream": true});
                let mut response = Server::agent().post(format!("{url}/v1/completions")).send_json(body).unwrap();
                let mut text = String::new();
                response.body_mut().as_reader().read_to_string(&mut text).unwrap();
                text
            })
        })
        .collect();
    for client in clients {
        let text = client.join().unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    }
    assert_eq!(server.metric("ft_completion_tokens_total"), 16.0 * 8.0);
    assert_eq!(server.metric("ft_requests_rejected_total"), 0.0);
}

#[test]
fn requests_decoded_together_answer_as_they_do_alone() {
    let server = Server::start(&["--max-concurrency", "8"]);
    let request = |k: usize| {
        json!({
            "messages": [{"role": "user", "content": format!("Question number {k}: {}", "why? ".repeat(k))}],
            "temperature": 0,
            "max_tokens": 12 + k,
        })
    };
    let alone: Vec<String> = (0..8)
        .map(|k| {
            let (_, answer) = server.post("/v1/chat/completions", request(k));
            answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let url = server.url.clone();
    let together: Vec<String> = (0..8)
        .map(|k| {
            let (url, body) = (url.clone(), request(k));
            std::thread::spawn(move || {
                let mut response = Server::agent()
                    .post(format!("{url}/v1/chat/completions"))
                    .send_json(body)
                    .unwrap();
                let answer: Value =
                    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
                answer["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(together, alone);
    let (steps, rows) = (
        server.metric("ft_decode_steps_total"),
        server.metric("ft_decode_rows_total"),
    );
    assert!(
        rows > steps,
        "some steps decoded several requests ({rows} rows in {steps} steps)"
    );

    // The second turn of a conversation reuses the first turn's cached prefix.
    let before = server.metric("ft_prompt_tokens_reused_total");
    let (_, first) = server.post("/v1/chat/completions", request(1));
    let answer = first["choices"][0]["message"]["content"].clone();
    let second = json!({
        "messages": [
            request(1)["messages"][0].clone(),
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And then?"},
        ],
        "temperature": 0,
        "max_tokens": 4,
    });
    let (status, _) = server.post("/v1/chat/completions", second);
    assert_eq!(status, 200);
    let reused = server.metric("ft_prompt_tokens_reused_total") - before;
    assert!(
        reused >= first["usage"]["prompt_tokens"].as_f64().unwrap(),
        "reused {reused}"
    );
}

/// A chat message holding a picture of `fixtures/llava/images/` as a `data:` URL.
fn picture_message(file: &str, question: &str) -> Value {
    use base64::Engine as _;
    let bytes = std::fs::read(repo("fixtures/llava/images").join(file)).unwrap();
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    json!({"role": "user", "content": [
        {"type": "text", "text": question},
        {"type": "image_url", "image_url": {"url": url}},
    ]})
}

#[test]
fn a_llava_answers_a_picture_as_transformers_does() {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("fixtures/llava/llava_chat.json")).unwrap())
            .unwrap();
    let server = Server::start(&[
        "--llava",
        repo("fixtures/llava/xtuner-llava").to_str().unwrap(),
        "--visual-encoder",
        repo("fixtures/llava/clip-vision").to_str().unwrap(),
    ]);
    let (_, models) = server.get("/v1/models");
    assert!(models.contains("\"vision\":true"), "{models}");
    let question = golden["question"].as_str().unwrap();
    let message = picture_message(golden["picture"].as_str().unwrap(), question);
    let tokens = golden["tokens"].as_array().unwrap().len();
    let body = json!({"messages": [message.clone()], "temperature": 0, "max_tokens": tokens});
    let (status, answer) = server.post("/v1/chat/completions", body);
    assert_eq!(status, 200, "{answer}");
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        content,
        golden["text"].as_str().unwrap(),
        "greedy answer of transformers' LlavaForConditionalGeneration"
    );
    let picture_rows = 16;
    assert!(
        answer["usage"]["prompt_tokens"].as_u64().unwrap() > picture_rows,
        "the picture's rows are counted"
    );

    // The next turn reuses the cached picture rows; another picture gets its own.
    let before = server.metric("ft_prompt_tokens_reused_total");
    let follow_up = json!({"messages": [message, {"role": "assistant", "content": content},
        {"role": "user", "content": "And?"}], "temperature": 0, "max_tokens": 2});
    assert_eq!(server.post("/v1/chat/completions", follow_up).0, 200);
    assert!(server.metric("ft_prompt_tokens_reused_total") - before > picture_rows as f64);
    let other = json!({"messages": [picture_message("tall_rgba.png", question)], "temperature": 0, "max_tokens": tokens});
    let (status, answer) = server.post("/v1/chat/completions", other);
    assert_eq!(status, 200, "{answer}");

    let broken = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]});
    let (status, body) = server.post("/v1/chat/completions", broken);
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages[0].content[0]"))
    );
    let remote = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}]}]});
    let (status, body) = server.post("/v1/chat/completions", remote);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("data:"));
}
