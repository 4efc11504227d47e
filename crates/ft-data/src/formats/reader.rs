//! JSON-array and JSON-Lines files → JSON values tagged with the line they start on.

use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, Result};

/// A JSON record and the 1-based line where it starts.
pub type LinedValue = (Value, usize);

/// What reading a file gave: the records, and the bad lines skipped (when allowed).
#[derive(Debug, Default)]
pub struct RawRecords {
    /// Parsed records with their lines.
    pub records: Vec<LinedValue>,
    /// Errors skipped because `skip_bad_records` was on.
    pub skipped: Vec<DataError>,
}

/// Reads a `.json` file (an array of objects, or one object) or a JSON-Lines file.
/// A malformed line is an error naming file and line, unless `skip_bad_records`.
pub fn read_records(path: &Path, skip_bad_records: bool) -> Result<RawRecords> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        read_array(path, &text)
    } else {
        read_lines(path, &text, skip_bad_records)
    }
}

fn read_array(path: &Path, text: &str) -> Result<RawRecords> {
    let values: Vec<Value> = serde_json::from_str(text).map_err(|e| DataError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let lines = element_start_lines(text);
    let records = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = lines.get(i).copied().unwrap_or(1);
            (v, line)
        })
        .collect();
    Ok(RawRecords {
        records,
        skipped: Vec::new(),
    })
}

fn read_lines(path: &Path, text: &str, skip_bad_records: bool) -> Result<RawRecords> {
    let mut out = RawRecords::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => out.records.push((v, line_no)),
            Err(e) => {
                let err = DataError::Json {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: e.to_string(),
                };
                if skip_bad_records {
                    out.skipped.push(err);
                } else {
                    return Err(err);
                }
            }
        }
    }
    Ok(out)
}

/// The 1-based line on which each top-level element of a JSON array starts.
fn element_start_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut line, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    let mut expecting_element = false;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if depth == 1 && expecting_element && !c.is_whitespace() && c != ',' && c != ']' {
            lines.push(line);
            expecting_element = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expecting_element = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting_element = true,
            _ => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_elements_know_their_lines() {
        let text = "[\n  {\"a\": \"x,{\"},\n\n  {\"b\": [1, 2]}, 3\n]";
        assert_eq!(element_start_lines(text), vec![2, 4, 4]);
    }

    #[test]
    fn bad_jsonl_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, "{\"text\": \"a\"}\n{oops\n{\"text\": \"b\"}\n").unwrap();
        let err = read_records(&path, false).unwrap_err().to_string();
        assert!(err.contains("d.jsonl:2"), "{err}");
        let ok = read_records(&path, true).unwrap();
        assert_eq!(ok.records.len(), 2);
        assert_eq!(ok.records[1].1, 3);
        assert_eq!(ok.skipped.len(), 1);
    }
}
