"""Type stubs of the compiled module (the public API is in ``nudge_rs``)."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

_Rows = Union[npt.NDArray[np.float32], npt.NDArray[np.float16], str, PathLike[str]]
_Judgements = Dict[Union[str, int], Dict[Union[str, int], float]]
_Progress = Optional[Callable[[str, int, int], Any]]

class DataError(ValueError):
    """The input data is malformed or inconsistent; the message names the
    array or file, the row, line or id."""

class DeviceError(RuntimeError):
    """The run failed on the machine: the GPU device, an allocation, a wait
    that timed out."""

def fit(
    corpus: _Rows,
    queries: _Rows,
    train: _Judgements,
    dev: _Judgements,
    test: Optional[_Judgements],
    corpus_ids: Optional[List[str]],
    query_ids: Optional[List[str]],
    method: str,
    gamma: Optional[float],
    val_k: int,
    eval_k: int,
    allow_zero_rows: bool,
    skip_unknown_ids: bool,
    device: str,
    adapter: Optional[str],
    progress: _Progress,
) -> Dict[str, Any]: ...
def fit_dataset(
    path: Union[str, PathLike[str]],
    method: str,
    gamma: Optional[float],
    val_k: int,
    eval_k: int,
    allow_zero_rows: bool,
    skip_unknown_ids: bool,
    with_test: bool,
    device: str,
    adapter: Optional[str],
    progress: _Progress,
) -> Dict[str, Any]: ...
def map_dataset(
    path: Union[str, PathLike[str]],
    out: Union[str, PathLike[str]],
    rows: Optional[Tuple[int, int]],
    part: Optional[Tuple[int, int]],
    k: int,
    allow_zero_rows: bool,
    lean: bool,
    skip_unknown_ids: bool,
    with_test: bool,
    device: str,
    adapter: Optional[str],
    sync: bool,
    progress: _Progress,
) -> Tuple[str, List[str]]: ...
def reduce_dataset(
    path: Union[str, PathLike[str]],
    partials: List[str],
    method: str,
    delta: Optional[str],
    gamma: Optional[float],
    val_k: int,
    eval_k: int,
    skip_unknown_ids: bool,
    with_test: bool,
    device: str,
    adapter: Optional[str],
    sync: bool,
    progress: _Progress,
) -> Dict[str, Any]: ...
def evaluate(
    corpus: _Rows,
    queries: _Rows,
    qrels: _Judgements,
    corpus_ids: Optional[List[str]],
    query_ids: Optional[List[str]],
    ks: List[int],
    cosine: bool,
    skip_unknown_ids: bool,
    device: str,
    adapter: Optional[str],
    progress: _Progress,
) -> Dict[str, Any]: ...
def apply(
    out: npt.NDArray[np.float32],
    moved: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
) -> None: ...
def devices() -> List[Dict[str, Any]]: ...
def report_html(report: str) -> str: ...
