//! Reading a corpus ahead of its consumer.
//!
//! A pass over a large corpus alternates reading (and converting f16/f32)
//! with compute. A reader thread lets the two overlap, with a bounded number
//! of chunks in flight so memory stays bounded by the chunk size. (The fit's
//! output has a writer thread of its own, see `nudge::output`.)

use std::sync::mpsc::{channel, sync_channel};

use crate::data::npy::NpyMatrix;
use crate::error::Result;

/// Chunks in flight between the I/O thread and the consumer.
const AHEAD: usize = 2;

/// Calls `f(rows, first_row)` for consecutive chunks of `chunk_rows` rows of
/// `corpus` (converted to f32), in order, while the next chunk is read.
pub fn for_each_chunk(
    corpus: &NpyMatrix,
    chunk_rows: usize,
    mut f: impl FnMut(&mut [f32], usize) -> Result<()>,
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
            let (mut buf, first) = msg?;
            f(&mut buf, first)?;
            let _ = recycle_tx.send(buf);
        }
        Ok(())
    })
}
