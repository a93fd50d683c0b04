"""A real vector database round trip: the bundled SciFact corpus in LanceDB
(embedded, no server), a `nudge fit --delta` applied as an upsert, and the
test queries searched by exact k-NN in the database, scored against what
`nudge eval` says of the tuned corpus.

lancedb is imported unconditionally: .ci/run installs it, and a CI without
it must fail here, not skip.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from conftest import SCIFACT, Data, read_ids, run_cli

K = 10
METHODS = ["nudge-m", "nudge-n"]


def arrow_table(ids: List[str], vectors: np.ndarray) -> pa.Table:
    """(id, vector) rows with the vector as a fixed-size float32 list, the
    column type LanceDB searches."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]),
        }
    )


def scored_split(d: Data) -> Dict[str, Dict[str, float]]:
    """The test judgements as nudge scores them: queries in the order the
    file first names them (the order nudge sums the per-query scores in),
    relevant records only (score > 0)."""
    out: Dict[str, Dict[str, float]] = {}
    for q, answers in d.test.items():
        rel = {c: s for c, s in answers.items() if s > 0}
        if rel:
            out[q] = rel
    return out


def scores(ranked: List[List[str]], split: Dict[str, Dict[str, float]]) -> Tuple[float, float]:
    """Mean recall@10 and NDCG@10 of ranked id lists (one per query of
    `split`, in its order), written as src/eval/metrics.rs computes them:
    recall = hits / min(|answers|, k); NDCG with linear gain (the qrels
    score), discount log2(rank + 2) from rank 0, over the DCG of the answers
    sorted by gain and cut at k; summed in split order in f64."""
    recall = ndcg = 0.0
    for ids, answers in zip(ranked, split.values()):
        top = ids[:K]
        recall += sum(1 for c in top if c in answers) / min(len(answers), K)
        dcg = sum(answers.get(c, 0.0) / math.log2(p + 2) for p, c in enumerate(top))
        ideal = sorted(answers.values(), reverse=True)[:K]
        idcg = sum(g / math.log2(p + 2) for p, g in enumerate(ideal))
        ndcg += dcg / idcg if idcg > 0 else 0.0
    n = max(len(split), 1)
    return recall / n, ndcg / n


class Fitted:
    """One `nudge fit` of SciFact: the whole tuned corpus (--out), the delta
    (--delta) and the fit report, and the LanceDB table the delta was
    upserted into."""

    def __init__(self, method: str, root: Path, d: Data, db: lancedb.DBConnection, base: np.ndarray) -> None:
        self.method = method
        self.out, self.delta, self.report_path = root / f"{method}.npy", root / f"{method}-delta", root / f"{method}.json"
        run_cli(
            "fit", "--dataset", str(SCIFACT), "--method", method, "--out", str(self.out),
            "--delta", str(self.delta), "--report", str(self.report_path), "--device", "cpu",
        )
        self.report = json.loads(self.report_path.read_text())
        self.delta_ids = read_ids(self.delta / "ids.txt")
        self.delta_vectors = np.load(self.delta / "vectors.npy")

        # Load the normalised corpus, as a user's table already holds it...
        self.table = db.create_table(method, arrow_table(d.corpus_ids, base), mode="overwrite")
        # ...and apply the delta as an upsert on the id: the moved rows are
        # replaced, nothing else is touched.
        self.merge = (
            self.table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(arrow_table(self.delta_ids, self.delta_vectors))
        )

    def eval_cli(self, cosine: bool) -> dict:
        """`nudge eval` of the tuned corpus on the test split (CPU: the
        reference path), by dot product or, with --cosine, by cosine."""
        args = ["eval", "--dataset", str(SCIFACT), "--corpus", str(self.out)]
        args += ["--split", "test", "--k", str(K), "--json", "--device", "cpu"]
        return json.loads(run_cli(*args, *(["--cosine"] if cosine else [])).stdout)


@pytest.fixture(scope="module")
def store(scifact: Data, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Fitted]:
    root = tmp_path_factory.mktemp("vector_store")
    db = lancedb.connect(str(root / "lancedb"))
    # nudge L2-normalises every corpus row before fitting, and a moved row's
    # new vector is relative to that: the table must hold the normalised
    # corpus (here normalised in numpy, in f32, as a user would; it differs
    # from nudge's own normalisation by at most an ulp per component).
    corpus = scifact.corpus.astype(np.float32)
    base = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return {m: Fitted(m, root, scifact, db, base) for m in METHODS}


