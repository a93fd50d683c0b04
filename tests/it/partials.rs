//! A fit split into maps over corpus parts and a reduce equals the one
//! process fit bit for bit (gamma, moved rows, metrics, the written
//! delta and corpus), whatever the parts; the reduce refuses partials that
//! do not tile the corpus or come from other queries or judgements, and
//! names the parts to map again; an incremental refit maps only new rows.

use std::ops::Range;
use std::path::Path;

use crate::common::backends::backend_tests;
use crate::common::*;
use nudge::fit::partial::{self, Fingerprint};
use nudge::{
    Corpus, Cpu, Error, FitOptions, Inputs, Kind, LabeledQuery, MapOptions, Method, Partial,
    ReduceInputs, Split,
};

const METHODS: [Method; 2] = [Method::NudgeM, Method::NudgeN];

fn scifact() -> Loaded {
    load(&fixture("scifact-f32"))
}

fn reduce_inputs(l: &Loaded) -> ReduceInputs<'_> {
    ReduceInputs {
        records: l.ds.corpus.rows(),
        queries: &l.ds.queries,
        train: &l.train,
        dev: &l.dev,
        test: l.test.as_ref(),
        corpus: None,
    }
}

/// Maps `parts` of the corpus (in the order given) with lists deep enough
/// for both methods.
fn map_parts(b: &dyn nudge::Backend, l: &Loaded, parts: &[Range<usize>]) -> Vec<Partial> {
    let opts = MapOptions {
        // Small chunks: a part's scan crosses chunk boundaries too.
        chunk_rows: Some(700),
        ..MapOptions::default()
    };
    parts
        .iter()
        .map(|r| partial::map(b, &l.inputs(), r.clone(), &opts).unwrap())
        .collect()
}

/// `k` parts of (nearly) equal size.
fn equal(n: usize, k: usize) -> Vec<Range<usize>> {
    (0..k).map(|i| i * n / k..(i + 1) * n / k).collect()
}

fn check_reduce_equals_fit(b: &dyn nudge::Backend, l: &Loaded, parts: &[Range<usize>], what: &str) {
    let partials = map_parts(b, l, parts);
    for method in METHODS {
        let opts = FitOptions::new(method);
        let fit = nudge::fit(b, &l.inputs(), &opts).unwrap();
        let reduced = partial::reduce(b, &reduce_inputs(l), &partials, &opts).unwrap();
        assert_same_fit(&fit, &reduced, &format!("{what} {method:?}"));
        assert_eq!(fit.test_ndcg, reduced.test_ndcg, "{what} {method:?}");
        assert_eq!(
            fit.dev_intervals, reduced.dev_intervals,
            "{what} {method:?}"
        );
    }
}

backend_tests! {
    // (SciFact's 331 dev and test queries do not fit gpu-128k's bindings.)
    fn reduce_of_three_parts_equals_the_fit(b in crate::common::backends::cpu_and_gpu()) {
        let l = scifact();
        check_reduce_equals_fit(b, &l, &equal(l.ds.corpus.rows(), 3), "3 parts");
    }
}

#[test]
fn reduce_equals_the_fit_whatever_the_parts() {
    let l = scifact();
    let n = l.ds.corpus.rows();
    // A range holding no moved record: the first row after the first
    // moved one that is not moved itself (SciFact moves 11% of rows).
    let fit = nudge::fit(&Cpu, &l.inputs(), &FitOptions::new(Method::NudgeM)).unwrap();
    let quiet = (1..n as u32)
        .find(|r| !fit.moved.contains(r) && !fit.moved.contains(&(r + 1)))
        .unwrap() as usize;
    let mut reversed = equal(n, 7);
    reversed.reverse();
    let cases: Vec<(&str, Vec<Range<usize>>)> = vec![
        ("1 part", equal(n, 1)),
        ("2 parts", equal(n, 2)),
        ("7 parts, out of order", reversed),
        ("uneven parts", vec![0..1, 1..4000, 4000..4001, 4001..n]),
        (
            "a part without moved rows, an empty part",
            vec![
                0..quiet,
                quiet..quiet + 2,
                quiet + 2..quiet + 2,
                quiet + 2..n,
            ],
        ),
    ];
    for (what, parts) in cases {
        check_reduce_equals_fit(&Cpu, &l, &parts, what);
    }
}

