//! Row ids: the names that qrels files use for corpus records and queries.
//!
//! Without an ids file the ids are the row numbers ("0", "1", ...), looked up
//! arithmetically so a million-row corpus costs no hash map.

use std::hash::BuildHasher;
use std::path::Path;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxBuildHasher;

use crate::error::{Error, Result};

/// The ids of the rows of a matrix (corpus or queries): each row's name,
/// and the row of each name.
pub struct Ids(Repr);

enum Repr {
    /// Ids are the row numbers `0..n`.
    RowNumbers(usize),
    /// One id per row, from a file: the file's text once, each row's id as a
    /// span of it, and a table of rows found by their id. (A `String` per id
    /// and a map keyed by another copy took 0.38-0.6 ms to build for
    /// SciFact's 5183 ids, this 0.07-0.12 ms.)
    Named {
        text: String,
        spans: Vec<(u32, u32)>,
        rows: HashTable<u32>,
    },
}

fn hash(id: &str) -> u64 {
    FxBuildHasher.hash_one(id)
}

fn span<'a>(text: &'a str, spans: &[(u32, u32)], row: u32) -> &'a str {
    let (a, b) = spans[row as usize];
    &text[a as usize..b as usize]
}

impl Ids {
    /// The row numbers `0..n` as ids.
    pub fn rows(n: usize) -> Ids {
        Ids(Repr::RowNumbers(n))
    }

    /// One id per row, in row order; ids must be unique, non-empty and hold
    /// no line break. `what` names them in errors (e.g. `corpus_ids`), which
    /// give a duplicate or empty id's 1-based position as its `line`, as for
    /// an ids file.
    pub fn from_names<S: AsRef<str>>(
        names: impl IntoIterator<Item = S>,
        what: &str,
    ) -> Result<Ids> {
        let mut text = String::new();
        let mut n = 0;
        for name in names {
            let name = name.as_ref();
            if name.contains(['\n', '\r']) {
                return Err(Error::data_row(
                    what,
                    n,
                    format!("id {name:?} holds a line break"),
                ));
            }
            text.push_str(name);
            text.push('\n');
            n += 1;
        }
        // Positions are 1-based lines of the joined text: row + 1.
        Ids::parse(text, Path::new(what), n, Path::new(what))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::RowNumbers(n) => *n,
            Repr::Named { spans, .. } => spans.len(),
        }
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row that has id `id`.
    pub fn row(&self, id: &str) -> Option<u32> {
        match &self.0 {
            Repr::RowNumbers(n) => {
                // Only the canonical decimal form names a row: "07" is not "7".
                let r: usize = id.parse().ok()?;
                (r < *n && r.to_string() == id).then_some(r as u32)
            }
            Repr::Named { text, spans, rows } => rows
                .find(hash(id), |&r| span(text, spans, r) == id)
                .copied(),
        }
    }

    /// The id of `row`.
    pub fn name(&self, row: usize) -> String {
        match &self.0 {
            Repr::RowNumbers(_) => row.to_string(),
            Repr::Named { text, spans, .. } => span(text, spans, row as u32).to_string(),
        }
    }