def search(f: Fitted, d: Data, split: Dict[str, Dict[str, float]], metric: str) -> List[List[str]]:
    """The top-10 ids of every test query, by an exact search in LanceDB.

    The table has no vector index, and bypass_vector_index() says so
    explicitly: every query is compared with every row (a flat scan), so
    the answer is the true k-NN under `metric`, as nudge eval's is. All
    queries go in one batched search (rows tagged with query_index)."""
    row = {q: i for i, q in enumerate(d.query_ids)}
    queries = d.queries.astype(np.float32)[[row[q] for q in split]]
    hits = (
        f.table.search(queries)
        .distance_type(metric)
        .bypass_vector_index()
        .limit(K)
        .select(["id", "_distance"])
        .to_arrow()
        .to_pydict()
    )
    lists: List[List[Tuple[float, str]]] = [[] for _ in split]
    for qi, cid, dist in zip(hits["query_index"], hits["id"], hits["_distance"]):
        lists[qi].append((dist, cid))
    for l in lists:
        assert len(l) == K
        # LanceDB distances ("dot": 1 - q.v, "cosine": 1 - cos) grow down
        # the list. Exact ties would be ordered by LanceDB, not by nudge's
        # lower-row-first rule; SciFact has no duplicate rows, and the
        # equality with nudge eval below would catch a tie broken the other
        # way at a place where it changed a score.
        assert [x for x, _ in l] == sorted(x for x, _ in l)
    return [[c for _, c in l] for l in lists]


def reference_lists(vectors: np.ndarray, d: Data, split: Dict[str, Dict[str, float]], cosine: bool) -> List[List[str]]:
    """Top-10 ids by an f64 numpy scan of `vectors` (ties: lower row first,
    nudge's rule): only used to say *which* queries differ when a metric
    does not match."""
    v = vectors.astype(np.float64)
    if cosine:
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
    row = {q: i for i, q in enumerate(d.query_ids)}
    s = d.queries.astype(np.float64)[[row[q] for q in split]] @ v.T
    order = np.lexsort((np.broadcast_to(np.arange(v.shape[0]), s.shape), -s), axis=1)[:, :K]
    return [[d.corpus_ids[j] for j in r] for r in order]


def differing(a: List[List[str]], b: List[List[str]], split: Dict[str, Dict[str, float]]) -> List[str]:
    return [q for q, x, y in zip(split, a, b) if x != y]


def read_table(f: Fitted) -> Tuple[List[str], np.ndarray]:
    t = f.table.to_arrow()
    ids = t.column("id").to_pylist()
    vectors = t.column("vector").combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
    return ids, vectors


@pytest.mark.parametrize("method", METHODS)
def test_upsert_replaces_exactly_the_moved_rows(method: str, store: Dict[str, Fitted], scifact: Data) -> None:
    f = store[method]
    n = len(scifact.corpus_ids)
    # Every delta id matched an existing row; none was inserted.
    assert f.merge.num_updated_rows == len(f.delta_ids) == f.report["moved_records"]
    assert f.merge.num_inserted_rows == 0 and f.merge.num_deleted_rows == 0
    assert 0 < len(f.delta_ids) < n
    ids, vectors = read_table(f)
    assert sorted(ids) == sorted(scifact.corpus_ids)  # still one row per record
    at = {c: i for i, c in enumerate(ids)}
    tuned = np.load(f.out)
    table = vectors[[at[c] for c in scifact.corpus_ids]]  # back to input row order
    # The moved rows hold the delta's vectors bit for bit, which are
    # `--out`'s rows bit for bit.
    moved = [scifact.corpus_ids.index(c) for c in f.delta_ids]
    assert table[moved].tobytes() == f.delta_vectors.tobytes() == tuned[moved].tobytes()
    # Every row is `--out`'s, up to the normalisation's last ulp (numpy's
    # sum of squares is not nudge's; components are below 1, so an ulp is
    # below 6e-8).
    assert np.abs(table - tuned).max() <= 1e-7