#[test]
fn lean_partials_read_their_rows_from_the_corpus_at_the_reduce() {
    let l = scifact();
    let n = l.ds.corpus.rows();
    let lean = MapOptions {
        lean: true,
        chunk_rows: Some(700),
        ..MapOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    // Mapped, saved and loaded back: no vectors on disk.
    let partials: Vec<Partial> = equal(n, 3)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let p = partial::map(&Cpu, &l.inputs(), r, &lean).unwrap();
            assert!(p.lean && p.moved.rows == 0 && !p.moved_rows.is_empty());
            let d = dir.path().join(format!("p{i}"));
            p.save(&d).unwrap();
            assert!(!d.join("moved.npy").exists());
            Partial::load(&d).unwrap()
        })
        .collect();
    let with_corpus = ReduceInputs {
        corpus: Some((&l.ds.corpus).into()),
        ..reduce_inputs(&l)
    };
    for method in METHODS {
        let opts = FitOptions::new(method);
        let fit = nudge::fit(&Cpu, &l.inputs(), &opts).unwrap();
        let reduced = partial::reduce(&Cpu, &with_corpus, &partials, &opts).unwrap();
        assert_same_fit(&fit, &reduced, &format!("lean {method:?}"));
    }
    let m = FitOptions::new(Method::NudgeM);
    let e = reduce_error(&l, &partials, &m);
    assert_eq!(e.kind(), Kind::Usage, "{e}");
    assert!(
        e.to_string().contains("is lean") && e.to_string().contains("p0"),
        "{e}"
    );
    // A corpus of another shape cannot be the one it was mapped from.
    let all = l.ds.corpus.read_all().unwrap();
    let short = ReduceInputs {
        corpus: Some(Corpus::f32(&all[..(n - 1) * l.ds.dim()], l.ds.dim()).unwrap()),
        ..reduce_inputs(&l)
    };
    let e = partial::reduce(&Cpu, &short, &partials, &m).err().unwrap();
    assert!(e.to_string().contains("is lean, and the corpus"), "{e}");
}

#[test]
fn saved_partials_load_back_unchanged() {
    let l = scifact();
    let partials = map_parts(&Cpu, &l, &equal(l.ds.corpus.rows(), 2));
    let dir = tempfile::tempdir().unwrap();
    for (i, p) in partials.iter().enumerate() {
        let d = dir.path().join(format!("p{i}"));
        p.save(&d).unwrap();
        let back = Partial::load(&d).unwrap();
        assert_eq!(back.rows, p.rows);
        assert_eq!((back.dim, back.k), (p.dim, p.k));
        assert_eq!(back.fingerprint, p.fingerprint);
        assert_eq!(
            (back.dev_queries, back.test_queries),
            (p.dev_queries, p.test_queries)
        );
        assert_eq!(back.top, p.top);
        assert_eq!(back.moved_rows, p.moved_rows);
        assert_eq!(bits(&back.moved.data), bits(&p.moved.data));
        assert_eq!(back.kept_rows, p.kept_rows);
        assert_eq!(bits(&back.kept.data), bits(&p.kept.data));
        assert_eq!(back.source.as_deref(), Some(d.as_path()));
        // What the issue bounds: a partial is a small fraction of its part.
        let bytes: u64 = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(bytes < 1 << 20, "a partial of SciFact holds {bytes} bytes");
    }
}

/// The error of a reduce of `partials` with the fixture's splits.
fn reduce_error(l: &Loaded, partials: &[Partial], opts: &FitOptions) -> Error {
    match partial::reduce(&Cpu, &reduce_inputs(l), partials, opts) {
        Ok(_) => panic!("the reduce succeeded"),
        Err(e) => e,
    }
}

#[test]
fn the_reduce_refuses_partials_that_do_not_tile_the_corpus() {
    let l = scifact();
    let n = l.ds.corpus.rows();
    let parts = map_parts(&Cpu, &l, &[0..2000, 2000..4000, 3500..n, 4000..n]);
    let m = FitOptions::new(Method::NudgeM);

    let e = reduce_error(&l, &[parts[0].clone(), parts[3].clone()], &m);
    assert_eq!(e.kind(), Kind::Data, "{e}");
    assert!(
        e.to_string()
            .contains("no partial covers corpus rows 2000..4000"),
        "{e}"
    );

    let e = reduce_error(&l, &[parts[0].clone(), parts[1].clone()], &m);
    assert!(e.to_string().contains(&format!("rows 4000..{n}")), "{e}");

    let e = reduce_error(
        &l,
        &[parts[0].clone(), parts[1].clone(), parts[2].clone()],
        &m,
    );
    assert!(
        e.to_string()
            .contains("overlaps another partial on rows 3500..4000"),
        "{e}"
    );

    let e = reduce_error(&l, &[], &m);
    assert!(e.to_string().contains(&format!("rows 0..{n}")), "{e}");
}

