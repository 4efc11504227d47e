//! Fixture loading shared by the NF4 tests (fixtures/nf4, written by fixtures/gen_nf4.py).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use safetensors::SafeTensors;

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/nf4")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(name: &str) -> Self {
        Self {
            bytes: fixture_bytes(name),
        }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("fixture is valid safetensors")
    }

    pub fn has(&self, key: &str) -> bool {
        self.tensors().names().contains(&key)
    }

    pub fn shape(&self, key: &str) -> Vec<usize> {
        self.tensors()
            .tensor(key)
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .shape()
            .to_vec()
    }

    pub fn u8(&self, key: &str) -> Vec<u8> {
        self.tensors()
            .tensor(key)
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .data()
            .to_vec()
    }

    pub fn f32(&self, key: &str) -> Vec<f32> {
        self.u8(key)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

/// Bit-for-bit equality of f32 slices, reporting the first difference.
pub fn assert_bits_eq(what: &str, found: &[f32], expected: &[f32]) {
    assert_eq!(found.len(), expected.len(), "{what}: length");
    if let Some(i) = found
        .iter()
        .zip(expected)
        .position(|(f, e)| f.to_bits() != e.to_bits())
    {
        panic!(
            "{what}[{i}]: found {:e} ({:#010x}), expected {:e} ({:#010x})",
            found[i],
            found[i].to_bits(),
            expected[i],
            expected[i].to_bits()
        );
    }
}
