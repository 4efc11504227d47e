//! TFRecord framing: `u64` length, masked CRC-32C of the length, the data, masked CRC-32C of the
//! data (all little-endian). Every CRC is checked on reading.

use std::io::Write;
use std::path::Path;

use ft_io::IoError;
use prost::Message;

use crate::error::{MetricsError, Result};
use crate::tensorboard::proto::Event;

/// TensorBoard's masked CRC-32C (Castagnoli) of `bytes`.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Frames `data` as one record.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let length = (data.len() as u64).to_le_bytes();
    out.write_all(&length)?;
    out.write_all(&masked_crc32c(&length).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// The records of a file's bytes, each CRC-checked; `path` names the file in errors.
pub fn read_records(bytes: &[u8], path: &Path) -> Result<Vec<Vec<u8>>> {
    let damaged = |offset: usize, message: String| MetricsError::Event {
        path: path.to_path_buf(),
        offset: offset as u64,
        message,
    };
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + 12)
            .ok_or_else(|| damaged(at, "truncated record header".into()))?;
        let length_bytes = &header[..8];
        let stored = u32::from_le_bytes(header[8..12].try_into().expect("invariant: 4 bytes"));
        if stored != masked_crc32c(length_bytes) {
            return Err(damaged(at, "length CRC mismatch".into()));
        }
        let length = u64::from_le_bytes(length_bytes.try_into().expect("invariant: 8 bytes"));
        let start = at + 12;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e.checked_add(4).is_some_and(|e4| e4 <= bytes.len()))
            .ok_or_else(|| damaged(at, format!("record of {length} bytes runs past the end")))?;
        let data = &bytes[start..end];
        let stored = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("invariant: 4 bytes"));
        if stored != masked_crc32c(data) {
            return Err(damaged(start, "data CRC mismatch".into()));
        }
        records.push(data.to_vec());
        at = end + 4;
    }
    Ok(records)
}

/// The events of an event file.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(IoError::at("reading", path))?;
    let mut next = 0u64;
    read_records(&bytes, path)?
        .into_iter()
        .map(|data| {
            let offset = next;
            next += 16 + data.len() as u64;
            Event::decode(data.as_slice()).map_err(|e| MetricsError::Event {
                path: path.to_path_buf(),
                offset,
                message: format!("not an Event: {e}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_castagnoli_check_value() {
        // The standard check value of CRC-32C over "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn records_round_trip_and_any_flipped_byte_is_caught() {
        let mut bytes = Vec::new();
        write_record(&mut bytes, b"hello").unwrap();
        write_record(&mut bytes, b"").unwrap();
        let path = Path::new("x.tfevents");
        assert_eq!(
            read_records(&bytes, path).unwrap(),
            vec![b"hello".to_vec(), Vec::new()]
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                read_records(&bad, path).is_err(),
                "flipped byte {i} went unnoticed"
            );
        }
        let err = read_records(&bytes[..bytes.len() - 1], path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.tfevents: byte"), "{err}");
    }
}
