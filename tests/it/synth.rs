//! `nudge synth`: deterministic for a seed, and NUDGE helps on what it writes.

use crate::common::{nudge, stderr};

#[test]
fn same_seed_same_files_and_nudge_helps() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for (out, threads) in [(&a, "1"), (&b, "2")] {
        let o = nudge(
            &[
                "synth",
                "--out",
                out.to_str().unwrap(),
                "--records",
                "20000",
                "--dim",
                "96",
                "--train",
                "600",
                "--dev",
                "200",
                "--test",
                "200",
                "--seed",
                "7",
                "-q",
            ],
            &[("RAYON_NUM_THREADS", threads)],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for f in [
        "corpus.npy",
        "queries.npy",
        "qrels/train.tsv",
        "qrels/dev.tsv",
        "qrels/test.tsv",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let c = dir.path().join("c");
    let o = nudge(
        &[
            "synth",
            "--out",
            c.to_str().unwrap(),
            "--records",
            "20000",
            "--dim",
            "96",
            "--seed",
            "8",
            "-q",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(
        std::fs::read(a.join("corpus.npy")).unwrap(),
        std::fs::read(c.join("corpus.npy")).unwrap()
    );

    for method in ["nudge-m", "nudge-n"] {
        let report = dir.path().join(format!("{method}.json"));
        let o = nudge(
            &[
                "fit",
                "--dataset",
                a.to_str().unwrap(),
                "--method",
                method,
                "--report",
                report.to_str().unwrap(),
                "-q",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let (before, after) = (
            r["before"]["ndcg@10"].as_f64().unwrap(),
            r["after"]["ndcg@10"].as_f64().unwrap(),
        );
        assert!(
            after > before + 0.05,
            "{method}: ndcg@10 {before} -> {after}"
        );
    }
}
