//! Streaming reads of dataset files in constant memory: JSON Lines line by line, JSON arrays
//! element by element, `.gz` / `.zst` decompressed on the fly. The raw bytes are counted (for
//! progress) and hashed (SHA-256, for the cache manifest) as they are read.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// One raw record of a file: an unparsed JSON line, or an already parsed array element.
#[derive(Debug)]
pub enum RawItem {
    /// A non-blank JSON Lines line (parsed later, in parallel).
    Line(Vec<u8>),
    /// An element of a top-level JSON array.
    Value(Value),
}

/// Raw bytes read so far and their running hash.
#[derive(Debug, Default)]
struct TapState {
    bytes: u64,
    hasher: Sha256,
}

/// A file reader that counts and hashes what passes through.
struct Tap {
    file: File,
    state: Rc<RefCell<TapState>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        let mut state = self.state.borrow_mut();
        state.bytes += n as u64;
        state.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What streaming a file found out about its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigest {
    /// File size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The SHA-256 of a whole file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<SourceDigest> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(|e| DataError::io(path, e))?;
    Ok(SourceDigest {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams the records of `path` (JSON array or JSON Lines, `.gz` / `.zst` by extension) to
/// `each(item, line, raw_bytes_read)`, where `line` is the 1-based line the record starts on
/// (of the decompressed text). Returns the file's size and hash.
///
/// A JSON syntax error inside an array stops the file (the array cannot be resynchronised); in
/// JSON Lines, each line is handed over unparsed, so a bad line is the caller's to skip.
pub fn stream_records(
    path: &Path,
    mut each: impl FnMut(RawItem, usize, u64) -> Result<()>,
) -> Result<SourceDigest> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let state = Rc::new(RefCell::new(TapState::default()));
    let tap = Tap {
        file,
        state: state.clone(),
    };
    let name = path.to_string_lossy();
    let decoded: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            tap,
        )))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(tap).map_err(|e| DataError::io(path, e))?)
    } else {
        Box::new(tap)
    };
    let mut reader = BufReader::with_capacity(1 << 20, decoded);
    let bytes_read = || state.borrow().bytes;
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    match first {
        Some(b'[') => stream_array(path, &mut reader, &mut each, &bytes_read)?,
        Some(_) => stream_lines(path, &mut reader, &mut each, &bytes_read)?,
        None => {}
    }
    // Drain what the decoders left (trailers, trailing bytes) so the hash covers the file.
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| DataError::io(path, e))?;
    drop(reader);
    let TapState { bytes, mut hasher } = Rc::try_unwrap(state)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
    let mut rest = File::open(path).map_err(|e| DataError::io(path, e))?;
    rest.seek(SeekFrom::Start(bytes))
        .map_err(|e| DataError::io(path, e))?;
    let tail = std::io::copy(&mut rest, &mut hasher).map_err(|e| DataError::io(path, e))?;
    Ok(SourceDigest {
        size: bytes + tail,
        sha256: hex(&hasher.finalize()),
    })
}

fn stream_lines(
    path: &Path,
    reader: &mut impl BufRead,
    each: &mut impl FnMut(RawItem, usize, u64) -> Result<()>,
    bytes_read: &impl Fn() -> u64,
) -> Result<()> {
    let mut line_no = 0usize;
    loop {
        let mut buf = Vec::new();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        each(RawItem::Line(buf), line_no, bytes_read())?;
    }
}

/// Line bookkeeping for array elements: serde_json reads its input byte by byte, so the first
/// byte of an element that passes through here tells the line it starts on.
#[derive(Debug, Default)]
struct Lines {
    line: usize,
    armed: bool,
    start: usize,
}

struct LineCounter<'a, R> {
    inner: &'a mut R,
    lines: Rc<RefCell<Lines>>,
}

