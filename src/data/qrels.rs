//! BEIR-style relevance judgements: `query-id <TAB> corpus-id <TAB> score`
//! with a header line. A score above zero means relevant; graded scores are
//! the gains that NDCG uses.

use std::path::Path;

use crate::error::{Error, Result};

/// One judgement line, as written in the file. Borrows its ids from the
/// file's text: a qrels file has tens of thousands of lines, and two string
/// allocations per line were most of the time it took to read one.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement<'a> {
    pub query: &'a str,
    pub record: &'a str,
    pub score: f32,
    /// 1-based line number, for error messages.
    pub line: usize,
}

/// A score: the common one-digit case directly, anything else by `parse`.
fn parse_score(field: &str) -> Option<f32> {
    match field.as_bytes() {
        [d @ b'0'..=b'9'] => Some((d - b'0') as f32),
        _ => field.trim().parse().ok(),
    }
}

/// Parses the text of a qrels file; `path` only names it in errors.
pub fn parse<'a>(text: &'a str, path: &Path) -> Result<Vec<Judgement<'a>>> {
    // A byte-order mark (some Windows tools write one) is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate();
    let expected = "expected the header 'query-id<TAB>corpus-id<TAB>score'";
    let header = loop {
        match lines.next() {
            None => {
                return Err(Error::data(format!(
                    "{}: file is empty; {expected}",
                    path.display()
                )));
            }
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((i, l)) => break (i, l.trim_end_matches('\r')),
        }
    };
    let cols: Vec<&str> = header.1.split('\t').map(str::trim).collect();
    let header_ok = cols.len() == 3
        && matches!(cols[0], "query-id" | "query_id" | "qid")
        && matches!(cols[1], "corpus-id" | "corpus_id" | "doc-id" | "docid")
        && cols[2] == "score";
    if !header_ok && cols.len() == 3 && cols[2].parse::<f32>().is_ok() {
        return Err(Error::data(format!(
            "{}:{}: missing header: the first line {:?} is a judgement; {expected} first",
            path.display(),
            header.0 + 1,
            header.1
        )));
    }
    if !header_ok {
        return Err(Error::data(format!(
            "{}:{}: bad header {:?}; {expected}",
            path.display(),
            header.0 + 1,
            header.1
        )));
    }
    let mut out = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count() + 1);
    for (i, raw) in lines {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        // Split without collecting: a Vec per line was a third of the parse.
        let mut it = line.split('\t');
        let fields = [it.next(), it.next(), it.next(), it.next()];
        let fields = match fields {
            [Some(q), Some(r), Some(s), None] => [q, r, s],
            _ => {
                let count = line.split('\t').count();
                let hint = if count == 1 && line.split_whitespace().count() == 3 {
                    " (the columns must be separated by tabs, not spaces)"
                } else {
                    ""
                };
                return Err(Error::data(format!(
                    "{}:{}: {count} tab-separated columns; expected 3 (query-id, corpus-id, score){hint}",
                    path.display(),
                    i + 1,
                )));
            }
        };
        let score: f32 = parse_score(fields[2])
            .filter(|s: &f32| s.is_finite())
            .ok_or_else(|| {
                Error::data(format!(
                    "{}:{}: score {:?} is not a finite number; expected e.g. 1 or 0.5",
                    path.display(),
                    i + 1,
                    fields[2]
                ))
            })?;
        let (q, r) = (fields[0].trim(), fields[1].trim());
        if q.is_empty() || r.is_empty() {
            return Err(Error::data(format!(
                "{}:{}: empty query or corpus id",
                path.display(),
                i + 1
            )));
        }
        out.push(Judgement {
            query: q,
            record: r,
            score,
            line: i + 1,
        });
    }
    Ok(out)
}

/// The text of a qrels file, for [`parse`].
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::data(format!("{}: cannot read qrels file: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_beir_qrels() {
        let j = parse(
            "query-id\tcorpus-id\tscore\r\nq1\td1\t1\n\nq1\td2\t2\n",
            Path::new("t.tsv"),
        )
        .unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(
            j[1],
            Judgement {
                query: "q1",
                record: "d2",
                score: 2.0,
                line: 4
            }
        );
    }

    #[test]
    fn malformed_qrels_name_file_and_line() {
        let p = Path::new("t.tsv");
        let msg = |t: &str| parse(t, p).err().unwrap().message;
        assert!(msg("").contains("empty"));
        assert!(msg("q\td\ts\n").contains("t.tsv:1: bad header"));
        assert!(
            msg("query-id\tcorpus-id\tscore\nq1\td1\n")
                .contains("t.tsv:2: 2 tab-separated columns")
        );
        assert!(
            msg("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\thigh\n")
                .contains("t.tsv:3: score \"high\"")
        );
        assert!(msg("query-id\tcorpus-id\tscore\nq1\td1\tNaN\n").contains("not a finite number"));
    }
}
