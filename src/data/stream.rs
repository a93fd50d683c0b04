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
    let read = |start: usize, count: usize, raw: &mut Vec<u8>, out: &mut [f32]| {
        corpus.read_rows_into(start, count, raw, out)
    };
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
                read,
                cancel,
                f,
            )
        }
        None => pump(corpus, range, chunk_rows, recycled(), read, cancel, f),
    }
}

/// As [`for_each_chunk`] without `into`, but the rows as stored in an f16
/// corpus ([`Corpus::is_f16`]): for a consumer that takes f16 as it is (the
/// GPU's f16 scan), with no trip through f32.
pub fn for_each_chunk_f16(
    corpus: Corpus,
    range: std::ops::Range<usize>,
    chunk_rows: usize,
    cancel: &Cancel,
    f: impl FnMut(&mut [half::f16], usize) -> Result<()>,
) -> Result<()> {
    let read = |start: usize, count: usize, _: &mut Vec<u8>, out: &mut [half::f16]| {
        corpus.read_rows_f16_into(start, count, out)
    };
    pump(corpus, range, chunk_rows, recycled(), read, cancel, f)
}

/// Buffers that come back for reuse once consumed, new ones while none has.
fn recycled<T: Send>() -> impl Iterator<Item = (Vec<T>, std::sync::mpsc::Sender<Vec<T>>)> + Send {
    let (recycle_tx, recycle_rx) = channel::<Vec<T>>();
    std::iter::from_fn(move || Some(recycle_rx.try_recv().unwrap_or_default()))
        .zip(std::iter::repeat(recycle_tx))
}

/// Where a chunk is read to: a recycled buffer (sized on the way) that goes
/// back for reuse once consumed, or its own place in the caller's memory.
trait ChunkBuf<T>: Send {
    fn slice(&mut self, len: usize) -> &mut [T];
    fn done(self);
}

impl<T: Default + Clone + Send> ChunkBuf<T> for (Vec<T>, std::sync::mpsc::Sender<Vec<T>>) {
    fn slice(&mut self, len: usize) -> &mut [T] {
        self.0.resize(len, T::default());
        &mut self.0
    }
    fn done(self) {
        let _ = self.1.send(self.0);
    }
}

impl<T: Send> ChunkBuf<T> for &mut [T] {
    fn slice(&mut self, len: usize) -> &mut [T] {
        &mut self[..len]
    }
    fn done(self) {}
}

/// Reads chunks with `read(start, count, raw, out)` on an I/O thread and
/// hands them to `f` in order.
fn pump<T, B: ChunkBuf<T>>(
    corpus: Corpus,
    range: std::ops::Range<usize>,
    chunk_rows: usize,
    mut buffers: impl Iterator<Item = B> + Send,
    read: impl Fn(usize, usize, &mut Vec<u8>, &mut [T]) -> Result<()> + Send,
    cancel: &Cancel,
    mut f: impl FnMut(&mut [T], usize) -> Result<()>,
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
                let read = read(start, count, &mut raw, buf.slice(count * cols));
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
