//! Every bad input gets a clear error: the exit code says who has to act
//! (2 usage, 3 data, 4 runtime), stderr names the file and the row, line or
//! id, and a failed run leaves no output (nor a `.nudge-partial-*` file).

use crate::common::*;

/// The small fixture's corpus as f32: (rows, cols, data).
fn corpus(case: &Case) -> (usize, usize, Vec<f32>) {
    read_f32(&case.file("corpus.npy"))
}

// ---- .npy files -----------------------------------------------------------

#[test]
fn empty_npy() {
    let case = Case::new("small");
    case.write("corpus.npy", b"");
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["corpus.npy", "empty"]);
}

#[test]
fn truncated_npy() {
    let case = Case::new("small");
    let bytes = std::fs::read(case.file("queries.npy")).unwrap();
    case.write("queries.npy", &bytes[..bytes.len() - 10]);
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["queries.npy", "truncated", "500 x 32"]);

    // Cut inside the header.
    case.write("queries.npy", &bytes[..40]);
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["queries.npy", "truncated .npy header"]);
}

#[test]
fn bad_magic_and_header() {
    let case = Case::new("small");
    case.write("corpus.npy", b"PK\x03\x04 this is a zip file, not numpy");
    let out = case.fit("nudge-n", &[]);
    expect_failure(&case, &out, 3, &["corpus.npy", "magic"]);

    // A header without a shape.
    let mut bytes = npy_bytes("<f4", false, "(2, 2)", &f32_bytes(&[1.0; 4]));
    let at = bytes.windows(7).position(|w| w == b"'shape'").unwrap();
    bytes[at..at + 7].copy_from_slice(b"'shope'");
    case.write("corpus.npy", &bytes);
    let out = case.fit("nudge-n", &[]);
    expect_failure(&case, &out, 3, &["corpus.npy", "no 'shape' entry"]);

    // An unknown format version.
    let mut bytes = npy_bytes("<f4", false, "(2, 2)", &f32_bytes(&[1.0; 4]));
    bytes[6] = 9;
    case.write("corpus.npy", &bytes);
    let out = case.fit("nudge-n", &[]);
    expect_failure(&case, &out, 3, &["corpus.npy", "version 9"]);
}

#[test]
fn f64_is_converted_with_a_note() {
    let case = Case::new("small");
    let out = case.fit("nudge-m", &[]);
    expect(&out, 0, &[]);
    let want = std::fs::read(case.out().join("out.npy")).unwrap();

    let (n, d, data) = corpus(&case);
    let f64s: Vec<u8> = data
        .iter()
        .flat_map(|x| (*x as f64).to_le_bytes())
        .collect();
    case.write(
        "corpus.npy",
        npy_bytes("<f8", false, &format!("({n}, {d})"), &f64s),
    );
    let out = case.fit("nudge-m", &[]);
    expect(&out, 0, &["corpus.npy", "float64", "converted to float32"]);
    // f32 values widened to f64 convert back exactly: the same output.
    assert_eq!(std::fs::read(case.out().join("out.npy")).unwrap(), want);
}

#[test]
fn integer_and_other_dtypes_are_refused() {
    let case = Case::new("small");
    for (descr, size) in [("<i4", 4), ("<i8", 8), ("|u1", 1), ("|b1", 1), (">f4", 4)] {
        let data = vec![0u8; 500 * 32 * size];
        case.write("queries.npy", npy_bytes(descr, false, "(500, 32)", &data));
        let out = case.fit("nudge-m", &[]);
        expect_failure(&case, &out, 3, &["queries.npy", descr, "float32"]);
    }
}

#[test]
fn fortran_order_is_refused() {
    let case = Case::new("small");
    let (n, d, data) = corpus(&case);
    case.write(
        "corpus.npy",
        npy_bytes("<f4", true, &format!("({n}, {d})"), &f32_bytes(&data)),
    );
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["corpus.npy", "Fortran", "C order"]);
}

