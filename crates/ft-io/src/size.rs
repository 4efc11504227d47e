//! Shard-size strings, parsed as transformers' `convert_file_size_to_int` does.

use crate::error::{IoError, Result};

/// Parses `"2GB"`, `"500MB"`, `"20KB"` (decimal: ×10⁹, ×10⁶, ×10³), `"5GiB"`, `"10MiB"`, `"3KiB"`
/// (binary), case-insensitively, like transformers. As there, a unit ending in a lower-case `b`
/// (`"8Gb"`) means bits and the result is divided by 8. A plain integer is a byte count (transformers
/// only accepts that as an `int`, not a string).
///
/// ```
/// use ft_io::parse_size;
/// assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
/// assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
/// ```
pub fn parse_size(input: &str) -> Result<u64> {
    let invalid = || IoError::InvalidSize {
        input: input.to_string(),
    };
    let s = input.trim();
    let upper = s.to_ascii_uppercase();
    let number = |unit_len: usize| -> Result<u64> {
        s[..s.len() - unit_len]
            .trim()
            .parse::<u64>()
            .map_err(|_| invalid())
    };
    let binary = [("GIB", 1u64 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10)];
    for (unit, factor) in binary {
        if upper.ends_with(unit) {
            return number(3)?.checked_mul(factor).ok_or_else(invalid);
        }
    }
    let decimal = [("GB", 1_000_000_000u64), ("MB", 1_000_000), ("KB", 1_000)];
    for (unit, factor) in decimal {
        if upper.ends_with(unit) {
            let bytes = number(2)?.checked_mul(factor).ok_or_else(invalid)?;
            return Ok(if s.ends_with('b') { bytes / 8 } else { bytes });
        }
    }
    s.parse::<u64>().map_err(|_| invalid())
}
