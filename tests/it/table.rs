//! Parquet and Arrow IPC input: a fit from a table gives the same bytes as
//! from `.npy`, whatever the list kind, element type and row groups; bad
//! tables get errors naming the file, the row group (or batch) and the row.

use std::path::Path;
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float16Array, Float32Array, Float64Array, LargeListArray,
    ListArray, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use nudge::data::npy::{OutDtype, write_matrix};

use crate::common::*;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Elem {
    F16,
    F32,
    F64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    List,
    LargeList,
    Fixed,
}

pub(crate) fn values(data: &[f32], e: Elem) -> ArrayRef {
    match e {
        Elem::F16 => Arc::new(Float16Array::from(
            data.iter()
                .map(|&x| half::f16::from_f32(x))
                .collect::<Vec<_>>(),
        )),
        Elem::F32 => Arc::new(Float32Array::from(data.to_vec())),
        Elem::F64 => Arc::new(Float64Array::from(
            data.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        )),
    }
}

/// A vector column of `data` (rows of `cols`).
pub(crate) fn vectors(values: ArrayRef, cols: usize, kind: Kind) -> ArrayRef {
    let item = Arc::new(Field::new("item", values.data_type().clone(), true));
    let n = values.len() / cols;
    match kind {
        Kind::List => Arc::new(ListArray::new(
            item,
            arrow_buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(cols, n)),
            values,
            None,
        )),
        Kind::LargeList => Arc::new(LargeListArray::new(
            item,
            arrow_buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(cols, n)),
            values,
            None,
        )),
        Kind::Fixed => Arc::new(FixedSizeListArray::new(item, cols as i32, values, None)),
    }
}

pub(crate) fn strings(ids: &[String]) -> ArrayRef {
    Arc::new(StringArray::from(ids.to_vec()))
}

/// Writes `columns` as a Parquet file (row groups of `group` rows) or, for
/// `.arrow`/`.feather`, an Arrow IPC file (record batches of `group` rows).
pub(crate) fn write_table(path: &Path, columns: Vec<(&str, ArrayRef)>, group: usize) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    if path.extension().unwrap() == "parquet" {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group))
            .build();
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    } else {
        let mut w = arrow_ipc::writer::FileWriter::try_new(file, &schema).unwrap();
        let mut at = 0;
        while at < batch.num_rows() {
            let n = group.min(batch.num_rows() - at);
            w.write(&batch.slice(at, n)).unwrap();
            at += n;
        }
        w.finish().unwrap();
    }
}

pub(crate) fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// Replaces a case's `.npy` matrices and ids files by tables named
/// `corpus.EXT` and `queries.EXT` (ids in `_id`, vectors in `emb`).
fn to_tables(case: &Case, ext: &str, e: Elem, kind: Kind, group: usize) {
    for (m, ids) in [("corpus", "corpus_ids.txt"), ("queries", "query_ids.txt")] {
        let npy = case.file(&format!("{m}.npy"));
        let (rows, cols, data) = read_f32(&npy);
        let ids = lines(&case.read(ids));
        assert_eq!(ids.len(), rows);
        write_table(
            &case.file(&format!("{m}.{ext}")),
            vec![
                ("_id", strings(&ids)),
                ("emb", vectors(values(&data, e), cols, kind)),
            ],
            group,
        );
        std::fs::remove_file(npy).unwrap();
    }
    std::fs::remove_file(case.file("corpus_ids.txt")).unwrap();
    std::fs::remove_file(case.file("query_ids.txt")).unwrap();
}

/// Rounds a case's `.npy` matrices to f16 (as f16 `.npy`), so that a table
/// of f16 holds the same values.
pub(crate) fn to_f16(case: &Case) {
    for m in ["corpus.npy", "queries.npy"] {
        let (_, cols, data) = read_f32(&case.file(m));
        write_matrix(&case.file(m), &data, cols, OutDtype::F16).unwrap();
    }
}

fn out_bytes(case: &Case) -> Vec<u8> {
    std::fs::read(case.out().join("out.npy")).unwrap()
}

