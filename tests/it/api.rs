//! The public library API as a program calls it: fits over arrays held in
//! memory equal fits over files, `Fit::apply` equals the written output,
//! progress and cancellation go through `Control`, and errors are told
//! apart by variant and kind, never by message.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::*;
use nudge::data::Durability;
use nudge::data::npy::{Dtype, parse_header};
use nudge::{
    Cancel, Corpus, Cpu, Dataset, Error, EvalOptions, FitOptions, IdKind, Ids, Inputs, Kind,
    Matrix, Method, Paths, Progress, Split, SplitName, WriteOptions,
};

const METHODS: [Method; 2] = [Method::NudgeM, Method::NudgeN];

/// A qrels file's judgements as `(query id, corpus id, score)`: BEIR's
/// `{query_id: {corpus_id: score}}` flattened, as a caller holding it in
/// memory would pass it.
fn judgements(text: &str) -> Vec<(&str, &str, f32)> {
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "{l:?}");
            (f[0], f[1], f[2].parse().unwrap())
        })
        .collect()
}

/// Fits fixture `dir` from memory, with the judgements looked up by id in
/// `query_ids` and `corpus_ids`, and checks that each method's fit equals
/// the fit of the fixture's files.
fn check_in_memory_equals_files(dir: &Path, query_ids: &Ids, corpus_ids: &Ids) {
    let (n, d, corpus) = read_f32(&dir.join("corpus.npy"));
    let (qn, qd, q) = read_f32(&dir.join("queries.npy"));
    assert_eq!((corpus_ids.len(), query_ids.len()), (n, qn));
    let queries = Matrix::new(qn, qd, q);
    let [train, dev, test] = [SplitName::Train, SplitName::Dev, SplitName::Test].map(|name| {
        let file = dir.join(format!("qrels/{}.tsv", name.as_str()));
        let text = std::fs::read_to_string(file).unwrap();
        let judged = Split::from_ids(name, judgements(&text), query_ids, corpus_ids, false);
        judged.unwrap().split
    });
    let inputs = Inputs {
        corpus: Corpus::f32(&corpus, d).unwrap(),
        queries: &queries,
        train: &train,
        dev: &dev,
        test: Some(&test),
    };
    let files = load(dir);
    for method in METHODS {
        let opts = FitOptions::new(method);
        let in_memory = nudge::fit(&Cpu, &inputs, &opts).unwrap();
        let (from_files, _) = fit_and_write(&Cpu, &files, &opts);
        assert!(!in_memory.moved.is_empty(), "{method:?}: nothing moved");
        assert_same_fit(&in_memory, &from_files, &format!("{dir:?} {method:?}"));
    }
}

#[test]
fn in_memory_fit_with_string_ids_equals_the_file_fit() {
    let dir = fixture("rawnorms-stringids");
    let names = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let corpus_ids = Ids::from_names(names("corpus_ids.txt").lines(), "corpus_ids").unwrap();
    let query_ids = Ids::from_names(names("query_ids.txt").lines(), "query_ids").unwrap();
    // The ids are names, not row numbers.
    assert_eq!(corpus_ids.row("doc-000007"), Some(7));
    assert_eq!(corpus_ids.row("7"), None);
    check_in_memory_equals_files(&dir, &query_ids, &corpus_ids);
}

#[test]
fn in_memory_fit_with_row_number_ids_equals_the_file_fit() {
    let dir = fixture("small");
    let rows = |f: &str| read_f32(&dir.join(f)).0;
    let (n, qn) = (rows("corpus.npy"), rows("queries.npy"));
    // The fixture's ids files hold the row numbers, so `Ids::rows` names the
    // same rows as the files do.
    for (f, count) in [("corpus_ids.txt", n), ("query_ids.txt", qn)] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(
            text.lines().eq((0..count).map(|i| i.to_string())),
            "{f} is not the row numbers"
        );
    }
    check_in_memory_equals_files(&dir, &Ids::rows(qn), &Ids::rows(n));
}

#[test]
fn in_memory_f16_corpus_equals_the_f16_file_fit() {
    let dir = fixture("f16");
    let l = load(&dir);
    let bytes = std::fs::read(dir.join("corpus.npy")).unwrap();
    let h = parse_header(&bytes).unwrap();
    assert_eq!(h.dtype, Dtype::F16);
    let corpus: Vec<half::f16> = bytes[h.data_offset..]
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(corpus.len(), h.rows * h.cols);
    for method in METHODS {
        let inputs = Inputs {
            corpus: Corpus::f16(&corpus, h.cols).unwrap(),
            ..l.inputs()
        };
        let opts = FitOptions::new(method);
        let in_memory = nudge::fit(&Cpu, &inputs, &opts).unwrap();
        let (from_file, _) = fit_and_write(&Cpu, &l, &opts);
        assert_same_fit(&in_memory, &from_file, &format!("f16 {method:?}"));
    }
}