#[test]
fn the_reduce_refuses_partials_of_other_queries_or_too_short_lists() {
    let l = scifact();
    let n = l.ds.corpus.rows();
    let whole = map_parts(&Cpu, &l, &equal(n, 1));
    let m = FitOptions::new(Method::NudgeM);

    // Other dev queries: one dev query fewer.
    let mut dev = l.dev.clone();
    dev.queries.pop();
    let inputs = ReduceInputs {
        dev: &dev,
        ..reduce_inputs(&l)
    };
    let e = partial::reduce(&Cpu, &inputs, &whole, &m).err().unwrap();
    assert!(e.to_string().contains("other dev queries"), "{e}");
    // The same count, one embedding changed: the fingerprint tells.
    let mut p = whole[0].clone();
    p.fingerprint = Fingerprint {
        dev: p.fingerprint.dev ^ 1,
        ..p.fingerprint
    };
    let e = reduce_error(&l, &[p], &m);
    assert!(e.to_string().contains("other dev queries"), "{e}");

    // Mapped without the test split, reduced with it.
    let no_test = Inputs {
        test: None,
        ..l.inputs()
    };
    let p = partial::map(&Cpu, &no_test, 0..n, &MapOptions::default()).unwrap();
    let e = reduce_error(&l, std::slice::from_ref(&p), &m);
    assert!(e.to_string().contains("without the test split"), "{e}");
    // ... and without it, it serves.
    let reduced = partial::reduce(
        &Cpu,
        &ReduceInputs {
            test: None,
            ..reduce_inputs(&l)
        },
        &[p],
        &m,
    )
    .unwrap();
    let fit = nudge::fit(&Cpu, &no_test, &m).unwrap();
    assert_eq!(fit.gamma.to_bits(), reduced.gamma.to_bits());

    // Lists of 3 cannot serve NUDGE-N at val_k 5.
    let short = MapOptions {
        k: 3,
        ..MapOptions::default()
    };
    let p = partial::map(&Cpu, &l.inputs(), 0..n, &short).unwrap();
    let mut opts = FitOptions::new(Method::NudgeN);
    opts.val_k = 5;
    opts.eval_k = 3;
    let e = reduce_error(&l, &[p], &opts);
    assert!(e.to_string().contains("map it again with k >= 5"), "{e}");
}

#[test]
fn corrupt_partials_are_data_errors_naming_the_file() {
    let l = scifact();
    let p = &map_parts(&Cpu, &l, &equal(l.ds.corpus.rows(), 1))[0];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("p");
    p.save(&d).unwrap();
    // A moved_rows.npy of the wrong length.
    let good = std::fs::read(d.join("moved_rows.npy")).unwrap();
    std::fs::write(d.join("moved_rows.npy"), &good[..good.len() - 4]).unwrap();
    let e = Partial::load(&d).err().unwrap();
    assert_eq!(e.kind(), Kind::Data);
    assert_eq!(e.path(), Some(d.join("moved_rows.npy").as_path()), "{e}");
    std::fs::write(d.join("moved_rows.npy"), &good).unwrap();
    // A manifest of another format.
    let text = std::fs::read_to_string(d.join("partial.json")).unwrap();
    std::fs::write(
        d.join("partial.json"),
        text.replace("nudge-partial", "something"),
    )
    .unwrap();
    let e = Partial::load(&d).err().unwrap();
    assert_eq!(e.path(), Some(d.join("partial.json").as_path()), "{e}");
    // No partial at all.
    let e = Partial::load(dir.path()).err().unwrap();
    assert!(e.to_string().contains("no partial.json"), "{e}");
}

/// `split` with only the answers below row `n`, keeping only the queries
/// that still have one when `drop_empty`.
fn before_row(split: &Split, n: u32) -> Split {
    Split {
        name: split.name,
        queries: split
            .queries
            .iter()
            .map(|q| LabeledQuery {
                row: q.row,
                answers: q.answers.iter().copied().filter(|a| a.0 < n).collect(),
            })
            .filter(|q| !q.answers.is_empty())
            .collect(),
    }
}

