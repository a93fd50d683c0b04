//! A dataset: corpus, queries, their ids and the train/dev/test judgements,
//! from a dataset folder (DESIGN §5 layout) and/or explicit paths.

use rustc_hash::FxHashSet;
use std::path::{Path, PathBuf};

use crate::data::MatrixFile;
use crate::data::ids::Ids;
use crate::data::npy::NpyMatrix;
use crate::data::qrels;
use crate::data::table::Columns;
use crate::error::{Error, IdKind, Result};
use crate::matrix::Matrix;

/// Where each input lives. A dataset folder fills in whatever is not given
/// explicitly; explicit paths win.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// `corpus.npy`: n x d embeddings, float32 or float16 (float64 converted);
    /// or a Parquet / Arrow IPC file (`.parquet`, `.arrow`, `.feather`,
    /// `.ipc`) with a vector column (see [`Paths::vector_column`]); or a
    /// folder of `.npy` or Parquet shards ([`crate::data::shards`]).
    pub corpus: Option<PathBuf>,
    /// `corpus_ids.txt`: one id per line in row order (else the table's id
    /// column or the shards' ids, else row numbers); gzip or zstd
    /// compressed, or a BEIR `.jsonl` (its `_id`s in line order).
    pub corpus_ids: Option<PathBuf>,
    /// `queries.npy`: the query embeddings of every split.
    pub queries: Option<PathBuf>,
    /// `query_ids.txt`: one id per line in row order (else row numbers).
    pub query_ids: Option<PathBuf>,
    /// `qrels/train.tsv`: query-id, corpus-id, score, with a header line;
    /// or TREC qrels, or headerless TSV (see [`crate::data::qrels`]); gzip
    /// or zstd compressed too.
    pub train_qrels: Option<PathBuf>,
    /// `qrels/dev.tsv`.
    pub dev_qrels: Option<PathBuf>,
    /// `qrels/test.tsv` (optional).
    pub test_qrels: Option<PathBuf>,
    /// The vector column of Parquet / Arrow IPC inputs (default: the one
    /// list column).
    pub vector_column: Option<String>,
    /// The id column of Parquet / Arrow IPC inputs (default: `id` or `_id`
    /// if there is one, else row numbers).
    pub id_column: Option<String>,
    /// The dataset folder the other paths were filled from, if any; names the
    /// file that is missing when a required split is not there.
    pub folder: Option<PathBuf>,
}

impl Paths {
    /// The standard layout of the dataset folder `dir` (see
    /// [`Paths::with_folder`]).
    pub fn folder(dir: impl AsRef<Path>) -> Result<Paths> {
        Paths::default().with_folder(Some(dir.as_ref()))
    }

    /// Fills the unset paths from the standard layout of `dir`. Optional files
    /// (ids, test qrels) are taken only if they exist.
    pub fn with_folder(mut self, dir: Option<&Path>) -> Result<Paths> {
        let Some(dir) = dir else { return Ok(self) };
        if !dir.is_dir() {
            return Err(Error::data(dir, "dataset folder does not exist"));
        }
        let fill = |slot: &mut Option<PathBuf>, rel: &str, always: bool| {
            let p = dir.join(rel);
            if slot.is_none() && (always || p.exists()) {
                *slot = Some(p);
            }
        };
        // `.npy` first; a Parquet file is taken if there is no `.npy`, a
        // `corpus/` folder of shards if there is neither.
        fill(&mut self.corpus, "corpus.npy", false);
        fill(&mut self.corpus, "corpus.parquet", false);
        fill(&mut self.corpus, "corpus", false);
        fill(&mut self.corpus, "corpus.npy", true);
        fill(&mut self.corpus_ids, "corpus_ids.txt", false);
        fill(&mut self.queries, "queries.npy", false);
        fill(&mut self.queries, "queries.parquet", false);
        fill(&mut self.queries, "queries.npy", true);
        fill(&mut self.query_ids, "query_ids.txt", false);
        // Else BEIR's `.jsonl` ids, in line order (the order BEIR's
        // embeddings are usually computed in; a count that does not match
        // the rows is an error, not a silent mismatch). Only for a `.npy`
        // matrix: a table or shards carry ids of their own.
        let npy = |m: &Option<PathBuf>| {
            m.as_ref()
                .is_some_and(|p| p.is_file() && !crate::data::table::is_table(p))
        };
        if npy(&self.corpus) {
            fill(&mut self.corpus_ids, "corpus.jsonl", false);
        }
        if npy(&self.queries) {
            fill(&mut self.query_ids, "queries.jsonl", false);
        }
        fill(&mut self.train_qrels, "qrels/train.tsv", false);
        fill(&mut self.dev_qrels, "qrels/dev.tsv", false);
        fill(&mut self.test_qrels, "qrels/test.tsv", false);
        self.folder = Some(dir.to_path_buf());
        Ok(self)
    }

