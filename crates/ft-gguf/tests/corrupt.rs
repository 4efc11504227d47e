//! Truncated and corrupt files are errors that name the file, never panics.

use std::path::PathBuf;

use ft_gguf::{GgufError, GgufFile};

fn tiny_bytes() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf/tiny_llama.gguf");
    std::fs::read(path).expect("fixture")
}

#[test]
fn every_truncation_of_the_header_and_some_of_the_data_fail_cleanly() {
    let bytes = tiny_bytes();
    let data_offset = GgufFile::from_bytes("tiny", bytes.clone())
        .expect("whole file parses")
        .data_offset() as usize;
    let cuts = (0..data_offset)
        .chain((data_offset..bytes.len()).step_by(997))
        .chain([bytes.len() - 1]);
    for cut in cuts {
        let err =
            GgufFile::from_bytes("tiny.gguf", bytes[..cut].to_vec()).expect_err("truncated file must fail");
        let msg = err.to_string();
        assert!(msg.starts_with("tiny.gguf: "), "error names the file: {msg}");
        assert!(
            matches!(err, GgufError::Truncated { .. } | GgufError::BadMagic { .. }),
            "cut at {cut}: {msg}"
        );
    }
}

#[test]
fn truncated_file_on_disk_names_its_path() {
    let bytes = tiny_bytes();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut.gguf");
    std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("write");
    let msg = GgufFile::open(&path).expect_err("truncated").to_string();
    assert!(
        msg.contains("cut.gguf") && msg.contains("truncated") && msg.contains("output.weight"),
        "{msg}"
    );
    let missing = GgufFile::open(dir.path().join("absent.gguf")).expect_err("missing");
    assert!(matches!(missing, GgufError::Io { .. }));
}

fn patched(at: usize, new: &[u8]) -> Result<GgufFile, GgufError> {
    let mut bytes = tiny_bytes();
    bytes[at..at + new.len()].copy_from_slice(new);
    GgufFile::from_bytes("bad.gguf", bytes)
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[test]
fn corrupt_headers_are_reported() {
    assert!(matches!(patched(0, b"GGUX"), Err(GgufError::BadMagic { .. })));
    assert!(matches!(
        patched(4, &1u32.to_le_bytes()),
        Err(GgufError::UnsupportedVersion { version: 1, .. })
    ));
    assert!(matches!(
        patched(4, &3u32.to_be_bytes()),
        Err(GgufError::UnsupportedVersion { .. })
    ));
    // Absurd counts are caught before any allocation.
    assert!(matches!(
        patched(8, &u64::MAX.to_le_bytes()),
        Err(GgufError::Truncated { .. })
    ));
    assert!(matches!(
        patched(16, &(1u64 << 40).to_le_bytes()),
        Err(GgufError::Truncated { .. })
    ));

    let bytes = tiny_bytes();
    // `general.alignment`: key, then type u32 (4), then the value.
    let key = find(&bytes, b"general.alignment") + "general.alignment".len();
    let err = patched(key + 4, &48u32.to_le_bytes()).expect_err("not a power of two");
    assert!(err.to_string().contains("alignment"), "{err}");
    assert!(
        matches!(patched(key, &13u32.to_le_bytes()), Err(GgufError::Corrupt { .. })),
        "unknown value type"
    );

    // The last tensor info: name, n_dims, 2 dims, type, offset.
    let info = bytes
        .len()
        .min(find(&bytes[8000..], b"output.weight") + 8000 + "output.weight".len());
    assert!(
        matches!(patched(info, &7u32.to_le_bytes()), Err(GgufError::Corrupt { .. })),
        "too many dims"
    );
    assert!(
        matches!(
            patched(info + 20, &99u32.to_le_bytes()),
            Err(GgufError::Corrupt { .. })
        ),
        "unknown type"
    );
    assert!(
        matches!(
            patched(info + 24, &1u64.to_le_bytes()),
            Err(GgufError::Corrupt { .. })
        ),
        "misaligned"
    );
    assert!(
        matches!(
            patched(info + 24, &(1u64 << 60).to_le_bytes()),
            Err(GgufError::Truncated { .. })
        ),
        "past end"
    );
    assert!(
        matches!(
            patched(info + 4, &u64::MAX.to_le_bytes()),
            Err(GgufError::Corrupt { .. })
        ),
        "dims overflow or break the block size"
    );
}

#[test]
fn version_2_has_the_same_layout_and_opens() {
    let gguf = patched(4, &2u32.to_le_bytes()).expect("v2 opens");
    assert_eq!(gguf.version(), 2);
    assert_eq!(gguf.tensors().len(), 21);
}

#[test]
fn an_unknown_pre_tokenizer_is_an_error_naming_it() {
    let bytes = tiny_bytes();
    let at = find(&bytes, b"smollm");
    let file = patched(at, b"smolxx").unwrap();
    let err = file.tokenizer().expect_err("unknown pre-tokenizer").to_string();
    assert!(
        err.contains("bad.gguf") && err.contains("`smolxx`") && err.contains("tokenizer.ggml.pre"),
        "{err}"
    );
    // `mellum`, of llama.cpp's GPT-2 family, is known.
    assert!(patched(at, b"mellum").unwrap().tokenizer().is_ok());
}