/// `Fit::apply` on a copy of the corpus gives the bytes `fit_to_file`
/// writes, assembled in memory or streamed, synced or not.
#[test]
fn apply_equals_the_written_output() {
    for name in ["rawnorms-stringids", "small", "f16"] {
        let l = load(&fixture(name));
        let (n, d) = (l.ds.corpus.rows(), l.ds.dim());
        let corpus = l.ds.corpus.read_all().unwrap();
        for method in METHODS {
            let ways = [
                (WriteOptions::default().in_memory_max, Durability::Synced),
                (0, Durability::Synced),
                (WriteOptions::default().in_memory_max, Durability::Unsynced),
                (0, Durability::Unsynced),
            ];
            for (in_memory_max, durability) in ways {
                let tmp = tempfile::tempdir().unwrap();
                let out = tmp.path().join("out.npy");
                let write = WriteOptions {
                    in_memory_max,
                    durability,
                    ..WriteOptions::default()
                };
                let fit =
                    nudge::fit_to_file(&Cpu, &l.inputs(), &FitOptions::new(method), &out, &write)
                        .unwrap();
                let mut tuned = corpus.clone();
                fit.apply(&mut tuned, d);
                let bytes = std::fs::read(&out).unwrap();
                let h = parse_header(&bytes).unwrap();
                assert_eq!((h.dtype, h.rows, h.cols), (Dtype::F32, n, d));
                assert!(
                    bytes[h.data_offset..] == f32_bytes(&tuned)[..],
                    "{name} {method:?} in_memory_max {in_memory_max} {durability:?}: apply differs from the file"
                );
                assert_eq!(list(tmp.path()), vec!["out.npy"]);
            }
        }
    }
}

// ---- progress and cancellation ---------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Start(String, u64, String),
    Set(u64),
    Finish,
}

/// A `Progress` that records every call.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    fn push(&self, e: Event) {
        self.0.lock().unwrap().push(e);
    }
}

impl Progress for Recorder {
    fn start(&self, phase: &str, total: u64, unit: &str) {
        self.push(Event::Start(phase.into(), total, unit.into()));
    }
    fn set(&self, done: u64) {
        self.push(Event::Set(done));
    }
    fn finish(&self) {
        self.push(Event::Finish);
    }
}

/// A phase as the recorder saw it: name, total, unit and every `set`.
struct Phase {
    name: String,
    total: u64,
    unit: String,
    sets: Vec<u64>,
}

/// The recorded calls as phases; panics unless every phase was started,
/// then finished, before the next one started.
fn phases(events: &[Event]) -> Vec<Phase> {
    let mut phases: Vec<Phase> = Vec::new();
    let mut open = false;
    for e in events {
        match e {
            Event::Start(name, total, unit) => {
                assert!(!open, "{name} started inside another phase: {events:?}");
                open = true;
                phases.push(Phase {
                    name: name.clone(),
                    total: *total,
                    unit: unit.clone(),
                    sets: Vec::new(),
                });
            }
            Event::Set(done) => {
                assert!(open, "set outside a phase: {events:?}");
                phases.last_mut().unwrap().sets.push(*done);
            }
            Event::Finish => {
                assert!(open, "finish without a start: {events:?}");
                open = false;
            }
        }
    }
    assert!(!open, "a phase was never finished: {events:?}");
    phases
}