#[test]
fn rank_other_than_two_is_refused() {
    let case = Case::new("small");
    let (n, d, data) = corpus(&case);
    for (shape, rank) in [
        (format!("({},)", n * d), "rank 1"),
        (format!("({n}, {d}, 1)"), "rank 3"),
        ("()".to_string(), "rank 0"),
    ] {
        case.write(
            "corpus.npy",
            npy_bytes("<f4", false, &shape, &f32_bytes(&data)),
        );
        let out = case.fit("nudge-m", &[]);
        expect_failure(&case, &out, 3, &["corpus.npy", rank, "2-d"]);
    }
}

#[test]
fn dimension_mismatch() {
    let case = Case::new("small");
    write_f32(&case.file("queries.npy"), 500, 16, &vec![0.5; 500 * 16]);
    let out = case.fit("nudge-n", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "dimension mismatch",
            "corpus.npy",
            "32-d",
            "queries.npy",
            "16-d",
        ],
    );
}

#[test]
fn zero_dimensions() {
    let case = Case::new("small");
    write_f32(&case.file("corpus.npy"), 1000, 0, &[]);
    write_f32(&case.file("queries.npy"), 500, 0, &[]);
    let out = case.fit("nudge-n", &[]);
    expect_failure(&case, &out, 3, &["corpus.npy", "0 dimensions"]);
}

#[test]
fn non_finite_corpus_rows_are_named() {
    for (method, bad, shown) in [
        ("nudge-m", f32::NAN, "row 17 column 3 is NaN"),
        ("nudge-n", f32::INFINITY, "row 17 column 3 is inf"),
    ] {
        let case = Case::new("small");
        let (n, d, mut data) = corpus(&case);
        data[17 * d + 3] = bad;
        data[640 * d] = -bad;
        write_f32(&case.file("corpus.npy"), n, d, &data);
        let out = case.fit(method, &[]);
        expect_failure(
            &case,
            &out,
            3,
            &[
                "corpus.npy",
                "2 rows hold NaN or infinity",
                "rows 17, 640",
                shown,
            ],
        );
    }
}

#[test]
fn corpus_rows_whose_norm_overflows_are_named() {
    let case = Case::new("small");
    let (n, d, mut data) = corpus(&case);
    data[5 * d..6 * d].fill(1e20);
    write_f32(&case.file("corpus.npy"), n, d, &data);
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "corpus.npy",
            "row 5 has values so large that its norm overflows",
        ],
    );
}

#[test]
fn non_finite_query_rows_are_named() {
    for bad in [f32::NAN, f32::NEG_INFINITY] {
        let case = Case::new("small");
        let (n, d, mut data) = read_f32(&case.file("queries.npy"));
        data[123 * d + 5] = bad;
        write_f32(&case.file("queries.npy"), n, d, &data);
        let out = case.fit("nudge-m", &[]);
        expect_failure(&case, &out, 3, &["queries.npy", "row 123 (column 5)"]);
    }
}

#[test]
fn f16_overflow_is_non_finite() {
    // f16 infinity (0x7c00) in row 2 of an f16 corpus.
    let case = Case::new("f16");
    let mut bytes = std::fs::read(case.file("corpus.npy")).unwrap();
    let offset = bytes.len() - 1500 * 48 * 2 + (2 * 48 + 7) * 2;
    bytes[offset..offset + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
    case.write("corpus.npy", &bytes);
    let out = case.fit("nudge-n", &[]);
    expect_failure(&case, &out, 3, &["corpus.npy", "1 row holds", "row 2"]);
}

#[test]
fn zero_norm_rows_fail_or_stay_with_allow_zero_rows() {
    let case = Case::new("small");
    let (n, d, mut data) = corpus(&case);
    // Row 591 answers a training query (it would move); rows 3 and 42 do not.
    for r in [3, 42, 591] {
        data[r * d..(r + 1) * d].fill(0.0);
    }
    write_f32(&case.file("corpus.npy"), n, d, &data);
    for method in ["nudge-m", "nudge-n"] {
        let out = case.fit(method, &[]);
        expect_failure(
            &case,
            &out,
            3,
            &[
                "corpus.npy",
                "3 rows have zero norm",
                "rows 3, 42, 591",
                "--allow-zero-rows",
            ],
        );

        let out = case.fit(method, &["--allow-zero-rows"]);
        expect(&out, 0, &[]);
        let (rows, cols, written) = read_f32(&case.out().join("out.npy"));
        assert_eq!((rows, cols), (n, d));
        for r in [3, 42, 591] {
            assert!(written[r * d..(r + 1) * d].iter().all(|x| *x == 0.0));
        }
        assert!(written.iter().all(|x| x.is_finite()));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.out().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["zero_rows"], 3);
        std::fs::remove_file(case.out().join("out.npy")).unwrap();
        std::fs::remove_file(case.out().join("report.json")).unwrap();
    }
}