    /// The qrels file of `split`, if known.
    pub fn qrels(&self, split: SplitName) -> Option<&PathBuf> {
        match split {
            SplitName::Train => self.train_qrels.as_ref(),
            SplitName::Dev => self.dev_qrels.as_ref(),
            SplitName::Test => self.test_qrels.as_ref(),
        }
    }
}

/// The three splits of a NUDGE dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitName {
    /// The judgements whose records move.
    Train,
    /// The judgements gamma is chosen on.
    Dev,
    /// The judgements scored before and after.
    Test,
}

impl SplitName {
    /// `train`, `dev` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Dev => "dev",
            SplitName::Test => "test",
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
    /// The relevance of `record` to this query (0 if it is not an answer).
    pub fn relevance(&self, record: u32) -> f32 {
        self.answers
            .iter()
            .find(|a| a.0 == record)
            .map_or(0.0, |a| a.1)
    }
}

/// The judgements of one split: each query that has a relevant record, with
/// its answers.
#[derive(Debug, Clone)]
pub struct Split {
    /// Which split.
    pub name: SplitName,
    /// Its queries, in the order the judgements first name them.
    pub queries: Vec<LabeledQuery>,
}

/// A split built from judgements, and what the caller should tell the user
/// about them (lines skipped, duplicates, queries with no relevant record).
#[derive(Debug, Clone)]
pub struct Judged {
    /// The split.
    pub split: Split,
    /// Messages for the user; empty when the judgements were clean.
    pub warnings: Vec<String>,
    /// How the file was read, when that is worth a line (a headerless or
    /// TREC layout); not a warning.
    pub notes: Vec<String>,
}

