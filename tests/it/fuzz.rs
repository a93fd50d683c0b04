//! Property tests of the parsers: arbitrary input never panics (and every
//! error names the file), and valid generated input round-trips.

use std::path::Path;

use nudge::data::npy::{Dtype, parse_header};
use nudge::data::qrels::{self, Judgement};
use nudge::{Ids, Kind};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An `.npy` header as numpy (or a careful hand) would write it.
fn header_bytes(
    version: u8,
    descr: &str,
    rows: usize,
    cols: usize,
    quote: char,
    key_order: usize,
    pad: usize,
) -> Vec<u8> {
    let q = quote;
    let entries = [
        format!("{q}descr{q}: {q}{descr}{q}"),
        format!("{q}fortran_order{q}: False"),
        format!("{q}shape{q}: ({rows}, {cols})"),
    ];
    let order = [[0, 1, 2], [2, 1, 0], [1, 2, 0]][key_order % 3];
    let body: Vec<&str> = order.iter().map(|&i| entries[i].as_str()).collect();
    let mut text = format!("{{{}, }}", body.join(", "));
    text.push_str(&" ".repeat(pad));
    text.push('\n');
    let mut v = b"\x93NUMPY".to_vec();
    v.push(version);
    v.push(0);
    if version == 1 {
        v.extend_from_slice(&(text.len() as u16).to_le_bytes());
    } else {
        v.extend_from_slice(&(text.len() as u32).to_le_bytes());
    }
    v.extend_from_slice(text.as_bytes());
    v
}

fn dtype_strategy() -> impl Strategy<Value = (&'static str, Dtype)> {
    prop_oneof![
        Just(("<f4", Dtype::F32)),
        Just(("<f2", Dtype::F16)),
        Just(("<f8", Dtype::F64)),
        Just(("=f4", Dtype::F32)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn npy_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_header(&bytes);
        // The same bytes behind a valid magic and version reach the dict parser.
        for version in [1u8, 2, 3] {
            let mut v = b"\x93NUMPY".to_vec();
            v.extend_from_slice(&[version, 0]);
            v.extend_from_slice(&bytes);
            let _ = parse_header(&v);
        }
    }

    #[test]
    fn npy_header_round_trips(
        version in 1u8..=3,
        (descr, dtype) in dtype_strategy(),
        rows in 0usize..2_000_000_000,
        cols in 0usize..100_000,
        quote in prop_oneof![Just('\''), Just('"')],
        key_order in 0usize..3,
        pad in 0usize..80,
    ) {
        let bytes = header_bytes(version, descr, rows, cols, quote, key_order, pad);
        let h = parse_header(&bytes).unwrap();
        prop_assert_eq!(h.dtype, dtype);
        prop_assert_eq!((h.rows, h.cols), (rows, cols));
        prop_assert_eq!(h.data_offset, bytes.len());
        // Data after the header is not looked at.
        let mut with_data = bytes.clone();
        with_data.extend_from_slice(&[0xAB; 16]);
        prop_assert_eq!(parse_header(&with_data).unwrap(), h);
    }

    #[test]
    fn mutated_npy_header_never_panics(
        version in 1u8..=3,
        rows in 0usize..1000,
        cols in 0usize..1000,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = header_bytes(version, "<f4", rows, cols, '\'', 0, 3);
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let _ = parse_header(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = parse_header(&bytes);
    }

    #[test]
    fn qrels_never_panic_and_errors_name_the_file(text in any::<String>()) {
        let p = Path::new("fuzz/q.tsv");
        if let Err(e) = qrels::parse(&text, p) {
            prop_assert_eq!(e.kind(), Kind::Data, "{}", e);
            prop_assert_eq!(e.path(), Some(p), "{}", e);
        }
        // Past a good header, every error names its line too.
        let with_header = format!("query-id\tcorpus-id\tscore\n{text}");
        if let Err(e) = qrels::parse(&with_header, p) {
            prop_assert_eq!(e.kind(), Kind::Data, "{}", e);
            prop_assert_eq!(e.path(), Some(p), "{}", e);
            prop_assert!(e.line().is_some_and(|l| l >= 2), "{}", e);
        }
    }

    #[test]
    fn qrels_lines_never_panic(
        lines in proptest::collection::vec("[a-z0-9 \t\r.eE+-]{0,20}", 0..12)
    ) {
        let text = format!("query-id\tcorpus-id\tscore\n{}", lines.join("\n"));
        let _ = qrels::parse(&text, Path::new("q.tsv"));
    }

    #[test]
    fn qrels_round_trip(
        rows in proptest::collection::vec(
            (
                "[^\\s]{1,12}",
                "[^\\s]{1,12}",
                prop_oneof![
                    (0i32..4).prop_map(|x| x as f32),
                    any::<f32>().prop_filter("finite", |x| x.is_finite()),
                ],
                any::<bool>(),
            ),
            0..20,
        ),
        crlf in any::<bool>(),
        header in prop_oneof![
            Just("query-id\tcorpus-id\tscore"),
            Just("query_id\tcorpus_id\tscore"),
            Just("qid\tdocid\tscore"),
        ],
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("{header}{nl}");
        let mut want = Vec::new();
        let mut line = 1;
        for (q, r, score, blank_before) in &rows {
            if *blank_before {
                text.push_str(nl);
                line += 1;
            }
            text.push_str(&format!("{q}\t{r}\t{score}{nl}"));
            line += 1;
            want.push(Judgement { query: q.as_str(), record: r.as_str(), score: *score, line });
        }
        let got = qrels::parse(&text, Path::new("q.tsv")).unwrap();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn ids_never_panic_and_errors_name_the_file(text in any::<String>(), rows in 0usize..8) {
        let p = Path::new("fuzz/ids.txt");
        if let Err(e) = Ids::parse(text, p, rows, Path::new("m.npy")) {
            prop_assert_eq!(e.kind(), Kind::Data, "{}", e);
            prop_assert_eq!(e.path(), Some(p), "{}", e);
        }
    }

    #[test]
    fn ids_lines_never_panic(lines in proptest::collection::vec("[ab\r]{0,3}", 0..8)) {
        let text = lines.join("\n");
        let _ = Ids::parse(text, Path::new("i.txt"), lines.len(), Path::new("m.npy"));
    }

    #[test]
    fn ids_round_trip(
        // A leading byte-order mark is dropped, so no id starts with one.
        names in proptest::collection::hash_set("[^\r\n\u{feff}][^\r\n]{0,9}", 0..40),
        crlf in any::<bool>(),
        trailing in any::<bool>(),
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = names.join(nl);
        if trailing && !names.is_empty() {
            text.push_str(nl);
        }
        let ids = Ids::parse(text.clone(), Path::new("i.txt"), names.len(), Path::new("m.npy")).unwrap();
        prop_assert_eq!(ids.len(), names.len());
        for (i, n) in names.iter().enumerate() {
            prop_assert_eq!(ids.row(n), Some(i as u32));
            prop_assert_eq!(ids.name(i), n.clone());
        }
        // One id fewer than rows is an error, never a panic.
        prop_assert!(Ids::parse(text, Path::new("i.txt"), names.len() + 1, Path::new("m.npy")).is_err());
    }
}
