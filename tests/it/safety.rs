//! No failure leaves a partial output, results are deterministic, and a fit
//! that cannot judge its own result says so.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use nudge::backend::Rows;

fn report(case: &Case) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(case.out().join("report.json")).unwrap()).unwrap()
}

fn qrels(lines: &[(usize, usize)]) -> String {
    let mut s = "query-id\tcorpus-id\tscore\n".to_string();
    for (q, r) in lines {
        s.push_str(&format!("{q}\t{r}\t1\n"));
    }
    s
}

// ---- the silent failure ---------------------------------------------------

/// Four unit records on the axes; train query 0 answers record 0, dev
/// query 1 answers record 1, which no training query moves.
fn unjudgeable(case: &Case, corpus: &[f32]) {
    write_f32(&case.file("corpus.npy"), corpus.len() / 2, 2, corpus);
    write_f32(&case.file("queries.npy"), 2, 2, &[0.9, 0.1, 0.1, 0.9]);
    case.write("qrels/train.tsv", qrels(&[(0, 0)]));
    case.write("qrels/dev.tsv", qrels(&[(1, 1)]));
}

#[test]
fn dev_answers_that_nothing_moved_are_reported() {
    let case = Case::empty();
    unjudgeable(&case, &[1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0]);
    for method in ["nudge-m", "nudge-n"] {
        let out = case.fit(method, &[]);
        let why = "no dev query has an answer that a training query moved";
        expect(&out, 0, &["warning", why]);
        let r = report(&case);
        assert_eq!(r["gamma"], 0.0, "{method}");
        assert!(
            r["gamma_reason"].as_str().unwrap().contains(why),
            "{method}: {r}"
        );
    }
}

#[test]
fn an_empty_moved_set_is_reported() {
    // The only training answer is a zero row, kept unmoved by --allow-zero-rows.
    let case = Case::empty();
    unjudgeable(&case, &[0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0]);
    for method in ["nudge-m", "nudge-n"] {
        let out = case.fit(method, &["--allow-zero-rows"]);
        let why = "none of the 1 records that answer a training query can move";
        expect(&out, 0, &["warning", why]);
        let r = report(&case);
        assert_eq!(r["gamma"], 0.0);
        assert!(r["gamma_reason"].as_str().unwrap().contains(why), "{r}");
        let (_, _, written) = read_f32(&case.out().join("out.npy"));
        assert_eq!(written, vec![0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0]);
    }
}

// ---- output safety --------------------------------------------------------

#[test]
fn writing_onto_an_input_is_refused() {
    let case = Case::new("small");
    let corpus = std::fs::read(case.file("corpus.npy")).unwrap();
    let data = case.data();
    let d = data.to_str().unwrap();
    let args = |out_flag: &str, out: &Path| {
        let mut v = vec![
            "fit".to_string(),
            "--dataset".into(),
            d.into(),
            "--method".into(),
            "nudge-m".into(),
            out_flag.into(),
            out.to_str().unwrap().into(),
        ];
        v.push("--device".into());
        v.push("cpu".into());
        v
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        nudge(&a, &[])
    };
    let out = run(args("--out", &case.file("corpus.npy")));
    expect_failure(
        &case,
        &out,
        2,
        &["corpus.npy", "refusing to overwrite an input"],
    );
    let out = run(args("--report", &case.file("qrels/train.tsv")));
    expect_failure(
        &case,
        &out,
        2,
        &["train.tsv", "refusing to overwrite an input"],
    );
    // The same path spelled differently.
    let out = run(args("--out", &case.data().join("qrels/../corpus.npy")));
    expect_failure(&case, &out, 2, &["refusing to overwrite an input"]);

    // Links to an input are the input.
    std::fs::hard_link(case.file("corpus.npy"), case.out().join("hard.npy")).unwrap();
    std::os::unix::fs::symlink(case.file("queries.npy"), case.out().join("soft.npy")).unwrap();
    for link in ["hard.npy", "soft.npy"] {
        let out = run(args("--out", &case.out().join(link)));
        expect(&out, 2, &[link, "refusing to overwrite an input"]);
    }
    // --delta DIR writes DIR/vectors.npy and DIR/ids.txt.
    std::fs::copy(case.file("corpus.npy"), case.file("vectors.npy")).unwrap();
    let out = nudge(
        &[
            "fit",
            "--dataset",
            d,
            "--corpus",
            case.file("vectors.npy").to_str().unwrap(),
            "--method",
            "nudge-n",
            "--delta",
            d,
        ],
        &[],
    );
    expect(&out, 2, &["vectors.npy", "refusing to overwrite an input"]);

    assert_eq!(std::fs::read(case.file("corpus.npy")).unwrap(), corpus);
    assert_eq!(list(&case.out()), vec!["hard.npy", "soft.npy"]);
}

