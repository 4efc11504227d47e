//! Shard-size strings against transformers 5.24's `convert_file_size_to_int`.

use ft_io::{IoError, parse_size};

#[test]
fn sizes_match_transformers() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/peft/size_strings.json"
    ))
    .unwrap();
    let golden: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(golden.len() >= 10);
    for (input, bytes) in golden {
        assert_eq!(parse_size(&input).unwrap(), bytes.as_u64().unwrap(), "{input}");
    }
}

#[test]
fn plain_numbers_are_bytes_and_garbage_is_refused() {
    assert_eq!(parse_size("1234").unwrap(), 1234);
    assert_eq!(parse_size(" 2GB ").unwrap(), 2_000_000_000);
    for bad in [
        "",
        "GB",
        "2.5GB",
        "-1MB",
        "2TB",
        "two GB",
        "99999999999999999999GB",
    ] {
        let err = parse_size(bad).unwrap_err();
        assert!(matches!(err, IoError::InvalidSize { .. }), "{bad}: {err}");
        assert!(
            err.to_string().contains("\"2GB\""),
            "the message shows the accepted forms"
        );
    }
}