#[test]
fn an_incremental_refit_maps_only_the_new_rows_and_the_parts_whose_moves_changed() {
    let l = scifact();
    let n = l.ds.corpus.rows();
    let dim = l.ds.dim();
    let all = l.ds.corpus.read_all().unwrap();
    // Yesterday's corpus: all but the last 183 records, with the
    // judgements on those records. The dev and test queries are the ones
    // that had an answer then (their lists, and so the partials, depend on
    // which queries they are).
    let old_n = 5000;
    let (dev_old, test_old) = (
        before_row(&l.dev, old_n as u32),
        before_row(l.test.as_ref().unwrap(), old_n as u32),
    );
    let keep = |s: &Split, like: &Split| Split {
        name: s.name,
        queries: s
            .queries
            .iter()
            .filter(|q| like.queries.iter().any(|o| o.row == q.row))
            .cloned()
            .collect(),
    };
    // Today's: the new records and their judgements (new training pairs,
    // and answers of the same dev and test queries) arrived.
    let (dev_new, test_new) = (
        keep(&l.dev, &dev_old),
        keep(l.test.as_ref().unwrap(), &test_old),
    );
    let train_old = before_row(&l.train, old_n as u32);
    let old = Inputs {
        corpus: Corpus::f32(&all[..old_n * dim], dim).unwrap(),
        queries: &l.ds.queries,
        train: &train_old,
        dev: &dev_old,
        test: Some(&test_old),
    };
    let new = Inputs {
        corpus: Corpus::f32(&all, dim).unwrap(),
        queries: &l.ds.queries,
        train: &l.train,
        dev: &dev_new,
        test: Some(&test_new),
    };
    let opts = MapOptions::default();
    let mut partials: Vec<Partial> = [0..2500, 2500..old_n]
        .into_iter()
        .map(|r| partial::map(&Cpu, &old, r, &opts).unwrap())
        .collect();
    partials.push(partial::map(&Cpu, &new, old_n..n, &opts).unwrap());
    let inputs = ReduceInputs {
        records: n,
        queries: &l.ds.queries,
        train: &l.train,
        dev: &dev_new,
        test: Some(&test_new),
        corpus: None,
    };
    for method in METHODS {
        let fit_opts = FitOptions::new(method);
        let fit = nudge::fit(&Cpu, &new, &fit_opts).unwrap();
        let reduced = partial::reduce(&Cpu, &inputs, &partials, &fit_opts).unwrap();
        assert_same_fit(&fit, &reduced, &format!("incremental {method:?}"));
    }

    // A new training pair moves an old record of the first part: the
    // reduce names that part (only), and mapping it again suffices.
    let fit = nudge::fit(&Cpu, &new, &FitOptions::new(Method::NudgeM)).unwrap();
    let record = (0..2500u32).find(|r| !fit.moved.contains(r)).unwrap();
    let mut train = l.train.clone();
    train.queries[0].answers.push((record, 1.0));
    let inputs = ReduceInputs {
        train: &train,
        ..inputs
    };
    let e = partial::reduce(&Cpu, &inputs, &partials, &FitOptions::new(Method::NudgeM))
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(
        msg.contains("1 of 3 partials") && msg.contains("partial 0 (rows 0..2500)"),
        "{msg}"
    );
    let moved_more = Inputs {
        train: &train,
        ..new
    };
    partials[0] = partial::map(&Cpu, &moved_more, 0..2500, &opts).unwrap();
    for method in METHODS {
        let fit_opts = FitOptions::new(method);
        let fit = nudge::fit(&Cpu, &moved_more, &fit_opts).unwrap();
        let reduced = partial::reduce(&Cpu, &inputs, &partials, &fit_opts).unwrap();
        assert_same_fit(&fit, &reduced, &format!("after a new move {method:?}"));
        assert!(fit.moved.contains(&record));
    }
}

// ---- the commands ------------------------------------------------------------

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The data rows of an `.npy` the tests wrote (f32).
fn npy_rows(path: &Path) -> Vec<u32> {
    bits(&read_npy(path))
}

/// `--no-sync` (rename without fsync) on some runs of each command, added
/// to `args`: the files are the same bytes either way.
fn sync_flag(mut args: Vec<&str>, unsynced: bool) -> Vec<&str> {
    if unsynced {
        args.push("--no-sync");
    }
    args
}

