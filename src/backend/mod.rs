//! The few steps a backend implements, and nothing else.
//!
//! The NUDGE algorithm ([`crate::fit`](mod@crate::fit)) is written once against the
//! [`Backend`] trait; `cpu` is the reference implementation and `gpu` runs the
//! same steps as WGSL kernels. Every step has one job and a CPU twin, so each
//! GPU kernel can be tested against its twin on its own.

pub mod cpu;
pub mod device;
pub mod gpu;
pub mod topk;

use crate::error::Result;
use crate::matrix::Matrix;
pub use crate::method::nudge_m::{Bounds, Pair};
pub use topk::TopK;

/// Corpus rows found unusable while normalising or scanning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowReport {
    /// Absolute rows whose norm is zero (they stay zero).
    pub zero: Vec<usize>,
    /// Absolute rows holding a NaN or infinity.
    pub non_finite: Vec<usize>,
}

impl RowReport {
    /// Appends another report's rows (e.g. from the next chunk) to this one.
    pub fn extend(&mut self, other: RowReport) {
        self.zero.extend(other.zero);
        self.non_finite.extend(other.non_finite);
    }
}

/// What a streaming top-k scan over the corpus computes.
pub struct ScanSpec<'a> {
    /// The queries, one per row.
    pub queries: &'a Matrix,
    /// How many best records to keep per query.
    pub k: usize,
    /// What is done to the corpus rows before they are scored.
    pub rows: Rows,
    /// Rows to leave out of the top-k, indexed by absolute row (the moved set).
    pub skip: Option<&'a [bool]>,
}

/// How a scan treats the corpus rows it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// L2-normalise each row before scoring it (evaluating an untuned
    /// corpus); zero and non-finite rows are reported.
    Normalize,
    /// Score the rows as stored (a NUDGE-M output); non-finite rows are
    /// reported.
    AsStored,
    /// The caller has normalised and checked the rows already (the fit does
    /// as it reads them): they are scored as they are, and the scan may skip
    /// its checks and report nothing.
    Checked,
}

/// Moved records per block of S0/S1 that make score blocks of about 4 MiB
/// for `queries` dev queries: the default of [`Backend::block_rows`].
pub fn score_block_rows(queries: usize) -> usize {
    ((4usize << 20) / queries.max(1)).clamp(256, 1 << 16)
}

/// NUDGE-M slopes from S1, in place: column j times `inv_norm[j]` = 1/|G_j|.
/// Every backend's bounds step and every pair read these same numbers
/// (one f32 multiply each, on every device).
pub fn slopes(s1: &mut Matrix, inv_norm: &[f32]) {
    use rayon::prelude::*;
    let width = s1.cols.max(1);
    s1.data.par_chunks_mut(width).for_each(|row| {
        for (x, n) in row.iter_mut().zip(inv_norm) {
            *x *= n;
        }
    });
}

/// A pair's bounds so far, once its own score and slope are known: what
/// the NUDGE-M search takes them from before its first block tightens
/// them ([`Backend::nudge_m_first_block`]), i.e. the bounds against the
/// best static record. Called once per pair, from any thread.
pub type StaticBounds<'a> = dyn Fn(&Pair) -> Bounds + Sync + 'a;

/// The pairs of a NUDGE-M first block whose own record is in the block:
/// `(pair index, query, column)` for each, in pair order. `records` is
/// ascending, as every block's is.
pub fn own_columns(pairs: &[Pair], records: &[u32]) -> Vec<(usize, u32, u32)> {
    pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let c = records.binary_search(&p.record).ok()?;
            Some((i, p.query, c as u32))
        })
        .collect()
}

/// Fills in the pairs' own values read from a first block (`values[i]` for
/// the pair of `own[i]`, see [`own_columns`]) and returns every pair's
/// bounds so far ([`StaticBounds`]).
pub fn own_values(
    own: &[(usize, u32, u32)],
    values: &[(f32, f32)],
    pairs: &mut [Pair],
    static_bounds: &StaticBounds<'_>,
) -> Vec<Bounds> {
    for (&(i, _, _), &(s, t)) in own.iter().zip(values) {
        (pairs[i].s, pairs[i].t) = (s, t);
    }
    pairs.iter().map(static_bounds).collect()
}