#[test]
fn progress_sees_the_corpus_scan_from_start_to_finish() {
    let l = load(&fixture("small"));
    let rows = l.ds.corpus.rows() as u64;
    for method in METHODS {
        let recorder = Arc::new(Recorder::default());
        let mut opts = FitOptions::new(method);
        opts.chunk_rows = Some(64);
        opts.control.progress = Some(recorder.clone());
        let fit = nudge::fit(&Cpu, &l.inputs(), &opts).unwrap();
        let events = recorder.0.lock().unwrap().clone();
        let phases = phases(&events);

        let scan = &phases[0];
        assert_eq!(
            (scan.name.as_str(), scan.total, scan.unit.as_str()),
            ("scanning corpus", rows, "rows"),
            "{method:?}: {events:?}"
        );
        // One `set` per chunk of 64 rows, the last one the whole corpus.
        let want: Vec<u64> = (1..=rows.div_ceil(64))
            .map(|i| (64 * i).min(rows))
            .collect();
        assert_eq!(scan.sets, want, "{method:?}");
        assert_eq!(scan.sets.last(), Some(&rows));
        assert_eq!(
            phases
                .iter()
                .filter(|p| p.name == "scanning corpus")
                .count(),
            1,
            "{method:?}: the corpus is scanned once"
        );
        assert!(
            phases.iter().any(|p| p.name == "gamma search"),
            "{method:?}: no gamma search phase: {events:?}"
        );
        for p in &phases {
            assert!(
                p.sets.windows(2).all(|w| w[0] <= w[1]) && p.sets.iter().all(|s| *s <= p.total),
                "{method:?} {}: sets {:?} of {}",
                p.name,
                p.sets,
                p.total
            );
        }
        // Watching does not change the result.
        let plain = nudge::fit(&Cpu, &l.inputs(), &FitOptions::new(method)).unwrap();
        assert_same_fit(&fit, &plain, &format!("{method:?} with progress"));
    }
}

#[test]
fn a_cancelled_fit_is_interrupted_and_leaves_no_file() {
    let l = load(&fixture("small"));
    for in_memory_max in [WriteOptions::default().in_memory_max, 0] {
        let write = WriteOptions {
            in_memory_max,
            ..WriteOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.npy");
        // The caller keeps a clone of the token and cancels before the run.
        let token = Cancel::new();
        let mut opts = FitOptions::new(Method::NudgeN);
        opts.control.cancel = token.clone();
        token.cancel();
        assert!(opts.control.cancel.is_cancelled());
        let err = nudge::fit_to_file(&Cpu, &l.inputs(), &opts, &out, &write).unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err:?}");
        assert_eq!(err.kind(), Kind::Interrupted);
        assert_eq!(list(dir.path()), Vec::<String>::new());

        // Cancelled during the corpus scan, from the progress sink.
        struct CancelOnFirstSet(Cancel);
        impl Progress for CancelOnFirstSet {
            fn start(&self, _: &str, _: u64, _: &str) {}
            fn set(&self, _: u64) {
                self.0.cancel();
            }
            fn finish(&self) {}
        }
        let mut opts = FitOptions::new(Method::NudgeM);
        opts.chunk_rows = Some(100);
        opts.control.progress = Some(Arc::new(CancelOnFirstSet(opts.control.cancel.clone())));
        let err = nudge::fit_to_file(&Cpu, &l.inputs(), &opts, &out, &write).unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err:?}");
        assert_eq!(list(dir.path()), Vec::<String>::new());
    }

    // A fit without output and an evaluation stop the same way.
    let opts = FitOptions::new(Method::NudgeM);
    opts.control.cancel.cancel();
    let err = nudge::fit(&Cpu, &l.inputs(), &opts).unwrap_err();
    assert_eq!(err.kind(), Kind::Interrupted);
    let eval = EvalOptions {
        control: opts.control.clone(),
        ..EvalOptions::default()
    };
    let err = nudge::evaluate(&Cpu, l.inputs().corpus, &l.ds.queries, &l.dev, &eval).unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
}

// ---- errors ------------------------------------------------------------------

