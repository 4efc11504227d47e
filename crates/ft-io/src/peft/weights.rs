//! `adapter_model.safetensors`: the LoRA `A`/`B` matrices of every adapted module.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::config::AdapterConfig;
use super::error::{PeftError, Result, io_err};

/// File name of the PEFT weights.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The prefix PEFT puts before module names in saved keys.
pub const PEFT_KEY_PREFIX: &str = "base_model.model.";

/// A row-major f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraMatrix {
    /// `[rows, cols]`.
    pub shape: [usize; 2],
    /// `rows × cols` values, row-major.
    pub data: Vec<f32>,
}

/// One adapted module's pair, in PEFT's layout.
///
/// # Shapes
/// - `a` (`lora_A.weight`): `[r, in]`
/// - `b` (`lora_B.weight`): `[out, r]`; the delta `B @ A` is `[out, in]` like the base weight.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub a: LoraMatrix,
    pub b: LoraMatrix,
}

impl LoraPair {
    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a.shape[0]
    }
    /// Input features of the adapted linear.
    pub fn in_features(&self) -> usize {
        self.a.shape[1]
    }
    /// Output features of the adapted linear.
    pub fn out_features(&self) -> usize {
        self.b.shape[0]
    }
}

/// Element type for writing adapter tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterDtype {
    /// PEFT's default.
    #[default]
    F32,
    /// Round-to-nearest-even, as torch.
    BF16,
    /// IEEE half, as XTuner saves.
    F16,
}

/// All adapted modules of an adapter, by full module name (`model.layers.0.self_attn.q_proj`; the
/// `base_model.model.` prefix and any `.default` adapter name are removed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdapterWeights {
    pub modules: BTreeMap<String, LoraPair>,
}

