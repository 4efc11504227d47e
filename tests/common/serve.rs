//! A real `ft serve` on 127.0.0.1 for the suites that talk to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{ft, repo};

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let mut child = ft()
            .args([
                "serve",
                repo("fixtures/tiny-base").to_str().unwrap(),
                "--port",
                "0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the server printed its URLs").unwrap();
            if let Some(api) = line.strip_prefix("ft serve: OpenAI API ") {
                break api.trim_end_matches("/v1").to_owned();
            }
        };
        Server { child, url }
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into()
    }

    /// POSTs raw bytes; returns the status and the JSON body.
    pub fn post_raw(&self, path: &str, body: &[u8], key: Option<&str>) -> (u16, Value) {
        let mut request = Self::agent()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let mut response = request.send(body).unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().as_bytes(), None)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut response = Self::agent().get(format!("{}{path}", self.url)).call().unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    }

    /// The `data:` payloads of a streamed answer.
    pub fn stream(&self, path: &str, body: Value) -> Vec<String> {
        let mut response = Self::agent()
            .post(format!("{}{path}", self.url))
            .send_json(body)
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let reader = BufReader::new(response.body_mut().as_reader());
        reader
            .lines()
            .map(Result::unwrap)
            .filter_map(|line| line.strip_prefix("data: ").map(str::to_owned))
            .collect()
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The round-trip fixture's adapter with its scale raised (`lora_alpha` 8 → 2000), so that it
/// visibly changes the tiny model's answers.
pub fn strong_adapter(dir: &std::path::Path) -> String {
    let source = repo("fixtures/roundtrip/adapter");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let config = dir.join("adapter_config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["lora_alpha"] = json!(2000);
    std::fs::write(&config, json.to_string()).unwrap();
    dir.to_str().unwrap().to_owned()
}
