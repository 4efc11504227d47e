//! `target_modules` matching against what PEFT 0.21 actually wrapped (fixtures/peft/matching.json).

use ft_io::peft::{PeftError, TargetModules, resolve_targets};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/peft/matching.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn internlm2_names() -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..2 {
        for m in [
            "attention.wqkv",
            "attention.wo",
            "feed_forward.w1",
            "feed_forward.w3",
            "feed_forward.w2",
        ] {
            names.push(format!("model.layers.{i}.{m}"));
        }
    }
    names.push("output".into());
    names
}

#[test]
fn resolution_matches_the_modules_peft_wrapped() {
    let fx = fixture();
    let linear = strings(&fx["linear_names"]);
    let head = fx["lm_head_name"].as_str().unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let spec: TargetModules = serde_json::from_value(case["spec"].clone()).unwrap();
        let wrapped = strings(&case["wrapped"]);
        assert!(!wrapped.is_empty());
        let ours = resolve_targets(&spec, &linear, head).unwrap();
        assert_eq!(ours, wrapped, "spec {}", case["spec"]);
        for name in &linear {
            assert_eq!(
                spec.matches(name).unwrap(),
                wrapped.contains(name),
                "{spec} on {name}"
            );
        }
        // What PEFT saved must select the same modules again.
        let saved: TargetModules = serde_json::from_value(case["saved_target_modules"].clone()).unwrap();
        assert_eq!(resolve_targets(&saved, &linear, head).unwrap(), wrapped);
    }
}

#[test]
fn all_linear_keeps_internlm2_output_head_like_xtuner() {
    let names = internlm2_names();
    let picked = resolve_targets(&TargetModules::AllLinear, &names, "output").unwrap();
    assert_eq!(picked, names, "XTuner adapts InternLM2's `output` head");
    let saved = TargetModules::for_saving(&picked, &names);
    assert_eq!(
        saved,
        TargetModules::names(&["output", "w1", "w2", "w3", "wo", "wqkv"])
    );

    let mut llama = names.clone();
    llama.pop();
    llama.push("lm_head".into());
    llama.push("model.vision.output_layer".into());
    let picked = resolve_targets(&TargetModules::AllLinear, &llama, "lm_head").unwrap();
    assert_eq!(picked.len(), 10, "lm_head and output_layer are left out");
    assert!(picked.iter().all(|n| n.starts_with("model.layers.")));
}

#[test]
fn for_saving_falls_back_to_full_names_when_suffixes_over_select() {
    let fx = fixture();
    let linear = strings(&fx["linear_names"]);
    let only_layer1 = vec!["model.layers.1.mlp.up_proj".to_string()];
    let saved = TargetModules::for_saving(&only_layer1, &linear);
    assert_eq!(saved, TargetModules::Names(only_layer1.clone()));
    let all_q: Vec<String> = linear.iter().filter(|n| n.ends_with("q_proj")).cloned().collect();
    assert_eq!(
        TargetModules::for_saving(&all_q, &linear),
        TargetModules::names(&["q_proj"])
    );
}

#[test]
fn an_entry_matching_nothing_lists_the_models_short_names() {
    let fx = fixture();
    let linear = strings(&fx["linear_names"]);
    let err = resolve_targets(&TargetModules::names(&["q_proj", "wqkv"]), &linear, "lm_head").unwrap_err();
    match &err {
        PeftError::NoMatch { target, available } => {
            assert_eq!(target, "wqkv");
            assert_eq!(
                available,
                &[
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                    "lm_head"
                ]
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("wqkv") && err.to_string().contains("q_proj, k_proj"));
    // A suffix must end at a `.` boundary: `proj` matches nothing.
    assert!(resolve_targets(&TargetModules::names(&["proj"]), &linear, "lm_head").is_err());
    // A regex must match the whole name.
    assert!(resolve_targets(&TargetModules::Regex("q_proj".into()), &linear, "lm_head").is_err());
    let bad = resolve_targets(&TargetModules::Regex("(?=q).*".into()), &linear, "lm_head").unwrap_err();
    assert!(matches!(bad, PeftError::Regex { .. }), "{bad}");
    let empty = resolve_targets(&TargetModules::AllLinear, &["lm_head".to_string()], "lm_head").unwrap_err();
    assert!(matches!(empty, PeftError::NoMatch { .. }));
}

#[test]
fn target_modules_json_forms() {
    let list: TargetModules = serde_json::from_str(r#"["q_proj","v_proj"]"#).unwrap();
    assert_eq!(list, TargetModules::names(&["q_proj", "v_proj"]));
    assert_eq!(
        serde_json::from_str::<TargetModules>(r#""All-Linear""#).unwrap(),
        TargetModules::AllLinear
    );
    assert_eq!(
        serde_json::to_string(&TargetModules::AllLinear).unwrap(),
        r#""all-linear""#
    );
    assert_eq!(
        serde_json::from_str::<TargetModules>(r#"".*q""#).unwrap(),
        TargetModules::Regex(".*q".into())
    );
    assert!(serde_json::from_str::<TargetModules>("[1]").is_err());
    assert!(serde_json::from_str::<TargetModules>("3").is_err());
}
