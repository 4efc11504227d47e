//! Encoding throughput: a 100k-sample alpaca-style file through read → map → template →
//! tokenize → labels (`prepare`, packing off), single thread. `xtuner_encode.py` beside this file
//! times XTuner's Python `encode_fn` on the same file for comparison.
//!
//! A second group times long pretraining texts cut to `max_length` 2048, where only the kept head
//! goes through the tokenizer's model. For whole-corpus throughput beside Python `tokenizers`, see
//! `benches/bench_tokenize.py` at the repository root.
//!
//! Run: `cargo bench -p ft-data --bench encode` (set `FT_BENCH_SAMPLES` for another size).

use std::io::Write;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ft_data::config::DataConfig;
use ft_data::dataset::{prepare, resolve_template};
use ft_data::tokenizer::FtTokenizer;

/// The same records as `xtuner_encode.py` writes.
pub fn write_alpaca(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("bench file"));
    for i in 0..n {
        let record = serde_json::json!({
            "instruction": format!("Question {i}: what is {} plus {}? Explain the steps.", i % 97, i % 13),
            "input": if i % 3 == 0 { format!("Context {i}: the numbers are small. 你好，世界。") } else { String::new() },
            "output": format!("The answer is {}. First add the ones, then the tens. def add(a, b): return a + b", i % 97 + i % 13),
        });
        writeln!(f, "{record}").expect("bench file");
    }
}

fn bench_encode(c: &mut Criterion) {
    let n: usize = std::env::var("FT_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("alpaca.jsonl");
    write_alpaca(&file, n);
    let mut config = DataConfig::new(vec![file]);
    config.template = Some("qwen_chat".into());
    bench_prepare(
        c,
        format!("alpaca_{n}_qwen_chat"),
        Throughput::Elements(n as u64),
        "tokenizers/tiny-chatml",
        config,
    );
}

/// `n` texts of 1,500–6,000 words, far longer than 2048 tokens of the tiny tokenizer.
fn write_long_texts(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("bench file"));
    let words = [
        "river",
        "stone,",
        "light",
        "mountain.",
        "42",
        "north",
        "Quiet",
        "harbour",
        "wind;",
        "über",
    ];
    for i in 0..n {
        let text: Vec<&str> = (0..1500 + (i * 977) % 4500)
            .map(|j| words[(i + j * 7) % words.len()])
            .collect();
        writeln!(f, "{}", serde_json::json!({ "text": text.join(" ") })).expect("bench file");
    }
}

fn bench_long_texts(c: &mut Criterion) {
    let n = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("text.jsonl");
    write_long_texts(&file, n);
    let bytes = std::fs::metadata(&file).expect("bench file").len();
    let mut config = DataConfig::new(vec![file]);
    config.format = Some("text".into());
    bench_prepare(
        c,
        format!("text_{n}_long_max_length_2048"),
        Throughput::Bytes(bytes),
        "tiny-base",
        config,
    );
}

/// Times `prepare` of `config` (cut to 2048, unpacked) with the fixture tokenizer in `tokenizer_dir`.
fn bench_prepare(
    c: &mut Criterion,
    name: String,
    throughput: Throughput,
    tokenizer_dir: &str,
    mut config: DataConfig,
) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let tokenizer = FtTokenizer::from_dir(fixtures.join(tokenizer_dir)).expect("fixture tokenizer");
    config.max_length = 2048;
    config.pack = false;
    let template = resolve_template(&config, &tokenizer).expect("template");
    let mut group = c.benchmark_group("encode");
    group.sample_size(10);
    group.throughput(throughput);
    group.bench_function(name, |b| {
        b.iter(|| {
            prepare(&config, &tokenizer, &template)
                .expect("prepare")
                .stats
                .tokens
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_long_texts);
criterion_main!(benches);