#[test]
fn unwritable_output_directory() {
    let case = Case::new("small");
    let d = case.data();
    let fit_to = |out: &str| {
        nudge(
            &[
                "fit",
                "--dataset",
                d.to_str().unwrap(),
                "--method",
                "nudge-m",
                "--out",
                out,
            ],
            &[],
        )
    };
    // Under a regular file, in a directory that does not exist, in /proc.
    std::fs::write(case.out().join("plain"), b"").unwrap();
    let under_file = case.out().join("plain/out.npy");
    let missing = case.out().join("no/such/dir/out.npy");
    for p in [
        under_file.to_str().unwrap(),
        missing.to_str().unwrap(),
        "/proc/nudge-test-out.npy",
    ] {
        let out = fit_to(p);
        expect(&out, 4, &[p, "cannot write"]);
    }
    // An existing directory as the output file.
    let out = fit_to(case.out().to_str().unwrap());
    expect(&out, 2, &["is a directory"]);
    assert_eq!(list(&case.out()), vec!["plain"]);
}

/// Unmounts on drop.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` at `dir`; `None` where this process may not
/// mount (the test is then skipped).
fn tmpfs(dir: &Path, size: &str) -> Option<Mounted> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here");
        return None;
    }
    Some(Mounted(dir.to_path_buf()))
}

/// A 64 KiB tmpfs: the output fills it mid-write. Needs root and a kernel
/// that lets this process mount; skipped otherwise.
#[test]
fn a_full_disk_leaves_no_partial_file() {
    let case = Case::new("small");
    let mnt = case.out().join("tiny");
    let Some(_guard) = tmpfs(&mnt, "64k") else {
        return;
    };
    std::fs::write(mnt.join("out.npy"), b"old output").unwrap();
    // 1000 x 32 f32 is 128 KiB: more than the filesystem holds. Both ways of
    // writing: assembled in memory, and streamed (which fails on the writer
    // thread while the fit goes on); synced, and with --no-sync, where no
    // sync would report a late error: the write itself must.
    for (in_memory_max, no_sync) in [
        ("67108864", false),
        ("0", false),
        ("67108864", true),
        ("0", true),
    ] {
        let extra: &[&str] = if no_sync { &["--no-sync"] } else { &[] };
        let out = case.fit_into(
            &mnt,
            "nudge-n",
            extra,
            &[("NUDGE_OUTPUT_IN_MEMORY_MAX", in_memory_max)],
        );
        expect(&out, 4, &["out.npy", "No space left"]);
        assert_eq!(list(&mnt), vec!["out.npy"]);
        assert_eq!(std::fs::read(mnt.join("out.npy")).unwrap(), b"old output");
    }
}

/// --out fits on a one-page tmpfs, --delta does not: neither appears.
#[test]
fn outputs_appear_together_or_not_at_all() {
    let case = Case::new("edge");
    let mnt = case.out().join("page");
    let Some(_guard) = tmpfs(&mnt, "4k") else {
        return;
    };
    let delta = mnt.join("delta");
    for no_sync in [false, true] {
        let mut extra = vec!["--delta", delta.to_str().unwrap()];
        if no_sync {
            extra.push("--no-sync");
        }
        let out = case.fit_into(&mnt, "nudge-m", &extra, &[]);
        expect(&out, 4, &["vectors.npy", "No space left"]);
        assert_eq!(list(&mnt), Vec::<String>::new(), "--no-sync {no_sync}");
    }

    // With room, all three appear.
    let _ = std::fs::remove_dir_all(mnt.join("delta"));
    let roomy = case.out().join("roomy");
    std::fs::create_dir(&roomy).unwrap();
    let roomy_delta = roomy.join("delta");
    let out = case.fit_into(
        &roomy,
        "nudge-m",
        &["--delta", roomy_delta.to_str().unwrap()],
        &[],
    );
    expect(&out, 0, &[]);
    assert_eq!(list(&roomy), vec!["delta", "out.npy", "report.json"]);
    assert_eq!(list(&roomy.join("delta")), vec!["ids.txt", "vectors.npy"]);
}

