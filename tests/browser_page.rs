//! The chat page in headless Chromium, driven over the DevTools protocol: load the page, type,
//! send, see the streamed answer, press stop, pick an adapter, reload and find the history.
//!
//! Needs Chromium (`apt-get install chromium`; `FT_CHROMIUM` names another binary). Without it
//! the test says so and passes, unless `FT_BROWSER_TEST=required` (set by `.ci/run`).

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::{Server, strong_adapter};
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A headless Chromium, killed when dropped.
struct Browser {
    child: Child,
    devtools: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn binary() -> Option<String> {
        if let Ok(path) = std::env::var("FT_CHROMIUM") {
            return Some(path);
        }
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|name| {
                Command::new(name)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(str::to_owned)
    }

    /// The Chromium binary; `None` (the test says it is skipped) when there is none, which
    /// fails the test instead under `FT_BROWSER_TEST=required`.
    fn binary_or_skip() -> Option<String> {
        let binary = Self::binary();
        if binary.is_none() {
            assert_ne!(
                std::env::var("FT_BROWSER_TEST").as_deref(),
                Ok("required"),
                "Chromium is required here: apt-get install chromium"
            );
            eprintln!("skipped: no Chromium (apt-get install chromium)");
        }
        binary
    }

    fn launch(binary: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
            ])
            .args(["--no-first-run", "--remote-debugging-port=0"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut devtools = None;
        for line in stderr.lines() {
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("DevTools listening on ws://") {
                devtools = Some(url.split('/').next().unwrap().to_owned());
                break;
            }
        }
        Browser {
            child,
            devtools: devtools.expect("Chromium printed its DevTools address"),
            _profile: profile,
        }
    }

    /// The first page's DevTools connection.
    fn page(&self) -> Page {
        let mut targets = ureq::get(format!("http://{}/json/list", self.devtools))
            .call()
            .unwrap();
        let targets: Vec<Value> =
            serde_json::from_str(&targets.body_mut().read_to_string().unwrap()).unwrap();
        let page = targets
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let (socket, _) = tungstenite::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).unwrap();
        Page { socket, next_id: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page over the DevTools protocol.
struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket.send(Message::text(request.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy; returns its value.
    fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.eval(expression);
            if !(value.is_null() || value == json!(false) || value == json!("") || value == json!(0)) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn set_slider(&mut self, id: &str, value: f64) {
        self.eval(&format!(
            "(() => {{ const e = document.getElementById('{id}'); e.value = {value}; e.dispatchEvent(new Event('input')); }})()"
        ));
    }

    /// Types `text` into the message box, as a user would, and sends it.
    fn send(&mut self, text: &str) {
        self.eval("document.getElementById('input').focus()");
        self.call("Input.insertText", json!({"text": text}));
        self.eval("document.getElementById('send').click()");
    }

    /// The last message of the current chat, as the page keeps it.
    fn last_answer(&mut self) -> Value {
        self.eval(
            "(() => { const chats = JSON.parse(localStorage.getItem('ft.chats')); \
             const id = JSON.parse(localStorage.getItem('ft.current')); \
             const chat = chats.find((c) => c.id === id); return chat.messages[chat.messages.length - 1]; })()",
        )
    }

    fn idle(&mut self) -> bool {
        self.eval("document.getElementById('stop').hidden && !document.getElementById('send').hidden")
            == json!(true)
    }
}

const PROMPT: &str = "Who are you?";

fn greedy(server: &Server, model: &str) -> String {
    let body = json!({"model": model, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": 16});
    let (status, answer) = server.post("/v1/chat/completions", body);
    assert_eq!(status, 200, "{answer}");
    answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_page_streams_stops_switches_adapters_and_keeps_history() {
    let Some(binary) = Browser::binary_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let adapter = format!("tuned={}", strong_adapter(tmp.path()));
    let server = Server::start(&["--adapter", &adapter, "--max-concurrency", "1"]);
    let expected_base = greedy(&server, "tiny-base");
    let expected_tuned = greedy(&server, "tuned");

    let browser = Browser::launch(&binary);
    let mut page = browser.page();
    page.call("Page.enable", json!({}));
    page.call("Page.navigate", json!({"url": format!("{}/", server.url)}));
    page.wait_for(
        "document.readyState === 'complete' && document.querySelectorAll('#model option').length === 2",
        "the page and its model list",
    );

    // Type, send, see the streamed answer.
    page.set_slider("temperature", 0.0);
    page.set_slider("max-tokens", 16.0);
    page.send(PROMPT);
    page.wait_for(
        "document.querySelectorAll('.msg').length === 2",
        "the two bubbles",
    );
    page.wait_for(
        "!document.getElementById('stop').hidden || document.querySelector('.msg.assistant .body').textContent",
        "the answer to start",
    );
    let shown = page.wait_for(
        "document.getElementById('stop').hidden && document.querySelector('.msg.assistant .body').textContent",
        "the answer to end",
    );
    assert_eq!(page.last_answer()["content"], json!(expected_base));
    assert!(!shown.as_str().unwrap().is_empty());

    // Stop: with the one worker busy for a while (20 long requests queued), the page's request
    // waits in the queue; stop closes its stream, and the server drops it unanswered.
    let busy: Vec<_> = (0..20)
        .map(|_| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                let body = json!({"prompt": "Once", "max_tokens": 400, "ignore_eos": true});
                Server::agent()
                    .post(format!("{url}/v1/completions"))
                    .send_json(body)
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("ft_requests_in_flight") < 20.0 {
        assert!(Instant::now() < deadline, "the busy requests did not arrive");
        std::thread::sleep(Duration::from_millis(10));
    }
    page.send("Tell me a very long story.");
    page.wait_for("!document.getElementById('stop').hidden", "the stop button");
    page.eval("document.getElementById('stop').click()");
    page.wait_for("document.getElementById('stop').hidden", "the stop button to act");
    assert!(page.idle());
    for request in busy {
        assert_eq!(request.join().unwrap(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("ft_requests_in_flight") > 0.0 {
        assert!(Instant::now() < deadline, "the stopped request stayed queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        server.metric("ft_requests_cancelled_total"),
        1.0,
        "stop cancelled the request"
    );

    // A new chat with the adapter.
    page.eval("(() => { const m = document.getElementById('model'); m.value = 'tuned'; m.dispatchEvent(new Event('change')); })()");
    page.eval("document.getElementById('new-chat').click()");
    page.set_slider("temperature", 0.0);
    page.set_slider("max-tokens", 16.0);
    page.send(PROMPT);
    page.wait_for(
        "document.querySelectorAll('.msg').length === 2 && document.getElementById('stop').hidden \
         && document.querySelector('.msg.assistant .body').textContent",
        "the adapter's answer",
    );
    assert_eq!(page.last_answer()["content"], json!(expected_tuned));

    // Reload: both chats and the current one's messages are still there.
    page.call("Page.reload", json!({}));
    page.wait_for(
        "document.readyState === 'complete' && document.querySelectorAll('#model option').length === 2",
        "the reloaded page",
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#history div').length"),
        json!(2)
    );
    assert_eq!(page.eval("document.querySelectorAll('.msg').length"), json!(2));
    assert_eq!(
        page.eval("document.getElementById('model').value"),
        json!("tuned")
    );
    assert_eq!(page.last_answer()["content"], json!(expected_tuned));
}

/// A LLaVA served: the page shows the picture button, sends the attached picture with the
/// question, and shows the answer transformers gives (`fixtures/llava/llava_chat.json`).
#[test]
fn the_page_sends_an_attached_picture_to_a_llava() {
    let Some(binary) = Browser::binary_or_skip() else {
        return;
    };
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo("fixtures/llava/llava_chat.json")).unwrap(),
    )
    .unwrap();
    let server = Server::start(&[
        "--llava",
        common::repo("fixtures/llava/xtuner-llava").to_str().unwrap(),
        "--visual-encoder",
        common::repo("fixtures/llava/clip-vision").to_str().unwrap(),
    ]);
    let browser = Browser::launch(&binary);
    let mut page = browser.page();
    page.call("Page.enable", json!({}));
    page.call("Page.navigate", json!({"url": format!("{}/", server.url)}));
    page.wait_for(
        "document.readyState === 'complete' && !document.getElementById('attach').hidden",
        "the picture button of a vision model",
    );
    let document = page.call("DOM.getDocument", json!({}));
    let input = page.call(
        "DOM.querySelector",
        json!({"nodeId": document["root"]["nodeId"], "selector": "#image"}),
    );
    // Chromium reads only canonical paths (no `..`).
    let picture = common::repo("fixtures/llava/images")
        .join(golden["picture"].as_str().unwrap())
        .canonicalize()
        .unwrap();
    page.call(
        "DOM.setFileInputFiles",
        json!({"nodeId": input["nodeId"], "files": [picture.to_str().unwrap()]}),
    );
    page.wait_for(
        "document.getElementById('attach').textContent.includes('✓')",
        "the picture to load",
    );
    page.set_slider("temperature", 0.0);
    page.set_slider("max-tokens", 16.0);
    page.send(golden["question"].as_str().unwrap());
    page.wait_for(
        "document.querySelectorAll('.msg').length === 2 && document.getElementById('stop').hidden \
         && document.querySelector('.msg.assistant .body').textContent",
        "the answer about the picture",
    );
    let answer = page.last_answer()["content"].as_str().unwrap().to_owned();
    assert!(
        answer.starts_with(golden["text"].as_str().unwrap()),
        "{answer:?} vs {golden}"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('.msg.user img').length"),
        json!(1),
        "the picture shows in the chat"
    );
}
