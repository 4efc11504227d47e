//! What the ft-train suites share: fixture paths and reading golden tensors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

/// `fixtures/` of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// An F32 tensor of a safetensors file, flat.
pub fn f32s(st: &SafeTensors, key: &str) -> Vec<f32> {
    st.tensor(key)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
