//! Converts an `.npy` matrix to a Parquet file of `(id, vector)` rows, as
//! `nudge fit --out X.parquet` writes them (ids are the row numbers), a
//! chunk of rows at a time. Used to time Parquet input against `.npy`:
//!
//! ```text
//! cargo run --release --example to_parquet -- corpus.npy corpus.parquet [f16]
//! ```

use std::path::PathBuf;

use nudge::data::npy::{NpyMatrix, OutDtype};
use nudge::data::parquet_out::ParquetOut;

fn main() -> nudge::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = &args[..] else {
        eprintln!("usage: to_parquet IN.npy OUT.parquet [f16]");
        std::process::exit(2);
    };
    let dtype = if rest.first().map(String::as_str) == Some("f16") {
        OutDtype::F16
    } else {
        OutDtype::F32
    };
    let m = NpyMatrix::open(&PathBuf::from(input))?;
    let mut w = ParquetOut::create(&PathBuf::from(output), m.cols(), dtype)?;
    let step = 16384;
    let (mut raw, mut buf) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at < m.rows() {
        let n = step.min(m.rows() - at);
        buf.resize(n * m.cols(), 0.0);
        m.read_rows_into(at, n, &mut raw, &mut buf)?;
        let ids: Vec<String> = (at..at + n).map(|r| r.to_string()).collect();
        w.write(&ids, &buf)?;
        at += n;
    }
    w.finish_staged()?.commit()
}
