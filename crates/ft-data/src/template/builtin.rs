//! XTuner v0.1.17's prompt templates (`xtuner/utils/templates.py`), strings byte for byte.

use super::PromptTemplate;

const LLAMA2_SYSTEM: &str = "[INST] <<SYS>>\n You are a helpful, respectful and honest assistant. \
Always answer as helpfully as possible, while being safe. Your answers should not include any \
harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure that your \
responses are socially unbiased and positive in nature.\n{system}\n<</SYS>>\n [/INST] ";

const VICUNA_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the user's questions. {system}\n ";

const CHATML_SYSTEM: &str = "<|im_start|>system\n{system}<|im_end|>\n";
const CHATML_INSTRUCTION: &str = "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n";

fn t(
    name: &str,
    system: &str,
    instruction: &str,
    suffix: &str,
    suffix_as_eos: bool,
    sep: &str,
    stop_words: &[&str],
) -> PromptTemplate {
    PromptTemplate {
        name: name.to_owned(),
        system: system.to_owned(),
        instruction: instruction.to_owned(),
        suffix: suffix.to_owned(),
        suffix_as_eos,
        sep: sep.to_owned(),
        stop_words: stop_words.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Every built-in template, in the order `ft templates` lists them.
pub fn builtin_templates() -> Vec<PromptTemplate> {
    vec![
        t(
            "default",
            "<|System|>:{system}\n",
            "<|User|>:{input}\n<|Bot|>:",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "zephyr",
            "<|system|>\n{system}\n",
            "<|user|>\n{input}\n<|assistant|>\n",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "internlm_chat",
            "<|System|>:{system}\n",
            "<|User|>:{input}<eoh>\n<|Bot|>:",
            "<eoa>",
            true,
            "\n",
            &["<eoa>"],
        ),
        t(
            "internlm2_chat",
            CHATML_SYSTEM,
            CHATML_INSTRUCTION,
            "<|im_end|>",
            true,
            "\n",
            &["<|im_end|>"],
        ),
        t(
            "moss_sft",
            "{system}\n",
            "<|Human|>: {input}<eoh>\n",
            "",
            false,
            "\n",
            &["<eoc>", "<eom>"],
        ),
        t(
            "llama2_chat",
            LLAMA2_SYSTEM,
            "[INST] {input} [/INST]",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "code_llama_chat",
            "{system}\n",
            "[INST] {input} [/INST]",
            "",
            false,
            "",
            &[],
        ),
        t(
            "chatglm2",
            "{system}\n",
            "[Round {round}]\n\n问：{input}\n\n答：",
            "",
            false,
            "\n\n",
            &[],
        ),
        t(
            "chatglm3",
            "<|system|>\n{system}",
            "<|user|>\n{input}<|assistant|>\n",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "qwen_chat",
            CHATML_SYSTEM,
            CHATML_INSTRUCTION,
            "<|im_end|>",
            true,
            "\n",
            &["<|im_end|>", "<|endoftext|>"],
        ),
        t(
            "baichuan_chat",
            "{system}\n",
            "<reserved_102>{input}<reserved_103>",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "baichuan2_chat",
            "{system}\n",
            "<reserved_106>{input}<reserved_107>",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "vicuna",
            VICUNA_SYSTEM,
            "USER: {input} ASSISTANT:",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "wizardlm",
            VICUNA_SYSTEM,
            "USER: {input} ASSISTANT:",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "mistral",
            "[INST] {system} [/INST]\n",
            "[INST] {input} [/INST]",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "mixtral",
            "[INST] {system} [/INST]\n",
            "[INST] {input} [/INST]",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "deepseek_moe",
            "[INST] {system} [/INST]\n",
            "[INST] {input} [/INST]",
            "",
            false,
            "\n",
            &[],
        ),
        t(
            "gemma",
            "<start_of_turn>system\n{system}<end_of_turn>\n",
            "<start_of_turn>user\n{input}<end_of_turn>\n<start_of_turn>model\n",
            "<end_of_turn>",
            false,
            "\n",
            &["<end_of_turn>"],
        ),
        t(
            "llama3_chat",
            "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
            "<|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            "<|eot_id|>",
            true,
            "",
            &["<|eot_id|>"],
        ),
        t(
            "phi3_chat",
            "<|system|>\n{system}<|end|>\n",
            "<|user|>\n{input}<|end|>\n<|assistant|>\n",
            "<|end|>",
            true,
            "\n",
            &["<|end|>"],
        ),
        t(
            "minicpm3",
            CHATML_SYSTEM,
            CHATML_INSTRUCTION,
            "<|im_end|>",
            true,
            "\n",
            &["<|im_end|>", "<|endoftext|>"],
        ),
    ]
}
