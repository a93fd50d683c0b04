//! Every input and output format gives the same fit: a corpus from `.npy`,
//! a Parquet file (list and fixed_size_list, f32 and f16), a folder of
//! Parquet shards or of `.npy` shards gives the same gamma and the same
//! output values; Parquet and sharded outputs hold the bytes of the `.npy`
//! output; TREC, headerless and compressed qrels and `.jsonl` ids read as
//! BEIR TSV does. Expected values are those of the plain `.npy` run.

use std::path::{Path, PathBuf};

use nudge::data::MatrixFile;
use nudge::data::npy::NpyMatrix;
use nudge::data::table::{Columns, TableMatrix};

use crate::common::*;
use crate::table::{Elem, Kind, lines, strings, to_f16, values, vectors, write_table};

const FIXTURE: &str = "rawnorms-stringids";
/// Uneven shards (2000 rows): one of a single row, one that is the rest.
const SHARDS: [usize; 3] = [700, 1, 1299];

fn gamma(case: &Case) -> f64 {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.out().join("report.json")).unwrap())
            .unwrap();
    r["gamma"].as_f64().unwrap()
}

/// The data part of an `.npy` file (past its header).
fn npy_data(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + len..].to_vec()
}

/// A fit of `case` with `--out OUT` (relative to `out/`), checked to succeed.
fn fit(case: &Case, out: &str, extra: &[&str]) -> PathBuf {
    run_fit(case, out, extra).0
}

