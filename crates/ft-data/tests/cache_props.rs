//! Property tests: over random corpora (several files, record sizes, bad and blank lines,
//! weights, held-out splits, packing settings), the token cache gives exactly what the
//! in-memory path gives: samples, statistics, warnings, training rows and held-out samples.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ft_data::cache::{CachedDataset, TokenCache, build_cache};
use ft_data::config::DataConfig;
use ft_data::dataset::{prepare, resolve_template};
use ft_data::rows::RowSource;
use ft_data::tokenizer::FtTokenizer;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Line {
    Text(usize),
    BadJson,
    BadRecord,
    Blank,
    EmptyText,
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        6 => (0usize..80).prop_map(Line::Text),
        1 => Just(Line::BadJson),
        1 => Just(Line::BadRecord),
        1 => Just(Line::Blank),
        1 => Just(Line::EmptyText),
    ]
}

fn render(lines: &[Line], salt: usize) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let text = match l {
            Line::Text(n) => {
                let words: Vec<String> = (0..=*n)
                    .map(|w| format!("w{}x{}", (w * 31 + i + salt) % 17, w % 3))
                    .collect();
                serde_json::json!({ "text": words.join(" ") }).to_string()
            }
            Line::BadJson => "{\"text\": ".to_owned(),
            Line::BadRecord => "{\"text\": 42}".to_owned(),
            Line::Blank => "   ".to_owned(),
            Line::EmptyText => "{\"text\": \"  \"}".to_owned(),
        };
        out.push_str(&text);
        out.push('\n');
    }
    out
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_cache_matches_the_in_memory_path(
        files in prop::collection::vec(prop::collection::vec(line(), 0..40), 1..4),
        weights in prop::option::of(prop::collection::vec(prop::sample::select(vec![0.0, 0.3, 1.0, 1.5, 2.0]), 3)),
        eval_split in prop::sample::select(vec![0.0, 0.1, 0.25]),
        max_length in 3usize..48,
        pack in any::<bool>(),
        shuffle in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = files.iter().enumerate().map(|(i, lines)| {
            let path = dir.path().join(format!("f{i}.jsonl"));
            std::fs::write(&path, render(lines, i)).unwrap();
            path
        }).collect();
        let mut config = DataConfig::new(paths);
        config.format = Some("text".into());
        config.template = Some("default".into());
        config.max_length = max_length;
        config.pack = pack;
        config.shuffle_before_pack = shuffle;
        config.seed = seed;
        config.skip_bad_records = true;
        config.eval_split = eval_split;
        config.weights = weights
            .map(|w| w[..files.len()].to_vec())
            .filter(|w| w.iter().any(|&x| x > 0.0));
        let tok = FtTokenizer::from_dir(fixtures().join("tokenizers/tiny-llama")).unwrap();
        let template = resolve_template(&config, &tok).unwrap();
        let cache_dir = dir.path().join("cache");
        let memory = prepare(&config, &tok, &template);
        let built = build_cache(&cache_dir, &config, &tok, &template, &mut |_| {});
        let memory = match (memory, built) {
            (Err(a), Err(b)) => {
                prop_assert_eq!(a.to_string(), b.to_string());
                return Ok(());
            }
            (Ok(m), Ok(_)) => m,
            (a, b) => panic!("paths disagree: memory {:?} cache {:?}", a.err(), b.err()),
        };
        let cache = Arc::new(TokenCache::open(&cache_dir).unwrap());
        let samples: Vec<_> = (0..cache.len()).map(|i| cache.sample(i)).collect();
        let want: Vec<_> = memory.samples.iter().map(|s| s.encoded.clone()).collect();
        prop_assert_eq!(samples, want);
        for (i, s) in memory.samples.iter().enumerate() {
            let info = cache.info(i);
            prop_assert_eq!(cache.source_path(info.file), s.origin.file.as_path());
            prop_assert_eq!(info.line as usize, s.origin.line);
        }
        prop_assert_eq!(&cache.manifest().warnings, &memory.warnings);
        let data = CachedDataset::new(cache, &config);
        prop_assert_eq!(&data.stats, &memory.stats);
        let rows: Vec<_> = (0..data.rows.len()).map(|i| data.rows.row(i)).collect();
        prop_assert_eq!(rows, memory.rows);
        let eval: Vec<usize> = data.eval.order().iter().map(|&i| i as usize).collect();
        prop_assert_eq!(eval, memory.eval);
    }
}
