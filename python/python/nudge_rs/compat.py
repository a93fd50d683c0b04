"""Drop-in replacements for nudge-ft's ``NUDGEM`` and ``NUDGEN``.

Change ``from nudge import NUDGEM, NUDGEN`` to
``from nudge_rs.compat import NUDGEM, NUDGEN`` and nothing else: the
classes take the same arguments (by position or keyword) and return what
nudge-ft returns, the fine-tuned rows of ``embeddings`` in the input's
dtype (NUDGE-N rows unit-norm, NUDGE-M rows not), without PyTorch and
without the dense ``val x corpus`` matrices nudge-ft holds.

``train_set`` and ``val_set`` are ``{'q_embs': array, 'q_ans_indx': list of
lists of row numbers into embeddings}``. ``nontrain_embeddings`` are
records no training query touches, appended after ``embeddings`` as
competitors (as LlamaIndex's ``insert_data_and_finetune`` passes the
previous output); they are ranked by cosine, as in nudge-ft, and not
returned. ``val_batch_size`` only bounded nudge-ft's memory and is accepted
and ignored.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from . import fit

__all__ = ["NUDGEM", "NUDGEN"]


def _device(device: Any) -> str:
    """nudge-ft takes a ``torch.device``; recognise one by its ``type``
    (without importing torch), or the strings "cuda"/"gpu"/"cpu"."""
    if device is None:
        return "auto"
    kind = getattr(device, "type", device)
    kind = str(kind).split(":")[0].lower()
    if kind in ("cuda", "gpu", "mps", "vulkan"):
        return "gpu"
    if kind == "cpu":
        return "cpu"
    return "auto"


def _set(s: Mapping[str, Any], what: str) -> tuple:
    try:
        q = np.asarray(s["q_embs"])
        ans = s["q_ans_indx"]
    except (KeyError, TypeError):
        raise TypeError(f"{what}: expected {{'q_embs': array, 'q_ans_indx': list of lists}}") from None
    if q.ndim != 2:
        raise TypeError(f"{what}['q_embs']: expected a 2-D array, got {q.ndim} dimensions")
    if len(ans) != len(q):
        raise ValueError(f"{what}: {len(q)} query embeddings but {len(ans)} answer lists")
    return q, ans


def _qrels(answers: Sequence[Sequence[int]], first: int, n: int, what: str) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for i, ans in enumerate(answers):
        rows = {}
        for r in ans:
            r = int(r)
            if not 0 <= r < n:
                raise ValueError(f"{what}['q_ans_indx'][{i}]: row {r} is not a row of embeddings (0..{n - 1})")
            rows[str(r)] = 1.0
        if rows:
            out[str(first + i)] = rows
    return out


class _Base:
    method = ""

    def __init__(self, device: Any = None) -> None:
        self.device = device
        self.gamma: Optional[float] = None

    def _finetune(
        self,
        embeddings: Any,
        train_set: Mapping[str, Any],
        val_set: Mapping[str, Any],
        nontrain_embeddings: Any,
        gamma: Optional[float],
        val_k: int,
    ) -> np.ndarray:
        emb = np.asarray(embeddings)
        if emb.ndim != 2:
            raise TypeError(f"embeddings: expected a 2-D array, got {emb.ndim} dimensions")
        out_dtype = emb.dtype if emb.dtype.kind == "f" else np.dtype(np.float32)
        n = len(emb)
        corpus = emb
        if nontrain_embeddings is not None:
            extra = np.asarray(nontrain_embeddings)
            if len(extra):
                corpus = np.concatenate([emb, extra.astype(emb.dtype, copy=False)])
        tq, tans = _set(train_set, "train_set")
        vq, vans = _set(val_set, "val_set")
        queries = np.concatenate([tq, vq]).astype(np.float32, copy=False)
        result = fit(
            corpus,
            queries,
            _qrels(tans, 0, n, "train_set"),
            _qrels(vans, len(tq), n, "val_set"),
            method=self.method,
            gamma=gamma,
            val_k=val_k,
            device=_device(self.device),
        )
        # nudge-ft's objects have no gamma attribute; ours keep the last
        # one, for callers (and tests) that want to see it.
        self.gamma = result.gamma
        # The moved rows all answer training queries, so all are rows of
        # `embeddings`: the tuned corpus restricted to them is the answer.
        tuned = result.apply(emb)
        return tuned.astype(out_dtype, copy=False)


class NUDGEM(_Base):
    """NUDGE-M: moved records shift by ``gamma * G/|G|`` (not unit-norm;
    search the output by inner product). Same API as ``nudge.NUDGEM``."""

    method = "nudge-m"

    def finetune_embeddings(
        self,
        embeddings: Any,
        train_set: Mapping[str, Any],
        val_set: Mapping[str, Any],
        nontrain_embeddings: Any = None,
        val_batch_size: int = 256,
        gamma: Optional[float] = None,
    ) -> np.ndarray:
        """The fine-tuned rows of ``embeddings`` (see the module doc)."""
        return self._finetune(embeddings, train_set, val_set, nontrain_embeddings, gamma, 1)


class NUDGEN(_Base):
    """NUDGE-N: moved records rotate towards ``G`` and stay unit-norm. Same
    API as ``nudge.NUDGEN``."""

    method = "nudge-n"

    def finetune_embeddings(
        self,
        embeddings: Any,
        train_set: Mapping[str, Any],
        val_set: Mapping[str, Any],
        nontrain_embeddings: Any = None,
        val_batch_size: int = 256,
        val_k: int = 1,
        gamma: Optional[float] = None,
    ) -> np.ndarray:
        """The fine-tuned rows of ``embeddings`` (see the module doc)."""
        return self._finetune(embeddings, train_set, val_set, nontrain_embeddings, gamma, val_k)

