//! Fuzzing every reader of user files, on stable Rust, a bounded number of cases per run: the
//! real fixture files mutated (bit flips, interesting bytes, large length fields, truncation,
//! duplicated and random chunks) and random bytes. For every case:
//! - the reader returns (no panic);
//! - it allocates at most a small multiple of the input's size (a counting allocator watches the
//!   peak; a single request beyond 1 GiB is reported and refused); pictures, which compress
//!   far, are held to a flat 1 GiB instead;
//! - an error names the file it was reading.
//!
//! Readers: GGUF (header, metadata, tensors, tokenizer, config), safetensors weights, a PEFT
//! adapter folder (`adapter_config.json`, `adapter_model.safetensors`), the training TOML, a
//! dataset (read, detected, converted and encoded), `tokenizer.json`, a SentencePiece
//! `tokenizer.model`, and pictures (PNG, JPEG, GIF, WebP).
//!
//! `FT_FUZZ_CASES` sets the cases per reader (default 400), `FT_FUZZ_SEED` the seed (default
//! fixed, so CI is reproducible). The summary (cases run, errors, bugs) goes to stderr.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The largest single allocation a reader may ask for.
const REFUSED_BYTES: usize = 1 << 30;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same layout; the counters
// are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > REFUSED_BYTES {
            let message = b"fuzz: an allocation over 1 GiB was refused (see the case printed last)\n";
            report_refusal(message);
            return std::ptr::null_mut();
        }
        // SAFETY: same layout as asked.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: allocated by `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Writes to stderr from inside the allocator (unbuffered: nothing is allocated).
fn report_refusal(message: &[u8]) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(message);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

/// One way a case can go wrong (printed in the failure).
#[derive(Debug)]
#[allow(dead_code)]
enum Bug {
    Panic(String),
    Memory { peak: usize, input: usize },
    Unnamed(String),
}

/// What a reader did with one input.
struct Outcome {
    error: Option<String>,
}

