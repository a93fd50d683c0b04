//! Retrieval quality: Recall@k and NDCG@k of a corpus on a split, by exact
//! search ([`evaluate`]), and the metrics themselves ([`metrics`]).

pub mod metrics;

use crate::backend::{Backend, Rows, ScanSpec};
use crate::control::Control;
use crate::data::Corpus;
use crate::data::dataset::Split;
use crate::error::{Error, Result};
use crate::fit::scan::{across, check_finite, scan_corpus, scan_corpus_f16};
use crate::matrix::Matrix;
pub use metrics::Scores;

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Cut-offs, each at least 1 (sorted and deduplicated in the result).
    pub ks: Vec<usize>,
    /// Normalise the corpus rows before scoring (cosine), or score them as
    /// stored (dot product: what a NUDGE-M output must be searched by).
    pub cosine: bool,
    /// Corpus rows per streamed chunk; `None` lets the backend choose.
    pub chunk_rows: Option<usize>,
    /// Progress and cancellation.
    pub control: Control,
}

impl Default for EvalOptions {
    /// At 10, by dot product.
    fn default() -> EvalOptions {
        EvalOptions {
            ks: vec![10],
            cosine: false,
            chunk_rows: None,
            control: Control::default(),
        }
    }
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// One entry per cut-off, ascending k.
    pub scores: Vec<Scores>,
    /// Corpus rows of zero norm (they score 0 against every query).
    pub zero_rows: Vec<usize>,
}

/// Recall@k and NDCG@k of `corpus` on `split` (whose queries are rows of
/// `queries`), by exact search in one streaming pass over the corpus. A
/// corpus row holding a NaN or infinity is a data error naming it.
pub fn evaluate(
    backend: &dyn Backend,
    corpus: Corpus,
    queries: &Matrix,
    split: &Split,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    evaluate_across(&[backend], corpus, queries, split, opts)
}

/// [`evaluate`] with the corpus pass spread over several backends at once
/// (every GPU of a machine): each scans an equal share of the rows, and
/// their lists merge into the one pass's lists.
pub fn evaluate_across(
    backends: &[&dyn Backend],
    corpus: Corpus,
    queries: &Matrix,
    split: &Split,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    if backends.is_empty() {
        return Err(Error::invalid("no backend to evaluate on"));
    }
    let mut ks = opts.ks.clone();
    if ks.is_empty() || ks.contains(&0) {
        return Err(Error::invalid("cut-offs k must be given and at least 1"));
    }
    ks.sort_unstable();
    ks.dedup();
    if queries.cols != corpus.cols() {
        return Err(Error::inconsistent(format!(
            "dimension mismatch: the corpus has {}-d rows but the queries have {}-d rows",
            corpus.cols(),
            queries.cols
        )));
    }
    split.check_rows(queries.rows, corpus.rows())?;
    let q = split.matrix(queries);
    let k = *ks.last().expect("at least one k");
    let rows = if opts.cosine {
        Rows::Normalize
    } else {
        Rows::AsStored
    };
    let scan = |b: &dyn Backend, range: std::ops::Range<usize>, control: &Control| {
        let spec = ScanSpec {
            queries: &q,
            k,
            rows,
            skip: None,
        };
        if corpus.is_f16() && b.scan_takes_f16() {
            // Nothing here needs the rows on the host: f16 goes up as is.
            return scan_corpus_f16(b, corpus, range, spec, opts.chunk_rows, control);
        }
        scan_corpus(
            b,
            corpus,
            range,
            spec,
            opts.chunk_rows,
            None,
            control,
            |_, _| Ok(()),
        )
    };
    let (top, report) = match backends {
        [one] => scan(*one, 0..corpus.rows(), &opts.control)?,
        _ => {
            let parts = across(
                backends,
                0..corpus.rows(),
                &opts.control,
                "scanning corpus",
                |_, b, range, control| scan(b, range, control),
            )?;
            let mut parts = parts.into_iter();
            let (mut top, mut report) = parts.next().expect("a part per backend");
            for (t, r) in parts {
                top.merge(&t);
                report.extend(r);
            }
            (top, report)
        }
    };
    check_finite(&report, corpus)?;
    Ok(Evaluation {
        scores: metrics::score(&top, &split.queries, &ks),
        zero_rows: report.zero,
    })
}
