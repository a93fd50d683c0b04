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

pub enum Ids {
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
    pub fn len(&self) -> usize {
        match self {
            Ids::RowNumbers(n) => *n,
            Ids::Named { spans, .. } => spans.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row that has id `id`.
    pub fn row(&self, id: &str) -> Option<u32> {
        match self {
            Ids::RowNumbers(n) => {
                // Only the canonical decimal form names a row: "07" is not "7".
                let r: usize = id.parse().ok()?;
                (r < *n && r.to_string() == id).then_some(r as u32)
            }
            Ids::Named { text, spans, rows } => rows
                .find(hash(id), |&r| span(text, spans, r) == id)
                .copied(),
        }
    }

    pub fn name(&self, row: usize) -> String {
        match self {
            Ids::RowNumbers(_) => row.to_string(),
            Ids::Named { text, spans, .. } => span(text, spans, row as u32).to_string(),
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
            return Err(Error::data(format!(
                "{}: larger than 4 GiB; an ids file holds one id per line",
                path.display()
            )));
        }
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(expected_rows);
        let mut rows: HashTable<u32> = HashTable::with_capacity(expected_rows);
        for (i, line) in text.lines().enumerate() {
            let id = line.strip_suffix('\r').unwrap_or(line);
            if id.is_empty() {
                return Err(Error::data(format!(
                    "{}:{}: empty id; expected one non-empty id per line",
                    path.display(),
                    i + 1
                )));
            }
            let start = id.as_ptr() as usize - text.as_ptr() as usize;
            let row = spans.len() as u32;
            match rows.entry(
                hash(id),
                |&r| span(&text, &spans, r) == id,
                |&r| hash(span(&text, &spans, r)),
            ) {
                Entry::Occupied(prev) => {
                    return Err(Error::data(format!(
                        "{}:{}: duplicate id {id:?} (first seen on line {}); ids must be unique",
                        path.display(),
                        i + 1,
                        prev.get() + 1
                    )));
                }
                Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
            spans.push((start as u32, (start + id.len()) as u32));
        }
        if spans.len() != expected_rows {
            return Err(Error::data(format!(
                "{}: has {} ids but {} has {} rows; expected one id per row",
                path.display(),
                spans.len(),
                matrix.display(),
                expected_rows
            )));
        }
        Ok(Ids::Named { text, spans, rows })
    }

    pub fn load(path: Option<&Path>, expected_rows: usize, matrix: &Path) -> Result<Ids> {
        match path {
            None => Ok(Ids::RowNumbers(expected_rows)),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Error::data(format!("{}: cannot read ids file: {e}", p.display()))
                })?;
                Ids::parse(text, p, expected_rows, matrix)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_numbers_are_canonical() {
        let ids = Ids::RowNumbers(10);
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
        let e = Ids::parse("a\nb\na\n".into(), p, 3, m).err().unwrap();
        assert!(
            e.message.contains("ids.txt:3") && e.message.contains("duplicate"),
            "{}",
            e.message
        );
        let e = Ids::parse("a\nb\n".into(), p, 3, m).err().unwrap();
        assert!(
            e.message.contains("has 2 ids") && e.message.contains("3 rows"),
            "{}",
            e.message
        );
        let e = Ids::parse("a\n\nb\n".into(), p, 3, m).err().unwrap();
        assert!(e.message.contains("ids.txt:2"), "{}", e.message);
    }
}
