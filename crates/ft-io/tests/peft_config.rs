//! adapter_config.json against PEFT 0.21's `save_pretrained` (fixtures/peft/llama-*).

use std::path::{Path, PathBuf};

use ft_io::peft::{AdapterConfig, FtAdapterMeta, PeftError, TargetModules};
use serde_json::{Map, Value, json};

const CLASSIC_KEYS: [&str; 21] = [
    "alpha_pattern",
    "auto_mapping",
    "base_model_name_or_path",
    "bias",
    "fan_in_fan_out",
    "inference_mode",
    "init_lora_weights",
    "layers_pattern",
    "layers_to_transform",
    "loftq_config",
    "lora_alpha",
    "lora_dropout",
    "modules_to_save",
    "peft_type",
    "r",
    "rank_pattern",
    "revision",
    "target_modules",
    "task_type",
    "use_dora",
    "use_rslora",
];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/peft")
        .join(name)
}

fn peft_json(name: &str) -> Map<String, Value> {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir(name).join("adapter_config.json")).unwrap())
        .unwrap()
}

fn sorted(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

#[test]
fn reads_peft_config_ignoring_newer_keys() {
    let cfg = AdapterConfig::read(fixture_dir("llama-lora")).unwrap();
    assert_eq!(cfg.r, 4);
    assert_eq!(cfg.lora_alpha, 8.0);
    assert_eq!(cfg.lora_dropout, 0.05);
    assert!(!cfg.use_rslora);
    assert_eq!(cfg.task_type.as_deref(), Some("CAUSAL_LM"));
    assert_eq!(cfg.base_model_name_or_path, None);
    let TargetModules::Names(mut names) = cfg.target_modules.clone() else {
        panic!("a list")
    };
    names.sort();
    assert_eq!(
        names,
        [
            "down_proj",
            "gate_proj",
            "k_proj",
            "o_proj",
            "q_proj",
            "up_proj",
            "v_proj"
        ]
    );
    assert_eq!(cfg.scale(), 2.0);
    assert!(
        peft_json("llama-lora").len() > CLASSIC_KEYS.len(),
        "the fixture has PEFT 0.21's newer keys"
    );
}

#[test]
fn rslora_scales_by_alpha_over_sqrt_r() {
    let cfg = AdapterConfig::read(fixture_dir("llama-rslora")).unwrap();
    assert!(cfg.use_rslora);
    assert_eq!(cfg.scale(), 8.0 / 2.0);
}

#[test]
fn written_config_has_exactly_the_classic_keys_with_peft_values() {
    let cfg = AdapterConfig::read(fixture_dir("llama-lora")).unwrap();
    let ours: Map<String, Value> = serde_json::from_str(&cfg.to_json_string()).unwrap();
    let keys: Vec<&str> = ours.keys().map(String::as_str).collect();
    assert_eq!(keys, CLASSIC_KEYS, "exactly the classic keys, sorted like PEFT");
    let peft = peft_json("llama-lora");
    for key in CLASSIC_KEYS {
        if key == "target_modules" {
            assert_eq!(sorted(&ours[key]), sorted(&peft[key]));
        } else {
            assert_eq!(ours[key], peft[key], "key {key}");
        }
    }
    assert_eq!(AdapterConfig::from_json_str(&cfg.to_json_string()).unwrap(), cfg);

    let mut rs = AdapterConfig::new(64, 16.0, TargetModules::names(&["wqkv", "output"]));
    rs.use_rslora = true;
    rs.lora_dropout = 0.1;
    rs.base_model_name_or_path = Some("internlm/internlm2-chat-1_8b".into());
    let text = rs.to_json_string();
    assert!(text.contains("\"lora_alpha\": 16,") && text.ends_with("}\n"));
    let back: Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(back["use_rslora"], json!(true));
    assert_eq!(
        back["base_model_name_or_path"],
        json!("internlm/internlm2-chat-1_8b")
    );
    assert_eq!(AdapterConfig::from_json_str(&text).unwrap(), rs);
    let mut frac = rs.clone();
    frac.lora_alpha = 2.5;
    assert_eq!(
        AdapterConfig::from_json_str(&frac.to_json_string())
            .unwrap()
            .lora_alpha,
        2.5
    );
}

#[test]
fn dora_from_peft_is_refused_with_the_supported_list() {
    let err = AdapterConfig::read(fixture_dir("llama-dora")).unwrap_err();
    assert!(matches!(err, PeftError::Unsupported { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("DoRA") && msg.contains("ft supports plain LoRA"),
        "{msg}"
    );
}

#[test]
fn unsupported_settings_are_refused() {
    let base = peft_json("llama-lora");
    let cases: [(&str, Value, &str); 12] = [
        ("peft_type", json!("IA3"), "peft_type"),
        ("peft_type", json!("LOHA"), "peft_type"),
        ("rank_pattern", json!({"q_proj": 8}), "rank_pattern"),
        ("alpha_pattern", json!({"q_proj": 16}), "alpha_pattern"),
        ("layers_to_transform", json!([0]), "layers_to_transform"),
        ("layers_to_transform", json!(0), "layers_to_transform"),
        ("modules_to_save", json!(["lm_head"]), "modules_to_save"),
        ("bias", json!("lora_only"), "bias"),
        ("fan_in_fan_out", json!(true), "fan_in_fan_out"),
        ("exclude_modules", json!(["q_proj"]), "exclude_modules"),
        ("lora_bias", json!(true), "lora_bias"),
        ("use_qalora", json!(true), "QA-LoRA"),
    ];
    for (key, value, needle) in cases {
        let mut m = base.clone();
        m.insert(key.into(), value.clone());
        let err = AdapterConfig::from_json_str(&Value::Object(m).to_string()).unwrap_err();
        assert!(
            matches!(err, PeftError::Unsupported { .. }),
            "{key}={value}: {err}"
        );
        assert!(err.to_string().contains(needle), "{key}={value}: {err}");
    }
    // Empty / default values of those keys are fine.
    let mut m = base.clone();
    m.insert("layers_to_transform".into(), json!([]));
    m.insert("modules_to_save".into(), Value::Null);
    m.insert("some_future_key".into(), json!({"x": 1}));
    AdapterConfig::from_json_str(&Value::Object(m).to_string()).unwrap();
}

#[test]
fn malformed_configs_name_the_key() {
    let base = peft_json("llama-lora");
    for (key, value) in [
        ("r", json!(0)),
        ("r", json!("4")),
        ("lora_alpha", json!("8")),
        ("target_modules", Value::Null),
    ] {
        let mut m = base.clone();
        m.insert(key.into(), value);
        let err = AdapterConfig::from_json_str(&Value::Object(m).to_string()).unwrap_err();
        assert!(
            matches!(err, PeftError::InvalidConfig { key: k, .. } if k == key),
            "{key}: {err}"
        );
    }
    assert!(matches!(
        AdapterConfig::from_json_str("{not json"),
        Err(PeftError::Json { .. })
    ));
}

#[test]
fn a_missing_config_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let err = AdapterConfig::read(dir.path()).unwrap_err();
    assert!(matches!(err, PeftError::MissingConfig { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("adapter_config.json"),
        "{msg}"
    );
}

#[test]
fn ft_metadata_round_trips_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(FtAdapterMeta::read(dir.path()).unwrap(), None);
    let meta = FtAdapterMeta::new(
        Some("internlm2_chat".into()),
        Some("<|im_start|>user\nhi<|im_end|>\n".into()),
    );
    meta.write(dir.path()).unwrap();
    assert_eq!(FtAdapterMeta::read(dir.path()).unwrap(), Some(meta));
    assert!(dir.path().join("ft_adapter.json").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}