#[test]
fn an_unwritable_delta_directory_fails_before_the_fit() {
    let case = Case::new("small");
    std::fs::write(case.out().join("plain"), b"").unwrap();
    let run = |delta: &Path| {
        nudge(
            &[
                "fit",
                "--dataset",
                case.data().to_str().unwrap(),
                "--method",
                "nudge-n",
                "--out",
                case.out().join("out.npy").to_str().unwrap(),
                "--delta",
                delta.to_str().unwrap(),
            ],
            &[],
        )
    };
    let out = run(&case.out().join("plain/delta/deeper"));
    expect(&out, 4, &["--delta", "plain", "not a writable directory"]);
    let out = run(&case.out().join("plain"));
    expect(&out, 2, &["--delta", "plain", "is not a directory"]);
    assert_eq!(list(&case.out()), vec!["plain"]);
}

#[test]
fn an_existing_output_is_replaced_only_when_the_new_one_is_complete() {
    let case = Case::new("small");
    let out_path = case.out().join("out.npy");
    std::fs::write(&out_path, b"old output").unwrap();
    std::fs::write(case.out().join("report.json"), b"old report").unwrap();
    // A failing fit (bad data found during the corpus scan) keeps the old files.
    let (n, d, mut data) = read_f32(&case.file("corpus.npy"));
    data[999 * d] = f32::NAN;
    write_f32(&case.file("corpus.npy"), n, d, &data);
    let out = case.fit("nudge-m", &[]);
    expect(&out, 3, &["row 999"]);
    assert_eq!(std::fs::read(&out_path).unwrap(), b"old output");
    assert_eq!(
        std::fs::read(case.out().join("report.json")).unwrap(),
        b"old report"
    );
    assert_eq!(list(&case.out()), vec!["out.npy", "report.json"]);
    // A good fit replaces them.
    data[999 * d] = 0.5;
    write_f32(&case.file("corpus.npy"), n, d, &data);
    let out = case.fit("nudge-m", &[]);
    expect(&out, 0, &[]);
    assert_eq!(read_f32(&out_path).0, 1000);
    assert!(report(&case)["gamma"].is_number());
    assert_eq!(list(&case.out()), vec!["out.npy", "report.json"]);
}

// ---- interruption ---------------------------------------------------------

/// A 200k x 64 corpus with 300 queries: big enough that writing the output
/// takes a while with small chunks.
fn large_case() -> Case {
    let case = Case::empty();
    let (n, d) = (200_000usize, 64usize);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let corpus: Vec<f32> = (0..n * d).map(|_| next()).collect();
    write_f32(&case.file("corpus.npy"), n, d, &corpus);
    let queries: Vec<f32> = (0..300 * d).map(|_| next()).collect();
    write_f32(&case.file("queries.npy"), 300, d, &queries);
    let train: Vec<(usize, usize)> = (0..200).map(|q| (q, (q * 7919) % n)).collect();
    let dev: Vec<(usize, usize)> = (200..300).map(|q| (q, ((q - 200) * 7919) % n)).collect();
    case.write("qrels/train.tsv", qrels(&train));
    case.write("qrels/dev.tsv", qrels(&dev));
    case
}