#[test]
fn map_reduce_and_apply_commands_write_what_fit_writes() {
    let case = Case::new("scifact-f32");
    let (data, out) = (case.data(), case.out());
    for method in ["nudge-m", "nudge-n"] {
        let full = out.join(format!("fit-{method}"));
        let fit_out = out.join(format!("fit-{method}.npy"));
        let r = nudge(
            &sync_flag(
                vec![
                    "fit",
                    "--dataset",
                    arg(&data),
                    "--method",
                    method,
                    "--device",
                    "cpu",
                    "--delta",
                    arg(&full),
                    "--out",
                    arg(&fit_out),
                    "--report",
                    arg(&out.join(format!("fit-{method}.json"))),
                    "-q",
                ],
                method == "nudge-n",
            ),
            &[],
        );
        expect(&r, 0, &[]);
    }
    // Four parts, mapped in reverse order into one folder, one of them by
    // --rows; small chunks so that parts cross chunk boundaries.
    let parts = out.join("partials");
    for i in (0..4).rev() {
        let dir = parts.join(format!("part-{i}"));
        let part = format!("{i}/4");
        let mut args = vec![
            "map",
            "--dataset",
            arg(&data),
            "--out",
            arg(&dir),
            "--device",
            "cpu",
            "-q",
        ];
        args = sync_flag(args, i % 2 == 0);
        if i == 1 {
            // Part 1 of 4 of SciFact's 5183 rows.
            args.extend(["--rows", "1295..2591"]);
        } else {
            args.extend(["--part", &part]);
        }
        expect(&nudge(&args, &[("NUDGE_CHUNK_ROWS", "333")]), 0, &[]);
    }
    for method in ["nudge-m", "nudge-n"] {
        let delta = out.join(format!("reduced-{method}"));
        let report = out.join(format!("reduced-{method}.json"));
        let r = nudge(
            &sync_flag(
                vec![
                    "reduce",
                    "--dataset",
                    arg(&data),
                    "--partials",
                    arg(&parts),
                    "--method",
                    method,
                    "--delta",
                    arg(&delta),
                    "--report",
                    arg(&report),
                    "--device",
                    "cpu",
                    "-q",
                ],
                method == "nudge-m",
            ),
            &[],
        );
        expect(&r, 0, &[]);
        let full = out.join(format!("fit-{method}"));
        for f in ["ids.txt", "vectors.npy"] {
            assert!(
                std::fs::read(full.join(f)).unwrap() == std::fs::read(delta.join(f)).unwrap(),
                "{method}: {f} differs"
            );
        }
        let json = |p: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        let (a, b) = (json(&out.join(format!("fit-{method}.json"))), json(&report));
        for key in ["gamma", "moved_records", "before", "after", "dev_scores"] {
            assert_eq!(a[key], b[key], "{method}: {key}");
        }
        assert_eq!(b["inputs"]["partials"], 4);
        // Each part rewritten on its own (streamed, in small chunks), the
        // parts concatenated: the fit's --out.
        let mut rows = Vec::new();
        for i in 0..4 {
            let p = out.join(format!("applied-{i}.npy"));
            let part = format!("{i}/4");
            let r = nudge(
                &sync_flag(
                    vec![
                        "apply",
                        "--dataset",
                        arg(&data),
                        "--part",
                        &part,
                        "--delta",
                        arg(&delta),
                        "--out",
                        arg(&p),
                        "-q",
                    ],
                    i % 2 == 1,
                ),
                &[
                    ("NUDGE_OUTPUT_IN_MEMORY_MAX", "0"),
                    ("NUDGE_CHUNK_ROWS", "500"),
                ],
            );
            expect(&r, 0, &[]);
            rows.extend(npy_rows(&p));
        }
        assert!(
            rows == npy_rows(&out.join(format!("fit-{method}.npy"))),
            "{method}: applied parts differ from fit --out"
        );
    }
}

#[test]
fn reduce_says_which_rows_no_partial_covers() {
    let case = Case::new("scifact-f32");
    let (data, out) = (case.data(), case.out());
    for i in [0, 2] {
        let part = format!("{i}/3");
        let dir = out.join(format!("p{i}"));
        let r = nudge(
            &[
                "map",
                "--dataset",
                arg(&data),
                "--part",
                &part,
                "--out",
                arg(&dir),
                "--device",
                "cpu",
                "-q",
            ],
            &[],
        );
        expect(&r, 0, &[]);
    }
    let delta = out.join("delta");
    let r = nudge(
        &[
            "reduce",
            "--dataset",
            arg(&data),
            "--partials",
            arg(&out.join("p0")),
            arg(&out.join("p2")),
            "--method",
            "nudge-m",
            "--delta",
            arg(&delta),
            "--device",
            "cpu",
        ],
        &[],
    );
    expect(&r, 3, &["no partial covers corpus rows 1727..3455"]);
    assert!(!delta.exists(), "a failed reduce wrote its delta");
    let r = nudge(
        &[
            "reduce",
            "--dataset",
            arg(&data),
            "--partials",
            arg(&data),
            "--method",
            "nudge-m",
            "--delta",
            arg(&delta),
        ],
        &[],
    );
    expect(&r, 3, &["is neither a partial"]);
    let r = nudge(
        &[
            "map",
            "--dataset",
            arg(&data),
            "--part",
            "3/3",
            "--out",
            arg(&out.join("p3")),
        ],
        &[],
    );
    expect(&r, 2, &["--part 3/3: expected I/N with 0 <= I < N"]);
}

/// The command of a Kubernetes Job file: its `args:` line.
fn job_command(file: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != "args:");
    lines.next();
    let line = lines.next().expect("a command after args:").trim();
    line.strip_prefix("- ").expect("a list item").to_string()
}

