//! `ft bench serve`: load on `ft serve` from many streaming clients at once; requests/s,
//! tokens/s, time to first token and the server's memory before, after 100 requests and at
//! the end.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

/// Arguments of `ft bench serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeBenchArgs {
    /// Model to serve (default: the bundled tiny model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Benchmark a server that is already running at this URL instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// Clients sending at the same time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 512)]
    requests: usize,
    /// Tokens per answer (EOS ignored, so every answer has this length).
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// The started server's `--max-concurrency`.
    #[arg(long, default_value_t = 4)]
    server_concurrency: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What one request measured.
struct Sample {
    ok: bool,
    first_token_s: f64,
    total_s: f64,
    completion_tokens: usize,
}

/// A server started for the bench, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(args: &ServeBenchArgs) -> anyhow::Result<Served> {
        let model = args
            .model
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-base"));
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg(&model)
            .args([
                "--port",
                "0",
                "--max-concurrency",
                &args.server_concurrency.to_string(),
            ])
            .args(["--max-queue", &args.requests.max(args.concurrency).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ft serve")?;
        let stdout = child.stdout.take().context("the server's output")?;
        for line in BufReader::new(stdout).lines() {
            if let Some(api) = line?.strip_prefix("ft serve: OpenAI API ") {
                let url = api.trim_end_matches("/v1").to_owned();
                return Ok(Served { child, url });
            }
        }
        anyhow::bail!("ft serve {} did not start", model.display())
    }

    fn rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// One streamed chat request.
fn one_request(agent: &ureq::Agent, url: &str, k: usize, max_tokens: usize) -> Sample {
    let body = json!({
        "messages": [{"role": "user", "content": format!("Request {k}: tell me a story.")}],
        "max_tokens": max_tokens,
        "ignore_eos": true,
        "temperature": 0.8,
        "seed": k,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let started = Instant::now();
    let mut sample = Sample {
        ok: false,
        first_token_s: f64::NAN,
        total_s: 0.0,
        completion_tokens: 0,
    };
    let Ok(mut response) = agent.post(format!("{url}/v1/chat/completions")).send_json(body) else {
        return sample;
    };
    for line in BufReader::new(response.body_mut().as_reader()).lines() {
        let Ok(line) = line else { return sample };
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            sample.ok = true;
            break;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return sample;
        };
        if chunk["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
            && sample.first_token_s.is_nan()
        {
            sample.first_token_s = started.elapsed().as_secs_f64();
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            sample.completion_tokens = n as usize;
        }
    }
    sample.total_s = started.elapsed().as_secs_f64();
    sample
}

fn percentile(values: &mut Vec<f64>, p: f64) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// Runs `ft bench serve`.
pub fn run(args: ServeBenchArgs) -> anyhow::Result<()> {
    let served = match &args.url {
        Some(_) => None,
        None => Some(Served::start(&args)?),
    };
    let url = args
        .url
        .clone()
        .or_else(|| served.as_ref().map(|s| s.url.clone()))
        .context("a server URL")?;
    let rss = || served.as_ref().and_then(Served::rss_mb);
    let rss_before = rss();
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::with_capacity(args.requests));
    let rss_after_100 = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.concurrency.max(1) {
            scope.spawn(|| {
                let agent = agent();
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= args.requests {
                        break;
                    }
                    let sample = one_request(&agent, &url, k, args.max_tokens);
                    let mut all = samples
                        .lock()
                        .expect("invariant: no client panics holding the lock");
                    all.push(sample);
                    if all.len() == 100 {
                        *rss_after_100
                            .lock()
                            .expect("invariant: no panic holding the lock") = rss();
                    }
                }
            });
        }
    });
    let wall = started.elapsed().as_secs_f64();
    let samples = samples.into_inner().expect("invariant: the clients ended");
    let report = summary(
        &args,
        &samples,
        wall,
        [rss_before, rss_after_100.into_inner().ok().flatten(), rss()],
    );
    if args.json {
        println!("{report}");
    } else {
        print_table(&report);
    }
    Ok(())
}

fn summary(args: &ServeBenchArgs, samples: &[Sample], wall: f64, rss: [Option<f64>; 3]) -> Value {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    let tokens: usize = ok.iter().map(|s| s.completion_tokens).sum();
    let mut ttft: Vec<f64> = ok.iter().map(|s| s.first_token_s).collect();
    let mut latency: Vec<f64> = ok.iter().map(|s| s.total_s).collect();
    json!({
        "concurrency": args.concurrency,
        "requests": samples.len(),
        "failed": samples.len() - ok.len(),
        "max_tokens": args.max_tokens,
        "wall_s": wall,
        "requests_per_s": ok.len() as f64 / wall,
        "tokens_per_s": tokens as f64 / wall,
        "ttft_p50_s": percentile(&mut ttft.clone(), 0.5),
        "ttft_p99_s": percentile(&mut ttft, 0.99),
        "latency_p50_s": percentile(&mut latency.clone(), 0.5),
        "latency_p99_s": percentile(&mut latency, 0.99),
        "rss_before_mb": rss[0],
        "rss_after_100_mb": rss[1],
        "rss_after_mb": rss[2],
    })
}

fn print_table(report: &Value) {
    let number = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "{} requests ({} failed), {} clients, {} tokens each, {:.1} s",
        report["requests"],
        report["failed"],
        report["concurrency"],
        report["max_tokens"],
        number("wall_s")
    );
    println!("requests/s   {:>10.2}", number("requests_per_s"));
    println!("tokens/s     {:>10.1}", number("tokens_per_s"));
    println!(
        "TTFT p50     {:>10.3} s   p99 {:.3} s",
        number("ttft_p50_s"),
        number("ttft_p99_s")
    );
    println!(
        "latency p50  {:>10.3} s   p99 {:.3} s",
        number("latency_p50_s"),
        number("latency_p99_s")
    );
    println!(
        "server RSS   before {:.0} MB, after 100 requests {:.0} MB, at the end {:.0} MB",
        number("rss_before_mb"),
        number("rss_after_100_mb"),
        number("rss_after_mb")
    );
}
