//! A dataset: corpus, queries, their ids and the train/dev/test judgements,
//! from a dataset folder (DESIGN §5 layout) and/or explicit paths.

use rustc_hash::FxHashSet;
use std::path::{Path, PathBuf};

use crate::data::ids::Ids;
use crate::data::npy::NpyMatrix;
use crate::data::qrels;
use crate::error::{Error, Result};
use crate::log;
use crate::matrix::Matrix;

/// Where each input lives. A dataset folder fills in whatever is not given
/// explicitly; explicit paths win.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub corpus: Option<PathBuf>,
    pub corpus_ids: Option<PathBuf>,
    pub queries: Option<PathBuf>,
    pub query_ids: Option<PathBuf>,
    pub train_qrels: Option<PathBuf>,
    pub dev_qrels: Option<PathBuf>,
    pub test_qrels: Option<PathBuf>,
    /// The dataset folder the other paths were filled from, if any; names the
    /// file that is missing when a required split is not there.
    pub folder: Option<PathBuf>,
}

impl Paths {
    /// Fills the unset paths from the standard layout of `dir`. Optional files
    /// (ids, test qrels) are taken only if they exist.
    pub fn with_folder(mut self, dir: Option<&Path>) -> Result<Paths> {
        let Some(dir) = dir else { return Ok(self) };
        if !dir.is_dir() {
            return Err(Error::data(format!(
                "{}: dataset folder does not exist",
                dir.display()
            )));
        }
        let fill = |slot: &mut Option<PathBuf>, rel: &str, always: bool| {
            let p = dir.join(rel);
            if slot.is_none() && (always || p.exists()) {
                *slot = Some(p);
            }
        };
        fill(&mut self.corpus, "corpus.npy", true);
        fill(&mut self.corpus_ids, "corpus_ids.txt", false);
        fill(&mut self.queries, "queries.npy", true);
        fill(&mut self.query_ids, "query_ids.txt", false);
        fill(&mut self.train_qrels, "qrels/train.tsv", false);
        fill(&mut self.dev_qrels, "qrels/dev.tsv", false);
        fill(&mut self.test_qrels, "qrels/test.tsv", false);
        self.folder = Some(dir.to_path_buf());
        Ok(self)
    }

    pub fn qrels(&self, split: SplitName) -> Option<&PathBuf> {
        match split {
            SplitName::Train => self.train_qrels.as_ref(),
            SplitName::Dev => self.dev_qrels.as_ref(),
            SplitName::Test => self.test_qrels.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitName {
    Train,
    Dev,
    Test,
}

impl SplitName {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Dev => "dev",
            SplitName::Test => "test",
        }
    }
    pub fn flag(self) -> &'static str {
        match self {
            SplitName::Train => "--train-qrels",
            SplitName::Dev => "--dev-qrels",
            SplitName::Test => "--test-qrels",
        }
    }
}

/// A query and the records that answer it, as row numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledQuery {
    /// Row in the queries matrix.
    pub row: u32,
    /// (corpus row, relevance > 0), in file order, each record once.
    pub answers: Vec<(u32, f32)>,
}

impl LabeledQuery {
    pub fn relevance(&self, record: u32) -> f32 {
        self.answers
            .iter()
            .find(|a| a.0 == record)
            .map_or(0.0, |a| a.1)
    }
}

#[derive(Debug, Clone)]
pub struct Split {
    pub name: SplitName,
    pub queries: Vec<LabeledQuery>,
}

impl Split {
    /// The embeddings of this split's queries, in split order.
    pub fn matrix(&self, all: &Matrix) -> Matrix {
        all.select_rows(self.queries.iter().map(|q| q.row as usize))
    }
}

pub struct Dataset {
    pub paths: Paths,
    pub corpus: NpyMatrix,
    pub corpus_ids: Ids,
    pub queries: Matrix,
    pub query_ids: Ids,
}

