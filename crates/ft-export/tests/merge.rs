//! `ft_export::merge` against PEFT 0.21's `merge_and_unload()` (fixtures/gen_merge.py): merged
//! weights, the bf16 cast, shards and index, side files, re-typing without an adapter, QLoRA bases,
//! and the errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ft_export::merge::{BaseQuantization, MergeOptions, merge, nf4_round_trip};
use ft_export::{Dtype, ExportError, Overwrite, decode_to_f32, parse_size};
use ft_io::IoError;
use ft_io::peft::{Adapter, AdapterDtype, PeftError};
use safetensors::SafeTensors;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/merge");

fn fixture(p: &str) -> PathBuf {
    Path::new(FIXTURES).join(p)
}

#[derive(Debug, Clone, PartialEq)]
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Tensor {
    fn values(&self) -> Vec<f32> {
        decode_to_f32(&self.bytes, self.dtype).unwrap()
    }
}

fn dtype_of(d: safetensors::Dtype) -> Dtype {
    match d {
        safetensors::Dtype::F32 => Dtype::F32,
        safetensors::Dtype::F16 => Dtype::F16,
        safetensors::Dtype::BF16 => Dtype::BF16,
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn load_file(path: &Path) -> BTreeMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let t = Tensor {
                dtype: dtype_of(v.dtype()),
                shape: v.shape().to_vec(),
                bytes: v.data().to_vec(),
            };
            (name, t)
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// All tensors of a model folder (through the index when there is one); checks the index.
fn load_folder(dir: &Path) -> BTreeMap<String, Tensor> {
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return load_file(&dir.join("model.safetensors"));
    }
    let index = read_json(&index);
    let mut all = BTreeMap::new();
    let mut files: Vec<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    files.sort();
    files.dedup();
    for f in &files {
        for (name, t) in load_file(&dir.join(f)) {
            assert_eq!(index["weight_map"][&name], json!(f), "index places {name}");
            assert!(all.insert(name, t).is_none());
        }
    }
    assert_eq!(all.len(), index["weight_map"].as_object().unwrap().len());
    let total: usize = all.values().map(|t| t.bytes.len()).sum();
    assert_eq!(index["metadata"]["total_size"], json!(total));
    all
}

/// Golden tensors `<case>.<dtype>.<name>` → name → tensor.
fn golden(prefix: &str) -> BTreeMap<String, Tensor> {
    load_file(&fixture("golden.safetensors"))
        .into_iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t)))
        .collect()
}

fn opts() -> MergeOptions {
    MergeOptions::default()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Every output tensor not in `changed` equals the base's, converted to the output dtype.
fn assert_unchanged_except(
    out: &BTreeMap<String, Tensor>,
    base: &BTreeMap<String, Tensor>,
    changed: &[String],
) {
    assert_eq!(
        out.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>(),
        "same tensor names as the base"
    );
    for (name, b) in base {
        if changed.contains(name) {
            continue;
        }
        let o = &out[name];
        assert_eq!(o.shape, b.shape, "{name}");
        if o.dtype == b.dtype {
            assert_eq!(o.bytes, b.bytes, "{name} copied byte for byte");
        } else {
            assert_eq!(o.values(), b.values(), "{name} re-typed exactly");
        }
    }
}

#[test]
fn bf16_sharded_base_lora_f32_output_matches_peft_within_1e6() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let options = MergeOptions {
        dtype: Some(Dtype::F32),
        ..opts()
    };
    let summary = merge(&fixture("base-bf16"), Some(&fixture("lora")), &out, &options).unwrap();
    assert_eq!(summary.merged_modules.len(), 14);
    assert_eq!(summary.output_dtype, Some(Dtype::F32));
    assert_eq!(summary.nf4_base, None);
    let merged = load_folder(&out);
    let gold = golden("bf16base_lora.f32.");
    assert_eq!(gold.len(), 14);
    let mut exact = 0;
    for (name, g) in &gold {
        let m = &merged[name];
        assert_eq!(m.dtype, Dtype::F32);
        assert_eq!(m.shape, g.shape);
        let d = max_abs_diff(&m.values(), &g.values());
        assert!(d <= 1e-6, "{name}: max |ft - peft| = {d}");
        exact += usize::from(m.bytes == g.bytes);
    }
    // FMA accumulation in torch's order: not only within 1e-6 but identical.
    assert_eq!(exact, gold.len(), "merged tensors bit-identical to PEFT");
    let mut changed: Vec<String> = gold.keys().cloned().collect();
    changed.sort();
    let mut reported = summary.merged_tensors.clone();
    reported.sort();
    assert_eq!(reported, changed);
    assert_unchanged_except(&merged, &load_folder(&fixture("base-bf16")), &changed);
    assert_eq!(read_json(&out.join("config.json"))["dtype"], json!("float32"));
}