/// A reader under test: writes `bytes` where it reads from (inside `dir`) and reads.
struct Reader {
    name: &'static str,
    /// The fixture files to mutate (with their names, for messages).
    seeds: Vec<(String, Vec<u8>)>,
    /// The file (inside the case folder) the bytes go to; errors must name it.
    file: &'static str,
    /// Reads the case folder.
    read: fn(&Path) -> Result<(), String>,
    /// Files copied unchanged next to it (e.g. the tokenizer beside a dataset).
    beside: Vec<(PathBuf, &'static str)>,
    /// The most a case may allocate, given the input's size.
    budget: fn(usize) -> usize,
}

/// Parsed models and tokenizers legitimately grow past their file; the bound is generous but
/// stops runaway allocations driven by a length field.
fn proportional(input: usize) -> usize {
    64 * 1024 * 1024 + 64 * input
}

/// A small compressed picture can decode to a large one, so the bound does not follow the
/// file: readers cap a decoded, padded or resized picture at 192 MiB, and processing holds a
/// few such buffers at once.
fn picture_budget(_: usize) -> usize {
    1024 * 1024 * 1024
}

fn mutate(seed: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    if rng.random_ratio(1, 12) {
        let n = rng.random_range(0..256);
        return (0..n).map(|_| rng.random()).collect();
    }
    for _ in 0..rng.random_range(1..=4) {
        if bytes.is_empty() {
            bytes.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..7) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => bytes[at] = [0u8, 0xFF, 0x7F, 0x80, b'"', b'{', b'['][rng.random_range(0..7)],
            2 => {
                // A huge little-endian length or count.
                let big: u64 = [u64::MAX, 1 << 40, 1 << 31, u32::MAX as u64][rng.random_range(0..4)];
                for (k, b) in big.to_le_bytes().iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            3 => bytes.truncate(at),
            4 => {
                let end = (at + rng.random_range(1..64)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                let to = rng.random_range(0..=bytes.len());
                bytes.splice(to..to, chunk);
            }
            5 => {
                let n = rng.random_range(1..32);
                let chunk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                bytes.splice(at..at, chunk);
            }
            _ => {
                let end = (at + rng.random_range(1..64)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

fn run_case(reader: &Reader, dir: &Path, bytes: &[u8]) -> Result<Outcome, Bug> {
    let path = dir.join(reader.file);
    std::fs::write(&path, bytes).unwrap();
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(|| (reader.read)(dir)));
    std::panic::set_hook(hook);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let input = bytes.len();
    let error = match result {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            return Err(Bug::Panic(message));
        }
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
    };
    if peak > (reader.budget)(input) {
        return Err(Bug::Memory { peak, input });
    }
    if let Some(e) = &error
        && !e.contains(reader.file)
        && !e.contains(&dir.display().to_string())
    {
        return Err(Bug::Unnamed(e.clone()));
    }
    Ok(Outcome { error })
}

fn files(paths: impl IntoIterator<Item = PathBuf>) -> Vec<(String, Vec<u8>)> {
    paths
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// An example config with its placeholders pointing into the case folder.
fn example_config(name: &str) -> (String, Vec<u8>) {
    let path = repo(name);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("@DATA@/questions.jsonl", "data.jsonl")
        .replace("@DATA@/images", ".")
        .replace("@DATA@", "data.jsonl")
        .replace("@MODEL@", "model")
        .replace("@CLIP@", "clip")
        .replace("@OUT@", "out");
    (path.display().to_string(), text.into_bytes())
}

fn readers() -> Vec<Reader> {
    let model_dir = repo("fixtures/models/llama");
    vec![
        Reader {
            name: "gguf",
            seeds: files(
                [
                    "tiny_llama.gguf",
                    "tiny_spm.gguf",
                    "value_types.gguf",
                    "quant_types.gguf",
                ]
                .iter()
                .map(|f| repo("fixtures/gguf").join(f)),
            ),
            file: "model.gguf",
            read: |dir| {
                // Every part is read, whatever fails first (a tokenizer-only file has no config).
                let file = ft_gguf::GgufFile::open(dir.join("model.gguf")).map_err(|e| e.to_string())?;
                let mut first: Option<String> = None;
                let mut note = |e: ft_gguf::GgufError| {
                    first.get_or_insert(e.to_string());
                };
                file.hf_config().err().map(&mut note);
                file.tokenizer().err().map(&mut note);
                for info in file.tensors() {
                    file.gguf_tensor_f32(&info.name).err().map(&mut note);
                }
                first.map_or(Ok(()), Err)
            },
            beside: Vec::new(),
            budget: proportional,
        },
        Reader {
            name: "safetensors",
            seeds: files([model_dir.join("model.safetensors")]),
            file: "model.safetensors",
            read: |dir| {
                use ft_model::weights::{SafetensorsSource, TensorSource};
                let path = dir.join("model.safetensors");
                let source = SafetensorsSource::open_files(&path, std::slice::from_ref(&path))
                    .map_err(|e| e.to_string())?;
                for name in source.names() {
                    source.read(&name).map_err(|e| e.to_string())?;
                }
                Ok(())
            },
            beside: Vec::new(),
            budget: proportional,
        },
        Reader {
            name: "adapter_config.json",
            seeds: files([repo("fixtures/lora/llama/adapter/adapter_config.json")]),
            file: "adapter_config.json",
            read: |dir| {
                ft_lora::peft::Adapter::read(dir)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            beside: vec![(
                repo("fixtures/lora/llama/adapter/adapter_model.safetensors"),
                "adapter_model.safetensors",
            )],
            budget: proportional,
        },
        Reader {
            name: "adapter_model.safetensors",
            seeds: files([repo("fixtures/lora/llama/adapter/adapter_model.safetensors")]),
            file: "adapter_model.safetensors",
            read: |dir| {
                ft_lora::peft::Adapter::read(dir)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            beside: vec![(
                repo("fixtures/lora/llama/adapter/adapter_config.json"),
                "adapter_config.json",
            )],
            budget: proportional,
        },
        Reader {
            name: "train config (TOML)",
            seeds: vec![
                example_config("examples/assistant/assistant.toml"),
                example_config("examples/llava/stage2.toml"),
            ],
            file: "train.toml",
            read: |dir| {
                ft_train::config::TrainConfig::from_file(&dir.join("train.toml"))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            beside: vec![(repo("fixtures/data/openai.jsonl"), "data.jsonl")],
            budget: proportional,
        },
        Reader {
            name: "dataset",
            seeds: files(
                [
                    "openai.jsonl",
                    "alpaca.jsonl",
                    "conversation.json",
                    "llava.jsonl",
                    "text.jsonl",
                ]
                .iter()
                .map(|f| repo("fixtures/data").join(f)),
            ),
            file: "data.jsonl",
            read: |dir| {
                let tokenizer =
                    ft_data::tokenizer::FtTokenizer::from_dir(repo("fixtures/tokenizers/tiny-chatml"))
                        .map_err(|e| e.to_string())?;
                let template =
                    ft_data::template::Template::resolve("qwen_chat", None).map_err(|e| e.to_string())?;
                let mut config = ft_data::config::DataConfig::new(vec![dir.join("data.jsonl")]);
                config.pack = false;
                config.validate(dir).map_err(|e| e.to_string())?;
                ft_data::dataset::prepare(&config, &tokenizer, &template)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            beside: Vec::new(),
            budget: proportional,
        },
        Reader {
            name: "tokenizer.json",
            seeds: files([repo("fixtures/tokenizers/tiny-chatml/tokenizer.json")]),
            file: "tokenizer.json",
            read: |dir| {
                let t = ft_data::tokenizer::FtTokenizer::from_dir(dir).map_err(|e| e.to_string())?;
                let _ = t.encode("Hello world, 123!");
                Ok(())
            },
            beside: vec![(
                repo("fixtures/tokenizers/tiny-chatml/tokenizer_config.json"),
                "tokenizer_config.json",
            )],
            budget: proportional,
        },
        Reader {
            name: "tokenizer.model (SentencePiece)",
            seeds: files([repo("fixtures/tokenizers/tiny-sp/tokenizer.model")]),
            file: "tokenizer.model",
            read: |dir| {
                let t = ft_data::tokenizer::FtTokenizer::from_dir(dir).map_err(|e| e.to_string())?;
                let _ = t.encode("Hello world, 123!");
                Ok(())
            },
            beside: vec![(
                repo("fixtures/tokenizers/tiny-sp/tokenizer_config.json"),
                "tokenizer_config.json",
            )],
            budget: proportional,
        },
        Reader {
            name: "picture",
            seeds: files(
                [
                    "wide_rgb.png",
                    "tall_rgba.png",
                    "palette.gif",
                    "wide_rgb.webp",
                    "exif_rot6.jpg",
                ]
                .iter()
                .map(|f| repo("fixtures/llava/images").join(f)),
            ),
            file: "picture.img",
            read: |dir| {
                let processor = ft_llava::ImageProcessor::clip(16);
                ft_llava::load_pixels(&dir.join("picture.img"), &processor, true)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            beside: Vec::new(),
            budget: picture_budget,
        },
    ]
}

#[test]
fn every_reader_survives_mutated_and_random_files() {
    let cases: usize = std::env::var("FT_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("FT_FUZZ_SEED")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20261202);
    let mut bugs = Vec::new();
    let mut summary = Vec::new();
    for reader in readers() {
        let dir = tempfile::tempdir().unwrap();
        for (from, name) in &reader.beside {
            std::fs::copy(from, dir.path().join(name)).unwrap();
        }
        let seeds: Vec<&Vec<u8>> = reader.seeds.iter().map(|(_, bytes)| bytes).collect();
        // The unmutated seeds read as the other suites expect (the harness itself works): the
        // first cleanly, none with a bug.
        for (k, bytes) in seeds.iter().enumerate() {
            let outcome = run_case(&reader, dir.path(), bytes);
            assert!(
                matches!(&outcome, Ok(o) if k > 0 || o.error.is_none()),
                "{}: seed {} does not read: {:?}",
                reader.name,
                reader.seeds[k].0,
                outcome.map(|o| o.error)
            );
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ reader.name.len() as u64);
        let mut errors = 0;
        for case in 0..cases {
            let bytes = mutate(seeds[case % seeds.len()], &mut rng);
            match run_case(&reader, dir.path(), &bytes) {
                Ok(Outcome { error: Some(_) }) => errors += 1,
                Ok(Outcome { error: None }) => {}
                Err(bug) => {
                    let kept = std::env::temp_dir().join(format!("ft-fuzz-{}-{case}", reader.file));
                    let _ = std::fs::write(&kept, &bytes);
                    bugs.push(format!(
                        "{} case {case} ({}): {bug:?}",
                        reader.name,
                        kept.display()
                    ));
                }
            }
        }
        summary.push(format!("{}: {cases} cases, {errors} clean errors", reader.name));
    }
    eprintln!("fuzz (seed {seed}):\n  {}", summary.join("\n  "));
    assert!(bugs.is_empty(), "{} bugs:\n{}", bugs.len(), bugs.join("\n"));
}
