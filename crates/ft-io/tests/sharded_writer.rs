//! ShardedWriter: files read back by the `safetensors` crate, the index byte-identical to the one
//! transformers 5.24 writes for the same tensors and `max_shard_size`, streaming and atomic output.

use std::path::Path;

use ft_io::{Dtype, IoError, Overwrite, ShardedWriter, f32_to_bf16_bits, parse_size};
use safetensors::SafeTensors;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/peft/shards");

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn assert_file_layout(bytes: &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "data section is 8-byte aligned");
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["__metadata__"], serde_json::json!({"format": "pt"}));
}

#[test]
fn index_matches_transformers_for_tiny_llama() {
    let order = read_json(&Path::new(FIXTURES).join("state_dict_order.json"));
    let max = parse_size(order["max_shard_size"].as_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny");
    let mut w = ShardedWriter::new(&out, max).unwrap();
    for t in order["tensors"].as_array().unwrap() {
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let n: usize = shape.iter().product();
        w.add_f32(t["name"].as_str().unwrap(), &shape, &values(n, 1), Dtype::F32)
            .unwrap();
    }
    let summary = w.finish().unwrap();
    let expected_files: Vec<String> = order["shard_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(expected_files.len() >= 2);
    assert_eq!(summary.shard_files, expected_files);
    let ours = std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap();
    let theirs = std::fs::read_to_string(Path::new(FIXTURES).join("model.safetensors.index.json")).unwrap();
    assert_eq!(ours, theirs, "index file byte-identical to transformers'");
    let mut listed: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut expected = expected_files.clone();
    expected.push("model.safetensors.index.json".into());
    assert_eq!(listed, expected, "nothing else (no partial files) in the output");
}

#[test]
fn shards_read_back_with_equal_data_and_consistent_index() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let mut w = ShardedWriter::new(&out, 1000).unwrap();
    let a = values(100, 1); // 400 B f32
    let b = values(300, 2); // 600 B bf16
    let c = values(250, 3); // 500 B f16
    let big = values(400, 4); // 1600 B f32: larger than a shard, gets its own
    let ints: Vec<u8> = (0..24i64).flat_map(|i| (i - 12).to_le_bytes()).collect(); // I64 [2, 12]
    let mask = [1u8, 0, 1];
    w.add_f32("a", &[10, 10], &a, Dtype::F32).unwrap();
    w.add_f32("b", &[3, 100], &b, Dtype::BF16).unwrap();
    w.add_f32("c", &[250], &c, Dtype::F16).unwrap();
    w.add_f32("big", &[20, 20], &big, Dtype::F32).unwrap();
    w.add("ints", Dtype::I64, &[2, 12], &ints).unwrap();
    w.add("mask", Dtype::BOOL, &[3], &mask).unwrap();
    w.add("scalar", Dtype::F32, &[], &7.5f32.to_le_bytes()).unwrap();
    let summary = w.finish().unwrap();
    // a+b = 1000 ≤ 1000; c starts shard 2; big alone (shard 3); ints, mask, scalar in shard 4.
    assert_eq!(summary.shard_files.len(), 4);
    assert_eq!(summary.total_size, 400 + 600 + 500 + 1600 + 192 + 3 + 4);
    assert_eq!(summary.total_parameters, 100 + 300 + 250 + 400 + 24 + 3 + 1);

    let index = read_json(&out.join("model.safetensors.index.json"));
    assert_eq!(index["metadata"]["total_size"], summary.total_size);
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), 7);
    let expect_shard = [
        ("a", 1),
        ("b", 1),
        ("c", 2),
        ("big", 3),
        ("ints", 4),
        ("mask", 4),
        ("scalar", 4),
    ];
    for (name, k) in expect_shard {
        assert_eq!(map[name], format!("model-{k:05}-of-00004.safetensors"), "{name}");
    }

    let mut seen = 0;
    for file in &summary.shard_files {
        let bytes = std::fs::read(out.join(file)).unwrap();
        assert_file_layout(&bytes);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            assert_eq!(map[&name], file.as_str(), "{name} is where the index says");
            seen += 1;
            let data = view.data();
            match name.as_str() {
                "a" | "big" => {
                    let src = if name == "a" { &a } else { &big };
                    assert_eq!(view.dtype(), safetensors::Dtype::F32);
                    let got: Vec<f32> = data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    assert_eq!(&got, src);
                }
                "b" => {
                    assert_eq!(
                        (view.dtype(), view.shape()),
                        (safetensors::Dtype::BF16, &[3, 100][..])
                    );
                    let got: Vec<u16> = data
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    let want: Vec<u16> = b.iter().map(|&v| f32_to_bf16_bits(v)).collect();
                    assert_eq!(got, want);
                    let back: Vec<f32> = got.iter().map(|&h| half::bf16::from_bits(h).to_f32()).collect();
                    assert!(
                        back.iter()
                            .zip(&b)
                            .all(|(x, y)| (x - y).abs() <= y.abs() / 128.0 + 1e-30)
                    );
                }
                "c" => {
                    assert_eq!(view.dtype(), safetensors::Dtype::F16);
                    let got: Vec<f32> = data
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect();
                    assert!(got.iter().zip(&c).all(|(x, y)| (x - y).abs() <= 1e-3));
                }
                "ints" => assert_eq!((view.dtype(), data), (safetensors::Dtype::I64, &ints[..])),
                "mask" => assert_eq!((view.dtype(), data), (safetensors::Dtype::BOOL, &mask[..])),
                "scalar" => assert_eq!((view.shape(), data), (&[][..], &7.5f32.to_le_bytes()[..])),
                other => panic!("unexpected tensor {other}"),
            }
        }
    }
    assert_eq!(seen, 7);
}