/// `S0 = q_dev . rows.0^T` and `S1 = q_dev . rows.1^T` (`n` rows each)
/// into `scratch`, side by side: a small block is too few GEMM tiles to
/// keep every core busy on its own (SciFact's S0 is 3 tiles for 2 cores).
fn similarity_pair<B: Backend + ?Sized>(
    backend: &B,
    q_dev: &Matrix,
    (rows_d, rows_g): (&[f32], &[f32]),
    n: usize,
    (s0, s1): &mut (Matrix, Matrix),
) -> Result<()> {
    let (a, b) = rayon::join(
        || backend.similarity_into(q_dev, rows_d, n, s0),
        || backend.similarity_into(q_dev, rows_g, n, s1),
    );
    a.and(b)
}

/// S0 and the slopes of a block of moved records into `scratch`: the
/// first half of [`nudge_m_block_via_host`], for a caller that must read
/// them (the NUDGE-M search's first block, which holds the pairs' own
/// values).
pub fn nudge_m_scores<B: Backend + ?Sized>(
    backend: &B,
    q_dev: &Matrix,
    rows: (&[f32], &[f32]),
    inv_norm: &[f32],
    scratch: &mut (Matrix, Matrix),
) -> Result<()> {
    similarity_pair(backend, q_dev, rows, inv_norm.len(), scratch)?;
    slopes(&mut scratch.1, inv_norm);
    Ok(())
}

/// [`Backend::nudge_m_block`] by [`nudge_m_scores`] and
/// [`Backend::nudge_m_bounds`]: the default, and a device backend's way
/// when a block does not fit its own.
#[allow(clippy::too_many_arguments)]
pub fn nudge_m_block_via_host<B: Backend + ?Sized>(
    backend: &B,
    q_dev: &Matrix,
    rows: (&[f32], &[f32]),
    records: &[u32],
    inv_norm: &[f32],
    pairs: &[Pair],
    bounds: &mut [Bounds],
    scratch: &mut (Matrix, Matrix),
) -> Result<()> {
    nudge_m_scores(backend, q_dev, rows, inv_norm, scratch)?;
    let block = SlopeBlock {
        records,
        s: &scratch.0,
        t: &scratch.1,
    };
    backend.nudge_m_bounds(&block, pairs, bounds)
}

/// [`Backend::nudge_m_first_block`] by [`nudge_m_scores`], [`own_values`]
/// and [`Backend::nudge_m_bounds`]: the default, and a device backend's way
/// when a block does not fit its own.
#[allow(clippy::too_many_arguments)]
pub fn nudge_m_first_block_via_host<B: Backend + ?Sized>(
    backend: &B,
    q_dev: &Matrix,
    rows: (&[f32], &[f32]),
    records: &[u32],
    inv_norm: &[f32],
    pairs: &mut [Pair],
    static_bounds: &StaticBounds<'_>,
    scratch: &mut (Matrix, Matrix),
) -> Result<Vec<Bounds>> {
    nudge_m_scores(backend, q_dev, rows, inv_norm, scratch)?;
    let own = own_columns(pairs, records);
    let (s, t) = (&scratch.0, &scratch.1);
    let values: Vec<(f32, f32)> = own
        .iter()
        .map(|&(_, q, c)| (s.row(q as usize)[c as usize], t.row(q as usize)[c as usize]))
        .collect();
    let mut bounds = own_values(&own, &values, pairs, static_bounds);
    let block = SlopeBlock { records, s, t };
    backend.nudge_m_bounds(&block, pairs, &mut bounds)?;
    Ok(bounds)
}