impl Dataset {
    pub fn open(paths: Paths) -> Result<Dataset> {
        let corpus_path = paths
            .corpus
            .clone()
            .ok_or_else(|| Error::usage("no corpus: give --dataset DIR or --corpus FILE.npy"))?;
        let queries_path = paths
            .queries
            .clone()
            .ok_or_else(|| Error::usage("no queries: give --dataset DIR or --queries FILE.npy"))?;
        let corpus = NpyMatrix::open(&corpus_path)?;
        let qm = NpyMatrix::open(&queries_path)?;
        if corpus.cols() == 0 {
            return Err(Error::data(format!(
                "{}: rows have 0 dimensions; expected n x d embeddings with d >= 1",
                corpus_path.display()
            )));
        }
        for (m, p) in [(&corpus, &corpus_path), (&qm, &queries_path)] {
            if m.rows() > u32::MAX as usize {
                return Err(Error::data(format!(
                    "{}: {} rows; at most {} rows are supported",
                    p.display(),
                    m.rows(),
                    u32::MAX
                )));
            }
        }
        if qm.cols() != corpus.cols() {
            return Err(Error::data(format!(
                "dimension mismatch: {} has {}-d rows but {} has {}-d rows; queries and corpus must come from the same model",
                corpus_path.display(),
                corpus.cols(),
                queries_path.display(),
                qm.cols()
            )));
        }
        if corpus.rows() == 0 {
            return Err(Error::data(format!(
                "{}: the corpus has no rows",
                corpus_path.display()
            )));
        }
        // The three reads are independent: run them side by side.
        let read_queries = || -> Result<Matrix> {
            let queries = Matrix::new(qm.rows(), qm.cols(), qm.read_all()?);
            if let Some((r, c)) = NpyMatrix::first_non_finite(&queries.data, queries.cols) {
                return Err(Error::data(format!(
                    "{}: row {r} (column {c}) is NaN or infinite; every query embedding must be finite",
                    queries_path.display()
                )));
            }
            Ok(queries)
        };
        let (queries, (corpus_ids, query_ids)) = rayon::join(read_queries, || {
            rayon::join(
                || Ids::load(paths.corpus_ids.as_deref(), corpus.rows(), &corpus_path),
                || Ids::load(paths.query_ids.as_deref(), qm.rows(), &queries_path),
            )
        });
        // Errors in the order the files were read before.
        let queries = queries?;
        let corpus_ids = corpus_ids?;
        let query_ids = query_ids?;
        Ok(Dataset {
            paths,
            corpus,
            corpus_ids,
            queries,
            query_ids,
        })
    }

    pub fn dim(&self) -> usize {
        self.corpus.cols()
    }

    /// The train, dev and (if `with_test` and present) test splits of a fit,
    /// read in parallel; warnings come out in that order all the same.
    pub fn fit_splits(
        &self,
        skip_unknown: bool,
        with_test: bool,
    ) -> Result<(Split, Split, Option<Split>)> {
        let mut notes: [Vec<String>; 3] = Default::default();
        let [n_train, n_dev, n_test] = &mut notes;
        let (train, (dev, test)) = rayon::join(
            || self.required_noting(SplitName::Train, skip_unknown, n_train),
            || {
                rayon::join(
                    || self.required_noting(SplitName::Dev, skip_unknown, n_dev),
                    || {
                        if with_test {
                            self.split_noting(SplitName::Test, skip_unknown, n_test)
                        } else {
                            Ok(None)
                        }
                    },
                )
            },
        );
        notes.into_iter().flatten().for_each(log::warn);
        Ok((train?, dev?, test?))
    }