impl AdapterWeights {
    /// Reads an `adapter_model.safetensors` (F32/F16/BF16 → f32). Checks that every tensor is a
    /// `lora_A`/`lora_B` weight, 2-D, finite, paired, and that `B`'s rank equals `A`'s. Keys
    /// `…lora_A.default.weight` (written by some tools) are accepted. Errors name the first bad
    /// tensor in key order.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(io_err("reading", path))?;
        Self::from_safetensors_bytes(&bytes, path)
    }

    /// Like [`AdapterWeights::read`] from bytes; `source` names the file in errors.
    pub fn from_safetensors_bytes(bytes: &[u8], source: &Path) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| PeftError::Safetensors {
            path: source.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut tensors = st.tensors();
        tensors.sort_by(|x, y| x.0.cmp(&y.0));
        let mut halves: BTreeMap<String, Halves> = BTreeMap::new();
        for (key, view) in &tensors {
            let (module, which) = parse_key(key).ok_or_else(|| PeftError::UnexpectedTensor {
                path: source.to_path_buf(),
                key: key.clone(),
            })?;
            let matrix = to_matrix(key, view)?;
            let slot = halves.entry(module.to_string()).or_default();
            let slot = if which == Half::A {
                &mut slot.a
            } else {
                &mut slot.b
            };
            if slot.is_some() {
                return Err(PeftError::DuplicateTensor {
                    path: source.to_path_buf(),
                    key: key.clone(),
                });
            }
            *slot = Some((key.clone(), matrix));
        }
        let mut modules = BTreeMap::new();
        for (module, Halves { a, b }) in halves {
            let missing = |missing| PeftError::MissingTensor {
                module: module.clone(),
                missing,
            };
            let (_, a) = a.ok_or_else(|| missing("lora_A"))?;
            let (b_key, b) = b.ok_or_else(|| missing("lora_B"))?;
            if b.shape[1] != a.shape[0] {
                return Err(PeftError::BadShape {
                    key: b_key,
                    found: b.shape.to_vec(),
                    expected: format!("[out, {}] (lora_A has rank {})", a.shape[0], a.shape[0]),
                });
            }
            modules.insert(module, LoraPair { a, b });
        }
        Ok(Self { modules })
    }

    /// Checks the weights against the config: every `lora_A` has rank `config.r` (no rank_pattern is
    /// supported) and every module is selected by `config.target_modules`.
    pub fn validate(&self, config: &AdapterConfig) -> Result<()> {
        for (module, pair) in &self.modules {
            if pair.rank() != config.r {
                return Err(PeftError::BadShape {
                    key: key_of(module, Half::A),
                    found: pair.a.shape.to_vec(),
                    expected: format!("[{}, in] (adapter_config.json has r = {})", config.r, config.r),
                });
            }
            if !config.target_modules.matches(module)? {
                return Err(PeftError::NotTargeted {
                    key: key_of(module, Half::A),
                    module: module.clone(),
                    targets: config.target_modules.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Checks the weights against a model's linear layers, given as `(full name, [out, in])`:
    /// every adapted module must exist with the same sizes.
    pub fn check_against_model(&self, linears: &[(String, [usize; 2])]) -> Result<()> {
        let by_name: HashMap<&str, [usize; 2]> = linears.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        for (module, pair) in &self.modules {
            let Some(&[out, inp]) = by_name.get(module.as_str()) else {
                return Err(PeftError::ModelMismatch {
                    key: key_of(module, Half::A),
                    message: format!("the model has no linear layer `{module}`"),
                });
            };
            if pair.in_features() != inp {
                return Err(PeftError::ModelMismatch {
                    key: key_of(module, Half::A),
                    message: format!(
                        "shape {:?} needs in = {inp} for `{module}` [out {out}, in {inp}]",
                        pair.a.shape
                    ),
                });
            }
            if pair.out_features() != out {
                return Err(PeftError::ModelMismatch {
                    key: key_of(module, Half::B),
                    message: format!(
                        "shape {:?} needs out = {out} for `{module}` [out {out}, in {inp}]",
                        pair.b.shape
                    ),
                });
            }
        }
        Ok(())
    }

    /// The safetensors bytes PEFT would write: keys `base_model.model.<module>.lora_{A,B}.weight`,
    /// metadata `{"format": "pt"}`, values cast to `dtype`.
    pub fn to_safetensors_bytes(&self, dtype: AdapterDtype) -> Vec<u8> {
        let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(self.modules.len() * 2);
        for (module, pair) in &self.modules {
            for (half, m) in [(Half::A, &pair.a), (Half::B, &pair.b)] {
                buffers.push((key_of(module, half), m.shape.to_vec(), encode(&m.data, dtype)));
            }
        }
        let st_dtype = match dtype {
            AdapterDtype::F32 => Dtype::F32,
            AdapterDtype::BF16 => Dtype::BF16,
            AdapterDtype::F16 => Dtype::F16,
        };
        let views: Vec<(String, TensorView<'_>)> = buffers
            .iter()
            .map(|(k, shape, bytes)| {
                let view =
                    TensorView::new(st_dtype, shape.clone(), bytes).expect("invariant: bytes match shape");
                (k.clone(), view)
            })
            .collect();
        let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
        safetensors::serialize(views, metadata).expect("invariant: valid tensors serialise")
    }

    /// Fails with [`PeftError::NotFinite`] naming the first tensor (in key order) holding a NaN or
    /// an infinity.
    pub fn check_finite(&self) -> Result<()> {
        for (module, pair) in &self.modules {
            for (half, m) in [(Half::A, &pair.a), (Half::B, &pair.b)] {
                if let Some((index, &value)) = m.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(PeftError::NotFinite {
                        key: key_of(module, half),
                        index,
                        value,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes `path` via a temporary file renamed into place; refuses non-finite values
    /// ([`AdapterWeights::check_finite`]).
    pub fn write(&self, path: impl AsRef<Path>, dtype: AdapterDtype) -> Result<()> {
        self.check_finite()?;
        super::write_atomically(path.as_ref(), &self.to_safetensors_bytes(dtype))
    }
}

/// A module's `lora_A` and `lora_B` as read so far, each with its key.
#[derive(Default)]
struct Halves {
    a: Option<(String, LoraMatrix)>,
    b: Option<(String, LoraMatrix)>,
}

/// Which half of a LoRA pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// `lora_A`, `[r, in]`.
    A,
    /// `lora_B`, `[out, r]`.
    B,
}

fn key_of(module: &str, half: Half) -> String {
    let ab = if half == Half::A { "lora_A" } else { "lora_B" };
    format!("{PEFT_KEY_PREFIX}{module}.{ab}.weight")
}

/// `base_model.model.<module>.lora_A[.default].weight` → (`<module>`, A).
fn parse_key(key: &str) -> Option<(&str, Half)> {
    let rest = key.strip_prefix(PEFT_KEY_PREFIX)?;
    let rest = rest.strip_suffix(".weight")?;
    let rest = rest.strip_suffix(".default").unwrap_or(rest);
    let (module, half) = if let Some(m) = rest.strip_suffix(".lora_A") {
        (m, Half::A)
    } else {
        (rest.strip_suffix(".lora_B")?, Half::B)
    };
    (!module.is_empty()).then_some((module, half))
}

fn to_matrix(key: &str, view: &TensorView<'_>) -> Result<LoraMatrix> {
    let shape = view.shape();
    let &[rows, cols] = shape else {
        let expected = if key.contains("lora_A") {
            "[r, in]"
        } else {
            "[out, r]"
        };
        return Err(PeftError::BadShape {
            key: key.to_string(),
            found: shape.to_vec(),
            expected: expected.into(),
        });
    };
    let bytes = view.data();
    let dtype = match view.dtype() {
        Dtype::F32 => crate::dtype::Dtype::F32,
        Dtype::F16 => crate::dtype::Dtype::F16,
        Dtype::BF16 => crate::dtype::Dtype::BF16,
        other => {
            return Err(PeftError::UnsupportedDtype {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    let data = crate::dtype::decode_to_f32(bytes, dtype).expect("invariant: a float dtype");
    if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(PeftError::NotFinite {
            key: key.to_string(),
            index,
            value,
        });
    }
    Ok(LoraMatrix {
        shape: [rows, cols],
        data,
    })
}

/// The torch-exact casts of [`crate::dtype`] (bf16 NaN → `0x7FC0`, like torch's scalar cast).
fn encode(values: &[f32], dtype: AdapterDtype) -> Vec<u8> {
    let dtype = match dtype {
        AdapterDtype::F32 => crate::dtype::Dtype::F32,
        AdapterDtype::BF16 => crate::dtype::Dtype::BF16,
        AdapterDtype::F16 => crate::dtype::Dtype::F16,
    };
    let mut out = Vec::new();
    crate::dtype::cast_f32_into(values, dtype, &mut out).expect("invariant: a float dtype");
    out
}