/// [`Backend::nudge_n_block`] by [`Backend::similarity_into`] and
/// [`Backend::nudge_n_merge`]: the default, and a device backend's way when
/// a block does not fit its own.
#[allow(clippy::too_many_arguments)]
pub fn nudge_n_block_via_host<B: Backend + ?Sized>(
    backend: &B,
    q_dev: &Matrix,
    rows: (&[f32], &[f32]),
    records: &[u32],
    planes: Option<&[(f64, f64)]>,
    coef: &[(f32, f32)],
    tops: &mut [TopK],
    scratch: &mut (Matrix, Matrix),
) -> Result<()> {
    similarity_pair(backend, q_dev, rows, records.len(), scratch)?;
    let block = MovedBlock {
        records,
        s0: &scratch.0,
        s1: &scratch.1,
        planes,
    };
    backend.nudge_n_merge(&block, coef, tops)
}

/// A running top-k over corpus chunks pushed in row order.
pub trait Scan {
    /// Scores one chunk of raw corpus rows (`first_row` is the absolute row of
    /// the chunk's first row) and merges it into the running top-k.
    ///
    /// Returns the row report of the rows whose checks have come back: this
    /// chunk's on a backend that checks as it goes (the CPU), earlier
    /// chunks' on one that reads its checks back late so that the host
    /// never waits for the device (the GPU); [`Scan::finish`] returns the
    /// rest. Rows are reported in the order they were pushed.
    fn push(&mut self, chunk: &[f32], first_row: usize) -> Result<RowReport>;
    /// [`Scan::push`] of rows stored as f16. By default they are widened
    /// and pushed (exact: every f16 is an f32); a backend that stores the
    /// corpus as f16 ([`Backend::scan_takes_f16`]) takes them as they are.
    fn push_f16(&mut self, chunk: &[half::f16], first_row: usize) -> Result<RowReport> {
        let wide: Vec<f32> = chunk.iter().map(|x| x.to_f32()).collect();
        self.push(&wide, first_row)
    }
    /// Waits for outstanding work and returns the lists, with the report of
    /// the rows no push has reported yet.
    fn finish(self: Box<Self>) -> Result<(TopK, RowReport)>;
}

/// Segment-sum layout (CSR): output row `r` is the sum of input rows
/// `indices[offsets[r]..offsets[r+1]]`, added in that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segments {
    /// Ascending positions into `indices`, one more than there are
    /// segments: segment `r` is `indices[offsets[r]..offsets[r+1]]`.
    pub offsets: Vec<u32>,
    /// Input rows of all segments, concatenated.
    pub indices: Vec<u32>,
}

impl Segments {
    /// Number of segments (output rows).
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// Whether there are no segments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The input rows summed into output row `r`.
    pub fn segment(&self, r: usize) -> &[u32] {
        &self.indices[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }
}

/// A block of moved records as seen by the dev queries.
pub struct MovedBlock<'a> {
    /// Absolute record rows of the block's columns.
    pub records: &'a [u32],
    /// `dev x B`: dev query . normalised record.
    pub s0: &'a Matrix,
    /// `dev x B`: dev query . G of the record.
    pub s1: &'a Matrix,
    /// Per record, `(v, c) = (d.G, |G|^2)` ([`crate::method::nudge_n::dots`]),
    /// when the merge's coefficients are [`crate::method::nudge_n::Step::coefficients`]
    /// of these: every updated record is then a unit vector in the plane
    /// of d and G, whatever gamma, which bounds its score over the whole
    /// grid, and a backend may skip a record that no list can take. `None`
    /// promises nothing (every record is scored).
    pub planes: Option<&'a [(f64, f64)]>,
}

/// A block of moved records as the NUDGE-M interval search sees them.
pub struct SlopeBlock<'a> {
    /// Absolute record rows of the block's columns.
    pub records: &'a [u32],
    /// `dev x B`: dev query . normalised record (S0).
    pub s: &'a Matrix,
    /// `dev x B`: the slopes dev query . Ghat of the record, i.e. S1 / |G|.
    /// The fit scales S1 once ([`slopes`]) and reads each
    /// pair's own slope from the same numbers, so two records with the same
    /// G have bit-equal slopes and tie exactly, as in the reference.
    pub t: &'a Matrix,
}