/// [`fit`], with the run's output.
fn run_fit(case: &Case, out: &str, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let data = case.data();
    let path = case.out().join(out);
    let report = case.out().join("report.json");
    let mut args = vec![
        "fit",
        "--dataset",
        data.to_str().unwrap(),
        "--method",
        "nudge-m",
        "--out",
        path.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    // A corpus folder is not filled in from `--dataset`: name it.
    let corpus = case.file("corpus");
    if corpus.is_dir() {
        args.extend(["--corpus", corpus.to_str().unwrap()]);
    }
    let o = nudge(&args, &[]);
    expect(&o, 0, &[]);
    (path, o)
}

/// The case's corpus split into `corpus/` shards (names sort in row order),
/// as `.npy` with `.ids.txt` beside each (`ids`), or as Parquet with an
/// `id` column; `corpus.npy` and `corpus_ids.txt` are removed.
fn to_shards(case: &Case, parquet: bool, ids: bool, e: Elem) {
    let (_, cols, data) = read_npy_any(&case.file("corpus.npy"));
    let names = lines(&case.read("corpus_ids.txt"));
    let dir = case.file("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let mut at = 0;
    for (i, &n) in SHARDS.iter().enumerate() {
        let rows = &data[at * cols..(at + n) * cols];
        let rows_ids = &names[at..at + n];
        // Names whose lexical order (the shards' order) is not their numeric
        // order: part-10 < part-2 < part-3.
        let name = format!("part-{}", [10, 2, 3][i]);
        if parquet {
            let mut columns = vec![("emb", vectors(values(rows, e), cols, Kind::Fixed))];
            if ids {
                columns.insert(0, ("id", strings(rows_ids)));
            }
            write_table(&dir.join(format!("{name}.parquet")), columns, 300);
        } else {
            let dtype = match e {
                Elem::F16 => nudge::OutDtype::F16,
                _ => nudge::OutDtype::F32,
            };
            nudge::data::npy::write_matrix(&dir.join(format!("{name}.npy")), rows, cols, dtype)
                .unwrap();
            if ids {
                std::fs::write(
                    dir.join(format!("{name}.ids.txt")),
                    rows_ids.join("\n") + "\n",
                )
                .unwrap();
            }
        }
        at += n;
    }
    assert_eq!(at, names.len());
    std::fs::remove_file(case.file("corpus.npy")).unwrap();
    std::fs::remove_file(case.file("corpus_ids.txt")).unwrap();
}

/// (rows, cols, f32 values) of an `.npy` of any dtype.
fn read_npy_any(path: &Path) -> (usize, usize, Vec<f32>) {
    let m = NpyMatrix::open(path).unwrap();
    (m.rows(), m.cols(), m.read_all().unwrap())
}

/// The corpus as a single Parquet file (`_id`, `emb`).
fn to_parquet(case: &Case, e: Elem, kind: Kind) {
    let (_, cols, data) = read_npy_any(&case.file("corpus.npy"));
    let names = lines(&case.read("corpus_ids.txt"));
    write_table(
        &case.file("corpus.parquet"),
        vec![
            ("_id", strings(&names)),
            ("emb", vectors(values(&data, e), cols, kind)),
        ],
        128,
    );
    std::fs::remove_file(case.file("corpus.npy")).unwrap();
    std::fs::remove_file(case.file("corpus_ids.txt")).unwrap();
}

/// A Parquet output read back: (ids, values as f32, element type).
fn read_parquet(path: &Path) -> (Vec<String>, Vec<f32>, &'static str) {
    let t = TableMatrix::open(path, &Columns::default()).unwrap();
    assert_eq!((t.vector_column(), t.id_column()), ("vector", Some("id")));
    let ids = t.id_names().unwrap().to_vec();
    (ids, t.read_all().unwrap(), t.element().name())
}

/// What the reference (`.npy`) run wrote: ids, output values, raw bytes.
struct Want {
    ids: Vec<String>,
    values: Vec<f32>,
    bytes: Vec<u8>,
    gamma: f64,
}

fn reference(f16: bool) -> Want {
    let case = Case::new(FIXTURE);
    if f16 {
        to_f16(&case);
    }
    let dtype = if f16 { "f16" } else { "f32" };
    let out = fit(&case, "out.npy", &["--out-dtype", dtype]);
    Want {
        ids: lines(&case.read("corpus_ids.txt")),
        values: read_npy_any(&out).2,
        bytes: std::fs::read(&out).unwrap(),
        gamma: gamma(&case),
    }
}

#[test]
fn every_corpus_format_gives_the_same_fit() {
    for f16 in [false, true] {
        let want = reference(f16);
        let e = if f16 { Elem::F16 } else { Elem::F32 };
        let dtype = if f16 { "f16" } else { "f32" };
        let new = || {
            let c = Case::new(FIXTURE);
            if f16 {
                to_f16(&c);
            }
            c
        };
        let same = |case: &Case, what: &str| {
            assert_eq!(gamma(case), want.gamma, "{what} (f16 {f16}): gamma");
        };
        // One Parquet file, both list kinds: the same `.npy` bytes.
        for kind in [Kind::List, Kind::Fixed] {
            let case = new();
            to_parquet(&case, e, kind);
            let out = fit(&case, "out.npy", &["--out-dtype", dtype]);
            same(&case, &format!("parquet {kind:?}"));
            assert!(
                std::fs::read(out).unwrap() == want.bytes,
                "parquet {kind:?} (f16 {f16})"
            );
        }
        // A folder of Parquet shards, written back as Parquet shards of the
        // same names and as one Parquet file.
        let case = new();
        to_shards(&case, true, true, e);
        let dir = fit(&case, "tuned/", &["--out-dtype", dtype]);
        same(&case, "parquet folder");
        let mut got = (Vec::new(), Vec::new());
        let names = list(&dir);
        assert_eq!(
            names,
            ["part-10.parquet", "part-2.parquet", "part-3.parquet"]
        );
        for n in &names {
            let (ids, v, el) = read_parquet(&dir.join(n));
            assert_eq!(el, if f16 { "float16" } else { "float32" });
            got.0.extend(ids);
            got.1.extend(v);
        }
        assert!(
            got.0 == want.ids && got.1 == want.values,
            "parquet shards (f16 {f16})"
        );
        let one = fit(&case, "one.parquet", &["--out-dtype", dtype]);
        let (ids, v, _) = read_parquet(&one);
        assert!(
            ids == want.ids && v == want.values,
            "one parquet (f16 {f16})"
        );
        // A folder of `.npy` shards with ids beside them: `.npy` shards whose
        // data is the reference's, cut at the same rows; and one `.npy`.
        let case = new();
        to_shards(&case, false, true, e);
        let dir = fit(&case, "tuned/", &["--out-dtype", dtype]);
        same(&case, "npy folder");
        let names = list(&dir);
        assert_eq!(names, ["part-10.npy", "part-2.npy", "part-3.npy"]);
        let data: Vec<u8> = names.iter().flat_map(|n| npy_data(&dir.join(n))).collect();
        assert!(
            data == npy_data_bytes(&want.bytes),
            "npy shards (f16 {f16})"
        );
        let one = fit(&case, "one.npy", &["--out-dtype", dtype]);
        assert!(
            std::fs::read(one).unwrap() == want.bytes,
            "one npy (f16 {f16})"
        );
    }
}

fn npy_data_bytes(bytes: &[u8]) -> Vec<u8> {
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + len..].to_vec()
}

#[test]
fn parquet_out_and_delta_hold_the_npy_values() {
    let want = reference(false);
    let case = Case::new(FIXTURE);
    let delta = case.out().join("delta.parquet");
    let out = fit(&case, "out.parquet", &["--delta", delta.to_str().unwrap()]);
    assert_eq!(gamma(&case), want.gamma);
    let (ids, v, el) = read_parquet(&out);
    assert!(ids == want.ids && v == want.values && el == "float32");
    // The delta: the moved rows, by id, as in the full output.
    let (ids, v, _) = read_parquet(&delta);
    assert!(!ids.is_empty());
    for (i, id) in ids.iter().enumerate() {
        let r = want.ids.iter().position(|x| x == id).unwrap();
        assert_eq!(v[i * 64..(i + 1) * 64], want.values[r * 64..(r + 1) * 64]);
    }
    assert_eq!(
        list(&case.out()),
        ["delta.parquet", "out.parquet", "report.json"]
    );
}

#[test]
fn npy_shards_without_ids_continue_the_row_numbers() {
    let case = Case::new(FIXTURE);
    to_shards(&case, false, false, Elem::F32);
    let m = MatrixFile::open(&case.file("corpus"), &Columns::default()).unwrap();
    let ids = m.table_ids().unwrap().unwrap();
    assert_eq!(
        (m.rows(), ids.name(700), ids.row("701")),
        (2000, "700".into(), Some(701))
    );
}

#[test]
fn bad_shard_folders_are_named() {
    let fails = |case: &Case, needles: &[&str]| {
        let corpus = case.file("corpus");
        let out = case.out().join("o.npy");
        let o = nudge(
            &[
                "fit",
                "--dataset",
                case.data().to_str().unwrap(),
                "--corpus",
                corpus.to_str().unwrap(),
                "--method",
                "nudge-m",
                "--out",
                out.to_str().unwrap(),
                "--device",
                "cpu",
            ],
            &[],
        );
        expect_failure(case, &o, 3, needles);
    };
    // Ids beside some shards only.
    let case = Case::new(FIXTURE);
    to_shards(&case, false, true, Elem::F32);
    std::fs::remove_file(case.file("corpus/part-2.ids.txt")).unwrap();
    fails(&case, &["part-2.npy", "has no ids", "part-10.ids.txt"]);
    // The same id in two shards.
    std::fs::write(case.file("corpus/part-2.ids.txt"), "doc-000003\n").unwrap();
    fails(
        &case,
        &[
            "part-2.ids.txt",
            "duplicate id \"doc-000003\"",
            "part-10.ids.txt",
        ],
    );
    // Shards of different widths; `.npy` and Parquet mixed.
    nudge::data::npy::write_matrix(
        &case.file("corpus/part-2.npy"),
        &[1.0; 3],
        3,
        nudge::OutDtype::F32,
    )
    .unwrap();
    fails(&case, &["part-2.npy", "3-d rows", "64-d rows"]);
    std::fs::write(case.file("corpus/x.parquet"), b"").unwrap();
    fails(&case, &["both .npy (3) and .parquet (1)"]);
    // No shards at all.
    let empty = Case::new(FIXTURE);
    std::fs::create_dir_all(empty.file("corpus")).unwrap();
    std::fs::write(empty.file("corpus/README"), "").unwrap();
    fails(&empty, &["holds no .npy or .parquet shards"]);
}

#[test]
fn a_failed_sharded_output_leaves_no_shard() {
    // The last shard holds a NaN: the fit fails after the first shards were
    // read, and the new output folder is left neither with shards nor at all.
    let case = Case::new(FIXTURE);
    to_shards(&case, false, true, Elem::F32);
    let last = case.file("corpus/part-3.npy");
    let (_, cols, mut data) = read_npy_any(&last);
    data[cols * 1000 + 5] = f32::NAN;
    nudge::data::npy::write_matrix(&last, &data, cols, nudge::OutDtype::F32).unwrap();
    let dir = case.out().join("tuned/");
    let o = nudge(
        &[
            "fit",
            "--dataset",
            case.data().to_str().unwrap(),
            "--corpus",
            case.file("corpus").to_str().unwrap(),
            "--method",
            "nudge-m",
            "--out",
            dir.to_str().unwrap(),
            "--device",
            "cpu",
        ],
        &[
            ("NUDGE_CHUNK_ROWS", "100"),
            ("NUDGE_OUTPUT_IN_MEMORY_MAX", "0"),
        ],
    );
    expect_failure(&case, &o, 3, &["part-3.npy"]);
    assert!(!dir.exists());
    // `--out DIR/` of a one-file corpus is a usage error.
    let case = Case::new(FIXTURE);
    let o = nudge(
        &[
            "fit",
            "--dataset",
            case.data().to_str().unwrap(),
            "--method",
            "nudge-m",
            "--out",
            case.out().join("d/").to_str().unwrap(),
        ],
        &[],
    );
    expect_failure(&case, &o, 2, &["keeps the sharding of a sharded corpus"]);
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// The judgements of `split` without their header line.
fn judgements(case: &Case, split: &str) -> Vec<String> {
    lines(&case.read(&format!("qrels/{split}.tsv")))[1..].to_vec()
}

/// The dataset's judgements as TREC qrels (train, gzip), headerless TSV
/// (dev, zstd) and BEIR TSV (test, gzip), and its ids from BEIR `.jsonl`
/// files (the corpus's as `corpus.jsonl` in the folder, the queries' given
/// as `queries.jsonl.gz`); returns the flags that name the files.
fn to_ir_layouts(case: &Case) -> Vec<String> {
    let trec: Vec<String> = judgements(case, "train")
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("{} 0 {}  {}", f[0], f[1], f[2])
        })
        .collect();
    case.write("train.qrels.gz", gzip(&(trec.join("\n") + "\n")));
    let dev = judgements(case, "dev").join("\n") + "\n";
    case.write(
        "dev.tsv.zst",
        zstd::stream::encode_all(dev.as_bytes(), 3).unwrap(),
    );
    case.write("test.tsv.gz", gzip(&case.read("qrels/test.tsv")));
    let jsonl = |ids: &str| -> String {
        lines(&case.read(ids))
            .iter()
            .map(|id| format!("{{\"_id\": \"{id}\", \"title\": \"\", \"text\": \"a\\tb\"}}\n"))
            .collect()
    };
    case.write("corpus.jsonl", jsonl("corpus_ids.txt"));
    case.write("queries.jsonl.gz", gzip(&jsonl("query_ids.txt")));
    for f in [
        "corpus_ids.txt",
        "query_ids.txt",
        "qrels/train.tsv",
        "qrels/dev.tsv",
        "qrels/test.tsv",
    ] {
        std::fs::remove_file(case.file(f)).unwrap();
    }
    [
        ("--train-qrels", "train.qrels.gz"),
        ("--dev-qrels", "dev.tsv.zst"),
        ("--test-qrels", "test.tsv.gz"),
        ("--query-ids", "queries.jsonl.gz"),
    ]
    .iter()
    .flat_map(|(flag, f)| [flag.to_string(), case.file(f).to_str().unwrap().to_string()])
    .collect()
}

