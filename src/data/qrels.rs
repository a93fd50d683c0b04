//! BEIR-style relevance judgements: `query-id <TAB> corpus-id <TAB> score`
//! with a header line. A score above zero means relevant; graded scores are
//! the gains that NDCG uses.

use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// One judgement line, as written in the file. Borrows its ids from the
/// file's text: a qrels file has tens of thousands of lines, and two string
/// allocations per line were most of the time it took to read one.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement<'a> {
    /// The query's id (first column).
    pub query: &'a str,
    /// The corpus record's id (second column).
    pub record: &'a str,
    /// The relevance grade (third column): relevant if above zero, and the
    /// gain NDCG uses.
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
    parse_map(text, path, || (), |_, j| Ok(j.clone()))
}

/// Parses the text of a qrels file and maps every judgement with `f`, on
/// all cores, in file order. Each thread's share starts from a fresh
/// `state()` (`f` may cache lookups there). The first error in file order,
/// from the parse or from `f`, is the one returned.
///
/// Mapping as the file is parsed, rather than after, keeps tens of
/// thousands of borrowed judgements from ever being stored.
pub fn parse_map<'a, S, T: Send>(
    text: &'a str,
    path: &Path,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &Judgement<'a>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    // A byte-order mark (some Windows tools write one) is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let expected = "expected the header 'query-id<TAB>corpus-id<TAB>score'";
    // (line index, line) of the header, and the byte offset after it.
    let (mut at, mut index) = (0, 0);
    let header = loop {
        let rest = &text[at..];
        if rest.is_empty() {
            return Err(Error::data(path, format!("file is empty; {expected}")));
        }
        let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = rest[..len].trim_end_matches('\n').trim_end_matches('\r');
        at += len;
        index += 1;
        if !line.trim().is_empty() {
            break (index - 1, line);
        }
    };
    let cols: Vec<&str> = header.1.split('\t').map(str::trim).collect();
    let header_ok = cols.len() == 3
        && matches!(cols[0], "query-id" | "query_id" | "qid")
        && matches!(cols[1], "corpus-id" | "corpus_id" | "doc-id" | "docid")
        && cols[2] == "score";
    if !header_ok && cols.len() == 3 && cols[2].parse::<f32>().is_ok() {
        return Err(Error::data_line(
            path,
            header.0 + 1,
            format!(
                "missing header: the first line {:?} is a judgement; {expected} first",
                header.1
            ),
        ));
    }
    if !header_ok {
        return Err(Error::data_line(
            path,
            header.0 + 1,
            format!("bad header {:?}; {expected}", header.1),
        ));
    }
    // The judgements, parsed in pieces on all cores (a qrels file can have
    // tens of thousands of lines); each piece knows its first line number
    // so errors still name the right line, and the first error in file
    // order is the one reported.
    let body = &text[at..];
    let pieces = split_lines(body, 64 << 10, rayon::current_num_threads() * 2);
    let newlines: Vec<usize> = pieces
        .par_iter()
        .map(|p| p.bytes().filter(|&b| b == b'\n').count())
        .collect();
    let mut first_index = Vec::with_capacity(pieces.len());
    let mut next = index;
    for n in &newlines {
        first_index.push(next);
        next += n;
    }
    let parsed: Vec<Result<Vec<T>>> = pieces
        .par_iter()
        .zip(first_index)
        .zip(&newlines)
        .map(|((piece, first), &n)| {
            let mut st = state();
            parse_lines(piece, first, n + 1, path, |j| f(&mut st, &j))
        })
        .collect();
    let mut out = Vec::with_capacity(parsed.iter().flatten().map(Vec::len).sum());
    for piece in parsed {
        out.extend(piece?);
    }
    Ok(out)
}

/// Cuts `text` into about `parts` pieces of at least `min_len` bytes, each
/// ending at a line break (or the end of the text).
fn split_lines(text: &str, min_len: usize, parts: usize) -> Vec<&str> {
    let step = (text.len() / parts.max(1)).max(min_len).max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let nominal = (start + step).min(text.len());
        let end = match text[nominal..].find('\n') {
            Some(i) => nominal + i + 1,
            None => text.len(),
        };
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
}

/// Parses judgement lines (at most `lines` of them) and maps each with `f`;
/// `first` is the 0-based line index of the first.
fn parse_lines<'a, T>(
    text: &'a str,
    first: usize,
    lines: usize,
    path: &Path,
    mut f: impl FnMut(Judgement<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(lines);
    for (i, raw) in text.lines().enumerate() {
        let i = first + i;
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
                return Err(Error::data_line(
                    path,
                    i + 1,
                    format!(
                        "{count} tab-separated columns; expected 3 (query-id, corpus-id, score){hint}"
                    ),
                ));
            }
        };
        let score: f32 = parse_score(fields[2])
            .filter(|s: &f32| s.is_finite())
            .ok_or_else(|| {
                Error::data_line(
                    path,
                    i + 1,
                    format!(
                        "score {:?} is not a finite number; expected e.g. 1 or 0.5",
                        fields[2]
                    ),
                )
            })?;
        let (q, r) = (fields[0].trim(), fields[1].trim());
        if q.is_empty() || r.is_empty() {
            return Err(Error::data_line(path, i + 1, "empty query or corpus id"));
        }
        out.push(f(Judgement {
            query: q,
            record: r,
            score,
            line: i + 1,
        })?);
    }
    Ok(out)
}

/// The text of a qrels file, for [`parse`].
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::unreadable(path, "read qrels file", e))
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
        // Each is a data error naming the file and the line at fault.
        let at = |t: &str| match parse(t, p) {
            Err(e @ Error::Data { .. }) => (e.path().map(Path::to_path_buf), e.line()),
            other => panic!("expected a data error, got {:?}", other.err()),
        };
        let file = Some(p.to_path_buf());
        assert_eq!(at(""), (file.clone(), None));
        assert_eq!(at("q\td\ts\n"), (file.clone(), Some(1)));
        assert_eq!(
            at("query-id\tcorpus-id\tscore\nq1\td1\n"),
            (file.clone(), Some(2))
        );
        assert_eq!(
            at("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\thigh\n"),
            (file.clone(), Some(3))
        );
        assert_eq!(
            at("query-id\tcorpus-id\tscore\nq1\td1\tNaN\n"),
            (file, Some(2))
        );
    }

    #[test]
    fn a_long_file_parses_in_pieces_with_the_right_line_numbers() {
        // About 900 KB: many pieces. Line numbers are 1-based and count the
        // header and a blank line.
        let mut text = "query-id\tcorpus-id\tscore\n\n".to_string();
        for i in 0..40_000 {
            text.push_str(&format!("query-{}\tdoc-{i}\t1\r\n", i / 7));
        }
        let j = parse(&text, Path::new("t.tsv")).unwrap();
        assert_eq!(j.len(), 40_000);
        for (i, x) in j.iter().enumerate() {
            assert_eq!(x.line, i + 3);
            assert_eq!(x.record, format!("doc-{i}"));
        }
        // Two bad lines far apart: the first one is reported.
        let mut bad: Vec<String> = text.lines().map(str::to_string).collect();
        bad[30_002] = "query-x\tdoc-y".to_string();
        bad[5_002] = "query-x\tdoc-y\tlots".to_string();
        let err = parse(&bad.join("\n"), Path::new("t.tsv")).err().unwrap();
        assert_eq!(err.line(), Some(5003), "{err}");
    }
}