impl Split {
    /// A split from judgements given as `(query row, corpus row, score)`,
    /// `None` for a judgement skipped because an id was unknown. A score
    /// above 0 means relevant (graded scores are NDCG gains); a duplicated
    /// (query, record) counts once. `queries` is the number of query rows.
    /// `source` names the judgements in messages (a file, or e.g. `train`).
    /// A split with no relevant record is a data error.
    pub fn from_rows(
        name: SplitName,
        judgements: impl IntoIterator<Item = Option<(u32, u32, f32)>>,
        queries: usize,
        source: &Path,
    ) -> Result<Judged> {
        let mut order: Vec<LabeledQuery> = Vec::new();
        // Per query row: its index in `order`, and whether a line judged it
        // not relevant.
        const NONE: usize = usize::MAX;
        let mut slot = vec![NONE; queries];
        let mut not_relevant = vec![false; queries];
        let (mut unknown, mut duplicates) = (0usize, 0usize);
        // (query, record) pairs seen: a scan of the query's answers per line
        // is quadratic in the answers, and NFCorpus queries have up to 115.
        let judgements = judgements.into_iter();
        let mut seen: FxHashSet<u64> = FxHashSet::default();
        // Grown once, not rehashed on the way (8% of loading nfcorpus's
        // 44k training lines).
        seen.reserve(judgements.size_hint().0);
        for j in judgements {
            let Some((q, r, score)) = j else {
                unknown += 1;
                continue;
            };
            if q as usize >= queries {
                return Err(Error::data(
                    source,
                    format!("query row {q} is out of range: there are {queries} queries"),
                ));
            }
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
        let mut warnings = Vec::new();
        if unknown > 0 {
            warnings.push(format!(
                "{}: skipped {unknown} lines with unknown ids",
                source.display()
            ));
        }
        if duplicates > 0 {
            warnings.push(format!(
                "{}: {duplicates} duplicate (query, record) lines counted once",
                source.display()
            ));
        }
        let unanswered = (0..slot.len())
            .filter(|&q| not_relevant[q] && slot[q] == NONE)
            .count();
        if unanswered > 0 {
            warnings.push(format!(
                "{}: {unanswered} queries have no relevant record (score > 0) and are left out of the {} split",
                source.display(),
                name.as_str()
            ));
        }
        if order.is_empty() {
            return Err(Error::data(
                source,
                format!(
                    "the {} split has no query with a relevant record (score > 0)",
                    name.as_str()
                ),
            ));
        }
        Ok(Judged {
            split: Split {
                name,
                queries: order,
            },
            warnings,
            notes: Vec::new(),
        })
    }

    /// A split from judgements by id, as `(query id, corpus id, score)`
    /// (BEIR's `{query_id: {corpus_id: score}}` flattened), with the ids
    /// looked up in `query_ids` and `corpus_ids`. An unknown id is an
    /// [`Error::UnknownId`] (with `line` the judgement's 1-based position),
    /// or skipped with a warning if `skip_unknown`.
    pub fn from_ids<'a>(
        name: SplitName,
        judgements: impl IntoIterator<Item = (&'a str, &'a str, f32)>,
        query_ids: &Ids,
        corpus_ids: &Ids,
        skip_unknown: bool,
    ) -> Result<Judged> {
        let source = Path::new(name.as_str());
        let mut rows = Vec::new();
        for (i, (q, r, score)) in judgements.into_iter().enumerate() {
            match (query_ids.row(q), corpus_ids.row(r)) {
                (Some(q), Some(r)) => rows.push(Some((q, r, score))),
                _ if skip_unknown => rows.push(None),
                (q_row, _) => {
                    let (what, id) = if q_row.is_none() {
                        (IdKind::Query, q)
                    } else {
                        (IdKind::Corpus, r)
                    };
                    return Err(Error::UnknownId {
                        path: source.to_path_buf(),
                        line: i + 1,
                        what,
                        id: id.to_string(),
                    });
                }
            }
        }
        Split::from_rows(name, rows, query_ids.len(), source)
    }

    /// The embeddings of this split's queries, in split order.
    pub fn matrix(&self, all: &Matrix) -> Matrix {
        all.select_rows(self.queries.iter().map(|q| q.row as usize))
    }

    /// [`Error::Inconsistent`] unless every query row is below `queries`
    /// and every answer below `records`: a split built for other matrices.
    pub fn check_rows(&self, queries: usize, records: usize) -> Result<()> {
        for q in &self.queries {
            if q.row as usize >= queries {
                return Err(Error::inconsistent(format!(
                    "the {} split names query row {}, but there are {queries} queries",
                    self.name.as_str(),
                    q.row
                )));
            }
            if let Some(&(r, _)) = q.answers.iter().find(|a| a.0 as usize >= records) {
                return Err(Error::inconsistent(format!(
                    "the {} split names corpus row {r}, but the corpus has {records} rows",
                    self.name.as_str()
                )));
            }
        }
        Ok(())
    }
}

