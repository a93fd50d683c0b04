//! Hand-written `.npy` files, fixture copies in temp dirs, running the built
//! binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nudge::data::npy::NpyMatrix;

use super::fixture;

/// The raw bytes of an `.npy` file with the given header fields.
pub fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(header.len() as u16).to_le_bytes());
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

pub fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes a C-order float32 matrix.
pub fn write_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) {
    assert_eq!(data.len(), rows * cols);
    std::fs::write(
        path,
        npy_bytes("<f4", false, &format!("({rows}, {cols})"), &f32_bytes(data)),
    )
    .unwrap();
}

/// Reads a float32 `.npy` (as nudge writes it) back: (rows, cols, data).
pub fn read_f32(path: &Path) -> (usize, usize, Vec<f32>) {
    let m = NpyMatrix::open(path).unwrap();
    (m.rows(), m.cols(), m.read_all().unwrap())
}

/// A temp dir holding a copy of fixture `name` in `data/` (without its
/// reference outputs) and an empty `out/`.
pub struct Case {
    pub tmp: tempfile::TempDir,
}

impl Case {
    pub fn new(name: &str) -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let src = fixture(name);
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("qrels")).unwrap();
        for f in [
            "corpus.npy",
            "corpus_ids.txt",
            "queries.npy",
            "query_ids.txt",
            "qrels/train.tsv",
            "qrels/dev.tsv",
            "qrels/test.tsv",
        ] {
            if src.join(f).exists() {
                std::fs::copy(src.join(f), data.join(f)).unwrap();
            }
        }
        std::fs::create_dir_all(tmp.path().join("out")).unwrap();
        Case { tmp }
    }

    /// An empty dataset folder (`data/qrels` exists) and `out/`.
    pub fn empty() -> Case {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("data/qrels")).unwrap();
        std::fs::create_dir_all(tmp.path().join("out")).unwrap();
        Case { tmp }
    }

    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    pub fn file(&self, rel: &str) -> PathBuf {
        self.data().join(rel)
    }
    pub fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.file(rel), contents).unwrap();
    }

    /// `nudge fit --dataset data --method M --out out/out.npy --report
    /// out/report.json --device cpu` plus `extra`.
    pub fn fit(&self, method: &str, extra: &[&str]) -> Output {
        self.fit_into(&self.out(), method, extra, &[])
    }

    /// [`Case::fit`] writing `out.npy` and `report.json` into `dir`, with
    /// `env` set.
    pub fn fit_into(
        &self,
        dir: &Path,
        method: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let data = self.data();
        let out = dir.join("out.npy");
        let report = dir.join("report.json");
        let mut args: Vec<&str> = vec![
            "fit",
            "--dataset",
            data.to_str().unwrap(),
            "--method",
            method,
            "--out",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        nudge(&args, env)
    }

    /// Names in `out/` and any `.nudge-partial-*` file in `data/`.
    pub fn outputs(&self) -> Vec<String> {
        let mut names = list(&self.out());
        names.extend(
            list(&self.data())
                .into_iter()
                .filter(|n| n.starts_with(".nudge-partial-")),
        );
        names
    }
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nudge")
}

/// Runs the binary to completion.
pub fn nudge(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    // Hermetic and quick: no tile tuning, nothing in the user's cache.
    cmd.args(args).env("NUDGE_GPU_TUNE", "0");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks the exit code and that stderr contains every needle.
#[track_caller]
pub fn expect(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}, got {:?}; stderr:\n{err}",
        out.status
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

/// A failed run: exit `code`, stderr names every needle, nothing written.
#[track_caller]
pub fn expect_failure(case: &Case, out: &Output, code: i32, needles: &[&str]) {
    expect(out, code, needles);
    assert!(
        stderr(out).contains("error: "),
        "no error line:\n{}",
        stderr(out)
    );
    assert_eq!(
        case.outputs(),
        Vec::<String>::new(),
        "a failed run left files behind"
    );
}