fn interrupt_while_writing(case: &Case, signal: &str) -> bool {
    let out_path = case.out().join("out.npy");
    let mut child = Command::new(bin())
        .args([
            "fit",
            "--dataset",
            case.data().to_str().unwrap(),
            "--method",
            "nudge-m",
            "--device",
            "cpu",
            "--out",
            out_path.to_str().unwrap(),
            "--report",
            case.out().join("report.json").to_str().unwrap(),
        ])
        .env("NUDGE_CHUNK_ROWS", "64")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the output's temporary file exists, then interrupt.
    let start = Instant::now();
    let mut sent = false;
    while start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let writing = list(&case.out())
            .iter()
            .any(|n| n.starts_with(".nudge-partial-") && n.ends_with(".npy"));
        if writing {
            let ok = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
            sent = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    let out = child.wait_with_output().unwrap();
    if !sent || out.status.code() == Some(0) {
        // The fit finished before the signal was seen: try again.
        std::fs::write(&out_path, b"old output").unwrap();
        let _ = std::fs::remove_file(case.out().join("report.json"));
        return false;
    }
    expect(&out, 130, &["interrupted"]);
    assert_eq!(list(&case.out()), vec!["out.npy"], "{signal}");
    assert_eq!(std::fs::read(&out_path).unwrap(), b"old output");
    true
}

#[test]
fn an_interrupted_fit_leaves_no_partial_file() {
    let case = large_case();
    std::fs::write(case.out().join("out.npy"), b"old output").unwrap();
    for signal in ["-INT", "-TERM"] {
        assert!(
            (0..5).any(|_| interrupt_while_writing(&case, signal)),
            "never caught the fit while it was writing ({signal})"
        );
    }
}

// ---- determinism ----------------------------------------------------------

/// A case where NUDGE-M's gamma is exactly the bound set by a static
/// record: (s_j - s_x) / t_x with s_j the best static score of the one dev
/// query, as the corpus scan computed it. Any change in how the scan rounds
/// that score shows up in gamma and so in the output bytes.
fn static_bound_case(seed: u64) -> Case {
    let case = Case::empty();
    let (n, d) = (1500usize, 64usize);
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let corpus: Vec<f32> = (0..n * d).map(|_| next()).collect();
    write_f32(&case.file("corpus.npy"), n, d, &corpus);
    let dev: Vec<f32> = (0..d).map(|_| next()).collect();
    let train: Vec<f32> = dev.iter().map(|x| x + 0.3 * next()).collect();
    write_f32(&case.file("queries.npy"), 2, d, &[train, dev].concat());
    case.write("qrels/train.tsv", qrels(&[(0, 700)]));
    case.write("qrels/dev.tsv", qrels(&[(1, 700)]));
    case
}

#[test]
fn output_does_not_depend_on_threads_or_chunking() {
    for fixture in [
        "static-bound-1",
        "static-bound-2",
        "static-bound-3",
        "small",
        "rawnorms-stringids",
        "f16",
        "edge",
    ] {
        let case = match fixture.strip_prefix("static-bound-") {
            Some(seed) => static_bound_case(seed.parse().unwrap()),
            None => Case::new(fixture),
        };
        let rows = read_f32(&case.file("corpus.npy")).0;
        let tail_of_one = (rows - 1).to_string();
        let third = (rows / 3).to_string();
        for method in ["nudge-m", "nudge-n"] {
            let mut first: Option<Vec<u8>> = None;
            // The last column forces the streamed output (written as the
            // corpus is read, moved rows patched in) that large corpora use,
            // instead of the one assembled in memory.
            for (threads, chunk, stream) in [
                ("2", "", false),
                ("1", "", false),
                ("2", "7", false),
                ("1", "1", false),
                ("2", tail_of_one.as_str(), false),
                ("2", third.as_str(), false),
                ("2", "", true),
                ("1", "7", true),
                ("2", third.as_str(), true),
            ] {
                let out_path = case.out().join("out.npy");
                let mut envs = vec![("RAYON_NUM_THREADS", threads)];
                if !chunk.is_empty() {
                    envs.push(("NUDGE_CHUNK_ROWS", chunk));
                }
                if stream {
                    envs.push(("NUDGE_OUTPUT_IN_MEMORY_MAX", "0"));
                }
                let out = nudge(
                    &[
                        "fit",
                        "--dataset",
                        case.data().to_str().unwrap(),
                        "--method",
                        method,
                        "--device",
                        "cpu",
                        "--out",
                        out_path.to_str().unwrap(),
                    ],
                    &envs,
                );
                expect(&out, 0, &[]);
                let bytes = std::fs::read(&out_path).unwrap();
                match &first {
                    None => first = Some(bytes),
                    Some(want) => assert!(
                        *want == bytes,
                        "{fixture} {method}: output differs with RAYON_NUM_THREADS={threads} NUDGE_CHUNK_ROWS={chunk} streamed={stream}"
                    ),
                }
            }
        }
    }
}

/// The scan's top-k scores, bit for bit, whatever the chunks pushed and the
/// number of threads.
#[test]
fn scan_scores_do_not_depend_on_chunks_or_threads() {
    use nudge::backend::{Backend, ScanSpec, cpu::Cpu};
    use nudge::matrix::Matrix;
    let (n, d, q) = (1500usize, 48usize, 37usize);
    let corpus: Vec<f32> = (0..n * d)
        .map(|i| ((i * 7919) % 1009) as f32 / 1009.0 - 0.5)
        .collect();
    let queries = Matrix::new(
        q,
        d,
        (0..q * d)
            .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
            .collect(),
    );
    let scan = |chunk: usize| {
        let cpu = Cpu;
        let mut s = cpu
            .scan(ScanSpec {
                queries: &queries,
                k: 5,
                rows: Rows::Normalize,
                skip: None,
            })
            .unwrap();
        let mut start = 0;
        while start < n {
            let c = chunk.min(n - start);
            s.push(&corpus[start * d..(start + c) * d], start).unwrap();
            start += c;
        }
        let (top, _) = s.finish().unwrap();
        (0..q)
            .flat_map(|i| {
                top.entries(i)
                    .map(|(s, r)| (s.to_bits(), r))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let want = scan(n);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for chunk in [1, 7, 512, 1499] {
            assert!(
                pool.install(|| scan(chunk)) == want,
                "chunk {chunk}, {threads} threads"
            );
        }
    }
}