/// A device that runs the fit's heavy steps (scans, similarities,
/// aggregation, NUDGE-M/N scoring and updates); the fit is written once
/// against it. Implementations must agree with [`cpu::Cpu`], the reference.
pub trait Backend: Sync {
    /// "cpu" or "gpu", as the fit report names it.
    fn name(&self) -> &'static str;
    /// The device in words, e.g. the adapter name.
    fn device_name(&self) -> String;
    /// Corpus rows per streamed chunk for `queries` queries of dimension
    /// `dim`, over a corpus of `rows` rows.
    fn chunk_rows(&self, queries: usize, dim: usize, rows: usize) -> usize;
    /// Moved records per block of S0/S1 for `queries` dev queries.
    fn block_rows(&self, queries: usize) -> usize {
        score_block_rows(queries)
    }

    /// GPU time per kernel so far, from timestamp queries (empty on the
    /// CPU, or on an adapter without timestamps).
    fn kernel_timings(&self) -> Vec<gpu::KernelTime> {
        Vec::new()
    }

    /// Host wall time per step of the GPU scan's feeding pipeline so far
    /// (`wait_slot`: waiting for a ring slot's previous chunk,
    /// `fill_upload`: copying rows into the upload staging, `submit`:
    /// recording and submitting, `host_rows`: normalising or checking rows
    /// on the host where it does that, `between_pushes`: the caller's time
    /// between two chunks, waiting for the reader among it); empty on the
    /// CPU. Where the GPU keeps up, `wait_slot` is near zero and the feed
    /// is what bounds the pass; a large `between_pushes` puts it on the
    /// reader's side.
    fn host_timings(&self) -> Vec<gpu::KernelTime> {
        Vec::new()
    }

    /// The GPU autotuner's choices so far (`gpu::tune`); empty on the CPU
    /// and where tuning is off.
    fn tune_reports(&self) -> Vec<gpu::tune::TuneReport> {
        Vec::new()
    }

    /// Whether this backend's scans take an f16 corpus as it is
    /// ([`Scan::push_f16`] without widening): then a pass that needs no
    /// f32 rows on the host (an evaluation) streams an f16 file unwidened.
    fn scan_takes_f16(&self) -> bool {
        false
    }