#[test]
fn bf16_output_by_default_equals_torch_cast_of_peft_merge_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let summary = merge(&fixture("base-bf16"), Some(&fixture("lora")), &out, &opts()).unwrap();
    assert_eq!(summary.output_dtype, Some(Dtype::BF16), "keeps the base dtype");
    let merged = load_folder(&out);
    let gold = golden("bf16base_lora.bf16.");
    let (mut total, mut differing) = (0, 0);
    for (name, g) in &gold {
        let m = &merged[name];
        assert_eq!(m.dtype, Dtype::BF16, "{name}");
        for (a, b) in m.bytes.chunks_exact(2).zip(g.bytes.chunks_exact(2)) {
            total += 1;
            differing += usize::from(a != b);
        }
    }
    assert_eq!(
        differing, 0,
        "{differing}/{total} bf16 values differ from torch's cast"
    );
    let changed: Vec<String> = gold.keys().cloned().collect();
    assert_unchanged_except(&merged, &load_folder(&fixture("base-bf16")), &changed);
    assert_eq!(
        read_json(&out.join("config.json")),
        read_json(&fixture("base-bf16/config.json")),
        "config unchanged when the dtype is kept"
    );
}

#[test]
fn f32_single_file_base_rslora_with_lm_head_matches_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let summary = merge(&fixture("base-f32"), Some(&fixture("rslora")), &out, &opts()).unwrap();
    assert_eq!(summary.merged_modules.len(), 15);
    assert!(summary.merged_modules.contains(&"lm_head".to_string()));
    assert_eq!(summary.export.shard_files, ["model.safetensors"]);
    assert!(!out.join("model.safetensors.index.json").exists());
    let merged = load_folder(&out);
    let gold = golden("f32base_rslora.f32.");
    assert_eq!(gold.len(), 15);
    for (name, g) in &gold {
        let d = max_abs_diff(&merged[name].values(), &g.values());
        assert!(d <= 1e-6, "{name}: max |ft - peft| = {d}");
        assert_eq!(merged[name].bytes, g.bytes, "{name}: bit-identical to PEFT");
    }
    let changed: Vec<String> = gold.keys().cloned().collect();
    assert_unchanged_except(&merged, &load_folder(&fixture("base-f32")), &changed);
}

#[test]
fn rslora_scale_is_used_not_alpha_over_r() {
    // The same adapter read as plain LoRA would scale by 8/4 = 2 instead of 8/√4 = 4: the merge must
    // not match PEFT then, which shows the test above checks the scale.
    let tmp = tempfile::tempdir().unwrap();
    let adapter_dir = tmp.path().join("as-lora");
    let mut adapter = Adapter::read(fixture("rslora")).unwrap();
    adapter.config.use_rslora = false;
    adapter.write(&adapter_dir, AdapterDtype::F32).unwrap();
    let out = tmp.path().join("merged");
    merge(&fixture("base-f32"), Some(&adapter_dir), &out, &opts()).unwrap();
    let merged = load_folder(&out);
    let gold = golden("f32base_rslora.f32.");
    let name = "model.layers.0.self_attn.q_proj.weight";
    assert!(max_abs_diff(&merged[name].values(), &gold[name].values()) > 1e-3);
}