// ---- ids files ------------------------------------------------------------

#[test]
fn ids_file_with_wrong_line_count() {
    let case = Case::new("small");
    let text = case.read("corpus_ids.txt");
    let short: Vec<&str> = text.lines().take(999).collect();
    case.write("corpus_ids.txt", short.join("\n") + "\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &["corpus_ids.txt", "999 ids", "corpus.npy", "1000 rows"],
    );

    let case = Case::new("small");
    case.write("query_ids.txt", case.read("query_ids.txt") + "extra\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["query_ids.txt", "501 ids", "500 rows"]);
}

#[test]
fn duplicate_and_empty_ids() {
    let case = Case::new("small");
    let text = case.read("query_ids.txt");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[4] = lines[1];
    case.write("query_ids.txt", lines.join("\n") + "\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &["query_ids.txt:5", "duplicate id \"1\"", "line 2"],
    );

    lines[4] = "";
    case.write("query_ids.txt", lines.join("\n") + "\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["query_ids.txt:5", "empty id"]);
}

// ---- qrels ----------------------------------------------------------------

#[test]
fn qrels_missing_or_wrong_header() {
    let case = Case::new("small");
    let text = case.read("qrels/train.tsv");
    // Without its header, a file whose first line is a judgement of known
    // ids is read as headerless TSV (and says so); one whose first line
    // names unknown ids is a missing header, not a guess.
    let mut body: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    case.write("qrels/train.tsv", body.join("\n") + "\n");
    let out = case.fit("nudge-m", &[]);
    expect(&out, 0, &["train.tsv: no header line; read as headerless"]);
    std::fs::remove_dir_all(case.out()).unwrap();
    std::fs::create_dir_all(case.out()).unwrap();
    body[0] = format!("no-such-query\t{}", body[0].split_once('\t').unwrap().1);
    case.write("qrels/train.tsv", body.join("\n") + "\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            "train.tsv:1",
            "missing header",
            "query-id<TAB>corpus-id<TAB>score",
        ],
    );

    case.write(
        "qrels/train.tsv",
        text.replacen("query-id\tcorpus-id\tscore", "query\tdoc\trel", 1),
    );
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["train.tsv:1", "bad header"]);
}

#[test]
fn byte_order_marks_are_ignored() {
    let case = Case::new("small");
    let out = case.fit("nudge-m", &[]);
    expect(&out, 0, &[]);
    let want = std::fs::read(case.out().join("out.npy")).unwrap();
    for f in [
        "qrels/train.tsv",
        "qrels/dev.tsv",
        "corpus_ids.txt",
        "query_ids.txt",
    ] {
        case.write(f, format!("\u{feff}{}", case.read(f)));
    }
    let out = case.fit("nudge-m", &[]);
    expect(&out, 0, &[]);
    assert_eq!(std::fs::read(case.out().join("out.npy")).unwrap(), want);
}

#[test]
fn qrels_wrong_column_count() {
    let case = Case::new("small");
    let mut text = case.read("qrels/dev.tsv");
    text.push_str("300\t950\n");
    let line = text.lines().count();
    case.write("qrels/dev.tsv", &text);
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            &format!("dev.tsv:{line}"),
            "2 tab-separated columns",
            "expected 3",
        ],
    );

    // Space-separated lines get a hint.
    let text = case
        .read("qrels/dev.tsv")
        .replace("300\t950\n", "300 950 1\n");
    case.write("qrels/dev.tsv", &text);
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &[&format!("dev.tsv:{line}"), "not spaces"]);
}