/// A dataset on disk, opened: the corpus (read later, in chunks), the
/// queries (read whole), and both id lists. The judgements are read per
/// split ([`Dataset::fit_splits`], [`Dataset::required_split`]).
pub struct Dataset {
    /// Where everything came from.
    pub paths: Paths,
    /// The corpus, not yet read.
    pub corpus: MatrixFile,
    /// Corpus ids, or row numbers.
    pub corpus_ids: Ids,
    /// Every query embedding.
    pub queries: Matrix,
    /// Query ids, or row numbers.
    pub query_ids: Ids,
    /// The table column the query ids came from, if they came from one.
    pub query_id_column: Option<String>,
    /// Things the user should know about the files (e.g. float64 data that
    /// is converted to float32 as it is read).
    pub notes: Vec<String>,
}

/// The splits a fit reads, and the warnings their judgements gave.
#[derive(Debug, Clone)]
pub struct FitSplits {
    /// Training judgements.
    pub train: Split,
    /// Dev judgements.
    pub dev: Split,
    /// Test judgements, if asked for and present.
    pub test: Option<Split>,
    /// Warnings of all three, in that order.
    pub warnings: Vec<String>,
    /// Notes of all three (how their files were read), in that order.
    pub notes: Vec<String>,
}

impl Dataset {
    /// Opens the files of `paths` and checks that they fit together.
    pub fn open(paths: Paths) -> Result<Dataset> {
        let corpus_path = paths
            .corpus
            .clone()
            .ok_or(Error::MissingInput { what: "corpus" })?;
        let queries_path = paths
            .queries
            .clone()
            .ok_or(Error::MissingInput { what: "queries" })?;
        let columns = Columns {
            vector: paths.vector_column.clone(),
            id: paths.id_column.clone(),
        };
        let corpus = MatrixFile::open(&corpus_path, &columns)?;
        let qm = MatrixFile::open(&queries_path, &columns)?;
        let notes = [(&corpus, &corpus_path), (&qm, &queries_path)]
            .iter()
            .filter(|(m, _)| m.dtype_name() == "float64")
            .map(|(_, p)| {
                format!(
                    "{}: float64 data is converted to float32 as it is read",
                    p.display()
                )
            })
            .collect();
        if corpus.cols() == 0 {
            return Err(Error::data(
                corpus_path,
                "rows have 0 dimensions; expected n x d embeddings with d >= 1",
            ));
        }
        for (m, p) in [(&corpus, &corpus_path), (&qm, &queries_path)] {
            if m.rows() > u32::MAX as usize {
                return Err(Error::data(
                    p,
                    format!("{} rows; at most {} rows are supported", m.rows(), u32::MAX),
                ));
            }
        }
        if qm.cols() != corpus.cols() {
            return Err(Error::inconsistent(format!(
                "dimension mismatch: {} has {}-d rows but {} has {}-d rows; queries and corpus must come from the same model",
                corpus_path.display(),
                corpus.cols(),
                queries_path.display(),
                qm.cols()
            )));
        }
        if corpus.rows() == 0 {
            return Err(Error::data(corpus_path, "the corpus has no rows"));
        }
        // The three reads are independent: run them side by side.
        let read_queries = || -> Result<Matrix> {
            let queries = Matrix::new(qm.rows(), qm.cols(), qm.read_all()?);
            if let Some((r, c)) = NpyMatrix::first_non_finite(&queries.data, queries.cols) {
                return Err(Error::data_row(
                    &queries_path,
                    r,
                    format!(
                        "row {r} (column {c}) is NaN or infinite; every query embedding must be finite"
                    ),
                ));
            }
            Ok(queries)
        };
        // An ids file wins over a table's id column.
        let ids = |file: Option<&Path>, m: &MatrixFile, path: &Path| match file {
            None => match m.table_ids()? {
                Some(ids) => Ok(ids),
                None => Ok(Ids::rows(m.rows())),
            },
            Some(_) => Ids::load(file, m.rows(), path),
        };
        let (queries, (corpus_ids, query_ids)) = rayon::join(read_queries, || {
            rayon::join(
                || ids(paths.corpus_ids.as_deref(), &corpus, &corpus_path),
                || ids(paths.query_ids.as_deref(), &qm, &queries_path),
            )
        });
        // Errors in the order the files were read before.
        let queries = queries?;
        let corpus_ids = corpus_ids?;
        let query_ids = query_ids?;
        let query_id_column = match (&paths.query_ids, &qm) {
            (None, MatrixFile::Table(t)) => t.id_column().map(str::to_string),
            _ => None,
        };
        Ok(Dataset {
            paths,
            corpus,
            corpus_ids,
            queries,
            query_ids,
            query_id_column,
            notes,
        })
    }

