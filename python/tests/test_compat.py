"""nudge_rs.compat against nudge-ft's stored outputs, called the way its
real callers (LlamaIndex's Nudge) call it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES, REFERENCE_FIXTURES, Data
from nudge_rs.compat import NUDGEM, NUDGEN

# nudge-ft ran in float32 with torch; nudge sums in a different order, so
# rows agree to rounding: 1e-5 absolute on unit-scale values, the issue's
# tolerance. NUDGE-M's gamma comes out of f32 divisions of score
# differences: equal to 1e-5 relative.
ROW_TOL = 1e-5
GAMMA_RTOL_M = 1e-5


def sets(d: Data):
    """nudge-ft's inputs: the corpus as rows, and each split as query
    embeddings with lists of answer rows (LlamaIndex builds these with
    `corpus_keys.index`, as Python ints)."""
    crow = {c: i for i, c in enumerate(d.corpus_ids)} if d.corpus_ids else None
    qrow = {q: i for i, q in enumerate(d.query_ids)} if d.query_ids else None

    def one(qrels):
        qs = [q for q in qrels if any(s > 0 for s in qrels[q].values())]
        rows = [qrow[q] if qrow else int(q) for q in qs]
        ans = [[crow[c] if crow else int(c) for c, s in qrels[q].items() if s > 0] for q in qs]
        return {"q_embs": d.queries[rows], "q_ans_indx": ans}

    return one(d.train), one(d.dev)


@pytest.mark.parametrize("name", REFERENCE_FIXTURES)
def test_compat_matches_nudge_ft(name: str) -> None:
    d = Data(FIXTURES / name)
    ref = json.loads((FIXTURES / name / "reference" / "reference.json").read_text())
    train, val = sets(d)
    for cls, key in ((NUDGEM, "nudge-m"), (NUDGEN, "nudge-n")):
        if key not in ref:
            continue
        model = cls()
        out = model.finetune_embeddings(embeddings=d.corpus, train_set=train, val_set=val, nontrain_embeddings=None, val_batch_size=256, gamma=None)
        want = np.load(FIXTURES / name / "reference" / f"{key}.npy")
        assert out.shape == want.shape and out.dtype == d.corpus.dtype
        # Output in the input's dtype: a float16 input comes back rounded to
        # float16, half an ulp (2^-11 relative) on top of the tolerance.
        rtol = 2.0**-11 if out.dtype == np.float16 else 0.0
        np.testing.assert_allclose(out.astype(np.float32), want, rtol=rtol, atol=ROW_TOL, err_msg=f"{name} {key}")
        if key == "nudge-n":
            assert model.gamma == ref[key]["gamma"]
            norms = np.linalg.norm(out.astype(np.float64), axis=1)
            assert np.allclose(norms[norms > 0], 1.0, atol=1e-3)
        else:
            assert model.gamma == pytest.approx(ref[key]["gamma"], rel=GAMMA_RTOL_M)


def test_float64_lists_in_float64_out() -> None:
    # LlamaIndex passes np.array(list of lists): float64, not normalised.
    d = Data(FIXTURES / "small")
    train, val = sets(d)
    emb64 = np.array(d.corpus.tolist())
    train64 = {"q_embs": np.array(train["q_embs"].tolist()), "q_ans_indx": [list(map(int, a)) for a in train["q_ans_indx"]]}
    val64 = {"q_embs": np.array(val["q_embs"].tolist()), "q_ans_indx": val["q_ans_indx"]}
    out64 = NUDGEN().finetune_embeddings(embeddings=emb64, train_set=train64, val_set=val64)
    out32 = NUDGEN().finetune_embeddings(d.corpus, train, val)
    assert out64.dtype == np.float64 and out32.dtype == np.float32
    np.testing.assert_allclose(out64, out32, rtol=0, atol=1e-6)


def test_nontrain_embeddings_are_competitors_not_outputs() -> None:
    # Split the corpus into the rows that training touches and the rest;
    # passing the rest as nontrain_embeddings must give the touched rows the
    # same update as the whole corpus does, and return only those rows.
    d = Data(FIXTURES / "small")
    train, val = sets(d)
    touched = sorted({r for a in train["q_ans_indx"] for r in a} | {r for a in val["q_ans_indx"] for r in a})
    rest = [r for r in range(len(d.corpus)) if r not in set(touched)]
    where = {r: i for i, r in enumerate(touched)}
    remap = lambda s: {"q_embs": s["q_embs"], "q_ans_indx": [[where[r] for r in a] for a in s["q_ans_indx"]]}  # noqa: E731
    for cls in (NUDGEM, NUDGEN):
        whole = cls().finetune_embeddings(d.corpus, train, val)
        part = cls().finetune_embeddings(d.corpus[touched], remap(train), remap(val), nontrain_embeddings=d.corpus[rest])
        assert part.shape == (len(touched), d.corpus.shape[1])
        np.testing.assert_array_equal(part, whole[touched])


def test_device_objects_are_recognised_without_torch() -> None:
    class FakeTorchDevice:
        type = "cuda"

    from nudge_rs.compat import _device

    assert _device(FakeTorchDevice()) == "gpu"
    assert _device("cuda:1") == "gpu"
    assert _device("cpu") == "cpu"
    assert _device(None) == "auto"
