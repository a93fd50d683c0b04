//! Reading a corpus ahead of its consumer.
//!
//! A pass over a large corpus alternates reading (and converting f16/f32)
//! with compute. A reader thread lets the two overlap, with a bounded number
//! of chunks in flight so memory stays bounded by the chunk size. (The fit's
//! output has a writer thread of its own, see `nudge::output`.) When the
//! caller holds the whole corpus in memory anyway (a small fit's output),
//! the chunks are read straight into that memory instead.

use std::sync::mpsc::{channel, sync_channel};

use crate::control::Cancel;
use crate::data::Corpus;
use crate::error::Result;

/// Chunks in flight between the I/O thread and the consumer.
const AHEAD: usize = 2;

/// Calls `f(rows, first_row)` for consecutive chunks of `chunk_rows` rows of
/// `corpus` (converted to f32) within `range`, in order, while the next
/// chunk is read; `first_row` counts from the corpus's first row, not the
/// range's. With `into` (room for every row of the range), each chunk is
/// read into its place there and `f` sees that place; otherwise into a few
/// recycled buffers.
pub fn for_each_chunk(
    corpus: Corpus,
    range: std::ops::Range<usize>,
    chunk_rows: usize,
    into: Option<&mut [f32]>,
    cancel: &Cancel,
    f: impl FnMut(&mut [f32], usize) -> Result<()>,
) -> Result<()> {
    let chunk_len = chunk_rows.max(1) * corpus.cols();
    // (A corpus of 0 columns has no places to read into: it takes the other
    // way, which still shows `f` its empty chunks.)
    match into.filter(|_| corpus.cols() > 0) {
        Some(all) => {
            assert_eq!(all.len(), range.len() * corpus.cols(), "room for the rows");
            pump(
                corpus,
                range,
                chunk_rows,
                all.chunks_mut(chunk_len),
                cancel,
                f,
            )
        }
        None => {
            let (recycle_tx, recycle_rx) = channel::<Vec<f32>>();
            let buffers =
                std::iter::from_fn(move || Some(recycle_rx.try_recv().unwrap_or_default()));
            pump(
                corpus,
                range,
                chunk_rows,
                buffers.zip(std::iter::repeat(recycle_tx)),
                cancel,
                f,
            )
        }
    }
}

/// Where a chunk is read to: a recycled buffer (sized on the way) that goes
/// back for reuse once consumed, or its own place in the caller's memory.
trait ChunkBuf: Send {
    fn slice(&mut self, len: usize) -> &mut [f32];
    fn done(self);
}

impl ChunkBuf for (Vec<f32>, std::sync::mpsc::Sender<Vec<f32>>) {
    fn slice(&mut self, len: usize) -> &mut [f32] {
        self.0.resize(len, 0.0);
        &mut self.0
    }
    fn done(self) {
        let _ = self.1.send(self.0);
    }
}

impl ChunkBuf for &mut [f32] {
    fn slice(&mut self, len: usize) -> &mut [f32] {
        &mut self[..len]
    }
    fn done(self) {}
}

fn pump<B: ChunkBuf>(
    corpus: Corpus,
    range: std::ops::Range<usize>,
    chunk_rows: usize,
    mut buffers: impl Iterator<Item = B> + Send,
    cancel: &Cancel,
    mut f: impl FnMut(&mut [f32], usize) -> Result<()>,
) -> Result<()> {
    assert!(range.end <= corpus.rows(), "rows within the corpus");
    let n = range.end;
    let cols = corpus.cols();
    let chunk_rows = chunk_rows.max(1);
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Result<(B, usize, usize)>>(AHEAD);
        s.spawn(move || {
            let mut raw = Vec::new();
            let mut start = range.start;
            while start < n {
                let count = chunk_rows.min(n - start);
                let Some(mut buf) = buffers.next() else {
                    return;
                };
                let read = corpus.read_rows_into(start, count, &mut raw, buf.slice(count * cols));
                let failed = read.is_err();
                // A closed channel means the consumer stopped early.
                if tx.send(read.map(|_| (buf, start, count))).is_err() || failed {
                    return;
                }
                start += count;
            }
        });
        for msg in rx {
            // A cancelled run stops between chunks.
            cancel.check()?;
            let (mut buf, first, count) = msg?;
            f(buf.slice(count * cols), first)?;
            buf.done();
        }
        Ok(())
    })
}
