//! Relevance judgements, in the layouts IR people keep them:
//!
//! - BEIR's TSV: `query-id <TAB> corpus-id <TAB> score` with a header line;
//! - the same three columns without the header, taken as such only when
//!   the first line is a judgement whose ids are known (detected, not
//!   guessed: anything else on line 1 is a bad header);
//! - TREC qrels (`qid iter docid rel`, whitespace-separated, no header), as
//!   MS MARCO and trec_eval keep them.
//!
//! A score above zero means relevant; graded scores are the gains that NDCG
//! uses. The files may be gzip or zstd compressed ([`read`]).

use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// The layout of a judgements file, as [`parse_layout_map`] detected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// BEIR's TSV with its header line.
    Beir,
    /// Three tab-separated columns (query-id, corpus-id, score), no header.
    Headerless,
    /// TREC qrels: query-id, iteration (ignored), doc-id, relevance.
    Trec,
}

impl Layout {
    /// How the file was read, for the line that tells the user; `None` for
    /// the default layout, which needs no word.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Layout::Beir => None,
            Layout::Headerless => Some(
                "no header line; read as headerless query-id<TAB>corpus-id<TAB>score (the first line is a judgement of known ids)",
            ),
            Layout::Trec => {
                Some("read as TREC qrels (query-id iteration doc-id relevance, no header)")
            }
        }
    }
}

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

/// Parses the text of a qrels file; `path` only names it in errors. Without
/// ids to check, a headerless first line is taken as data when its score
/// parses (see [`parse_layout_map`]).
pub fn parse<'a>(text: &'a str, path: &Path) -> Result<Vec<Judgement<'a>>> {
    parse_map(text, path, || (), |_, j| Ok(j.clone()))
}

/// [`parse_layout_map`] with no ids to check: a headerless first line whose
/// score parses is data.
pub fn parse_map<'a, S, T: Send>(
    text: &'a str,
    path: &Path,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &Judgement<'a>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    parse_layout_map(text, path, |_| true, state, f).map(|(_, v)| v)
}