    /// Starts a streaming top-k scan.
    fn scan<'a>(&'a self, spec: ScanSpec<'a>) -> Result<Box<dyn Scan + 'a>>;
    /// `a . b^T` (both row-major, same number of columns).
    ///
    /// Every element must come out bit for bit the same whatever the other
    /// rows of `b` are and wherever its row sits in `b`: the fit computes a
    /// pair's own NUDGE-M score in one call and its competitors' in
    /// another, and the chunking of the corpus must not change the result.
    fn similarity(&self, a: &Matrix, b: &Matrix) -> Result<Matrix>;
    /// [`Backend::similarity`] of `a` with the `b_rows` rows in `b`
    /// (row-major, `a.cols` values each), into `out`, whose memory is
    /// reused: the fit calls this block after block, and fresh score blocks
    /// cost page faults. The default copies; backends override it.
    fn similarity_into(
        &self,
        a: &Matrix,
        b: &[f32],
        b_rows: usize,
        out: &mut Matrix,
    ) -> Result<()> {
        let b = Matrix::new(b_rows, a.cols, b[..b_rows * a.cols].to_vec());
        *out = self.similarity(a, &b)?;
        Ok(())
    }
    /// Segment sums of `rows` (see [`Segments`]).
    fn aggregate(&self, rows: &Matrix, segments: &Segments) -> Result<Matrix>;
    /// NUDGE-M: tightens every pair's bounds over one block of moved records
    /// (the pair's own record is skipped). A pair that is or becomes
    /// [`crate::method::nudge_m::hopeless`] may be left with the bounds it
    /// has then (its interval is `None` whatever follows); every other
    /// pair's bounds are those of [`crate::method::nudge_m::tighten`] over
    /// each competitor, in any order.
    fn nudge_m_bounds(
        &self,
        block: &SlopeBlock,
        pairs: &[Pair],
        bounds: &mut [Bounds],
    ) -> Result<()>;
    /// NUDGE-N: for every grid gamma `g`, offers each moved record's score
    /// `coef[g*B + j].0 * s0 + coef[g*B + j].1 * s1` to `tops[g]`.
    fn nudge_n_merge(
        &self,
        block: &MovedBlock,
        coef: &[(f32, f32)],
        tops: &mut [TopK],
    ) -> Result<()>;
    /// NUDGE-M's bounds over one block of moved records from their rows:
    /// `S0 = q_dev . rows.0^T`, the slopes `T = (q_dev . rows.1^T)` scaled
    /// by column by `inv_norm` ([`slopes`]), then
    /// [`Backend::nudge_m_bounds`] of them. Nothing else reads S0 and T, so
    /// a device backend keeps them where it computed them; the default
    /// ([`nudge_m_block_via_host`]) computes them into `scratch`.
    #[allow(clippy::too_many_arguments)]
    fn nudge_m_block(
        &self,
        q_dev: &Matrix,
        rows: (&[f32], &[f32]),
        records: &[u32],
        inv_norm: &[f32],
        pairs: &[Pair],
        bounds: &mut [Bounds],
        scratch: &mut (Matrix, Matrix),
    ) -> Result<()> {
        nudge_m_block_via_host(self, q_dev, rows, records, inv_norm, pairs, bounds, scratch)
    }
    /// NUDGE-M's first block, which holds every pair's own record: as
    /// [`Backend::nudge_m_block`], except that the pairs' own values come
    /// from the block itself. S0 and the slopes are computed; every pair
    /// whose record is in the block (`records`, ascending) takes its score
    /// and slope from its query's row there (`pairs` is updated), every
    /// pair's bounds start at `static_bounds` of it, and this block's
    /// bounds are taken into those and returned. Only the pairs' own
    /// elements need to reach the host, so a device backend keeps the rest
    /// where it computed them; the default
    /// ([`nudge_m_first_block_via_host`]) computes the block into
    /// `scratch`.
    #[allow(clippy::too_many_arguments)]
    fn nudge_m_first_block(
        &self,
        q_dev: &Matrix,
        rows: (&[f32], &[f32]),
        records: &[u32],
        inv_norm: &[f32],
        pairs: &mut [Pair],
        static_bounds: &StaticBounds<'_>,
        scratch: &mut (Matrix, Matrix),
    ) -> Result<Vec<Bounds>> {
        nudge_m_first_block_via_host(
            self,
            q_dev,
            rows,
            records,
            inv_norm,
            pairs,
            static_bounds,
            scratch,
        )
    }
    /// NUDGE-N's merge of one block of moved records from their rows:
    /// `S0 = q_dev . rows.0^T` and `S1 = q_dev . rows.1^T` (one row per
    /// record), then [`Backend::nudge_n_merge`] of them. Nothing else reads
    /// S0 and S1, so a device backend keeps them where it computed them and
    /// sends back only the lists; the default ([`nudge_n_block_via_host`])
    /// computes them into `scratch`, reused block after block.
    #[allow(clippy::too_many_arguments)]
    fn nudge_n_block(
        &self,
        q_dev: &Matrix,
        rows: (&[f32], &[f32]),
        records: &[u32],
        planes: Option<&[(f64, f64)]>,
        coef: &[(f32, f32)],
        tops: &mut [TopK],
        scratch: &mut (Matrix, Matrix),
    ) -> Result<()> {
        nudge_n_block_via_host(self, q_dev, rows, records, planes, coef, tops, scratch)
    }
    /// NUDGE-M shift of each row of `d` by `gamma * G/|G|` (rows with G = 0 stay).
    fn update_m(&self, d: &mut Matrix, g: &Matrix, gamma: f32) -> Result<()>;
    /// NUDGE-N rotation of each row of `d` towards its G, clamped to Ghat.
    fn update_n(&self, d: &mut Matrix, g: &Matrix, gamma: f64) -> Result<()>;
}