/// Runs `program args` with `nudge` on PATH and `env` set; fails on a
/// non-zero exit.
fn run_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) {
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(program)
        .args(args)
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_and_slurm_examples_run_as_written() {
    let case = Case::new("scifact-f32");
    let (data, out) = (case.data(), case.out());
    let fit_delta = out.join("fit");
    let fit_out = out.join("fit.npy");
    expect(
        &nudge(
            &[
                "fit",
                "--dataset",
                arg(&data),
                "--method",
                "nudge-m",
                "--delta",
                arg(&fit_delta),
                "--out",
                arg(&fit_out),
                "-q",
            ],
            &[],
        ),
        0,
        &[],
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Slurm: the array tasks one after another, then the reduce.
    let (partials, slurm_out) = (out.join("slurm-partials"), out.join("slurm-out"));
    for i in 0..3 {
        let task = i.to_string();
        run_with_env(
            "bash",
            &[arg(&root.join("examples/slurm/map.sbatch"))],
            &[
                ("SLURM_ARRAY_TASK_ID", &task),
                ("PARTS", "3"),
                ("DATASET", arg(&data)),
                ("PARTIALS", arg(&partials)),
            ],
        );
    }
    run_with_env(
        "bash",
        &[arg(&root.join("examples/slurm/reduce.sbatch"))],
        &[
            ("DATASET", arg(&data)),
            ("PARTIALS", arg(&partials)),
            ("OUT", arg(&slurm_out)),
        ],
    );
    // Kubernetes: each index of the map Job, the reduce Job, the apply Job.
    let (partials, k8s_out) = (out.join("k8s-partials"), out.join("k8s-out"));
    let env = |i: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("JOB_COMPLETION_INDEX", i.to_string()),
            ("PARTS", "4".to_string()),
            ("DATASET", arg(&data).to_string()),
            ("PARTIALS", arg(&partials).to_string()),
            ("OUT", arg(&k8s_out).to_string()),
            ("METHOD", "nudge-m".to_string()),
        ]
    };
    let run_job = |file: &str, index: &'static str| {
        let e = env(index);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_with_env("sh", &["-c", &job_command(file)], &e);
    };
    for i in ["0", "1", "2", "3"] {
        run_job("examples/k8s/map-job.yaml", i);
    }
    run_job("examples/k8s/reduce-job.yaml", "0");
    let mut rows = Vec::new();
    for i in ["0", "1", "2", "3"] {
        run_job("examples/k8s/apply-job.yaml", i);
        rows.extend(npy_rows(&k8s_out.join(format!("tuned-{i}.npy"))));
    }
    for delta in [slurm_out.join("delta"), k8s_out.join("delta")] {
        for f in ["ids.txt", "vectors.npy"] {
            assert!(
                std::fs::read(fit_delta.join(f)).unwrap() == std::fs::read(delta.join(f)).unwrap(),
                "{}: {f} differs from fit --delta",
                delta.display()
            );
        }
    }
    assert!(
        rows == npy_rows(&fit_out),
        "the apply Job's parts differ from fit --out"
    );
}

// ---- several devices at once ---------------------------------------------------

/// Pairs of devices a job is spread over: two CPU backends always, and two
/// devices on the one GPU adapter (lavapipe in CI) when there is one.
fn device_pairs() -> Vec<(&'static str, [&'static dyn nudge::Backend; 2])> {
    use crate::common::backends::{gpu, gpu_twin};
    let mut pairs: Vec<(&str, [&dyn nudge::Backend; 2])> = vec![("cpu+cpu", [&Cpu, &Cpu])];
    if let (Some(a), Some(b)) = (gpu(), gpu_twin()) {
        pairs.push(("gpu+gpu", [a, b]));
    }
    pairs
}

#[test]
fn a_pass_spread_over_two_devices_equals_the_pass_on_one() {
    let l = scifact();
    let dir = tempfile::tempdir().unwrap();
    for (label, pair) in device_pairs() {
        for method in METHODS {
            let opts = FitOptions {
                chunk_rows: Some(1000),
                ..FitOptions::new(method)
            };
            // In memory, and streamed (written in a second pass).
            for in_memory_max in [u64::MAX, 0] {
                let write = nudge::WriteOptions {
                    in_memory_max,
                    ..Default::default()
                };
                let what = format!("{label} {method:?} in_memory_max {in_memory_max}");
                let (one, two) = (dir.path().join("one.npy"), dir.path().join("two.npy"));
                let mut out = nudge::fit::output::InlineOutput::create(
                    l.ds.corpus.rows(),
                    l.ds.dim(),
                    &one,
                    &write,
                )
                .unwrap();
                let a = nudge::fit_into(pair[0], &l.inputs(), &opts, Some(&mut out)).unwrap();
                out.finish().unwrap().commit().unwrap();
                let mut out = nudge::fit::output::InlineOutput::create(
                    l.ds.corpus.rows(),
                    l.ds.dim(),
                    &two,
                    &write,
                )
                .unwrap();
                let b = nudge::fit_across(&pair, &l.inputs(), &opts, Some(&mut out)).unwrap();
                out.finish().unwrap().commit().unwrap();
                assert_same_fit(&a, &b, &what);
                assert!(npy_rows(&one) == npy_rows(&two), "{what}: outputs differ");
            }
        }
        let eval = nudge::EvalOptions {
            ks: vec![1, 10],
            chunk_rows: Some(1000),
            ..Default::default()
        };
        let test = l.test.as_ref().unwrap();
        let one =
            nudge::evaluate(pair[0], (&l.ds.corpus).into(), &l.ds.queries, test, &eval).unwrap();
        let two = nudge::evaluate_across(&pair, (&l.ds.corpus).into(), &l.ds.queries, test, &eval)
            .unwrap();
        assert_eq!(one, two, "{label}: evaluate");
        let opts = MapOptions::default();
        let one = partial::map(pair[0], &l.inputs(), 100..5000, &opts).unwrap();
        let two = partial::map_across(&pair, &l.inputs(), 100..5000, &opts).unwrap();
        assert_eq!(
            (one.rows.clone(), &one.top, &one.moved_rows, &one.kept_rows),
            (two.rows.clone(), &two.top, &two.moved_rows, &two.kept_rows),
            "{label}: map"
        );
        assert_eq!(bits(&one.moved.data), bits(&two.moved.data), "{label}: map");
    }
}