#[test]
fn qrels_non_numeric_score() {
    for score in ["high", "NaN", "inf", ""] {
        let case = Case::new("small");
        let text = case.read("qrels/test.tsv");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[3] = format!("401\t364\t{score}");
        case.write("qrels/test.tsv", lines.join("\n") + "\n");
        let out = case.fit("nudge-n", &[]);
        expect_failure(
            &case,
            &out,
            3,
            &[
                "test.tsv:4",
                &format!("score {score:?}"),
                "not a finite number",
            ],
        );
    }
}

#[test]
fn qrels_unknown_ids_fail_or_are_skipped() {
    let case = Case::new("small");
    let mut text = case.read("qrels/train.tsv");
    text.push_str("0\tno-such-doc\t1\nq-nope\t5\t1\n");
    let line = text.lines().count() - 1;
    case.write("qrels/train.tsv", &text);
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &[
            &format!("train.tsv:{line}"),
            "unknown corpus id \"no-such-doc\"",
            "--skip-unknown-ids",
        ],
    );

    let out = case.fit("nudge-m", &["--skip-unknown-ids"]);
    expect(
        &out,
        0,
        &["warning", "train.tsv", "skipped 2 lines with unknown ids"],
    );
    assert!(case.out().join("out.npy").exists());

    // Row-number ids are canonical: "0007" is not row 7.
    let case = Case::empty();
    write_f32(&case.file("corpus.npy"), 10, 2, &[1.0; 20]);
    write_f32(&case.file("queries.npy"), 3, 2, &[1.0; 6]);
    case.write(
        "qrels/train.tsv",
        "query-id\tcorpus-id\tscore\n0\t0007\t1\n",
    );
    case.write("qrels/dev.tsv", "query-id\tcorpus-id\tscore\n1\t1\t1\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(
        &case,
        &out,
        3,
        &["train.tsv:2", "unknown corpus id \"0007\""],
    );
}

#[test]
fn empty_split() {
    let case = Case::new("small");
    case.write("qrels/dev.tsv", "query-id\tcorpus-id\tscore\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["dev.tsv", "dev split has no query"]);

    // Only non-relevant judgements: just as empty.
    case.write(
        "qrels/dev.tsv",
        "query-id\tcorpus-id\tscore\n300\t950\t0\n301\t443\t0\n",
    );
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["dev.tsv", "dev split has no query"]);

    case.write("qrels/train.tsv", "");
    let out = case.fit("nudge-n", &[]);
    expect_failure(&case, &out, 3, &["train.tsv", "file is empty"]);
}

#[test]
fn missing_train_or_dev_split() {
    for split in ["train", "dev"] {
        let case = Case::new("small");
        std::fs::remove_file(case.file(&format!("qrels/{split}.tsv"))).unwrap();
        let out = case.fit("nudge-m", &[]);
        expect_failure(
            &case,
            &out,
            3,
            &[
                &format!("qrels/{split}.tsv: not found"),
                &format!("the {split} split is required"),
            ],
        );
    }

    // Without a dataset folder it is a usage error: a flag is missing.
    let case = Case::new("small");
    let p = |f: &str| case.file(f).to_str().unwrap().to_string();
    let out_path = case.out().join("out.npy");
    let out = nudge(
        &[
            "fit",
            "--method",
            "nudge-m",
            "--corpus",
            &p("corpus.npy"),
            "--queries",
            &p("queries.npy"),
            "--train-qrels",
            &p("qrels/train.tsv"),
            "--out",
            out_path.to_str().unwrap(),
        ],
        &[],
    );
    expect_failure(&case, &out, 2, &["no dev qrels", "--dev-qrels"]);

    // A qrels path that does not exist is named.
    let out = case.fit("nudge-m", &["--dev-qrels", "/nonexistent/dev.tsv"]);
    expect_failure(&case, &out, 3, &["/nonexistent/dev.tsv", "cannot read"]);
}