    /// Parses an ids file: one id per line, `expected_rows` lines, no
    /// duplicates. Takes the file's text to keep (the ids are spans of it).
    pub fn parse(
        mut text: String,
        path: &Path,
        expected_rows: usize,
        matrix: &Path,
    ) -> Result<Ids> {
        // A byte-order mark (some Windows tools write one) is not part of the first id.
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        if text.len() > u32::MAX as usize {
            return Err(Error::data(
                path,
                "larger than 4 GiB; an ids file holds one id per line",
            ));
        }
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(expected_rows);
        let mut rows: HashTable<u32> = HashTable::with_capacity(expected_rows);
        for (i, line) in text.lines().enumerate() {
            let id = line.strip_suffix('\r').unwrap_or(line);
            if id.is_empty() {
                return Err(Error::data_line(
                    path,
                    i + 1,
                    "empty id; expected one non-empty id per line",
                ));
            }
            let start = id.as_ptr() as usize - text.as_ptr() as usize;
            let row = spans.len() as u32;
            match rows.entry(
                hash(id),
                |&r| span(&text, &spans, r) == id,
                |&r| hash(span(&text, &spans, r)),
            ) {
                Entry::Occupied(prev) => {
                    return Err(Error::data_line(
                        path,
                        i + 1,
                        format!(
                            "duplicate id {id:?} (first seen on line {}); ids must be unique",
                            prev.get() + 1
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
            spans.push((start as u32, (start + id.len()) as u32));
        }
        if spans.len() != expected_rows {
            return Err(Error::data(
                path,
                format!(
                    "has {} ids but {} has {} rows; expected one id per row",
                    spans.len(),
                    matrix.display(),
                    expected_rows
                ),
            ));
        }
        Ok(Ids(Repr::Named { text, spans, rows }))
    }

    /// Reads the ids of a matrix's rows from `path` (see [`Ids::parse`]), or
    /// uses the row numbers when there is no ids file. `expected_rows` is the
    /// row count of `matrix`, which is named in errors. The file may be gzip
    /// or zstd compressed; a `.jsonl` file (BEIR's `corpus.jsonl`,
    /// `queries.jsonl`) gives the `_id` of each line, in order.
    pub fn load(path: Option<&Path>, expected_rows: usize, matrix: &Path) -> Result<Ids> {
        match path {
            None => Ok(Ids(Repr::RowNumbers(expected_rows))),
            Some(p) => {
                let text = crate::data::text::read(p, "ids file")?;
                let text = if crate::data::text::inner_name(p).ends_with(".jsonl") {
                    jsonl_ids(&text, p)?
                } else {
                    text
                };
                Ids::parse(text, p, expected_rows, matrix)
            }
        }
    }
}

/// The `_id` of each line of a BEIR `.jsonl` file, one per line (blank
/// lines skipped, so line numbers in later errors count ids). Only `_id` is
/// deserialised; the text and title are skipped over.
fn jsonl_ids(text: &str, path: &Path) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(rename = "_id")]
        id: serde_json::Value,
    }
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: String| Error::data_line(path, i + 1, m);
        let l: Line = serde_json::from_str(line)
            .map_err(|e| at(format!("expected a JSON object with an \"_id\": {e}")))?;
        match l.id {
            serde_json::Value::String(s) => out.push_str(&s),
            serde_json::Value::Number(n) => out.push_str(&n.to_string()),
            v => return Err(at(format!("\"_id\" is {v}; expected a string or a number"))),
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_numbers_are_canonical() {
        let ids = Ids::rows(10);
        assert_eq!(ids.row("7"), Some(7));
        assert_eq!(ids.row("07"), None);
        assert_eq!(ids.row("10"), None);
        assert_eq!(ids.row("x"), None);
    }

    #[test]
    fn named_ids_are_checked() {
        let p = Path::new("ids.txt");
        let m = Path::new("c.npy");
        let ids = Ids::parse("a\r\nb\nc\n".into(), p, 3, m).unwrap();
        assert_eq!(ids.row("b"), Some(1));
        assert_eq!(ids.name(2), "c");
        // A duplicate on line 3, a missing id, an empty line 2: data errors
        // that name the file and, where there is one, the line.
        let data_at = |text: &str| match Ids::parse(text.into(), p, 3, m) {
            Err(e @ Error::Data { .. }) => (e.path().map(Path::to_path_buf), e.line()),
            other => panic!("expected a data error, got {:?}", other.err()),
        };
        assert_eq!(data_at("a\nb\na\n"), (Some(p.into()), Some(3)));
        assert_eq!(data_at("a\nb\n"), (Some(p.into()), None));
        assert_eq!(data_at("a\n\nb\n"), (Some(p.into()), Some(2)));
        // Names given in memory: a duplicate is named by its position.
        let e = Ids::from_names(["x", "y", "x"], "corpus_ids")
            .err()
            .unwrap();
        assert_eq!(
            (e.path(), e.line()),
            (Some(Path::new("corpus_ids")), Some(3))
        );
    }
}