/// Parses the text of a qrels file, in whichever [`Layout`] it is, and maps
/// every judgement with `f`, on all cores, in file order. Each thread's
/// share starts from a fresh `state()` (`f` may cache lookups there). The
/// first error in file order, from the parse or from `f`, is the one
/// returned.
///
/// The layout comes from the first non-blank line: BEIR's header; four
/// whitespace-separated columns ending in a number (TREC); or three
/// tab-separated columns whose score parses and for which `known` says
/// both ids name rows (a headerless TSV). A first line that is none of
/// these is an error, so a mistyped header is never read as a judgement.
///
/// Mapping as the file is parsed, rather than after, keeps tens of
/// thousands of borrowed judgements from ever being stored.
pub fn parse_layout_map<'a, S, T: Send>(
    text: &'a str,
    path: &Path,
    known: impl Fn(&Judgement<'a>) -> bool,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &Judgement<'a>) -> Result<T> + Sync,
) -> Result<(Layout, Vec<T>)> {
    // A byte-order mark (some Windows tools write one) is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let expected = "expected the header 'query-id<TAB>corpus-id<TAB>score', TREC qrels lines (query-id iteration doc-id relevance) or headerless query-id<TAB>corpus-id<TAB>score lines";
    // (line index, line) of the first non-blank line, and the byte offset
    // after it.
    let (mut at, mut index) = (0, 0);
    let first = loop {
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
    let cols: Vec<&str> = first.1.split('\t').map(str::trim).collect();
    let header_ok = cols.len() == 3
        && matches!(cols[0], "query-id" | "query_id" | "qid")
        && matches!(cols[1], "corpus-id" | "corpus_id" | "doc-id" | "docid")
        && cols[2] == "score";
    let words: Vec<&str> = first.1.split_whitespace().collect();
    let layout = if header_ok {
        Layout::Beir
    } else if cols.len() != 3 && words.len() == 4 && parse_score(words[3]).is_some() {
        Layout::Trec
    } else if cols.len() == 3 && cols[2].parse::<f32>().is_ok() {
        let j = Judgement {
            query: cols[0],
            record: cols[1],
            score: 0.0,
            line: first.0 + 1,
        };
        if !known(&j) {
            return Err(Error::data_line(
                path,
                first.0 + 1,
                format!(
                    "missing header: the first line {:?} looks like a judgement, but its ids are not those of the queries and corpus; {expected}",
                    first.1
                ),
            ));
        }
        Layout::Headerless
    } else {
        return Err(Error::data_line(
            path,
            first.0 + 1,
            format!("bad header {:?}; {expected}", first.1),
        ));
    };
    // Headerless layouts start with their first line.
    if layout != Layout::Beir {
        at = first.1.as_ptr() as usize - text.as_ptr() as usize;
        index = first.0;
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
            parse_lines(piece, first, n + 1, path, layout, |j| f(&mut st, &j))
        })
        .collect();
    let mut out = Vec::with_capacity(parsed.iter().flatten().map(Vec::len).sum());
    for piece in parsed {
        out.extend(piece?);
    }
    Ok((layout, out))
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
///
/// Lines are cut by one pass over the bytes that also notes the tabs: a
/// qrels line is about 20 bytes, and `str::lines` and `split('\t')` spent
/// more time starting their searches (a `memchr` per field) than finding
/// anything; the whole parse took 140 ns a line. A line of a tab-separated
/// layout whose three fields need no trimming ([`clean_fields`]) is taken
/// straight from those tabs; any other line (blank, spaces to trim, a
/// column too many or too few, TREC) goes the general way, which gives the
/// same fields and every error.
fn parse_lines<'a, T>(
    text: &'a str,
    first: usize,
    lines: usize,
    path: &Path,
    layout: Layout,
    mut f: impl FnMut(Judgement<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(lines);
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, first);
    while start < bytes.len() {
        // The line up to its newline, where its first two tabs are and how
        // many it has.
        let (mut end, mut tabs, mut count) = (start, [0usize; 2], 0);
        while end < bytes.len() && bytes[end] != b'\n' {
            if bytes[end] == b'\t' {
                if count < 2 {
                    tabs[count] = end - start;
                }
                count += 1;
            }
            end += 1;
        }
        // Cut at ASCII bytes, so on character boundaries.
        let line = text[start..end].trim_end_matches('\r');
        let line_index = i;
        i += 1;
        start = end + 1;
        let fields = match clean_fields(line, layout, &tabs, count) {
            Some(fields) => fields,
            None => match general_fields(line, line_index, path, layout)? {
                Some(fields) => fields,
                None => continue, // blank
            },
        };
        let score: f32 = parse_score(fields[2])
            .filter(|s: &f32| s.is_finite())
            .ok_or_else(|| {
                Error::data_line(
                    path,
                    line_index + 1,
                    format!(
                        "score {:?} is not a finite number; expected e.g. 1 or 0.5",
                        fields[2]
                    ),
                )
            })?;
        let (q, r) = (fields[0].trim(), fields[1].trim());
        if q.is_empty() || r.is_empty() {
            return Err(Error::data_line(
                path,
                line_index + 1,
                "empty query or corpus id",
            ));
        }
        out.push(f(Judgement {
            query: q,
            record: r,
            score,
            line: line_index + 1,
        })?);
    }
    Ok(out)
}

/// The fields of a tab-separated line with exactly two tabs (`count` in
/// the line, at `tabs`, before any trailing `\r` it was cut from) whose ids start and end with a visible ASCII
/// character, so that trimming them changes nothing; `None` for any other
/// line, left to [`general_fields`].
#[inline]
fn clean_fields<'a>(
    line: &'a str,
    layout: Layout,
    tabs: &[usize; 2],
    count: usize,
) -> Option<[&'a str; 3]> {
    if layout == Layout::Trec || count != 2 {
        return None;
    }
    let (q, r, s) = (
        &line[..tabs[0]],
        &line[tabs[0] + 1..tabs[1]],
        &line[tabs[1] + 1..],
    );
    let visible = |b: u8| (0x21..0x7f).contains(&b);
    let untrimmed = |f: &str| {
        let b = f.as_bytes();
        !b.is_empty() && visible(b[0]) && visible(b[b.len() - 1])
    };
    (untrimmed(q) && untrimmed(r)).then_some([q, r, s])
}

/// The three fields of any judgement line of `layout` (`index` 0-based, for
/// errors), or `None` for a blank line.
fn general_fields<'a>(
    line: &'a str,
    index: usize,
    path: &Path,
    layout: Layout,
) -> Result<Option<[&'a str; 3]>> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let fields = if layout == Layout::Trec {
        // qid iter docid rel: the iteration column is not used.
        let mut it = line.split_whitespace();
        match [it.next(), it.next(), it.next(), it.next(), it.next()] {
            [Some(q), Some(_), Some(r), Some(s), None] => [q, r, s],
            _ => {
                let count = line.split_whitespace().count();
                return Err(Error::data_line(
                    path,
                    index + 1,
                    format!(
                        "{count} whitespace-separated columns; expected 4 (query-id iteration doc-id relevance), as the file's first line"
                    ),
                ));
            }
        }
    } else {
        // Split without collecting: a Vec per line was a third of the parse.
        let mut it = line.split('\t');
        let fields = [it.next(), it.next(), it.next(), it.next()];
        match fields {
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
                    index + 1,
                    format!(
                        "{count} tab-separated columns; expected 3 (query-id, corpus-id, score){hint}"
                    ),
                ));
            }
        }
    };
    Ok(Some(fields))
}