#[test]
fn adapters_on_the_command_line() {
    let case = Case::new("scifact-f32");
    let (data, out) = (case.data(), case.out());
    // Refused where it cannot apply.
    let r = nudge(
        &[
            "eval",
            "--dataset",
            arg(&data),
            "--device",
            "cpu",
            "--adapters",
            "all",
        ],
        &[],
    );
    expect(&r, 2, &["--adapters names GPU adapters"]);
    let r = nudge(&["demo", "--adapters", "0,0"], &[]);
    expect(&r, 2, &["--adapters spreads `fit`, `eval` and `map`"]);
    if crate::common::backends::gpu().is_none() {
        return;
    }
    let xdg = [("XDG_RUNTIME_DIR", "/tmp")];
    // Two devices on the first adapter write what one writes.
    for (name, device) in [
        ("one", &["--device", "gpu"][..]),
        ("two", &["--adapters", "0,0"][..]),
    ] {
        let mut args = vec!["fit", "--dataset", arg(&data), "--method", "nudge-m", "-q"];
        let delta = out.join(format!("{name}-delta"));
        let corpus = out.join(format!("{name}.npy"));
        args.extend(["--delta", arg(&delta), "--out", arg(&corpus)]);
        args.extend(device);
        expect(&nudge(&args, &xdg), 0, &[]);
        let partial = out.join(format!("{name}-partial"));
        let mut args = vec!["map", "--dataset", arg(&data), "--out", arg(&partial), "-q"];
        args.extend(device);
        expect(&nudge(&args, &xdg), 0, &[]);
    }
    for f in [
        "one-delta/vectors.npy",
        "one.npy",
        "one-partial/top_rows.npy",
        "one-partial/top_scores.npy",
        "one-partial/moved.npy",
    ] {
        let g = f.replace("one", "two");
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(out.join(&g)).unwrap(),
            "{f} vs {g}"
        );
    }
    let eval = |device: &[&str]| -> serde_json::Value {
        let mut args = vec!["eval", "--dataset", arg(&data), "--json"];
        args.extend(device);
        let r = nudge(&args, &xdg);
        expect(&r, 0, &[]);
        serde_json::from_slice(&r.stdout).unwrap()
    };
    let (one, two) = (eval(&["--device", "gpu"]), eval(&["--adapters", "0,0"]));
    assert_eq!(one["ndcg@10"], two["ndcg@10"]);
    assert_eq!(one["recall@10"], two["recall@10"]);
    assert_eq!(two["adapters"].as_array().map(Vec::len), Some(2), "{two}");
}