#[test]
fn shards_and_index_follow_max_shard_size() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let options = MergeOptions {
        dtype: Some(Dtype::F32),
        max_shard_bytes: parse_size("20KB").unwrap(),
        ..opts()
    };
    let summary = merge(&fixture("base-f32"), Some(&fixture("rslora")), &out, &options).unwrap();
    let n = summary.export.shard_files.len();
    assert!(n >= 4, "{n} shards");
    for (k, f) in summary.export.shard_files.iter().enumerate() {
        assert_eq!(f, &format!("model-{:05}-of-{n:05}.safetensors", k + 1));
        let len = std::fs::metadata(out.join(f)).unwrap().len();
        let tensors = load_file(&out.join(f));
        let data: usize = tensors.values().map(|t| t.bytes.len()).sum();
        assert!(data <= 20_000 || tensors.len() == 1, "{f}: {data} data bytes");
        assert!(len > data as u64);
    }
    let merged = load_folder(&out); // checks weight_map and total_size
    assert_eq!(merged.len(), load_folder(&fixture("base-f32")).len());
    let gold = golden("f32base_rslora.f32.");
    for (name, g) in &gold {
        assert!(
            max_abs_diff(&merged[name].values(), &g.values()) <= 1e-6,
            "{name}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["merged"], "no staging folder left behind");
}

#[test]
fn side_files_config_tokenizer_and_generation_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let options = MergeOptions {
        dtype: Some(Dtype::F16),
        extra_eos_ids: vec![4],
        ..opts()
    };
    let summary = merge(&fixture("base-bf16"), Some(&fixture("lora")), &out, &options).unwrap();
    assert_eq!(summary.eos_token_ids, Some(vec![2, 4]));
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "configuration_tiny.py",
    ] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(fixture("base-bf16").join(f)).unwrap(),
            "{f} copied"
        );
        assert!(summary.copied_files.iter().any(|c| c == f), "{f} reported");
    }
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["dtype"], json!("float16"), "the key the base used");
    assert!(config.get("torch_dtype").is_none());
    let mut expected = read_json(&fixture("base-bf16/config.json"));
    expected["dtype"] = json!("float16");
    assert_eq!(config, expected, "everything else unchanged");
    let keys: Vec<_> = config.as_object().unwrap().keys().cloned().collect();
    let base_keys: Vec<_> = expected.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, base_keys, "key order kept");
    let generation = read_json(&out.join("generation_config.json"));
    assert_eq!(generation["eos_token_id"], json!([2, 4]));
    assert_eq!(generation["bos_token_id"], json!(1));
    assert!(load_folder(&out).values().all(|t| t.dtype == Dtype::F16));
}

#[test]
fn generation_config_copied_unchanged_without_extra_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let summary = merge(&fixture("base-f32"), None, &out, &opts()).unwrap();
    assert_eq!(summary.eos_token_ids, None);
    assert_eq!(
        std::fs::read(out.join("generation_config.json")).unwrap(),
        std::fs::read(fixture("base-f32/generation_config.json")).unwrap()
    );
}

#[test]
fn without_adapter_reshards_and_retypes_only() {
    let tmp = tempfile::tempdir().unwrap();
    // bf16 shards → one f32 file: values identical.
    let out = tmp.path().join("f32");
    let options = MergeOptions {
        dtype: Some(Dtype::F32),
        ..opts()
    };
    let summary = merge(&fixture("base-bf16"), None, &out, &options).unwrap();
    assert!(summary.merged_tensors.is_empty() && summary.merged_modules.is_empty());
    assert_eq!(summary.export.shard_files, ["model.safetensors"]);
    let base = load_folder(&fixture("base-bf16"));
    let f32s = load_folder(&out);
    assert_unchanged_except(&f32s, &base, &[]);
    assert!(f32s.values().all(|t| t.dtype == Dtype::F32));
    // …and back to bf16 in shards: byte-identical tensors (bf16 → f32 → bf16 is exact).
    let back = tmp.path().join("bf16");
    let options = MergeOptions {
        dtype: Some(Dtype::BF16),
        max_shard_bytes: 12_000,
        ..opts()
    };
    let summary = merge(&out, None, &back, &options).unwrap();
    assert!(summary.export.shard_files.len() >= 3);
    assert_eq!(load_folder(&back), base);
    assert_eq!(read_json(&back.join("config.json"))["dtype"], json!("bfloat16"));
}