/// The text of a qrels file, for [`parse`]: plain, gzip or zstd.
pub fn read(path: &Path) -> Result<String> {
    crate::data::text::read(path, "qrels file")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines parsed as before the one-pass cut: `str::lines`, then
    /// every line the general way ([`general_fields`]).
    fn parse_the_general_way<'a>(text: &'a str, layout: Layout) -> Result<Vec<Judgement<'a>>> {
        let path = Path::new("q.tsv");
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            let Some(fields) = general_fields(line, i, path, layout)? else {
                continue;
            };
            let score = parse_score(fields[2])
                .filter(|s: &f32| s.is_finite())
                .ok_or_else(|| Error::data_line(path, i + 1, format!("score {:?}", fields[2])))?;
            let (q, r) = (fields[0].trim(), fields[1].trim());
            if q.is_empty() || r.is_empty() {
                return Err(Error::data_line(path, i + 1, "empty id"));
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

    /// Lines taken straight from their tabs and lines taken the general
    /// way parse alike: clean lines, CRLF endings, ids with spaces to trim
    /// or non-ASCII edges, blank and whitespace-only lines (tabs too), a
    /// score with spaces, no final newline; and a line with a column too
    /// many, too few, an empty id or a bad score fails on the same line.
    #[test]
    fn one_pass_cut_parses_as_the_general_way() {
        let good = "q1\td1\t1\nq1\td2\t2\r\n q2\td3\t1\nq2 \td4\t0.5\n\n   \n\t\t\n\
                    é\tdoc\t1\nq3\tdé\t1\nq4\td5\t 3 \r\r\nq5\t\u{a0}d6\t1\nq6\td7\t2";
        let got = parse_lines(good, 0, 20, Path::new("q.tsv"), Layout::Headerless, Ok).unwrap();
        let want = parse_the_general_way(good, Layout::Headerless).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.len(), 9);
        assert_eq!(
            (got[3].query, got[6].score, got[7].record),
            ("q2", 3.0, "d6")
        );
        assert_eq!(got[8].line, 12);
        for (bad, line) in [
            ("q1\td1\t1\nq5\td6\t1\t\n", 2),
            ("q1\td1\t1\n\nq6\td7\n", 3),
            ("q1\td1\t1\n\t d\t1\n", 2),
            ("q1\td1\tx\n", 1),
            ("q1\td1\t\r\n", 1),
        ] {
            let err =
                parse_lines(bad, 0, 5, Path::new("q.tsv"), Layout::Headerless, Ok).unwrap_err();
            parse_the_general_way(bad, Layout::Headerless).unwrap_err();
            assert!(
                err.to_string().contains(&format!(":{line}")),
                "{bad:?}: {err}"
            );
        }
    }

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
    fn trec_and_headerless_layouts_are_detected() {
        let p = Path::new("q.txt");
        let known = |j: &Judgement| j.query.starts_with('q') && j.record.starts_with('d');
        let run = |t: &'static str| {
            parse_layout_map(
                t,
                p,
                known,
                || (),
                |_, j| Ok((j.query, j.record, j.score, j.line)),
            )
        };
        // TREC: the iteration column is dropped, tabs or spaces alike.
        let (layout, j) = run("\nq1 0 d1 1\nq1\tQ0\td2   0\n").unwrap();
        assert_eq!(layout, Layout::Trec);
        assert_eq!(j, vec![("q1", "d1", 1.0, 2), ("q1", "d2", 0.0, 3)]);
        // A TREC line of 3 columns names its line.
        assert_eq!(run("q1 0 d1 1\nq1 d1 1\n").unwrap_err().line(), Some(2));
        // Headerless TSV: the first line is data when its ids are known ...
        let (layout, j) = run("q1\td1\t2\nq2\td3\t1\n").unwrap();
        assert_eq!(layout, Layout::Headerless);
        assert_eq!(j[0], ("q1", "d1", 2.0, 1));
        assert!(layout.note().is_some() && Layout::Beir.note().is_none());
        // ... and a missing header otherwise.
        let e = run("x1\td1\t2\nq2\td3\t1\n").unwrap_err();
        assert!(e.to_string().contains("missing header"), "{e}");
        assert_eq!(e.line(), Some(1));
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
