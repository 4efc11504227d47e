//! PEFT's `target_modules`: which linear layers get a LoRA adapter.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::error::{PeftError, Result};

/// Head names XTuner's `find_all_linear_names` leaves out of "all-linear" (by last name component).
pub const ALL_LINEAR_EXCLUDED_HEADS: [&str; 2] = ["lm_head", "output_layer"];

/// The `target_modules` of an adapter config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    /// A list: a module is selected when its full name equals an entry or ends with `"." + entry`.
    Names(Vec<String>),
    /// A string: a regex that must match the whole module name (Python `re.fullmatch`; Rust `regex`
    /// syntax, so look-around and back-references are refused).
    Regex(String),
    /// `"all-linear"` (any case): every linear layer except the LM head, see [`resolve_targets`].
    AllLinear,
}

impl TargetModules {
    /// Builds a name list from string slices.
    pub fn names<S: AsRef<str>>(names: &[S]) -> Self {
        TargetModules::Names(names.iter().map(|s| s.as_ref().to_string()).collect())
    }

    /// Whether `module` (a full name such as `model.layers.0.self_attn.q_proj`) is selected.
    /// [`TargetModules::AllLinear`] selects every name but the excluded heads.
    pub fn matches(&self, module: &str) -> Result<bool> {
        Ok(match self {
            TargetModules::Names(names) => names.iter().any(|n| name_matches(n, module)),
            TargetModules::Regex(pattern) => compile(pattern)?.is_match(module),
            TargetModules::AllLinear => !ALL_LINEAR_EXCLUDED_HEADS.contains(&last_component(module)),
        })
    }

    /// The list to save in `adapter_config.json` for the `resolved` modules: their distinct last
    /// name components (what XTuner saves) when those select exactly `resolved` among `linear_names`,
    /// else the full names.
    pub fn for_saving(resolved: &[String], linear_names: &[String]) -> TargetModules {
        let mut suffixes: Vec<String> = Vec::new();
        for name in resolved {
            let last = last_component(name).to_string();
            if !suffixes.contains(&last) {
                suffixes.push(last);
            }
        }
        suffixes.sort();
        let by_suffix: Vec<&String> = linear_names
            .iter()
            .filter(|m| suffixes.iter().any(|s| name_matches(s, m)))
            .collect();
        if by_suffix.len() == resolved.len() && by_suffix.iter().all(|m| resolved.contains(m)) {
            TargetModules::Names(suffixes)
        } else {
            let mut full = resolved.to_vec();
            full.sort();
            TargetModules::Names(full)
        }
    }
}

impl std::fmt::Display for TargetModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetModules::Names(n) => write!(f, "{n:?}"),
            TargetModules::Regex(r) => write!(f, "regex {r:?}"),
            TargetModules::AllLinear => f.write_str("\"all-linear\""),
        }
    }
}

impl Serialize for TargetModules {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            TargetModules::Names(names) => names.serialize(s),
            TargetModules::Regex(pattern) => pattern.serialize(s),
            TargetModules::AllLinear => "all-linear".serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TargetModules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) if s.eq_ignore_ascii_case("all-linear") => Ok(TargetModules::AllLinear),
            Value::String(s) => Ok(TargetModules::Regex(s)),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(D::Error::custom(format!(
                        "target_modules entries must be strings, found {other}"
                    ))),
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(TargetModules::Names),
            other => Err(D::Error::custom(format!(
                "target_modules must be a list or a regex string, found {other}"
            ))),
        }
    }
}

/// The full names among `linear_names` (in their order) that `spec` selects, by PEFT's rule:
/// a list entry selects a module whose full name equals it or ends with `"." + entry`; a string is a
/// regex that must match the full name.
///
/// `"all-linear"` follows XTuner's `find_all_linear_names`, not PEFT: it takes every linear layer
/// except those whose last name component is `lm_head` or `output_layer`
/// ([`ALL_LINEAR_EXCLUDED_HEADS`]). So `lm_head_name` is left out for Llama, Qwen2 and Mistral
/// (`lm_head`), but **InternLM2's head, named `output`, is adapted**, exactly as XTuner does (its
/// InternLM2 adapters carry `base_model.model.output.lora_A/B`), whereas PEFT's own "all-linear"
/// would skip it. `lm_head_name` is excluded too when its last component is one of those names.
///
/// Errors: a list entry, regex or all-linear that selects nothing is an error naming it and listing
/// the model's linear layers by distinct last component (`q_proj, k_proj, …, lm_head`).
///
/// ```
/// use ft_io::peft::{TargetModules, resolve_targets};
/// let names: Vec<String> = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "lm_head"]
///     .map(String::from).to_vec();
/// let picked = resolve_targets(&TargetModules::names(&["q_proj"]), &names, "lm_head").unwrap();
/// assert_eq!(picked, ["model.layers.0.self_attn.q_proj"]);
/// assert_eq!(resolve_targets(&TargetModules::AllLinear, &names, "lm_head").unwrap().len(), 2);
/// assert!(resolve_targets(&TargetModules::names(&["wqkv"]), &names, "lm_head").is_err());
/// ```
pub fn resolve_targets(
    spec: &TargetModules,
    linear_names: &[String],
    lm_head_name: &str,
) -> Result<Vec<String>> {
    let no_match = |target: String| PeftError::NoMatch {
        target,
        available: short_names(linear_names),
    };
    match spec {
        TargetModules::Names(entries) => {
            if let Some(unmatched) = entries
                .iter()
                .find(|e| !linear_names.iter().any(|m| name_matches(e, m)))
            {
                return Err(no_match(unmatched.clone()));
            }
            Ok(linear_names
                .iter()
                .filter(|m| entries.iter().any(|e| name_matches(e, m)))
                .cloned()
                .collect())
        }
        TargetModules::Regex(pattern) => {
            let re = compile(pattern)?;
            let picked: Vec<String> = linear_names.iter().filter(|m| re.is_match(m)).cloned().collect();
            if picked.is_empty() {
                return Err(no_match(pattern.clone()));
            }
            Ok(picked)
        }
        TargetModules::AllLinear => {
            let head_excluded = ALL_LINEAR_EXCLUDED_HEADS.contains(&last_component(lm_head_name));
            let picked: Vec<String> = linear_names
                .iter()
                .filter(|m| !ALL_LINEAR_EXCLUDED_HEADS.contains(&last_component(m)))
                .filter(|m| !(head_excluded && m.as_str() == lm_head_name))
                .cloned()
                .collect();
            if picked.is_empty() {
                return Err(no_match("all-linear".into()));
            }
            Ok(picked)
        }
    }
}

/// PEFT's list rule: `module == entry` or `module` ends with `"." + entry`.
fn name_matches(entry: &str, module: &str) -> bool {
    module == entry
        || (module.len() > entry.len()
            && module.ends_with(entry)
            && module.as_bytes()[module.len() - entry.len() - 1] == b'.')
}

fn last_component(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn compile(pattern: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| PeftError::Regex {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

/// Distinct last components of `names`, in first-seen order.
fn short_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let last = last_component(n);
        if !out.iter().any(|o| o == last) {
            out.push(last.to_string());
        }
    }
    out
}

/// A vision-tower layer's name without the prefix its container adds (`vision_model.`,
/// `vision_tower.`, `base_model.model.`, …): the part from `encoder.layers.` on. CLIP adapters
/// name their layers with whatever prefix the tower had where they were made.
pub fn encoder_layer_name(name: &str) -> Option<&str> {
    name.find("encoder.layers.").map(|at| &name[at..])
}