#[test]
fn everything_in_one_shard_is_a_single_model_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("single");
    let mut w = ShardedWriter::new(&out, parse_size("2GB").unwrap()).unwrap();
    w.add_f32("x", &[2, 3], &[1., 2., 3., 4., 5., 6.], Dtype::F32)
        .unwrap();
    w.add_f32("y", &[1], &[0.1], Dtype::BF16).unwrap();
    let summary = w.finish().unwrap();
    assert_eq!(summary.shard_files, ["model.safetensors"]);
    assert!(!out.join("model.safetensors.index.json").exists());
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    assert_file_layout(&bytes);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("y").unwrap().data(), 0x3DCDu16.to_le_bytes());
    assert_eq!(st.names().len(), 2);
}

#[test]
fn full_shards_are_written_while_adding_and_nothing_appears_before_finish() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("streamed");
    let mut w = ShardedWriter::new(&out, 64).unwrap();
    w.add_f32("t0", &[16], &values(16, 0), Dtype::F32).unwrap();
    assert_eq!(
        std::fs::read_dir(w.staging_dir()).unwrap().count(),
        0,
        "shard 1 still filling"
    );
    w.add_f32("t1", &[16], &values(16, 1), Dtype::F32).unwrap();
    assert_eq!(
        std::fs::read_dir(w.staging_dir()).unwrap().count(),
        1,
        "shard 1 written when full"
    );
    w.add_f32("t2", &[16], &values(16, 2), Dtype::F32).unwrap();
    assert_eq!(std::fs::read_dir(w.staging_dir()).unwrap().count(), 2);
    assert!(!out.exists(), "the output folder appears only at finish");
    let staging = w.staging_dir().to_path_buf();
    assert!(
        staging
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".streamed.ft-partial-")
    );
    let summary = w.finish().unwrap();
    assert_eq!(summary.shard_files.len(), 3);
    assert!(!staging.exists());
}

#[test]
fn an_abandoned_export_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("abandoned");
    {
        let mut w = ShardedWriter::new(&out, 8).unwrap();
        w.add_f32("t0", &[4], &[1.0; 4], Dtype::F32).unwrap();
        w.add_f32("t1", &[4], &[1.0; 4], Dtype::F32).unwrap();
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_existing_output_is_refused_unless_replacing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exists");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("old.txt"), "old").unwrap();
    let err = ShardedWriter::new(&out, 100).unwrap_err();
    assert!(matches!(err, IoError::OutputExists { .. }), "{err}");
    assert!(err.to_string().contains("force"));

    let mut w = ShardedWriter::with_overwrite(&out, 100, Overwrite::Replace).unwrap();
    std::fs::write(w.staging_dir().join("config.json"), "{}").unwrap();
    w.add_f32("x", &[1], &[1.0], Dtype::F32).unwrap();
    w.finish().unwrap();
    assert!(!out.join("old.txt").exists());
    assert!(out.join("config.json").exists() && out.join("model.safetensors").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no aside or partial folder left"
    );
}

#[test]
fn bad_tensors_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardedWriter::new(dir.path().join("bad"), 100).unwrap();
    w.add_f32("x", &[2], &[1.0, 2.0], Dtype::F32).unwrap();
    let dup = w.add_f32("x", &[2], &[1.0, 2.0], Dtype::F32).unwrap_err();
    assert!(matches!(dup, IoError::DuplicateTensor { ref name } if name == "x"));
    let len = w.add("y", Dtype::BF16, &[3], &[0; 4]).unwrap_err();
    assert_eq!(len.to_string(), "tensor `y`: BF16 [3] needs 6 bytes, got 4");
    let len = w.add_f32("z", &[3], &[1.0; 2], Dtype::F16).unwrap_err();
    assert!(len.to_string().starts_with("tensor `z`"));
    assert!(matches!(
        w.add("__metadata__", Dtype::U8, &[1], &[0]),
        Err(IoError::InvalidTensorName { .. })
    ));
    assert!(matches!(
        w.add("", Dtype::U8, &[1], &[0]),
        Err(IoError::InvalidTensorName { .. })
    ));
    assert!(matches!(
        w.add_f32("i", &[1], &[1.0], Dtype::I32),
        Err(IoError::UnsupportedCast { .. })
    ));
    assert!(matches!(
        ShardedWriter::new(dir.path().join("zero"), 0),
        Err(IoError::ZeroShardSize)
    ));
}