#[test]
fn each_shard_of_a_sharded_corpus_maps_as_a_part() {
    let case = Case::new("scifact-f32");
    let (data, out) = (case.data(), case.out());
    // The corpus as three .npy shards with their ids beside them.
    let (n, d, all) = read_f32(&data.join("corpus.npy"));
    let ids = case.read("corpus_ids.txt");
    let ids: Vec<&str> = ids.lines().collect();
    let shards = out.join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    let cuts = [0, 1000, 3333, n];
    for (i, w) in cuts.windows(2).enumerate() {
        let name = format!("part-{i}");
        write_f32(
            &shards.join(format!("{name}.npy")),
            w[1] - w[0],
            d,
            &all[w[0] * d..w[1] * d],
        );
        std::fs::write(
            shards.join(format!("{name}.ids.txt")),
            ids[w[0]..w[1]].join("\n") + "\n",
        )
        .unwrap();
    }
    let flags = |corpus: &Path| -> Vec<String> {
        let mut v = vec!["--corpus".to_string(), arg(corpus).to_string()];
        if corpus.is_file() {
            v.extend([
                "--corpus-ids".into(),
                arg(&data.join("corpus_ids.txt")).into(),
            ]);
        }
        for (f, p) in [
            ("--queries", "queries.npy"),
            ("--query-ids", "query_ids.txt"),
            ("--train-qrels", "qrels/train.tsv"),
            ("--dev-qrels", "qrels/dev.tsv"),
            ("--test-qrels", "qrels/test.tsv"),
        ] {
            v.extend([f.into(), arg(&data.join(p)).into()]);
        }
        v
    };
    let run = |args: &[&str], data_flags: &[String]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(data_flags.iter().map(String::as_str));
        expect(&nudge(&a, &[]), 0, &[]);
    };
    let single = flags(&data.join("corpus.npy"));
    let sharded = flags(&shards);
    run(
        &[
            "fit",
            "--method",
            "nudge-n",
            "--delta",
            arg(&out.join("fit")),
            "--out",
            arg(&out.join("fit.npy")),
            "--device",
            "cpu",
            "-q",
        ],
        &single,
    );
    // By name and by index, in reverse order.
    for (i, shard) in ["part-2.npy", "1", "part-0.npy"].into_iter().enumerate() {
        let p = out.join(format!("p/{i}"));
        run(
            &[
                "map",
                "--shard",
                shard,
                "--out",
                arg(&p),
                "--device",
                "cpu",
                "-q",
            ],
            &sharded,
        );
    }
    run(
        &[
            "reduce",
            "--partials",
            arg(&out.join("p")),
            "--method",
            "nudge-n",
            "--delta",
            arg(&out.join("red")),
            "--device",
            "cpu",
            "-q",
        ],
        &sharded,
    );
    for f in ["ids.txt", "vectors.npy"] {
        assert!(
            std::fs::read(out.join("fit").join(f)).unwrap()
                == std::fs::read(out.join("red").join(f)).unwrap(),
            "{f}"
        );
    }
    // Each shard rewritten on its own, from its ids alone.
    let red = out.join("red");
    let mut rows = Vec::new();
    for i in 0..3 {
        let shard = shards.join(format!("part-{i}.npy"));
        let o = out.join(format!("applied-{i}.npy"));
        let mut a = vec!["apply", "--corpus", arg(&shard), "--corpus-ids"];
        let ids = shards.join(format!("part-{i}.ids.txt"));
        a.extend([arg(&ids), "--delta", arg(&red), "--out", arg(&o), "-q"]);
        expect(&nudge(&a, &[]), 0, &[]);
        rows.extend(npy_rows(&o));
    }
    assert!(
        rows == npy_rows(&out.join("fit.npy")),
        "applied shards differ from fit --out"
    );
    let r = nudge(
        &["map", "--shard", "part-9.npy", "--out", arg(&out.join("x"))]
            .iter()
            .copied()
            .chain(sharded.iter().map(String::as_str))
            .collect::<Vec<_>>(),
        &[],
    );
    expect(
        &r,
        2,
        &[
            "--shard part-9.npy: expected a shard's file name",
            "part-0.npy, part-1.npy, part-2.npy",
        ],
    );
}

#[test]
fn lean_maps_on_the_command_line() {
    let case = Case::new("scifact-f32");
    let (data, out) = (case.data(), case.out());
    let fit = out.join("fit");
    expect(
        &nudge(
            &[
                "fit",
                "--dataset",
                arg(&data),
                "--method",
                "nudge-m",
                "--delta",
                arg(&fit),
                "--device",
                "cpu",
                "-q",
            ],
            &[],
        ),
        0,
        &[],
    );
    for i in 0..2 {
        let part = format!("{i}/2");
        let p = out.join(format!("lean/{i}"));
        expect(
            &nudge(
                &[
                    "map",
                    "--dataset",
                    arg(&data),
                    "--part",
                    &part,
                    "--lean",
                    "--out",
                    arg(&p),
                    "--device",
                    "cpu",
                    "-q",
                ],
                &[],
            ),
            0,
            &[],
        );
        assert!(!p.join("moved.npy").exists());
    }
    let red = out.join("red");
    expect(
        &nudge(
            &[
                "reduce",
                "--dataset",
                arg(&data),
                "--partials",
                arg(&out.join("lean")),
                "--method",
                "nudge-m",
                "--delta",
                arg(&red),
                "--device",
                "cpu",
                "-q",
            ],
            &[],
        ),
        0,
        &[],
    );
    for f in ["ids.txt", "vectors.npy"] {
        assert!(
            std::fs::read(fit.join(f)).unwrap() == std::fs::read(red.join(f)).unwrap(),
            "{f}"
        );
    }
}