    /// The embedding dimension.
    pub fn dim(&self) -> usize {
        self.corpus.cols()
    }

    /// The train, dev and (if `with_test` and present) test splits of a fit,
    /// read in parallel; warnings come out in that order all the same.
    pub fn fit_splits(&self, skip_unknown: bool, with_test: bool) -> Result<FitSplits> {
        let (train, (dev, test)) = rayon::join(
            || self.required_split(SplitName::Train, skip_unknown),
            || {
                rayon::join(
                    || self.required_split(SplitName::Dev, skip_unknown),
                    || {
                        if with_test {
                            self.split(SplitName::Test, skip_unknown)
                        } else {
                            Ok(None)
                        }
                    },
                )
            },
        );
        let (train, dev, test) = (train?, dev?, test?);
        let mut warnings = train.warnings;
        warnings.extend(dev.warnings);
        let mut notes = train.notes;
        notes.extend(dev.notes);
        let test = test.map(|t| {
            warnings.extend(t.warnings);
            notes.extend(t.notes);
            t.split
        });
        Ok(FitSplits {
            train: train.split,
            dev: dev.split,
            test,
            warnings,
            notes,
        })
    }

    /// Loads the judgements of one split; `Ok(None)` if no qrels file is
    /// known for it. Ids that name no row are an [`Error::UnknownId`]
    /// unless `skip_unknown`.
    pub fn split(&self, name: SplitName, skip_unknown: bool) -> Result<Option<Judged>> {
        let Some(path) = self.paths.qrels(name) else {
            return Ok(None);
        };
        let text = qrels::read(path)?;
        // Each judgement as (query row, record row, score), None for a line
        // with an unknown id when skipping those; the ids are looked up as
        // the file is parsed, on all cores. Qrels files list a query's
        // judgements together: its id is looked up once per run of lines.
        // A headerless first line is data only if its ids name rows.
        let known = |j: &qrels::Judgement| {
            self.query_ids.row(j.query).is_some() && self.corpus_ids.row(j.record).is_some()
        };
        let (layout, judgements) = qrels::parse_layout_map(
            &text,
            path,
            known,
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
                            (IdKind::Query, j.query)
                        } else {
                            (IdKind::Corpus, j.record)
                        };
                        Err(Error::UnknownId {
                            path: path.clone(),
                            line: j.line,
                            what,
                            id: id.to_string(),
                        })
                    }
                }
            },
        )?;
        let mut judged = Split::from_rows(name, judgements, self.queries.rows, path)?;
        if let Some(note) = layout.note() {
            judged.notes.push(format!("{}: {note}", path.display()));
        }
        Ok(Some(judged))
    }

    /// One split, which must exist. Without one: [`Error::MissingSplit`],
    /// naming the file that is missing when a dataset folder was given.
    pub fn required_split(&self, name: SplitName, skip_unknown: bool) -> Result<Judged> {
        self.split(name, skip_unknown)?
            .ok_or_else(|| Error::MissingSplit {
                split: name.as_str(),
                expected: self
                    .paths
                    .folder
                    .as_ref()
                    .map(|dir| dir.join("qrels").join(format!("{}.tsv", name.as_str()))),
            })
    }
}
