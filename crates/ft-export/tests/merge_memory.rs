//! Peak memory of a streaming merge (run by hand; Linux only):
//! `cargo test -p ft-export --release --test merge_memory -- --ignored --nocapture`
//!
//! A synthetic base of 4 shards × 64 MiB f32 (4 tensors `[2048, 2048]` each) with a rank-16 adapter
//! on all 16 tensors is merged into 64 MiB output shards; the process's peak RSS (VmHWM, reset just
//! before the merge) must stay under 1.5 × the largest shard.

use std::io::Write;
use std::path::Path;

use ft_export::merge::{MergeOptions, merge};
use ft_export::{Dtype, ExportSummary};
use ft_io::peft::{
    Adapter, AdapterConfig, AdapterDtype, AdapterWeights, LoraMatrix, LoraPair, TargetModules,
};
use ft_io::safetensors::{TensorEntry, encode_header, pt_metadata};

const SHARDS: usize = 4;
const PER_SHARD: usize = 4;
const N: usize = 2048;
const RANK: usize = 16;
const SHARD_BYTES: u64 = (PER_SHARD * N * N * 4) as u64;

fn name(shard: usize, t: usize) -> String {
    format!("model.layers.{shard}.mlp.w{t}")
}

/// Writes one shard row by row, so generating it costs no memory.
fn write_shard(path: &Path, shard: usize) {
    let entries: Vec<TensorEntry> = (0..PER_SHARD)
        .map(|t| {
            let begin = t * N * N * 4;
            TensorEntry {
                name: format!("{}.weight", name(shard, t)),
                dtype: Dtype::F32,
                shape: vec![N, N],
                data_offsets: (begin, begin + N * N * 4),
            }
        })
        .collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&encode_header(&entries, &pt_metadata())).unwrap();
    let mut row = Vec::with_capacity(N * 4);
    for t in 0..PER_SHARD {
        for r in 0..N {
            row.clear();
            for c in 0..N {
                let v = ((r * 31 + c * 17 + t + shard) % 1000) as f32 / 1000.0 - 0.5;
                row.extend_from_slice(&v.to_le_bytes());
            }
            f.write_all(&row).unwrap();
        }
    }
    f.flush().unwrap();
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "writes 512 MiB to a temp dir; run by hand to measure peak memory"]
fn merge_peak_memory_is_about_one_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let mut weight_map = serde_json::Map::new();
    for s in 0..SHARDS {
        let file = format!("model-{:05}-of-{SHARDS:05}.safetensors", s + 1);
        write_shard(&base.join(&file), s);
        for t in 0..PER_SHARD {
            weight_map.insert(format!("{}.weight", name(s, t)), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": SHARD_BYTES * SHARDS as u64}, "weight_map": weight_map});
    std::fs::write(base.join("model.safetensors.index.json"), index.to_string()).unwrap();

    let matrix = |rows: usize, cols: usize, seed: usize| LoraMatrix {
        shape: [rows, cols],
        data: (0..rows * cols)
            .map(|i| ((i * 7 + seed) % 101) as f32 / 1000.0)
            .collect(),
    };
    let modules = (0..SHARDS)
        .flat_map(|s| (0..PER_SHARD).map(move |t| (s, t)))
        .map(|(s, t)| {
            let pair = LoraPair {
                a: matrix(RANK, N, s + t),
                b: matrix(N, RANK, s * t),
            };
            (name(s, t), pair)
        })
        .collect();
    let adapter = Adapter {
        config: AdapterConfig::new(RANK, 32.0, TargetModules::names(&["w0", "w1", "w2", "w3"])),
        weights: AdapterWeights { modules },
        ft_meta: None,
    };
    let adapter_dir = tmp.path().join("adapter");
    adapter.write(&adapter_dir, AdapterDtype::F32).unwrap();
    drop(adapter);

    // Reset the peak-RSS counter (Linux ≥ 4.0: "5" → clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmHWM:");
    let start = std::time::Instant::now();
    let options = MergeOptions {
        max_shard_bytes: SHARD_BYTES,
        ..MergeOptions::default()
    };
    let summary: ExportSummary = merge(&base, Some(&adapter_dir), &tmp.path().join("out"), &options)
        .unwrap()
        .export;
    let elapsed = start.elapsed();
    let peak = status_kib("VmHWM:");
    assert_eq!(summary.shard_files.len(), SHARDS);
    let shard_mib = SHARD_BYTES as f64 / (1 << 20) as f64;
    let peak_mib = peak as f64 / 1024.0;
    let ratio = peak_mib / shard_mib;
    eprintln!(
        "merge of {SHARDS} × {shard_mib:.0} MiB f32 shards, rank-{RANK} adapter on {} tensors: \
         {elapsed:.2?}; VmHWM {peak_mib:.1} MiB (before the merge {:.1} MiB) = {ratio:.2} × the largest shard",
        SHARDS * PER_SHARD,
        before as f64 / 1024.0,
    );
    assert!(
        ratio < 1.5,
        "peak {peak_mib:.1} MiB is {ratio:.2} × the {shard_mib:.0} MiB shard"
    );
}
