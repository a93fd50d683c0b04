//! Row ids: the names that qrels files use for corpus records and queries.
//!
//! Without an ids file the ids are the row numbers ("0", "1", ...), looked up
//! arithmetically so a million-row corpus costs no hash map.

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

use crate::error::{Error, Result};

pub enum Ids {
    /// Ids are the row numbers `0..n`.
    RowNumbers(usize),
    /// One id per row, from a file.
    Named {
        names: Vec<String>,
        rows: HashMap<String, u32>,
    },
}

impl Ids {
    pub fn len(&self) -> usize {
        match self {
            Ids::RowNumbers(n) => *n,
            Ids::Named { names, .. } => names.len(),
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
            Ids::Named { rows, .. } => rows.get(id).copied(),
        }
    }

    pub fn name(&self, row: usize) -> String {
        match self {
            Ids::RowNumbers(_) => row.to_string(),
            Ids::Named { names, .. } => names[row].clone(),
        }
    }

    /// Parses an ids file: one id per line, `expected_rows` lines, no duplicates.
    pub fn parse(text: &str, path: &Path, expected_rows: usize, matrix: &Path) -> Result<Ids> {
        let mut names = Vec::with_capacity(expected_rows);
        let mut rows: HashMap<String, u32> =
            HashMap::with_capacity_and_hasher(expected_rows, Default::default());
        // A byte-order mark (some Windows tools write one) is not part of the first id.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, line) in text.lines().enumerate() {
            let id = line.strip_suffix('\r').unwrap_or(line);
            if id.is_empty() {
                return Err(Error::data(format!(
                    "{}:{}: empty id; expected one non-empty id per line",
                    path.display(),
                    i + 1
                )));
            }
            if let Some(prev) = rows.insert(id.to_string(), names.len() as u32) {
                return Err(Error::data(format!(
                    "{}:{}: duplicate id {id:?} (first seen on line {}); ids must be unique",
                    path.display(),
                    i + 1,
                    prev + 1
                )));
            }
            names.push(id.to_string());
        }
        if names.len() != expected_rows {
            return Err(Error::data(format!(
                "{}: has {} ids but {} has {} rows; expected one id per row",
                path.display(),
                names.len(),
                matrix.display(),
                expected_rows
            )));
        }
        Ok(Ids::Named { names, rows })
    }

    pub fn load(path: Option<&Path>, expected_rows: usize, matrix: &Path) -> Result<Ids> {
        match path {
            None => Ok(Ids::RowNumbers(expected_rows)),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Error::data(format!("{}: cannot read ids file: {e}", p.display()))
                })?;
                Ids::parse(&text, p, expected_rows, matrix)
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
        let ids = Ids::parse("a\r\nb\nc\n", p, 3, m).unwrap();
        assert_eq!(ids.row("b"), Some(1));
        assert_eq!(ids.name(2), "c");
        let e = Ids::parse("a\nb\na\n", p, 3, m).err().unwrap();
        assert!(
            e.message.contains("ids.txt:3") && e.message.contains("duplicate"),
            "{}",
            e.message
        );
        let e = Ids::parse("a\nb\n", p, 3, m).err().unwrap();
        assert!(
            e.message.contains("has 2 ids") && e.message.contains("3 rows"),
            "{}",
            e.message
        );
        let e = Ids::parse("a\n\nb\n", p, 3, m).err().unwrap();
        assert!(e.message.contains("ids.txt:2"), "{}", e.message);
    }
}
