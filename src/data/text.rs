//! Text inputs (qrels, ids files, BEIR `.jsonl`), plain or compressed.
//!
//! A compressed file is recognised by its magic bytes, not its name: a
//! `qrels.tsv` that is really gzip is still read, and a `.gz` that is not
//! compressed is read as it is. gzip (`.gz`, including multi-member files
//! as `cat a.gz b.gz` makes) and zstd (`.zst`) are supported.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// How a text file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// What `bytes` (the start of a file) are compressed with.
    pub fn sniff(bytes: &[u8]) -> Compression {
        match bytes {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// The name of `path` without a `.gz` / `.zst` suffix: what the file is
/// once decompressed (e.g. `corpus.jsonl` for `corpus.jsonl.gz`).
pub fn inner_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [".gz", ".zst", ".zstd"] {
        if let Some(n) = name.strip_suffix(ext) {
            return n.to_string();
        }
    }
    name
}

/// The whole text of `path`, decompressed if it is gzip or zstd. `what`
/// says what the file is in errors (e.g. `qrels file`). Text that is not
/// UTF-8 is a data error naming the line, rather than the bare "stream did
/// not contain valid UTF-8" of `read_to_string`.
pub fn read(path: &Path, what: &str) -> Result<String> {
    let raw =
        std::fs::read(path).map_err(|e| Error::unreadable(path, format!("read {what}"), e))?;
    let bytes = match Compression::sniff(&raw) {
        Compression::None => raw,
        Compression::Gzip => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| corrupt(path, what, "gzip", e))?;
            out
        }
        Compression::Zstd => {
            zstd::stream::decode_all(&raw[..]).map_err(|e| corrupt(path, what, "zstd", e))?
        }
    };
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        Error::data_line(
            path,
            line,
            format!("not UTF-8 text; expected a UTF-8 {what} (plain, .gz or .zst)"),
        )
    })
}

fn corrupt(path: &Path, what: &str, codec: &str, e: std::io::Error) -> Error {
    Error::data(
        path,
        format!("{codec}-compressed {what} cannot be decompressed: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_gzip_and_zstd_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let text = "query-id\tcorpus-id\tscore\nq1\td1\t1\n";
        let plain = dir.path().join("q.tsv");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("q.tsv.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        let zst = dir.path().join("q.tsv.zst");
        std::fs::write(&zst, zstd::stream::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        for p in [&plain, &gz, &zst] {
            assert_eq!(read(p, "qrels file").unwrap(), text, "{}", p.display());
        }
        assert_eq!(inner_name(&zst), "q.tsv");
        // Truncated gzip, and bytes that are not UTF-8: data errors naming
        // the file (and the line).
        let bytes = std::fs::read(&gz).unwrap();
        std::fs::write(&gz, &bytes[..bytes.len() - 6]).unwrap();
        let e = read(&gz, "qrels file").unwrap_err();
        assert!(matches!(e, Error::Data { .. }), "{e}");
        std::fs::write(&plain, b"a\nb\xff\n").unwrap();
        let e = read(&plain, "qrels file").unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
    }
}