#[test]
fn judgements_and_ids_as_ir_people_keep_them_give_the_same_fit() {
    let want = reference(false);
    let case = Case::new(FIXTURE);
    let flags = to_ir_layouts(&case);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (out, o) = run_fit(&case, "out.npy", &flags);
    assert!(std::fs::read(out).unwrap() == want.bytes);
    assert_eq!(gamma(&case), want.gamma);
    // Each layout other than BEIR's is said, in one line.
    let err = stderr(&o);
    assert_eq!(
        err.matches("train.qrels.gz: read as TREC qrels").count(),
        1,
        "{err}"
    );
    assert_eq!(
        err.matches("dev.tsv.zst: no header line; read as headerless")
            .count(),
        1,
        "{err}"
    );
    assert!(!err.contains("test.tsv.gz:"), "{err}");
}

#[test]
fn eval_reads_every_format() {
    // The same corpus (as stored, dot product) from each format, scored on
    // gzipped TREC test qrels: the same metrics as from `.npy` and BEIR TSV.
    let scores = |case: &Case, corpus: &str, extra: &[&str]| -> (f64, f64) {
        let data = case.data();
        let mut args = vec![
            "eval",
            "--dataset",
            data.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
            "--k",
            "5",
        ];
        let corpus = case.file(corpus);
        args.extend(["--corpus", corpus.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let o = nudge(&args, &[]);
        expect(&o, 0, &[]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            v["recall@5"].as_f64().unwrap(),
            v["ndcg@5"].as_f64().unwrap(),
        )
    };
    let reference = Case::new(FIXTURE);
    let want = scores(&reference, "corpus.npy", &[]);
    let trec = |case: &Case| -> String {
        let t: Vec<String> = judgements(case, "test")
            .iter()
            .map(|l| l.replacen('\t', "\tQ0\t", 1))
            .collect();
        case.write("test.qrels.gz", gzip(&(t.join("\n") + "\n")));
        case.file("test.qrels.gz").to_str().unwrap().to_string()
    };
    let case = Case::new(FIXTURE);
    let q = trec(&case);
    assert_eq!(scores(&case, "corpus.npy", &["--test-qrels", &q]), want);
    to_parquet(&case, Elem::F32, Kind::List);
    assert_eq!(scores(&case, "corpus.parquet", &["--test-qrels", &q]), want);
    for parquet in [false, true] {
        let case = Case::new(FIXTURE);
        let q = trec(&case);
        to_shards(&case, parquet, true, Elem::F32);
        assert_eq!(
            scores(&case, "corpus", &["--test-qrels", &q]),
            want,
            "parquet {parquet}"
        );
    }
}
