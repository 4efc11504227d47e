//! The token cache round-trips every golden case (all formats), packs like `pack()` in memory,
//! and is never trusted when corrupted, truncated or stale.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ft_data::cache::{CacheStatus, CachedDataset, TokenCache, build_cache, check_cache, open_or_build};
use ft_data::config::DataConfig;
use ft_data::dataset::{length_histogram, prepare, resolve_template};
use ft_data::rows::RowSource;
use ft_data::template::Template;
use ft_data::tokenizer::FtTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    file: String,
    format: String,
    tokenizer: String,
    template: String,
    system: Option<String>,
    max_length: usize,
    samples: Vec<Golden>,
}

#[derive(Deserialize)]
struct Golden {
    input_ids: Vec<i32>,
    labels: Vec<i32>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn tokenizer(name: &str) -> FtTokenizer {
    FtTokenizer::from_dir(fixtures().join("tokenizers").join(name)).unwrap()
}

fn build(dir: &Path, config: &DataConfig, tok: &FtTokenizer, template: &Template) -> Arc<TokenCache> {
    build_cache(dir, config, tok, template, &mut |_| {}).unwrap();
    Arc::new(TokenCache::open(dir).unwrap())
}

#[test]
fn every_golden_case_round_trips_through_the_cache() {
    let text = std::fs::read_to_string(fixtures().join("data/goldens.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&text).unwrap();
    let mut formats = std::collections::BTreeSet::new();
    for case in cases.iter().filter(|c| !c.samples.is_empty()) {
        let dir = tempfile::tempdir().unwrap();
        let tok = tokenizer(&case.tokenizer);
        let mut config = DataConfig::new(vec![fixtures().join("data").join(&case.file)]);
        config.format = Some(case.format.clone());
        config.template = Some(case.template.clone());
        config.system = case.system.clone();
        config.max_length = case.max_length;
        let template = resolve_template(&config, &tok).unwrap();
        let cache = build(&dir.path().join("cache"), &config, &tok, &template);
        let memory = prepare(&config, &tok, &template).unwrap();
        assert_eq!(cache.len(), case.samples.len(), "{}", case.name);
        for (i, want) in case.samples.iter().enumerate() {
            let got = cache.sample(i);
            assert_eq!(got.input_ids, want.input_ids, "{} sample {i} ids", case.name);
            assert_eq!(got.labels, want.labels, "{} sample {i} labels", case.name);
            assert_eq!(got, memory.samples[i].encoded, "{} sample {i}", case.name);
            assert_eq!(
                cache.info(i).line as usize,
                memory.samples[i].origin.line,
                "{}",
                case.name
            );
        }
        let mut stats = cache.manifest().stats.clone();
        stats.rows = memory.stats.rows;
        assert_eq!(stats, memory.stats, "{}", case.name);
        assert_eq!(
            cache.manifest().length_histogram,
            length_histogram(&memory.samples, config.max_length, 8)
        );
        formats.insert(case.format.clone());
    }
    assert_eq!(formats.len(), 5, "every format is covered: {formats:?}");
}

fn text_corpus(dir: &Path, name: &str, n: usize, words: usize) -> PathBuf {
    let path = dir.join(name);
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let text: Vec<String> = (0..(i * 7) % words + 1)
                .map(|w| format!("word{}", (i + w) % 13))
                .collect();
            serde_json::json!({ "text": text.join(" ") }).to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn text_config(files: Vec<PathBuf>, max_length: usize) -> DataConfig {
    let mut config = DataConfig::new(files);
    config.format = Some("text".into());
    config.template = Some("default".into());
    config.max_length = max_length;
    config
}

fn rows_of(source: &dyn RowSource) -> Vec<ft_data::pack::PackedRow> {
    (0..source.len()).map(|i| source.row(i)).collect()
}

#[test]
fn packing_over_the_cache_equals_packing_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let a = text_corpus(dir.path(), "a.jsonl", 40, 50);
    let b = text_corpus(dir.path(), "b.jsonl", 25, 9);
    let tok = tokenizer("tiny-llama");
    for (max_length, pack, shuffle) in [
        (16, true, true),
        (7, true, false),
        (64, false, true),
        (33, true, true),
    ] {
        let mut config = text_config(vec![a.clone(), b.clone()], max_length);
        config.pack = pack;
        config.shuffle_before_pack = shuffle;
        config.seed = max_length as u64;
        config.weights = Some(vec![1.5, 0.5]);
        config.eval_split = 0.1;
        let template = resolve_template(&config, &tok).unwrap();
        let cache = build(
            &dir.path().join(format!("c{max_length}")),
            &config,
            &tok,
            &template,
        );
        let memory = prepare(&config, &tok, &template).unwrap();
        let cached = CachedDataset::new(cache, &config);
        assert_eq!(rows_of(&cached.rows), memory.rows, "max_length {max_length}");
        assert_eq!(cached.stats.rows, memory.stats.rows);
        let eval: Vec<usize> = cached.eval.order().iter().map(|&i| i as usize).collect();
        assert_eq!(eval, memory.eval);
        assert!(!eval.is_empty());
    }
}

#[test]
fn compressed_files_give_the_same_cache_as_plain_ones() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = text_corpus(dir.path(), "a.jsonl", 30, 20);
    let bytes = std::fs::read(&plain).unwrap();
    let gz = dir.path().join("a.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let zst = dir.path().join("a.jsonl.zst");
    std::fs::write(&zst, zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();
    let tok = tokenizer("tiny-llama");
    let samples = |file: &PathBuf, name: &str| {
        let config = text_config(vec![file.clone()], 32);
        let template = resolve_template(&config, &tok).unwrap();
        let cache = build(&dir.path().join(name), &config, &tok, &template);
        (0..cache.len()).map(|i| cache.sample(i)).collect::<Vec<_>>()
    };
    let want = samples(&plain, "p");
    assert_eq!(want.len(), 30);
    assert_eq!(samples(&gz, "g"), want);
    assert_eq!(samples(&zst, "z"), want);
}

struct Fixture {
    _dir: tempfile::TempDir,
    cache_dir: PathBuf,
    data: PathBuf,
    config: DataConfig,
    tok: FtTokenizer,
    template: Template,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = text_corpus(dir.path(), "a.jsonl", 20, 30);
    let config = text_config(vec![data.clone()], 32);
    let tok = tokenizer("tiny-llama");
    let template = resolve_template(&config, &tok).unwrap();
    let cache_dir = dir.path().join("cache");
    let (_, status) = open_or_build(&cache_dir, &config, &tok, &template, false, &mut |_| {}).unwrap();
    assert!(matches!(status, CacheStatus::Built { ref reason } if reason.contains("no token cache")));
    Fixture {
        _dir: dir,
        cache_dir,
        data,
        config,
        tok,
        template,
    }
}

impl Fixture {
    /// Why the cache is not usable now, after which it must rebuild and then be a hit.
    fn stale_reason_then_rebuilt(
        &self,
        config: &DataConfig,
        tok: &FtTokenizer,
        template: &Template,
    ) -> String {
        let reason = check_cache(&self.cache_dir, config, tok, template)
            .unwrap()
            .expect_err("the cache must not be trusted");
        let (cache, status) =
            open_or_build(&self.cache_dir, config, tok, template, false, &mut |_| {}).unwrap();
        assert_eq!(
            status,
            CacheStatus::Built {
                reason: reason.clone()
            }
        );
        let memory = prepare(config, tok, template).unwrap();
        let got: Vec<_> = (0..cache.len()).map(|i| cache.sample(i)).collect();
        let want: Vec<_> = memory.samples.iter().map(|s| s.encoded.clone()).collect();
        assert_eq!(got, want, "the rebuilt cache holds the new data");
        let (_, again) = open_or_build(&self.cache_dir, config, tok, template, false, &mut |_| {}).unwrap();
        assert_eq!(again, CacheStatus::Hit);
        reason
    }
}

#[cfg(unix)]
#[test]
fn the_same_files_reached_by_another_path_are_a_hit() {
    // `ft data prepare /abs/run.toml` then `ft train run.toml` from the config's folder: the
    // files are spelled differently but are the same files.
    let f = fixture();
    let folder = f.data.parent().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("run");
    std::os::unix::fs::symlink(folder, &link).unwrap();
    let mut config = f.config.clone();
    config.files = vec![link.join(f.data.file_name().unwrap())];
    assert_ne!(config.files, f.config.files);
    let (_, status) = open_or_build(&f.cache_dir, &config, &f.tok, &f.template, false, &mut |_| {}).unwrap();
    assert_eq!(status, CacheStatus::Hit);
    // Another file is still a change.
    let other = text_corpus(folder, "b.jsonl", 20, 30);
    config.files = vec![other];
    let reason = check_cache(&f.cache_dir, &config, &f.tok, &f.template)
        .unwrap()
        .expect_err("another file");
    assert!(reason.contains("data.files"), "{reason}");
}

#[test]
fn a_valid_cache_is_a_hit_even_after_touching_its_sources() {
    let f = fixture();
    let (_, status) =
        open_or_build(&f.cache_dir, &f.config, &f.tok, &f.template, false, &mut |_| {}).unwrap();
    assert_eq!(status, CacheStatus::Hit);
    // Same bytes, new mtime: re-hashed and still valid.
    let bytes = std::fs::read(&f.data).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&f.data, bytes).unwrap();
    assert!(
        check_cache(&f.cache_dir, &f.config, &f.tok, &f.template)
            .unwrap()
            .is_ok()
    );
    // Keys applied at read time need no rebuild.
    let mut config = f.config.clone();
    config.seed = 9;
    config.pack = false;
    config.eval_split = 0.2;
    assert!(
        check_cache(&f.cache_dir, &config, &f.tok, &f.template)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn a_changed_source_file_is_detected_even_at_the_same_size() {
    let f = fixture();
    let mut text = std::fs::read_to_string(&f.data).unwrap();
    text.push_str("{\"text\": \"one more record\"}\n");
    std::fs::write(&f.data, &text).unwrap();
    let reason = f.stale_reason_then_rebuilt(&f.config, &f.tok, &f.template);
    assert!(reason.contains("a.jsonl") && reason.contains("bytes"), "{reason}");
    // Same size, different content.
    let swapped = text.replacen("word1", "word2", 1);
    assert_eq!(swapped.len(), text.len());
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&f.data, swapped).unwrap();
    let reason = f.stale_reason_then_rebuilt(&f.config, &f.tok, &f.template);
    assert!(reason.contains("content hash"), "{reason}");
}

#[test]
fn a_changed_key_is_named() {
    let f = fixture();
    let mut config = f.config.clone();
    config.max_length = 20;
    let reason = f.stale_reason_then_rebuilt(&config, &f.tok, &f.template);
    assert!(
        reason.contains("data.max_length") && reason.contains("32 → 20"),
        "{reason}"
    );
    config.system = Some("Be brief.".into());
    let reason = f.stale_reason_then_rebuilt(&config, &f.tok, &f.template);
    assert!(reason.contains("data.system"), "{reason}");
}

#[test]
fn a_changed_tokenizer_or_template_is_detected() {
    let f = fixture();
    let other = tokenizer("tiny-chatml");
    let reason = f.stale_reason_then_rebuilt(&f.config, &other, &f.template);
    assert!(reason.contains("tokenizer"), "{reason}");
    let mut config = f.config.clone();
    config.template = Some("qwen_chat".into());
    let template = resolve_template(&config, &other).unwrap();
    let reason = f.stale_reason_then_rebuilt(&config, &other, &template);
    assert!(reason.contains("template"), "{reason}");
}

#[test]
fn corrupted_truncated_or_incomplete_caches_are_rebuilt() {
    let f = fixture();
    // A flipped byte in the middle of the tokens.
    let tokens = f.cache_dir.join("tokens.bin");
    let mut bytes = std::fs::read(&tokens).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&tokens, &bytes).unwrap();
    let reason = f.stale_reason_then_rebuilt(&f.config, &f.tok, &f.template);
    assert!(
        reason.contains("tokens.bin") && reason.contains("corrupted"),
        "{reason}"
    );
    // A truncated labels file.
    let labels = f.cache_dir.join("labels.bin");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 4]).unwrap();
    let reason = f.stale_reason_then_rebuilt(&f.config, &f.tok, &f.template);
    assert!(
        reason.contains("labels.bin") && reason.contains("truncated"),
        "{reason}"
    );
    // A damaged manifest.
    let manifest = f.cache_dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let reason = f.stale_reason_then_rebuilt(&f.config, &f.tok, &f.template);
    assert!(reason.contains("manifest.json"), "{reason}");
    // An interrupted build: no manifest at all.
    std::fs::remove_file(&manifest).unwrap();
    let reason = f.stale_reason_then_rebuilt(&f.config, &f.tok, &f.template);
    assert!(reason.contains("no token cache"), "{reason}");
    // A missing bin file.
    std::fs::remove_file(f.cache_dir.join("index.bin")).unwrap();
    let reason = f.stale_reason_then_rebuilt(&f.config, &f.tok, &f.template);
    assert!(reason.contains("index.bin"), "{reason}");
}

#[test]
fn bad_records_are_reported_by_file_and_line_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    std::fs::write(
        &path,
        "{\"text\": \"a b\"}\n{oops\n\n{\"text\": 3}\n{\"text\": \"c\"}\n",
    )
    .unwrap();
    let tok = tokenizer("tiny-llama");
    let mut config = text_config(vec![path.clone()], 32);
    let template = resolve_template(&config, &tok).unwrap();
    let err = build_cache(&dir.path().join("c"), &config, &tok, &template, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("d.jsonl:2"), "{err}");
    assert!(!dir.path().join("c").exists(), "a failed build publishes nothing");
    config.skip_bad_records = true;
    let manifest = build_cache(&dir.path().join("c"), &config, &tok, &template, &mut |_| {}).unwrap();
    assert_eq!(manifest.stats.skipped_bad, 2);
    assert_eq!(manifest.samples, 2);
    assert!(
        manifest.warnings[0].contains("d.jsonl:2"),
        "{:?}",
        manifest.warnings
    );
    assert!(
        manifest.warnings[1].contains("d.jsonl:4"),
        "{:?}",
        manifest.warnings
    );
    let memory = prepare(&config, &tok, &template).unwrap();
    assert_eq!(memory.warnings, manifest.warnings);
}