#[test]
fn unknown_ids_name_the_line_and_the_kind_of_id() {
    let query_ids = Ids::rows(3);
    let corpus_ids = Ids::from_names(["a", "b", "c"], "corpus_ids").unwrap();
    let train = [("0", "a", 1.0), ("1", "b", 1.0), ("2", "zz", 1.0)];
    let err = Split::from_ids(SplitName::Train, train, &query_ids, &corpus_ids, false).unwrap_err();
    match &err {
        Error::UnknownId {
            path,
            line,
            what,
            id,
        } => assert_eq!(
            (path.as_path(), *line, *what, id.as_str()),
            (Path::new("train"), 3, IdKind::Corpus, "zz")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!((err.kind(), err.line()), (Kind::Data, Some(3)));

    let dev = [("0", "a", 1.0), ("7", "b", 1.0)];
    let err = Split::from_ids(SplitName::Dev, dev, &query_ids, &corpus_ids, false).unwrap_err();
    match &err {
        Error::UnknownId { line, what, id, .. } => {
            assert_eq!((*line, *what, id.as_str()), (2, IdKind::Query, "7"))
        }
        other => panic!("{other:?}"),
    }
    // ... which `skip_unknown` skips, with a warning.
    let judged = Split::from_ids(SplitName::Dev, dev, &query_ids, &corpus_ids, true).unwrap();
    assert_eq!(judged.split.queries.len(), 1);
    assert_eq!(judged.warnings.len(), 1, "{:?}", judged.warnings);

    // In a dataset's qrels file: the file and its line.
    let case = Case::new("small");
    let mut text = case.read("qrels/train.tsv");
    text.push_str("0\tno-such-doc\t1\n");
    let line = text.lines().count();
    case.write("qrels/train.tsv", &text);
    let ds = Dataset::open(Paths::folder(case.data()).unwrap()).unwrap();
    let err = ds.fit_splits(false, true).unwrap_err();
    match &err {
        Error::UnknownId { what, id, .. } => {
            assert_eq!((*what, id.as_str()), (IdKind::Corpus, "no-such-doc"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.path(), Some(case.file("qrels/train.tsv").as_path()));
    assert_eq!(err.line(), Some(line));
    assert!(ds.fit_splits(true, true).is_ok());
}

#[test]
fn zero_norm_rows_are_an_error_naming_them_unless_allowed() {
    let l = load(&fixture("small"));
    let d = l.ds.dim();
    let mut corpus = l.ds.corpus.read_all().unwrap();
    // Row 591 answers a training query (it would move); rows 3 and 42 do not.
    for r in [3, 42, 591] {
        corpus[r * d..(r + 1) * d].fill(0.0);
    }
    let inputs = Inputs {
        corpus: Corpus::f32(&corpus, d).unwrap(),
        ..l.inputs()
    };
    for method in METHODS {
        let err = nudge::fit(&Cpu, &inputs, &FitOptions::new(method)).unwrap_err();
        match &err {
            Error::ZeroRows { path, rows } => {
                assert_eq!(path.as_path(), Path::new("corpus"));
                assert_eq!(rows, &[3, 42, 591]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((err.kind(), err.row()), (Kind::Data, Some(3)));

        let mut opts = FitOptions::new(method);
        opts.allow_zero_rows = true;
        let fit = nudge::fit(&Cpu, &inputs, &opts).unwrap();
        assert_eq!(fit.zero_rows, vec![3, 42, 591]);
        let mut tuned = corpus.clone();
        fit.apply(&mut tuned, d);
        for r in [3, 42, 591] {
            assert!(
                tuned[r * d..(r + 1) * d].iter().all(|x| *x == 0.0),
                "row {r}"
            );
        }
        assert!(tuned.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn options_no_fit_can_run_with_are_usage_errors() {
    let l = load(&fixture("edge"));
    let m = FitOptions::new(Method::NudgeM);
    let n = FitOptions::new(Method::NudgeN);
    for (what, opts) in [
        (
            "val_k 0",
            FitOptions {
                val_k: 0,
                ..n.clone()
            },
        ),
        (
            "eval_k 0",
            FitOptions {
                eval_k: 0,
                ..m.clone()
            },
        ),
        (
            "chunk_rows 0",
            FitOptions {
                chunk_rows: Some(0),
                ..m.clone()
            },
        ),
        (
            "block_rows 0",
            FitOptions {
                block_rows: Some(0),
                ..n.clone()
            },
        ),
        (
            "nudge-n gamma 5",
            FitOptions {
                gamma: Some(5.0),
                ..n.clone()
            },
        ),
        (
            "nudge-m gamma -1",
            FitOptions {
                gamma: Some(-1.0),
                ..m.clone()
            },
        ),
        (
            "gamma NaN",
            FitOptions {
                gamma: Some(f64::NAN),
                ..m.clone()
            },
        ),
    ] {
        let err = opts.validate().unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{what}: {err:?}");
        let err = nudge::fit(&Cpu, &l.inputs(), &opts).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{what}: {err:?}");
        assert_eq!(err.kind(), Kind::Usage, "{what}");
    }
    for ks in [vec![], vec![10, 0]] {
        let opts = EvalOptions {
            ks: ks.clone(),
            ..EvalOptions::default()
        };
        let err =
            nudge::evaluate(&Cpu, l.inputs().corpus, &l.ds.queries, &l.dev, &opts).unwrap_err();
        assert_eq!(err.kind(), Kind::Usage, "ks {ks:?}: {err:?}");
    }
    // No corpus at all.
    match Dataset::open(Paths::default()) {
        Err(err @ Error::MissingInput { what: "corpus" }) => assert_eq!(err.kind(), Kind::Usage),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened a dataset without a corpus"),
    }
}

#[test]
fn a_missing_split_names_the_file_it_was_expected_in() {
    let case = Case::new("small");
    let dev = case.file("qrels/dev.tsv");
    std::fs::remove_file(&dev).unwrap();
    let ds = Dataset::open(Paths::folder(case.data()).unwrap()).unwrap();
    let err = ds.fit_splits(false, true).unwrap_err();
    match &err {
        Error::MissingSplit {
            split,
            expected: Some(expected),
        } => assert_eq!((*split, expected), ("dev", &dev)),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.kind(), Kind::Data);
    assert_eq!(err.path(), Some(dev.as_path()));

    // Without a dataset folder it was expected nowhere: the caller did not
    // give it, a usage error.
    let paths = Paths {
        corpus: Some(case.file("corpus.npy")),
        queries: Some(case.file("queries.npy")),
        train_qrels: Some(case.file("qrels/train.tsv")),
        ..Paths::default()
    };
    let ds = Dataset::open(paths).unwrap();
    let err = ds.fit_splits(false, true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingSplit {
                split: "dev",
                expected: None
            }
        ),
        "{err:?}"
    );
    assert_eq!((err.kind(), err.path()), (Kind::Usage, None));

    // The test split is optional.
    let case = Case::new("small");
    std::fs::remove_file(case.file("qrels/test.tsv")).unwrap();
    let ds = Dataset::open(Paths::folder(case.data()).unwrap()).unwrap();
    assert!(ds.fit_splits(false, true).unwrap().test.is_none());
}

#[test]
fn io_errors_carry_the_os_error_as_their_source() {
    use std::error::Error as _;
    let os_error = |e: &Error| -> std::io::ErrorKind {
        e.source()
            .expect("a source")
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error")
            .kind()
    };

    // Unreadable: an input that is not there.
    let case = Case::new("small");
    std::fs::remove_file(case.file("queries.npy")).unwrap();
    let err = match Dataset::open(Paths::folder(case.data()).unwrap()) {
        Err(e) => e,
        Ok(_) => panic!("opened a dataset without queries"),
    };
    assert!(matches!(err, Error::Unreadable { .. }), "{err:?}");
    assert_eq!(err.kind(), Kind::Data);
    assert_eq!(err.path(), Some(case.file("queries.npy").as_path()));
    assert_eq!(os_error(&err), std::io::ErrorKind::NotFound);

    // Io: an output that cannot be written (its directory is a file).
    let l = load(&fixture("edge"));
    std::fs::write(case.out().join("file"), b"").unwrap();
    let out = case.out().join("file/out.npy");
    let opts = FitOptions::new(Method::NudgeM);
    let err =
        nudge::fit_to_file(&Cpu, &l.inputs(), &opts, &out, &WriteOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(err.kind(), Kind::Runtime);
    assert_eq!(err.path(), Some(out.as_path()));
    assert_eq!(os_error(&err), std::io::ErrorKind::NotADirectory);
    assert_eq!(list(&case.out()), vec!["file"]);
}

// ---- evaluation ----------------------------------------------------------------

/// `evaluate` of the dataset's own corpus by cosine is the fit's "before";
/// of the tuned corpus by dot product, its "after".
#[test]
fn evaluate_agrees_with_the_fit_before_and_after() {
    for name in ["small", "rawnorms-stringids", "f16"] {
        let l = load(&fixture(name));
        let test = l.test.as_ref().unwrap();
        let d = l.ds.dim();
        let cosine = EvalOptions {
            ks: vec![10, 1],
            cosine: true,
            ..EvalOptions::default()
        };
        let untuned =
            nudge::evaluate(&Cpu, l.inputs().corpus, &l.ds.queries, test, &cosine).unwrap();
        let ks: Vec<usize> = untuned.scores.iter().map(|s| s.k).collect();
        assert_eq!(ks, vec![1, 10]);
        assert!(untuned.zero_rows.is_empty());
        let corpus = l.ds.corpus.read_all().unwrap();
        for method in METHODS {
            let fit = nudge::fit(&Cpu, &l.inputs(), &FitOptions::new(method)).unwrap();
            assert_eq!(
                Some(&untuned.scores[1]),
                fit.before.as_ref(),
                "{name} {method:?}: before"
            );
            let mut tuned = corpus.clone();
            fit.apply(&mut tuned, d);
            let dot = EvalOptions::default();
            let corpus = Corpus::f32(&tuned, d).unwrap();
            let after = nudge::evaluate(&Cpu, corpus, &l.ds.queries, test, &dot).unwrap();
            assert_eq!(
                Some(&after.scores[0]),
                fit.after.as_ref(),
                "{name} {method:?}: after"
            );
        }
    }
}