#[test]
fn parquet_fit_equals_npy_fit() {
    let fixture = "rawnorms-stringids";
    let cases = [
        (Elem::F32, Kind::Fixed),
        (Elem::F32, Kind::List),
        (Elem::F16, Kind::List),
        (Elem::F16, Kind::Fixed),
        (Elem::F64, Kind::LargeList),
    ];
    for method in ["nudge-m", "nudge-n"] {
        for f16 in [false, true] {
            let reference = Case::new(fixture);
            if f16 {
                to_f16(&reference);
            }
            let r = reference.fit(method, &[]);
            expect(&r, 0, &[]);
            let want = out_bytes(&reference);
            for &(e, kind) in cases.iter().filter(|c| matches!(c.0, Elem::F16) == f16) {
                let case = Case::new(fixture);
                if f16 {
                    to_f16(&case);
                }
                // Row groups of 7 rows: many, and chunks cut across them.
                to_tables(&case, "parquet", e, kind, 7);
                let out = case.fit(method, &[]);
                expect(&out, 0, &[]);
                assert!(
                    out_bytes(&case) == want,
                    "{method} from Parquet {e:?} {kind:?} differs from .npy"
                );
            }
        }
    }
}

#[test]
fn arrow_ipc_fit_equals_npy_fit_with_named_columns() {
    let fixture = "rawnorms-stringids";
    let reference = Case::new(fixture);
    expect(&reference.fit("nudge-n", &[]), 0, &[]);
    let case = Case::new(fixture);
    for (m, ids) in [("corpus", "corpus_ids.txt"), ("queries", "query_ids.txt")] {
        let (rows, cols, data) = read_f32(&case.file(&format!("{m}.npy")));
        let ids = lines(&case.read(ids));
        assert_eq!(ids.len(), rows);
        // Two list columns and an unusual id name: the flags say which.
        write_table(
            &case.file(&format!("{m}.arrow")),
            vec![
                ("doc", strings(&ids)),
                ("other", vectors(values(&data, Elem::F32), cols, Kind::List)),
                ("vec", vectors(values(&data, Elem::F32), cols, Kind::Fixed)),
            ],
            11,
        );
    }
    let (corpus, queries) = (case.file("corpus.arrow"), case.file("queries.arrow"));
    std::fs::remove_file(case.file("corpus_ids.txt")).unwrap();
    std::fs::remove_file(case.file("query_ids.txt")).unwrap();
    let out = case.fit(
        "nudge-n",
        &[
            "--corpus",
            corpus.to_str().unwrap(),
            "--queries",
            queries.to_str().unwrap(),
            "--vector-column",
            "vec",
            "--id-column",
            "doc",
        ],
    );
    expect(&out, 0, &[]);
    assert!(out_bytes(&case) == out_bytes(&reference));
    // The report says where the ids came from.
    let report = std::fs::read_to_string(case.out().join("report.json")).unwrap();
    assert!(
        report.matches("column doc").count() == 2,
        "ids not credited to the column: {report}"
    );

    // Without --vector-column the two list columns are ambiguous.
    let out = case.fit(
        "nudge-n",
        &[
            "--corpus",
            corpus.to_str().unwrap(),
            "--queries",
            queries.to_str().unwrap(),
        ],
    );
    expect(
        &out,
        3,
        &["corpus.arrow", "several list columns (other, vec)"],
    );
}

#[test]
fn table_reads_rows_across_batches() {
    // Direct reads at odd ranges, backwards too, equal the data.
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (50, 3);
    let data: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5).collect();
    for ext in ["parquet", "feather"] {
        let path = dir.path().join(format!("t.{ext}"));
        write_table(
            &path,
            vec![("emb", vectors(values(&data, Elem::F32), cols, Kind::List))],
            9,
        );
        let m = nudge::data::table::TableMatrix::open(&path, &Default::default()).unwrap();
        assert_eq!((m.rows(), m.cols()), (rows, cols));
        assert!(m.id_column().is_none());
        for (start, count) in [(0, 50), (40, 10), (3, 20), (17, 1), (0, 0), (8, 2)] {
            let mut out = vec![0.0; count * cols];
            m.read_rows_into(start, count, &mut out).unwrap();
            assert_eq!(
                out,
                data[start * cols..(start + count) * cols],
                "{ext} {start}+{count}"
            );
        }
    }
}

// ---- errors ---------------------------------------------------------------

/// The small fixture with its corpus as `corpus.parquet` holding `emb`
/// (as built by `emb`) and the fixture's ids; the corpus's cols.
fn bad_corpus(case: &Case, group: usize, emb: impl FnOnce(&[f32], usize) -> ArrayRef) {
    let (_, cols, data) = read_f32(&case.file("corpus.npy"));
    let ids = lines(&case.read("corpus_ids.txt"));
    write_table(
        &case.file("corpus.parquet"),
        vec![("id", strings(&ids)), ("emb", emb(&data, cols))],
        group,
    );
    std::fs::remove_file(case.file("corpus.npy")).unwrap();
    std::fs::remove_file(case.file("corpus_ids.txt")).unwrap();
}

