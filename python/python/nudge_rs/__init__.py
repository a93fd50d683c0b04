"""NUDGE fine-tuning of k-NN retrieval embeddings, from Rust.

The public surface is small: :func:`fit` (arrays or ``.npy`` paths),
:func:`fit_dataset` (a dataset folder), :func:`map_dataset` and
:func:`reduce_dataset` (the same fit split over corpus parts, for Ray or
any cluster), :func:`evaluate` (Recall@k and NDCG@k of any corpus), :func:`devices` (GPU adapters), the result type
:class:`FitResult`, and two exceptions, :class:`DataError` and
:class:`DeviceError`. ``nudge_rs.compat`` is a drop-in replacement for
``nudge-ft``'s ``NUDGEM``/``NUDGEN``.

NUDGE-M output is not unit-norm: search it by inner product (dot product),
never by cosine. NUDGE-N output is unit-norm.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _nudge
from ._nudge import DataError, DeviceError

__all__ = [
    "fit",
    "fit_dataset",
    "map_dataset",
    "reduce_dataset",
    "evaluate",
    "devices",
    "FitResult",
    "DataError",
    "DeviceError",
]

__version__ = "0.1.0"

ArrayOrPath = Union[np.ndarray, str, "os.PathLike[str]"]
Qrels = Mapping[Any, Mapping[Any, float]]
Progress = Union[bool, Callable[[str, int, int], Any], None]


def _rows(x: Any, what: str) -> Any:
    """A 2-D float32/float16 C-contiguous array (no copy when it already is
    one), or a path to an ``.npy`` file, which is streamed."""
    if isinstance(x, (str, os.PathLike)):
        return os.fspath(x)
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
            x = np.asarray(x)
        else:
            raise TypeError(
                f"{what}: expected a 2-D numpy array or a path to an .npy file, got {type(x).__name__}"
            )
    if x.ndim != 2:
        raise TypeError(f"{what}: expected a 2-D array (rows x dimensions), got {x.ndim} dimensions")
    if x.dtype.kind != "f":
        raise TypeError(f"{what}: expected a floating-point array (float32 or float16), got {x.dtype}")
    if x.dtype == np.float16:
        return np.ascontiguousarray(x)
    # float32 C-contiguous arrays pass through untouched; anything else
    # (float64, Fortran order, strided views) is converted once.
    return np.ascontiguousarray(x, dtype=np.float32)


def _judgements(qrels: Optional[Qrels], what: str) -> Optional[Dict[Any, Any]]:
    """BEIR's ``{query_id: {corpus_id: score}}`` as a dict of dicts (the
    compiled module walks it in place); ids may be ``int`` or ``str`` (row
    numbers when no ids are given)."""
    if qrels is None:
        return None
    if not isinstance(qrels, Mapping):
        raise TypeError(f"{what}: expected {{query_id: {{corpus_id: score}}}}, got {type(qrels).__name__}")
    if type(qrels) is not dict or not all(type(a) is dict for a in qrels.values()):
        qrels = {q: dict(a) if isinstance(a, Mapping) else a for q, a in qrels.items()}
    return qrels  # type: ignore[return-value]


def _ids(ids: Optional[Sequence[Any]]) -> Optional[List[str]]:
    return None if ids is None else [str(i) for i in ids]


class _Bar:
    """A progress bar on stderr, for ``progress=True``."""

    def __init__(self) -> None:
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            if self.phase:
                sys.stderr.write("\n")
            self.phase = phase
        width = 30
        filled = width * done // total if total else width
        sys.stderr.write(f"\r{phase:>16} [{'=' * filled}{' ' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
            self.phase = ""
        sys.stderr.flush()


def _progress(progress: Progress) -> Optional[Callable[[str, int, int], Any]]:
    if progress is True:
        return _Bar()
    if progress is None or progress is False:
        return None
    if not callable(progress):
        raise TypeError("progress: expected True, False, None or a callable (phase, done, total)")
    return progress


class FitResult:
    """What a fit found.

    Attributes:
        method: ``"nudge-m"`` or ``"nudge-n"``.
        gamma: the chosen (or given) gamma.
        gamma_reason: why gamma is what it is when that is not a plain search
            result (fixed by the caller, or the dev queries could not judge).
        moved: int64 array of the moved records' rows, ascending.
        moved_ids: their ids (row numbers as strings without ``corpus_ids``).
        vectors: float32 array, one new embedding per moved record.
        report: the same dict as ``nudge fit --report`` writes.
        before, after: test metrics (``recall@k``, ``ndcg@k``, ``queries``)
            before and after the fit, or ``None`` without a test split.
    """

    def __init__(self, d: Dict[str, Any]) -> None:
        self.gamma: float = d["gamma"]
        self.gamma_reason: Optional[str] = d["gamma_reason"]
        self.moved: np.ndarray = d["moved"]
        self.moved_ids: List[str] = d["moved_ids"]
        self.vectors: np.ndarray = d["vectors"]
        self._report_json: str = d["report_json"]
        self._report: Optional[Dict[str, Any]] = None
        self.before: Optional[Dict[str, float]] = d["before"]
        self.after: Optional[Dict[str, float]] = d["after"]
        self.method: str = d["method"]

    @property
    def report(self) -> Dict[str, Any]:
        """The same dict as ``nudge fit --report`` writes (parsed when first
        read). On a GPU, ``report["timings"]`` also holds ``gpu_kernels``
        (GPU time per kernel, where the adapter has timestamps),
        ``gpu_host`` (the scan's feeding thread per step) and ``gpu_tile``
        (the tuned GEMM tile)."""
        if self._report is None:
            import json

            self._report = json.loads(self._report_json)
        return self._report

    def apply(self, corpus: ArrayOrPath, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The full tuned corpus: every row of ``corpus`` L2-normalised, the
        moved rows replaced by :attr:`vectors` (bit for bit what ``nudge fit
        --out`` writes). Returns a new float32 array, or fills ``out`` (a
        float32 C-contiguous array of the corpus's shape, which may be
        ``corpus`` itself) and returns it."""
        if isinstance(corpus, (str, os.PathLike)):
            corpus = np.load(os.fspath(corpus), mmap_mode="r")
        corpus = np.asarray(corpus)
        if corpus.ndim != 2:
            raise TypeError(f"corpus: expected a 2-D array, got {corpus.ndim} dimensions")
        if out is None:
            out = np.array(corpus, dtype=np.float32, order="C", copy=True)
        else:
            if not isinstance(out, np.ndarray) or out.dtype != np.float32 or not out.flags.c_contiguous:
                raise TypeError("out: expected a float32 C-contiguous numpy array")
            if out.shape != corpus.shape:
                raise ValueError(f"out: shape {out.shape} differs from the corpus's {corpus.shape}")
            if not np.shares_memory(out, corpus):
                np.copyto(out, corpus)
        _nudge.apply(out, np.ascontiguousarray(self.moved, dtype=np.int64), self.vectors)
        return out

    def to_html(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the fit's self-contained HTML report (the dev score against
        gamma, test quality before and after, the moved records, where the
        time went) to ``path``, as ``nudge fit --html`` does."""
        html = _nudge.report_html(self._report_json)
        tmp = os.fspath(path) + ".partial"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, path)

    def __repr__(self) -> str:
        return (
            f"FitResult(method={self.method!r}, gamma={self.gamma!r}, moved={len(self.moved)}, "
            f"before={self.before!r}, after={self.after!r})"
        )


def _result(d: Dict[str, Any]) -> FitResult:
    for w in d.pop("warnings"):
        warnings.warn(w, stacklevel=3)
    return FitResult(d)


def fit(
    corpus: ArrayOrPath,
    queries: ArrayOrPath,
    train: Qrels,
    dev: Qrels,
    *,
    method: str,
    test: Optional[Qrels] = None,
    corpus_ids: Optional[Sequence[Any]] = None,
    query_ids: Optional[Sequence[Any]] = None,
    gamma: Optional[float] = None,
    val_k: int = 1,
    eval_k: int = 10,
    allow_zero_rows: bool = False,
    skip_unknown_ids: bool = False,
    device: str = "auto",
    adapter: Optional[str] = None,
    progress: Progress = None,
) -> FitResult:
    """Fit NUDGE-M or NUDGE-N.

    Args:
        corpus: the record embeddings, rows x d: a float32 or float16 numpy
            array (C-contiguous ones are read without a copy; others are
            converted once), or a path to an ``.npy``, Parquet or Arrow IPC
            file (streamed, so a corpus larger than memory works; a table's
            vector column is its one list column).
        queries: the query embeddings of every split, same forms.
        train, dev, test: BEIR-style judgements ``{query_id: {corpus_id:
            score}}``; a score > 0 means relevant. Ids are the strings in
            ``query_ids``/``corpus_ids``, or row numbers (``int`` or ``str``).
        method: ``"nudge-m"`` or ``"nudge-n"``.
        gamma: use this gamma instead of searching for one.
        val_k: k of the NUDGE-N dev score.
        eval_k: cut-off of the test metrics.
        allow_zero_rows: keep zero-norm corpus rows unmoved instead of failing.
        skip_unknown_ids: skip judgements whose ids are unknown (with a
            warning) instead of failing.
        device: ``"auto"``, ``"cpu"`` or ``"gpu"``.
        adapter: the GPU adapter whose name contains this text.
        progress: ``True`` for a bar on stderr, or a callable receiving
            ``(phase, done, total)``.

    The GIL is released while the fit runs; Ctrl-C stops it between chunks
    and raises ``KeyboardInterrupt``.

    Raises:
        DataError: malformed or inconsistent data (names the row or id).
        DeviceError: the GPU or the run failed.
        TypeError: arrays of the wrong kind.
        ValueError: invalid arguments.
    """
    d = _nudge.fit(
        _rows(corpus, "corpus"),
        _rows(queries, "queries"),
        _judgements(train, "train"),
        _judgements(dev, "dev"),
        _judgements(test, "test"),
        _ids(corpus_ids),
        _ids(query_ids),
        method,
        gamma,
        val_k,
        eval_k,
        allow_zero_rows,
        skip_unknown_ids,
        device,
        adapter,
        _progress(progress),
    )
    return _result(d)


def fit_dataset(
    path: Union[str, "os.PathLike[str]"],
    *,
    method: str,
    gamma: Optional[float] = None,
    val_k: int = 1,
    eval_k: int = 10,
    allow_zero_rows: bool = False,
    skip_unknown_ids: bool = False,
    test: bool = True,
    device: str = "auto",
    adapter: Optional[str] = None,
    progress: Progress = None,
) -> FitResult:
    """Fit NUDGE on a dataset folder: ``corpus.npy``, ``queries.npy``,
    optional ``corpus_ids.txt``/``query_ids.txt`` and
    ``qrels/{train,dev,test}.tsv`` (as ``nudge fit --dataset``). The corpus
    is streamed. ``test=False`` skips scoring the test split. Other
    arguments as for :func:`fit`."""
    d = _nudge.fit_dataset(
        os.fspath(path),
        method,
        gamma,
        val_k,
        eval_k,
        allow_zero_rows,
        skip_unknown_ids,
        test,
        device,
        adapter,
        _progress(progress),
    )
    return _result(d)


def map_dataset(
    path: Union[str, "os.PathLike[str]"],
    out: Union[str, "os.PathLike[str]"],
    *,
    rows: Optional[Sequence[int]] = None,
    part: Optional[Sequence[int]] = None,
    k: int = 10,
    allow_zero_rows: bool = False,
    lean: bool = False,
    skip_unknown_ids: bool = False,
    test: bool = True,
    device: str = "auto",
    adapter: Optional[str] = None,
    sync: bool = True,
    progress: Progress = None,
) -> Dict[str, Any]:
    """Scan one part of a dataset folder's corpus into a partial, the
    directory ``out`` (as ``nudge map``): ``rows=(start, end)``, or
    ``part=(i, n)`` for the i-th of n equal parts (the whole corpus if
    neither). ``k`` is the depth of each query's list: at least NUDGE-N's
    ``val_k`` and the test cut-off of the reduce. Returns the partial's
    manifest. A partial holds kilobytes to megabytes whatever the part's
    size (``lean=True`` leaves the moved rows' vectors out, for a reduce
    that can read the corpus: kilobytes); :func:`reduce_dataset` merges the
    partials of every part. Notes on the dataset and skipped judgements
    (``skip_unknown_ids``) are raised as warnings, as by
    :func:`fit_dataset`. With ``sync=False`` the files are renamed into
    place without being synced to disk first (as ``nudge map --no-sync``):
    faster, and a failure still leaves no partial, but a power loss soon
    after may lose them."""
    if rows is not None:
        rows = (int(rows[0]), int(rows[1]))
    if part is not None:
        part = (int(part[0]), int(part[1]))
    text, notes = _nudge.map_dataset(
        os.fspath(path),
        os.fspath(out),
        rows,
        part,
        k,
        allow_zero_rows,
        lean,
        skip_unknown_ids,
        test,
        device,
        adapter,
        sync,
        _progress(progress),
    )
    for w in notes:
        warnings.warn(w, stacklevel=2)
    return json.loads(text)


def reduce_dataset(
    path: Union[str, "os.PathLike[str]"],
    partials: Iterable[Union[str, "os.PathLike[str]"]],
    *,
    method: str,
    delta: Optional[Union[str, "os.PathLike[str]"]] = None,
    gamma: Optional[float] = None,
    val_k: int = 1,
    eval_k: int = 10,
    skip_unknown_ids: bool = False,
    test: bool = True,
    device: str = "auto",
    adapter: Optional[str] = None,
    sync: bool = True,
    progress: Progress = None,
) -> FitResult:
    """Fit from the partials (:func:`map_dataset` directories, any order)
    of parts that cover the dataset's corpus (as ``nudge reduce``): the
    same gamma, moved rows and metrics as :func:`fit_dataset`, bit for bit.
    With ``delta``, writes ``ids.txt`` and ``vectors.npy`` there, the same
    bytes as ``nudge fit --delta``. Raises :class:`DataError` naming the
    rows no partial covers, or the partials to map again when the
    judgements changed. ``sync=False`` writes the delta as
    ``nudge reduce --no-sync`` does (see :func:`map_dataset`)."""
    d = _nudge.reduce_dataset(
        os.fspath(path),
        [os.fspath(p) for p in partials],
        method,
        None if delta is None else os.fspath(delta),
        gamma,
        val_k,
        eval_k,
        skip_unknown_ids,
        test,
        device,
        adapter,
        sync,
        _progress(progress),
    )
    return _result(d)


def evaluate(
    corpus: ArrayOrPath,
    queries: ArrayOrPath,
    qrels: Qrels,
    *,
    k: Union[int, Iterable[int]] = (10,),
    cosine: bool = False,
    corpus_ids: Optional[Sequence[Any]] = None,
    query_ids: Optional[Sequence[Any]] = None,
    skip_unknown_ids: bool = False,
    device: str = "auto",
    adapter: Optional[str] = None,
    progress: Progress = None,
) -> Dict[str, float]:
    """Recall@k and NDCG@k of ``corpus`` on ``qrels`` by exact search: by
    dot product (what a NUDGE-M output must be searched by), or by cosine
    with ``cosine=True``. Returns ``{"recall@10": ..., "ndcg@10": ...,
    "queries": n}`` with one pair per k."""
    ks = [k] if isinstance(k, int) else [int(x) for x in k]
    d = _nudge.evaluate(
        _rows(corpus, "corpus"),
        _rows(queries, "queries"),
        _judgements(qrels, "qrels"),
        _ids(corpus_ids),
        _ids(query_ids),
        ks,
        cosine,
        skip_unknown_ids,
        device,
        adapter,
        _progress(progress),
    )
    for w in d.pop("warnings"):
        warnings.warn(w, stacklevel=2)
    return d


def devices() -> List[Dict[str, Any]]:
    """The GPU adapters wgpu can see, best first: ``name``, ``backend``,
    ``device_type``, ``software`` (lavapipe and the like: slower than the
    CPU path), ``driver``, buffer limits, ``shader_f16``, ``subgroups``."""
    return list(_nudge.devices())
