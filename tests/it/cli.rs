//! The `nudge` binary end to end: what a user runs, the files it writes, the
//! exit codes it returns.

use std::path::Path;

use crate::common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fit_writes_corpus_and_report_that_eval_agrees_with() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("small");
    for method in ["nudge-m", "nudge-n"] {
        let out = dir.path().join(format!("{method}.npy"));
        let report = dir.path().join(format!("{method}.json"));
        let o = nudge(
            &[
                "fit",
                "--dataset",
                s(&data),
                "--method",
                method,
                "--out",
                s(&out),
                "--report",
                s(&report),
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        // The human output ends with the before -> after table.
        let err = stderr(&o);
        assert!(
            err.trim_end().lines().last().unwrap().contains("recall@10"),
            "{err}"
        );

        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        for key in [
            "method",
            "gamma",
            "backend",
            "moved_records",
            "dev_scores",
            "timings",
            "before",
            "after",
        ] {
            assert!(r.get(key).is_some(), "report lacks {key}: {r}");
        }
        assert_eq!(r["method"], method);
        assert_eq!(r["backend"], "cpu");
        let ref_gamma = reference(&data)[method]["gamma"].as_f64().unwrap();
        assert!((r["gamma"].as_f64().unwrap() - ref_gamma).abs() <= 1e-5 * ref_gamma);
        if method == "nudge-n" {
            assert_eq!(r["dev_scores"].as_array().unwrap().len(), 25);
        } else {
            assert!(r["dev_scores"]["best_count"].as_u64().unwrap() > 0);
        }

        // `nudge eval` of the written corpus reproduces the report's "after",
        // by dot product as NUDGE-M output must be searched.
        let o = nudge(
            &[
                "eval",
                "--dataset",
                s(&data),
                "--corpus",
                s(&out),
                "--k",
                "10",
                "--k",
                "1",
                "--json",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(e["queries"], 100);
        assert!(e.get("recall@1").is_some());
        for key in ["recall@10", "ndcg@10"] {
            let (a, b) = (e[key].as_f64().unwrap(), r["after"][key].as_f64().unwrap());
            assert!(
                (a - b).abs() < 1e-12,
                "{method} {key}: eval {a} vs report {b}"
            );
        }
    }
    // Without --corpus, eval scores the untuned (normalised) dataset corpus:
    // the report's "before".
    let o = nudge(&["eval", "--dataset", s(&data), "--json", "--quiet"], &[]);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("nudge-n.json")).unwrap()).unwrap();
    assert!(
        (e["ndcg@10"].as_f64().unwrap() - r["before"]["ndcg@10"].as_f64().unwrap()).abs() < 1e-12
    );
}

#[test]
fn explicit_paths_override_the_folder_and_f16_output_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("rawnorms-stringids");
    let out = dir.path().join("t.npy");
    let o = nudge(
        &[
            "fit",
            "--corpus",
            s(&data.join("corpus.npy")),
            "--corpus-ids",
            s(&data.join("corpus_ids.txt")),
            "--queries",
            s(&data.join("queries.npy")),
            "--query-ids",
            s(&data.join("query_ids.txt")),
            "--train-qrels",
            s(&data.join("qrels/train.tsv")),
            "--dev-qrels",
            s(&data.join("qrels/dev.tsv")),
            "--method",
            "nudge-n",
            "--out",
            s(&out),
            "--out-dtype",
            "f16",
            "--device",
            "cpu",
            "--quiet",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "--quiet printed: {}", stderr(&o));
    let got = read_npy(&out);
    let want = read_npy(&data.join("reference/nudge-n.npy"));
    // f16 keeps 11 significant bits: half an ulp at 1.0 is 2^-11.
    assert!(max_abs_diff(&got, &want) <= 4.9e-4);
}

#[test]
fn delta_holds_only_the_moved_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("rawnorms-stringids");
    let delta = dir.path().join("delta");
    let o = nudge(
        &[
            "fit",
            "--dataset",
            s(&data),
            "--method",
            "nudge-n",
            "--delta",
            s(&delta),
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ids = std::fs::read_to_string(delta.join("ids.txt")).unwrap();
    let vectors = read_npy(&delta.join("vectors.npy"));
    let full = read_npy(&data.join("reference/nudge-n.npy"));
    let names: Vec<&str> = std::fs::read_to_string(data.join("corpus_ids.txt"))
        .unwrap()
        .leak()
        .lines()
        .collect();
    let d = 64;
    assert_eq!(vectors.len(), ids.lines().count() * d);
    for (i, id) in ids.lines().enumerate() {
        let row = names.iter().position(|n| *n == id).unwrap();
        assert!(max_abs_diff(&vectors[i * d..(i + 1) * d], &full[row * d..(row + 1) * d]) <= 1e-5);
    }
}

#[test]
fn demo_runs_on_the_bundled_data() {
    let o = nudge(&["demo", "--device", "cpu"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("nudge-m") && out.contains("nudge-n") && out.contains("0.7900 ->"),
        "{out}"
    );
}

#[test]
fn exit_codes_tell_usage_from_data_errors() {
    let data = fixture("small");
    // Usage: missing --method.
    let o = nudge(&["fit", "--dataset", s(&data), "--out", "/tmp/x.npy"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Usage: tune query counts without --tune, or a count of 0.
    for args in [
        &["devices", "--queries", "100"][..],
        &["devices", "--tune", "--queries", "1000,0"],
    ] {
        let o = nudge(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--queries"), "{args:?}: {}", stderr(&o));
    }
    // Usage: nothing to write.
    let o = nudge(&["fit", "--dataset", s(&data), "--method", "nudge-m"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nothing to write"));
    // Data: a qrels line naming a record that does not exist.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("train.tsv");
    std::fs::write(
        &bad,
        "query-id\tcorpus-id\tscore\n0\t591\t1\n1\tno-such-doc\t1\n",
    )
    .unwrap();
    let out = dir.path().join("o.npy");
    let o = nudge(
        &[
            "fit",
            "--dataset",
            s(&data),
            "--train-qrels",
            s(&bad),
            "--method",
            "nudge-m",
            "--out",
            s(&out),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(
        err.contains("train.tsv:3") && err.contains("no-such-doc"),
        "{err}"
    );
    assert!(!out.exists());
    // ... which --skip-unknown-ids turns into a warning.
    let o = nudge(
        &[
            "fit",
            "--dataset",
            s(&data),
            "--train-qrels",
            s(&bad),
            "--method",
            "nudge-m",
            "--out",
            s(&out),
            "--skip-unknown-ids",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped 1 lines with unknown ids"));
}