#[test]
fn qlora_base_goes_through_nf4_before_the_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let base = load_folder(&fixture("base-f32"));
    let gold = golden("f32base_rslora.f32.");
    let dense_dir = tmp.path().join("dense");
    merge(
        &fixture("base-f32"),
        Some(&fixture("rslora")),
        &dense_dir,
        &opts(),
    )
    .unwrap();
    let dense = load_folder(&dense_dir);
    for double_quant in [false, true] {
        let out = tmp.path().join(format!("merged-{double_quant}"));
        let options = MergeOptions {
            base_quantization: BaseQuantization::Nf4 { double_quant },
            ..opts()
        };
        let summary = merge(&fixture("base-f32"), Some(&fixture("rslora")), &out, &options).unwrap();
        assert_eq!(summary.nf4_base, Some(double_quant));
        let merged = load_folder(&out);
        for (name, b) in &base {
            let got = merged[name].values();
            let w = b.values();
            let decoder_linear = name.contains(".layers.") && b.shape.len() == 2;
            let mut expected_w = w.clone();
            if decoder_linear {
                nf4_round_trip(name, &mut expected_w, &b.shape, double_quant).unwrap();
                assert_ne!(expected_w, w, "{name} is changed by NF4");
            }
            let expected: Vec<f32> = match gold.get(name) {
                // the delta PEFT added, on top of the (round-tripped) base
                Some(g) => expected_w
                    .iter()
                    .zip(g.values().iter().zip(&w))
                    .map(|(q, (g, w))| q + (g - w))
                    .collect(),
                None => expected_w,
            };
            let d = max_abs_diff(&got, &expected);
            assert!(d <= 1e-6, "{name} (double_quant {double_quant}): {d}");
            if !decoder_linear {
                assert_eq!(
                    merged[name], dense[name],
                    "{name}: not quantised (embeddings, norms, head)"
                );
            }
        }
    }
}

#[test]
fn qlora_default_comes_from_ft_adapter_json() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("qlora");
    std::fs::create_dir(&adapter).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixture("lora").join(f), adapter.join(f)).unwrap();
    }
    std::fs::write(
        adapter.join("ft_adapter.json"),
        r#"{"ft_version": "0.1.0", "chat_template": "internlm2_chat", "quantization": "nf4", "double_quant": false}"#,
    )
    .unwrap();
    let out = tmp.path().join("merged");
    let summary = merge(&fixture("base-bf16"), Some(&adapter), &out, &opts()).unwrap();
    assert_eq!(summary.nf4_base, Some(false));
    let dense = tmp.path().join("dense");
    let options = MergeOptions {
        base_quantization: BaseQuantization::Dense,
        ..opts()
    };
    assert_eq!(
        merge(&fixture("base-bf16"), Some(&adapter), &dense, &options)
            .unwrap()
            .nf4_base,
        None
    );
    assert_ne!(load_folder(&out), load_folder(&dense));
    // The plain fixture records no quantization.
    let plain = tmp.path().join("plain");
    assert_eq!(
        merge(&fixture("base-bf16"), Some(&fixture("lora")), &plain, &opts())
            .unwrap()
            .nf4_base,
        None
    );
}

/// Writes `lora` with one module changed by `edit` into a new folder.
fn edited_adapter(dir: &Path, edit: impl FnOnce(&mut Adapter)) -> PathBuf {
    let mut adapter = Adapter::read(fixture("lora")).unwrap();
    edit(&mut adapter);
    let path = dir.join("edited-adapter");
    adapter.write(&path, AdapterDtype::F32).unwrap();
    path
}

fn assert_nothing_written(parent: &Path, allowed: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, allowed, "only the inputs, no output or staging folder");
}