#[test]
fn missing_dataset_folder_and_files() {
    let case = Case::new("small");
    let out = case.fit("nudge-m", &["--corpus", case.data().to_str().unwrap()]);
    // (A folder is read as corpus shards, but not a dataset folder.)
    expect_failure(&case, &out, 3, &["is a dataset folder", "--dataset"]);
    let qrels_dir = case.file("qrels");
    let out = case.fit("nudge-m", &["--train-qrels", qrels_dir.to_str().unwrap()]);
    expect_failure(&case, &out, 3, &["qrels", "cannot read qrels file"]);

    std::fs::remove_file(case.file("queries.npy")).unwrap();
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["queries.npy", "cannot open"]);

    let out = nudge(
        &[
            "fit",
            "--dataset",
            "/nonexistent/dataset",
            "--method",
            "nudge-m",
            "--report",
            case.out().join("r.json").to_str().unwrap(),
        ],
        &[],
    );
    expect_failure(&case, &out, 3, &["/nonexistent/dataset", "does not exist"]);
}

// ---- exit codes -----------------------------------------------------------

#[test]
fn exit_codes() {
    let case = Case::new("small");
    // 0: success.
    let out = case.fit("nudge-m", &["--quiet"]);
    expect(&out, 0, &[]);
    assert!(out.stderr.is_empty(), "--quiet printed: {}", stderr(&out));
    std::fs::remove_dir_all(case.out()).unwrap();
    std::fs::create_dir(case.out()).unwrap();

    // 2: usage (clap's own errors and nudge's).
    let out = case.fit("nudge-x", &[]);
    expect_failure(&case, &out, 2, &["nudge-x"]);
    let out = case.fit("nudge-n", &["--no-such-flag"]);
    expect_failure(&case, &out, 2, &["--no-such-flag"]);
    let out = case.fit("nudge-n", &["--val-k", "0"]);
    expect_failure(&case, &out, 2, &["--val-k"]);
    let out = case.fit("nudge-n", &["--gamma", "5"]);
    expect_failure(&case, &out, 2, &["--gamma 5"]);
    let out = nudge(&["fit", "--method", "nudge-m", "--dataset", "x"], &[]);
    expect(&out, 2, &["nothing to write"]);
    let same = case.out().join("x.npy");
    let same = same.to_str().unwrap();
    let out = nudge(
        &[
            "fit",
            "--dataset",
            case.data().to_str().unwrap(),
            "--method",
            "nudge-m",
            "--out",
            same,
            "--report",
            same,
        ],
        &[],
    );
    expect_failure(&case, &out, 2, &["--out and --report both name", "x.npy"]);

    // 3: input data.
    case.write("qrels/dev.tsv", "query-id\tcorpus-id\tscore\n300\t950\tx\n");
    let out = case.fit("nudge-m", &[]);
    expect_failure(&case, &out, 3, &["dev.tsv:2"]);

    // 4: runtime (the output cannot be written).
    let case = Case::new("small");
    std::fs::write(case.out().join("file"), b"").unwrap();
    let bad = case.out().join("file").join("out.npy");
    let out = nudge(
        &[
            "fit",
            "--dataset",
            case.data().to_str().unwrap(),
            "--method",
            "nudge-m",
            "--out",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    expect(&out, 4, &["file/out.npy", "cannot write"]);
    assert_eq!(list(&case.out()), vec!["file".to_string()]);
}

#[test]
fn eval_reports_input_errors_the_same_way() {
    let case = Case::new("small");
    let (n, d, mut data) = corpus(&case);
    data[77 * d + 1] = f32::NAN;
    let bad = case.out().join("bad.npy");
    write_f32(&bad, n, d, &data);
    let data = case.data();
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--dataset", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        nudge(&args, &[])
    };
    let out = eval(&["--corpus", bad.to_str().unwrap()]);
    expect(&out, 3, &["bad.npy", "row 77 column 1 is NaN"]);
    let out = eval(&["--split", "dev", "--k", "0"]);
    expect(&out, 2, &["--k"]);
    case.write(
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\n400\t5000\t1\n",
    );
    let out = eval(&[]);
    expect(&out, 3, &["test.tsv:2", "unknown corpus id \"5000\""]);
    let out = eval(&["--skip-unknown-ids"]);
    expect(&out, 3, &["test.tsv", "test split has no query"]);
}
