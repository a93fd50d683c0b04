//! nudge: fine-tune the record embeddings of a k-NN retrieval corpus with
//! NUDGE (Zeighami, Wellmer, Parameswaran, arXiv 2409.02343), on the CPU or
//! on any GPU through wgpu, with the same gamma, embeddings and metrics as
//! the reference implementation (PyPI `nudge-ft` 0.1.2).
//!
//! NUDGE leaves the embedding model and the queries alone and moves the
//! *record* embeddings: every record that answers a training query is
//! nudged towards the sum `G` of those queries, by an amount `gamma` chosen
//! on a dev split ([`Method::NudgeM`] shifts by `gamma * G/|G|`,
//! [`Method::NudgeN`] rotates and stays unit-norm).
//!
//! # Fitting in memory
//!
//! A fit needs a corpus, the query embeddings, and train and dev
//! judgements; here a tiny one, with the ids as row numbers:
//!
//! ```
//! use nudge::{Corpus, FitOptions, Ids, Inputs, Matrix, Method, Split, SplitName};
//!
//! # fn main() -> nudge::Result<()> {
//! // Three 2-d records; record 2 answers the training and the dev query,
//! // but record 1 scores higher for both (1.0 against 0.92).
//! let corpus = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
//! let queries = Matrix::new(2, 2, vec![0.2, 1.0, 0.2, 1.0]);
//! let (corpus_ids, query_ids) = (Ids::rows(3), Ids::rows(2));
//! let train = Split::from_ids(SplitName::Train, [("0", "2", 1.0)], &query_ids, &corpus_ids, false)?;
//! let dev = Split::from_ids(SplitName::Dev, [("1", "2", 1.0)], &query_ids, &corpus_ids, false)?;
//!
//! let inputs = Inputs {
//!     corpus: Corpus::f32(&corpus, 2)?,
//!     queries: &queries,
//!     train: &train.split,
//!     dev: &dev.split,
//!     test: None,
//! };
//! let fit = nudge::fit(&nudge::Cpu, &inputs, &FitOptions::new(Method::NudgeM))?;
//! assert_eq!(fit.moved, vec![2]);
//! // The smallest move that ranks record 2 first: (1.0 - 0.92) / 1.02.
//! assert!((fit.gamma - 0.0784).abs() < 1e-3, "gamma {}", fit.gamma);
//!
//! // The tuned corpus: every row normalised, the moved rows replaced.
//! let mut tuned = corpus.to_vec();
//! fit.apply(&mut tuned, 2);
//! assert_eq!(&tuned[4..], fit.updated.row(0));
//! # Ok(())
//! # }
//! ```
//!
//! # Files, devices, progress
//!
//! - [`Dataset`] opens a dataset folder (`corpus.npy`, `queries.npy`, ids,
//!   `qrels/{train,dev,test}.tsv`); its corpus is read in chunks, so a fit
//!   of a corpus larger than memory works ([`Corpus::Npy`]). The corpus and
//!   queries can also be Parquet or Arrow IPC tables with a vector column
//!   and an id column, read a batch at a time ([`Corpus::Table`],
//!   [`data::table::TableMatrix`]).
//! - [`fit_to_file`] writes the tuned corpus during the fit's one pass.
//! - [`backend::device::open`] picks the CPU or a GPU ([`Device`]).
//! - [`evaluate`] scores a corpus (tuned or not) on a split.
//! - [`Control`] carries a [`Progress`] sink and a [`Cancel`] token into a
//!   run; nothing here prints, reads the environment, or installs handlers.
//! - Every failure is an [`Error`] whose [`Kind`] says who has to act.
//!
//! # Modules
//!
//! - [`fit`](mod@fit): the algorithm, written once against the [`Backend`] steps.
//! - [`method`]: the NUDGE-M and NUDGE-N rules both sides share.
//! - [`backend`]: the steps a backend implements; the CPU one is the
//!   reference, the GPU one runs WGSL kernels.
//! - [`eval`]: metrics and exact search.
//! - [`data`]: `.npy`, ids, qrels, dataset folders, synthetic data.
//! - [`report`]: self-contained HTML reports of a fit and of a bench.
//! - [`alloc`]: the allocator the binary runs on (and why).

#![deny(missing_docs)]

pub mod alloc;
pub mod backend;
mod control;
pub mod data;
mod error;
pub mod eval;
pub mod fit;
pub mod matrix;
pub mod method;
pub mod report;

pub use backend::Backend;
pub use backend::cpu::Cpu;
pub use backend::device::{Device, DeviceOptions};
pub use backend::gpu::{Gpu, GpuOptions, Precision};
pub use control::{Cancel, Control, Progress};
pub use data::Corpus;
pub use data::dataset::{Dataset, FitSplits, Judged, LabeledQuery, Paths, Split, SplitName};
pub use data::ids::Ids;
pub use data::npy::OutDtype;
pub use error::{Error, IdKind, Kind, Result};
pub use eval::{EvalOptions, Evaluation, Scores, evaluate, evaluate_across};
pub use fit::output::{WriteOptions, fit_to_file};
pub use fit::partial::{MapOptions, Partial, ReduceInputs};
pub use fit::{DevScores, Fit, FitOptions, GridPoint, Inputs, fit, fit_across, fit_into};
pub use matrix::Matrix;
pub use method::Method;