#[test]
fn adapter_for_another_base_names_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = edited_adapter(tmp.path(), |a| {
        let pair = a.weights.modules.get_mut("model.layers.1.mlp.down_proj").unwrap();
        pair.a.shape = [4, 48]; // in = 64 in the base
        pair.a.data = vec![0.01; 4 * 48];
    });
    let err = merge(
        &fixture("base-bf16"),
        Some(&adapter),
        &tmp.path().join("out"),
        &opts(),
    )
    .unwrap_err();
    match &err {
        ExportError::AdapterShapeMismatch {
            tensor, base, delta, ..
        } => {
            assert_eq!(tensor, "model.layers.1.mlp.down_proj.weight");
            assert_eq!(base, &[32, 64]);
            assert_eq!(delta, &[32, 48]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains("model.layers.1.mlp.down_proj.weight"),
        "{err}"
    );
    assert_nothing_written(tmp.path(), &["edited-adapter"]);
}

#[test]
fn adapter_module_missing_in_base() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = edited_adapter(tmp.path(), |a| {
        let pair = a
            .weights
            .modules
            .remove("model.layers.1.self_attn.q_proj")
            .unwrap();
        a.weights
            .modules
            .insert("model.layers.7.self_attn.q_proj".into(), pair);
    });
    let err = merge(
        &fixture("base-bf16"),
        Some(&adapter),
        &tmp.path().join("out"),
        &opts(),
    )
    .unwrap_err();
    match &err {
        ExportError::AdapterModuleMissing { module, key } => {
            assert_eq!(module, "model.layers.7.self_attn.q_proj");
            assert_eq!(
                key,
                "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_nothing_written(tmp.path(), &["edited-adapter"]);
}

#[test]
fn missing_adapter_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("no-config");
    std::fs::create_dir(&adapter).unwrap();
    std::fs::copy(
        fixture("lora/adapter_model.safetensors"),
        adapter.join("adapter_model.safetensors"),
    )
    .unwrap();
    let err = merge(
        &fixture("base-bf16"),
        Some(&adapter),
        &tmp.path().join("out"),
        &opts(),
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            ExportError::Adapter {
                source: PeftError::MissingConfig { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("adapter_config.json"), "{cause}");
    assert_nothing_written(tmp.path(), &["no-config"]);
}

#[test]
fn base_without_weights_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = merge(tmp.path(), None, &tmp.path().join("out"), &opts()).unwrap_err();
    assert!(
        matches!(err, ExportError::Files(IoError::NoWeights { .. })),
        "{err:?}"
    );
}

#[test]
fn existing_output_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "old").unwrap();
    let err = merge(&fixture("base-f32"), Some(&fixture("rslora")), &out, &opts()).unwrap_err();
    assert!(
        matches!(err, ExportError::Files(IoError::OutputExists { .. })),
        "{err:?}"
    );
    assert!(out.join("keep.txt").exists(), "untouched");
    let options = MergeOptions {
        overwrite: Overwrite::Replace,
        ..opts()
    };
    merge(&fixture("base-f32"), Some(&fixture("rslora")), &out, &options).unwrap();
    assert!(!out.join("keep.txt").exists(), "replaced");
    assert!(out.join("model.safetensors").exists());
    assert_nothing_written(tmp.path(), &["merged"]);
}

#[test]
fn a_merge_failing_midway_leaves_no_output() {
    // A base whose second shard repeats a tensor of the first: the writer fails after the first
    // shard was written.
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let v: Vec<u8> = (0..64u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let view =
        |shape: Vec<usize>| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &v).unwrap();
    let first = safetensors::serialize(
        [("a.weight", view(vec![8, 8])), ("b.weight", view(vec![64]))],
        None,
    )
    .unwrap();
    let second = safetensors::serialize([("a.weight", view(vec![8, 8]))], None).unwrap();
    std::fs::write(base.join("model-00001-of-00002.safetensors"), first).unwrap();
    std::fs::write(base.join("model-00002-of-00002.safetensors"), second).unwrap();
    let index = json!({"metadata": {"total_size": 768}, "weight_map": {
        "a.weight": "model-00002-of-00002.safetensors", "b.weight": "model-00001-of-00002.safetensors"}});
    std::fs::write(base.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let options = MergeOptions {
        max_shard_bytes: 300,
        ..opts()
    };
    let err = merge(&base, None, &tmp.path().join("out"), &options).unwrap_err();
    assert!(
        matches!(err, ExportError::Files(IoError::DuplicateTensor { .. })),
        "{err:?}"
    );
    assert_nothing_written(tmp.path(), &["base"]);
}

#[test]
fn unsupported_output_dtype_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let options = MergeOptions {
        dtype: Some(Dtype::I8),
        ..opts()
    };
    let err = merge(&fixture("base-f32"), None, &tmp.path().join("out"), &options).unwrap_err();
    assert!(
        matches!(err, ExportError::UnsupportedOutputDtype { .. }),
        "{err:?}"
    );
}