impl<R: Read> Read for LineCounter<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut lines = self.lines.borrow_mut();
        for &b in &buf[..n] {
            if lines.armed && !b.is_ascii_whitespace() && b != b',' && b != b'[' {
                lines.start = lines.line;
                lines.armed = false;
            }
            if b == b'\n' {
                lines.line += 1;
            }
        }
        Ok(n)
    }
}

struct Elements<'a, F> {
    each: &'a mut F,
    lines: Rc<RefCell<Lines>>,
    bytes_read: &'a dyn Fn() -> u64,
    failure: &'a mut Option<DataError>,
}

impl<'de, F: FnMut(RawItem, usize, u64) -> Result<()>> Visitor<'de> for Elements<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        loop {
            self.lines.borrow_mut().armed = true;
            let Some(value) = seq.next_element::<Value>()? else {
                return Ok(());
            };
            let line = self.lines.borrow().start;
            if let Err(e) = (self.each)(RawItem::Value(value), line, (self.bytes_read)()) {
                *self.failure = Some(e);
                return Err(A::Error::custom("stopped"));
            }
        }
    }
}

impl<'de, F: FnMut(RawItem, usize, u64) -> Result<()>> DeserializeSeed<'de> for Elements<'_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

fn stream_array<R: BufRead>(
    path: &Path,
    reader: &mut R,
    each: &mut impl FnMut(RawItem, usize, u64) -> Result<()>,
    bytes_read: &dyn Fn() -> u64,
) -> Result<()> {
    let lines = Rc::new(RefCell::new(Lines {
        line: 1,
        ..Lines::default()
    }));
    let mut counter = LineCounter {
        inner: reader,
        lines: lines.clone(),
    };
    let mut failure = None;
    let json_error = |e: serde_json::Error| DataError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    };
    let mut de = serde_json::Deserializer::from_reader(&mut counter);
    let seed = Elements {
        each,
        lines,
        bytes_read,
        failure: &mut failure,
    };
    let parsed = seed.deserialize(&mut de);
    if let Some(e) = failure {
        return Err(e);
    }
    parsed.map_err(json_error)?;
    de.end().map_err(json_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path) -> Result<Vec<(String, usize)>> {
        let mut out = Vec::new();
        stream_records(path, |item, line, _| {
            let text = match item {
                RawItem::Line(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
                RawItem::Value(v) => v.to_string(),
            };
            out.push((text, line));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn array_elements_stream_with_their_start_lines_and_hash_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let text = "[\n  {\"a\": \"x,{\"},\n\n  {\"b\": [1, 2]}, 3\n]\n";
        std::fs::write(&path, text).unwrap();
        let got = collect(&path).unwrap();
        let lines: Vec<usize> = got.iter().map(|(_, l)| *l).collect();
        assert_eq!(lines, vec![2, 4, 4]);
        assert_eq!(got[1].0, "{\"b\":[1,2]}");
        let digest = stream_records(&path, |_, _, _| Ok(())).unwrap();
        assert_eq!(digest, sha256_file(&path).unwrap());
        assert_eq!(digest.size, text.len() as u64);
    }

    #[test]
    fn broken_array_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, "[\n{\"a\": 1},\n{\"a\": }\n]").unwrap();
        let err = collect(&path).unwrap_err().to_string();
        assert!(err.contains("a.json:3"), "{err}");
    }

    #[test]
    fn compressed_lines_decode_and_hash_the_compressed_bytes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n";
        let gz = dir.path().join("d.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let zst = dir.path().join("d.jsonl.zst");
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        for path in [&gz, &zst] {
            let got = collect(path).unwrap();
            assert_eq!(
                got,
                vec![
                    ("{\"text\": \"a\"}".to_owned(), 1),
                    ("{\"text\": \"b\"}".to_owned(), 3)
                ]
            );
            let digest = stream_records(path, |_, _, _| Ok(())).unwrap();
            assert_eq!(digest, sha256_file(path).unwrap());
        }
    }
}