    /// Loads the judgements of one split, adding its warnings to
    /// `warnings`. `Ok(None)` if no qrels file is known for it. Ids that name
    /// no row are an error unless `skip_unknown`.
    fn split_noting(
        &self,
        name: SplitName,
        skip_unknown: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Split>> {
        let Some(path) = self.paths.qrels(name) else {
            return Ok(None);
        };
        let text = qrels::read(path)?;
        // Each judgement as (query row, record row, score), None for a line
        // with an unknown id under --skip-unknown-ids; the ids are looked
        // up as the file is parsed, on all cores. Qrels files list a query's
        // judgements together: its id is looked up once per run of lines.
        let judgements = qrels::parse_map(
            &text,
            path,
            || None::<(&str, Option<u32>)>,
            |last, j| {
                let q = match *last {
                    Some((id, row)) if id == j.query => row,
                    _ => {
                        let row = self.query_ids.row(j.query);
                        *last = Some((j.query, row));
                        row
                    }
                };
                match (q, self.corpus_ids.row(j.record)) {
                    (Some(q), Some(r)) => Ok(Some((q, r, j.score))),
                    _ if skip_unknown => Ok(None),
                    (q, _) => {
                        let (what, id) = if q.is_none() {
                            ("query", j.query)
                        } else {
                            ("corpus", j.record)
                        };
                        Err(Error::data(format!(
                            "{}:{}: unknown {what} id {id:?} (not in the {what} ids); fix the file or pass --skip-unknown-ids",
                            path.display(),
                            j.line
                        )))
                    }
                }
            },
        )?;
        let mut order: Vec<LabeledQuery> = Vec::new();
        // Per query row: its index in `order`, and whether a line judged it
        // not relevant.
        const NONE: usize = usize::MAX;
        let mut slot = vec![NONE; self.queries.rows];
        let mut not_relevant = vec![false; self.queries.rows];
        let (mut unknown, mut duplicates) = (0usize, 0usize);
        // (query, record) pairs seen: a scan of the query's answers per line
        // is quadratic in the answers, and NFCorpus queries have up to 115.
        let mut seen: FxHashSet<u64> =
            FxHashSet::with_capacity_and_hasher(judgements.len(), Default::default());
        for j in &judgements {
            let Some((q, r, score)) = *j else {
                unknown += 1;
                continue;
            };
            if score <= 0.0 {
                not_relevant[q as usize] = true;
                continue;
            }
            if slot[q as usize] == NONE {
                slot[q as usize] = order.len();
                order.push(LabeledQuery {
                    row: q,
                    answers: Vec::new(),
                });
            }
            let i = slot[q as usize];
            if !seen.insert((q as u64) << 32 | r as u64) {
                duplicates += 1;
                continue;
            }
            order[i].answers.push((r, score));
        }
        if unknown > 0 {
            warnings.push(format!(
                "{}: skipped {unknown} lines with unknown ids",
                path.display()
            ));
        }
        if duplicates > 0 {
            warnings.push(format!(
                "{}: {duplicates} duplicate (query, record) lines counted once",
                path.display()
            ));
        }
        let unanswered = (0..slot.len())
            .filter(|&q| not_relevant[q] && slot[q] == NONE)
            .count();
        if unanswered > 0 {
            warnings.push(format!(
                "{}: {unanswered} queries have no relevant record (score > 0) and are left out of the {} split",
                path.display(),
                name.as_str()
            ));
        }
        if order.is_empty() {
            return Err(Error::data(format!(
                "{}: the {} split has no query with a relevant record (score > 0)",
                path.display(),
                name.as_str()
            )));
        }
        Ok(Some(Split {
            name,
            queries: order,
        }))
    }

    /// One split, which must exist.
    /// Without one: a data error naming the missing file when a dataset folder
    /// was given (the folder is incomplete), else a usage error.
    pub fn required_split(&self, name: SplitName, skip_unknown: bool) -> Result<Split> {
        let mut warnings = Vec::new();
        let split = self.required_noting(name, skip_unknown, &mut warnings);
        warnings.into_iter().for_each(log::warn);
        split
    }

    fn required_noting(
        &self,
        name: SplitName,
        skip_unknown: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Split> {
        self.split_noting(name, skip_unknown, warnings)?
            .ok_or_else(|| match &self.paths.folder {
            Some(dir) => Error::data(format!(
                "{}: not found; the {} split is required (expected query-id<TAB>corpus-id<TAB>score lines there, or give {} FILE)",
                dir.join("qrels").join(format!("{}.tsv", name.as_str())).display(),
                name.as_str(),
                name.flag()
            )),
            None => Error::usage(format!(
                "no {} qrels: give {} FILE or a --dataset folder with qrels/{}.tsv",
                name.as_str(),
                name.flag(),
                name.as_str()
            )),
        })
    }
}