@pytest.mark.parametrize("method", METHODS)
def test_dot_search_in_the_store_scores_what_nudge_eval_says(method: str, store: Dict[str, Fitted], scifact: Data) -> None:
    f = store[method]
    split = scored_split(scifact)
    ranked = search(f, scifact, split, "dot")
    recall, ndcg = scores(ranked, split)
    cli = f.eval_cli(cosine=False)
    assert cli["queries"] == len(split)
    # Same ranked lists => same metrics up to the last bits of the f64
    # sums (same formula, same order: observed exactly equal).
    diff = differing(ranked, reference_lists(np.load(f.out), scifact, split, False), split)
    assert math.isclose(recall, cli["recall@10"], rel_tol=0, abs_tol=1e-12), (recall, cli, diff)
    assert math.isclose(ndcg, cli["ndcg@10"], rel_tol=0, abs_tol=1e-12), (ndcg, cli, diff)
    # ...which is the "after" the fit reported, above its "before": the
    # store serves the gain the fit measured.
    after, before = f.report["after"], f.report["before"]
    assert math.isclose(ndcg, after["ndcg@10"], rel_tol=0, abs_tol=1e-12)
    assert math.isclose(recall, after["recall@10"], rel_tol=0, abs_tol=1e-12)
    assert ndcg > before["ndcg@10"]


def test_nudge_m_under_cosine_is_not_the_fitted_ranking(store: Dict[str, Fitted], scifact: Data) -> None:
    """NUDGE-M output is not unit-norm (a moved row's norm grows with
    gamma), and the fit chose gamma for dot-product search. A cosine search
    drops the norms: the store then serves other rankings, whose metrics
    are `nudge eval --cosine`'s, not the fit's."""
    f = store["nudge-m"]
    split = scored_split(scifact)
    norms = np.linalg.norm(f.delta_vectors, axis=1)
    assert norms.min() > 1 + 1e-3  # the moved rows grew
    dot, cos = search(f, scifact, split, "dot"), search(f, scifact, split, "cosine")
    recall, ndcg = scores(cos, split)
    cli = f.eval_cli(cosine=True)
    diff = differing(cos, reference_lists(np.load(f.out), scifact, split, True), split)
    assert math.isclose(recall, cli["recall@10"], rel_tol=0, abs_tol=1e-12), (recall, cli, diff)
    assert math.isclose(ndcg, cli["ndcg@10"], rel_tol=0, abs_tol=1e-12), (ndcg, cli, diff)
    # Most test queries get another top-10 than under dot (on SciFact 210
    # of 221), and the NDCG@10 is below the fitted one. How much of the
    # gain is lost depends on the data: on SciFact little (NDCG@10
    # 0.662 -> 0.785 by dot, 0.775 by cosine), so this asserts that the
    # rankings differ and that the fitted NDCG is not reached, not that
    # "most of the gain" is lost (it is not, here).
    changed = len(differing(dot, cos, split))
    assert changed > len(split) // 2, changed
    dot_ndcg = scores(dot, split)[1]
    assert ndcg < dot_ndcg, (ndcg, dot_ndcg)
    print(
        f"\nnudge-m on SciFact: before ndcg@10 {f.report['before']['ndcg@10']:.4f}, "
        f"dot {dot_ndcg:.4f}, cosine {ndcg:.4f}; top-10 changed for {changed}/{len(split)} queries"
    )


def test_nudge_n_gives_the_same_answers_under_dot_and_cosine(store: Dict[str, Fitted], scifact: Data) -> None:
    """NUDGE-N output is unit-norm (to f32 rounding), so dot product and
    cosine are the same score: the same ranked lists, query by query."""
    f = store["nudge-n"]
    assert np.abs(np.linalg.norm(f.delta_vectors.astype(np.float64), axis=1) - 1).max() < 1e-6
    split = scored_split(scifact)
    dot, cos = search(f, scifact, split, "dot"), search(f, scifact, split, "cosine")
    assert differing(dot, cos, split) == []
    recall, ndcg = scores(cos, split)
    cli = f.eval_cli(cosine=True)
    assert math.isclose(recall, cli["recall@10"], rel_tol=0, abs_tol=1e-12)
    assert math.isclose(ndcg, cli["ndcg@10"], rel_tol=0, abs_tol=1e-12)
