//! Reading a corpus ahead of its consumer, and writing behind it.
//!
//! A pass over a large corpus alternates I/O (read, convert f16/f32; or
//! write) with compute. A helper thread for the I/O side lets the two
//! overlap, with a bounded number of chunks in flight so memory stays
//! bounded by the chunk size.

use std::sync::mpsc::{channel, sync_channel};

use crate::data::npy::{NpyMatrix, NpyWriter};
use crate::error::{Error, Result};

/// Chunks in flight between the I/O thread and the consumer.
const AHEAD: usize = 2;

/// Calls `f(rows, first_row)` for consecutive chunks of `chunk_rows` rows of
/// `corpus` (converted to f32), in order, while the next chunk is read.
pub fn for_each_chunk(
    corpus: &NpyMatrix,
    chunk_rows: usize,
    mut f: impl FnMut(&[f32], usize) -> Result<()>,
) -> Result<()> {
    let n = corpus.rows();
    let chunk_rows = chunk_rows.max(1);
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Result<(Vec<f32>, usize)>>(AHEAD);
        let (recycle_tx, recycle_rx) = channel::<Vec<f32>>();
        s.spawn(move || {
            let mut raw = Vec::new();
            let mut start = 0;
            while start < n {
                let count = chunk_rows.min(n - start);
                let mut buf = recycle_rx.try_recv().unwrap_or_default();
                let read = corpus.read_rows_with(start, count, &mut raw, &mut buf);
                let failed = read.is_err();
                // A closed channel means the consumer stopped early.
                if tx.send(read.map(|_| (buf, start))).is_err() || failed {
                    return;
                }
                start += count;
            }
        });
        for msg in rx {
            // Ctrl-C: stop between chunks (see crate::interrupt).
            crate::interrupt::check()?;
            let (buf, first) = msg?;
            f(&buf, first)?;
            let _ = recycle_tx.send(buf);
        }
        Ok(())
    })
}

/// Runs `f` with a sink that writes rows to `writer` on a helper thread,
/// then finishes the writer (rename into place) if everything succeeded.
pub fn write_behind(
    writer: NpyWriter,
    f: impl FnOnce(&mut dyn FnMut(Vec<f32>) -> Result<()>) -> Result<()>,
) -> Result<()> {
    write_behind_staged(writer, f)?.commit()
}

/// As [`write_behind`], but the finished file stays at its temporary path
/// until the caller commits it.
pub fn write_behind_staged(
    writer: NpyWriter,
    f: impl FnOnce(&mut dyn FnMut(Vec<f32>) -> Result<()>) -> Result<()>,
) -> Result<crate::data::Pending> {
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<f32>>(AHEAD);
        let handle = s.spawn(move || -> Result<NpyWriter> {
            let mut writer = writer;
            for rows in rx {
                writer.write_rows(&rows)?;
            }
            Ok(writer)
        });
        let mut send = |rows: Vec<f32>| {
            tx.send(rows)
                .map_err(|_| Error::runtime("the writer thread stopped"))
        };
        let produced = f(&mut send);
        drop(tx);
        let written = handle
            .join()
            .map_err(|_| Error::runtime("the writer thread panicked"))?;
        // A write error explains a stopped writer better than the send error.
        let writer = written?;
        produced?;
        writer.finish_staged()
    })
}