#[test]
fn ragged_vectors() {
    let case = Case::new("small");
    bad_corpus(&case, 100, |data, cols| {
        let n = data.len() / cols;
        // Row 250 is one value short (the last row one longer).
        let mut lens = vec![cols; n];
        lens[250] -= 1;
        lens[n - 1] += 1;
        Arc::new(ListArray::new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            arrow_buffer::OffsetBuffer::from_lengths(lens),
            values(data, Elem::F32),
            None,
        ))
    });
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "corpus.parquet",
            "row group 2, row 50 (row 250 of the file)",
            "has 31 values",
        ],
    );
}

#[test]
fn null_vectors_and_values() {
    let case = Case::new("small");
    bad_corpus(&case, 100, |data, cols| {
        let n = data.len() / cols;
        let valid: Vec<bool> = (0..n).map(|i| i != 123).collect();
        Arc::new(FixedSizeListArray::new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            cols as i32,
            values(data, Elem::F32),
            Some(valid.into()),
        ))
    });
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "corpus.parquet",
            "row group 1, row 23 (row 123 of the file)",
            "is null",
        ],
    );

    let case = Case::new("small");
    bad_corpus(&case, 100, |data, cols| {
        let mut v: Vec<Option<f32>> = data.iter().map(|&x| Some(x)).collect();
        v[777 * cols + 5] = None;
        vectors(Arc::new(Float32Array::from(v)), cols, Kind::List)
    });
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "corpus.parquet",
            "row group 7, row 77 (row 777 of the file)",
            "element 5",
            "is null",
        ],
    );
}

#[test]
fn non_float_and_missing_columns() {
    let case = Case::new("small");
    bad_corpus(&case, 1000, |data, cols| {
        let ints: PrimitiveArray<Int32Type> = data.iter().map(|&x| x as i32).collect();
        vectors(Arc::new(ints), cols, Kind::Fixed)
    });
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &["corpus.parquet", "\"emb\"", "lists of Int32"],
    );

    let case = Case::new("small");
    bad_corpus(&case, 1000, |data, cols| {
        vectors(values(data, Elem::F32), cols, Kind::Fixed)
    });
    let out = case.fit("nudge-m", &["--vector-column", "embedding"]);
    expect_failure(
        &case,
        &out,
        3,
        &["corpus.parquet", "no column named \"embedding\"", "emb ("],
    );
    let out = case.fit("nudge-m", &["--id-column", "doc_id"]);
    expect_failure(
        &case,
        &out,
        3,
        &["corpus.parquet", "no column named \"doc_id\""],
    );

    // No list column at all.
    let case = Case::new("small");
    bad_corpus(&case, 1000, |data, cols| {
        values(&data[..data.len() / cols], Elem::F32)
    });
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["corpus.parquet", "no list column"]);
}

#[test]
fn duplicate_ids() {
    let case = Case::new("small");
    let (_, cols, data) = read_f32(&case.file("corpus.npy"));
    let mut ids = lines(&case.read("corpus_ids.txt"));
    ids[612] = ids[3].clone();
    write_table(
        &case.file("corpus.parquet"),
        vec![
            ("_id", strings(&ids)),
            ("emb", vectors(values(&data, Elem::F32), cols, Kind::List)),
        ],
        250,
    );
    std::fs::remove_file(case.file("corpus.npy")).unwrap();
    std::fs::remove_file(case.file("corpus_ids.txt")).unwrap();
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "corpus.parquet",
            "row group 2, row 112 (row 612 of the file)",
            "duplicate id \"3\" (first at row group 0, row 3",
        ],
    );
}

#[test]
fn ipc_errors_name_the_record_batch() {
    let case = Case::new("small");
    let (_, cols, data) = read_f32(&case.file("queries.npy"));
    let n = data.len() / cols;
    let mut lens = vec![cols; n];
    lens[42] += 1;
    lens[43] -= 1;
    write_table(
        &case.file("q.arrow"),
        vec![(
            "emb",
            Arc::new(ListArray::new(
                Arc::new(Field::new("item", DataType::Float32, true)),
                arrow_buffer::OffsetBuffer::from_lengths(lens),
                values(&data, Elem::F32),
                None,
            )),
        )],
        40,
    );
    let q = case.file("q.arrow");
    let out = case.fit("nudge-m", &["--queries", q.to_str().unwrap()]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "q.arrow",
            "record batch 1, row 2 (row 42 of the file)",
            "has 33 values",
        ],
    );
}
