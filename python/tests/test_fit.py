"""nudge_rs.fit / fit_dataset / evaluate / apply: the CLI's numbers and
bytes, from arrays and from files."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nudge_rs
from conftest import FIXTURES, REFERENCE_FIXTURES, SCIFACT, Data, data, run_cli

METHODS = ["nudge-m", "nudge-n"]
DATASETS = [FIXTURES / n for n in REFERENCE_FIXTURES] + [SCIFACT]


def fit_arrays(d: Data, method: str, **kw):
    return nudge_rs.fit(
        d.corpus,
        d.queries,
        d.train,
        d.dev,
        test=d.test,
        method=method,
        corpus_ids=d.corpus_ids,
        query_ids=d.query_ids,
        device="cpu",
        **kw,
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("folder", DATASETS, ids=lambda p: p.name)
def test_fit_gives_the_cli_gamma_and_bytes(folder: Path, method: str, tmp_path: Path) -> None:
    out, report = tmp_path / "out.npy", tmp_path / "fit.json"
    run_cli("fit", "--dataset", str(folder), "--method", method, "--out", str(out), "--report", str(report), "--device", "cpu")
    cli = json.loads(report.read_text())
    want = np.load(out)

    from_folder = nudge_rs.fit_dataset(folder, method=method, device="cpu")
    from_arrays = fit_arrays(Data(folder), method)
    for r in (from_folder, from_arrays):
        assert r.gamma == cli["gamma"]
        assert len(r.moved) == cli["moved_records"]
        assert r.report["dev_scores"] == cli["dev_scores"]
        assert r.before == cli.get("before") and r.after == cli.get("after")
        tuned = r.apply(np.load(folder / "corpus.npy"))
        assert tuned.dtype == np.float32
        # Bit for bit what `nudge fit --out` wrote.
        assert tuned.tobytes() == want.tobytes()
    assert from_arrays.moved.dtype == np.int64
    assert np.all(np.diff(from_arrays.moved) > 0)
    assert from_arrays.vectors.shape == (len(from_arrays.moved), want.shape[1])
    np.testing.assert_array_equal(from_arrays.vectors, want[from_arrays.moved])


def test_row_number_ids_as_int_or_str() -> None:
    d = data("small")
    # The small fixture's ids are 0..n-1: its judgements can be given by row
    # number, as ints or as strings, with no ids at all.
    assert d.corpus_ids == [str(i) for i in range(len(d.corpus))]
    assert d.query_ids == [str(i) for i in range(len(d.queries))]
    as_int = lambda q: {int(k): {int(c): s for c, s in v.items()} for k, v in q.items()}  # noqa: E731
    named = fit_arrays(d, "nudge-n")
    by_int = nudge_rs.fit(d.corpus, d.queries, as_int(d.train), as_int(d.dev), test=as_int(d.test), method="nudge-n", device="cpu")
    by_str = nudge_rs.fit(d.corpus, d.queries, d.train, d.dev, test=d.test, method="nudge-n", device="cpu")
    for r in (by_int, by_str):
        assert r.gamma == named.gamma and r.after == named.after
        np.testing.assert_array_equal(r.vectors, named.vectors)


def test_float16_arrays_and_paths_agree() -> None:
    d = data("f16")
    assert d.corpus.dtype == np.float16
    from_array = fit_arrays(d, "nudge-m")
    from_path = nudge_rs.fit(
        FIXTURES / "f16" / "corpus.npy",
        str(FIXTURES / "f16" / "queries.npy"),
        d.train,
        d.dev,
        test=d.test,
        method="nudge-m",
        corpus_ids=d.corpus_ids,
        query_ids=d.query_ids,
        device="cpu",
    )
    assert from_array.gamma == from_path.gamma
    np.testing.assert_array_equal(from_array.vectors, from_path.vectors)
    # float64 (as np.array builds from Python lists) is converted once.
    from_f64 = nudge_rs.fit(
        d.corpus.astype(np.float64), d.queries.astype(np.float64), d.train, d.dev, test=d.test,
        method="nudge-m", corpus_ids=d.corpus_ids, query_ids=d.query_ids, device="cpu",
    )
    assert from_f64.gamma == from_array.gamma


def test_float32_c_contiguous_input_is_not_copied() -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    assert nudge_rs._rows(x, "corpus") is x
    f16 = np.zeros((4, 3), dtype=np.float16)
    assert nudge_rs._rows(f16, "corpus") is f16
    assert nudge_rs._rows(np.asfortranarray(x), "corpus").flags.c_contiguous


def test_a_large_in_memory_corpus_is_read_in_place() -> None:
    # 300k x 64 float32 = 77 MB. The fit reads it through chunk buffers of a
    # few MB: its peak memory must grow by far less than a copy would take.
    rows, dim = 300_000, 64
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((rows, dim), dtype=np.float32)
    queries = rng.standard_normal((40, dim), dtype=np.float32)
    train = {str(i): {str(i * 7): 1.0} for i in range(20)}
    dev = {str(20 + i): {str(i * 7 + 1): 1.0} for i in range(20)}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    nudge_rs.fit(corpus, queries, train, dev, method="nudge-n", device="cpu")
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grew < corpus.nbytes // 3, f"peak memory grew by {grew >> 20} MiB for a {corpus.nbytes >> 20} MiB corpus"


def test_apply_writes_into_out_or_in_place() -> None:
    d = data("rawnorms-stringids")
    r = fit_arrays(d, "nudge-m")
    new = r.apply(d.corpus)
    out = np.empty_like(d.corpus, dtype=np.float32)
    assert r.apply(d.corpus, out=out) is out
    np.testing.assert_array_equal(out, new)
    inplace = d.corpus.astype(np.float32)
    assert r.apply(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, new)
    with pytest.raises(TypeError):
        r.apply(d.corpus, out=np.empty(d.corpus.shape, dtype=np.float64))


def test_evaluate_matches_the_fit_before_and_after() -> None:
    d = data("small")
    r = fit_arrays(d, "nudge-m")
    ids = dict(corpus_ids=d.corpus_ids, query_ids=d.query_ids, device="cpu")
    before = nudge_rs.evaluate(d.corpus, d.queries, d.test, k=(10, 1), cosine=True, **ids)
    after = nudge_rs.evaluate(r.apply(d.corpus), d.queries, d.test, k=10, **ids)
    assert before["recall@10"] == r.before["recall@10"] and before["ndcg@10"] == r.before["ndcg@10"]
    assert after["ndcg@10"] == r.after["ndcg@10"]
    assert "recall@1" in before and before["queries"] == r.before["queries"]


def test_report_is_the_cli_report() -> None:
    r = nudge_rs.fit_dataset(SCIFACT, method="nudge-n", device="cpu")
    keys = {"method", "gamma", "gamma_reason", "backend", "device", "records", "dim", "queries",
            "moved_records", "zero_rows", "dev_scores", "timings", "before", "after"}
    assert keys <= set(r.report)
    assert r.report["records"] == 5183 and r.report["queries"] == {"train": 778, "dev": 110, "test": 221}
    assert len(r.report["dev_scores"]) == 25
    assert r.moved_ids[:1] and all(isinstance(i, str) for i in r.moved_ids)

    # On the CPU there is nothing GPU-side to report.
    assert not {"gpu_kernels", "gpu_host", "gpu_tile"} & set(r.report["timings"])


def test_a_gpu_fit_reports_what_the_device_measured() -> None:
    """As `nudge fit --report`: the feeding thread's steps, and the GPU time
    per kernel where the adapter has timestamps (lavapipe has)."""
    adapters = nudge_rs.devices()
    if not adapters:
        # As the Rust GPU tests: where CI says there is an adapter, its
        # absence is a failure, not a skip.
        assert os.environ.get("NUDGE_REQUIRE_GPU") != "1", "NUDGE_REQUIRE_GPU=1 but no GPU adapter"
        pytest.skip("no GPU adapter (CI has lavapipe)")
    cpu = nudge_rs.fit_dataset(FIXTURES / "small", method="nudge-m", device="cpu")
    r = nudge_rs.fit_dataset(FIXTURES / "small", method="nudge-m", device="gpu",
                             adapter=adapters[0]["name"])
    t = r.report["timings"]
    # Every chunk's steps; host_rows on an adapter whose host prepares the
    # rows (lavapipe), between_pushes from a second chunk on.
    steps = set(t["gpu_host"])
    assert {"wait_slot", "fill_upload", "submit"} <= steps, steps
    assert steps <= {"wait_slot", "fill_upload", "submit", "host_rows", "between_pushes"}, steps
    assert all(v["calls"] >= 1 and v["ms"] >= 0 for v in t["gpu_host"].values())
    assert "gemm_fused" in t["gpu_kernels"] or "gemm_tiled" in t["gpu_kernels"], t["gpu_kernels"]
    # The GPU's dot products sum in another order: a NUDGE-M gamma, a ratio
    # of score differences, agrees to 1e-4 relative (the Rust reference
    # tests' GPU tolerance, `tests/it/reference.rs`).
    assert r.gamma == pytest.approx(cpu.gamma, rel=1e-4)


# ---- errors ---------------------------------------------------------------


def test_a_nan_row_is_a_data_error_naming_the_row() -> None:
    d = data("small")
    bad = d.corpus.astype(np.float32)
    bad[7, 3] = np.nan
    with pytest.raises(nudge_rs.DataError, match=r"row 7 column 3"):
        nudge_rs.fit(bad, d.queries, d.train, d.dev, method="nudge-n", corpus_ids=d.corpus_ids, query_ids=d.query_ids, device="cpu")
    assert issubclass(nudge_rs.DataError, ValueError)


def test_an_unknown_id_is_a_data_error_naming_it() -> None:
    d = data("rawnorms-stringids")
    train = dict(d.train)
    q = next(iter(train))
    train[q] = {"no-such-record": 1.0}
    kw = dict(method="nudge-n", corpus_ids=d.corpus_ids, query_ids=d.query_ids, device="cpu")
    with pytest.raises(nudge_rs.DataError, match=r"unknown corpus id \"no-such-record\".*skip_unknown_ids=True"):
        nudge_rs.fit(d.corpus, d.queries, train, d.dev, **kw)
    with pytest.warns(UserWarning, match="skipped 1 lines with unknown ids"):
        nudge_rs.fit(d.corpus, d.queries, train, d.dev, skip_unknown_ids=True, **kw)


def test_zero_rows_fail_unless_allowed() -> None:
    d = data("small")
    z = d.corpus.astype(np.float32)
    z[[3, 42]] = 0
    kw = dict(method="nudge-m", corpus_ids=d.corpus_ids, query_ids=d.query_ids, device="cpu")
    with pytest.raises(nudge_rs.DataError, match=r"2 rows have zero norm \(rows 3, 42\).*allow_zero_rows=True"):
        nudge_rs.fit(z, d.queries, d.train, d.dev, **kw)
    r = nudge_rs.fit(z, d.queries, d.train, d.dev, allow_zero_rows=True, **kw)
    assert not r.apply(z)[[3, 42]].any()


def test_wrong_types_and_values() -> None:
    d = data("small")
    with pytest.raises(TypeError, match="corpus: expected a floating-point array"):
        nudge_rs.fit(d.corpus.astype(np.int32), d.queries, d.train, d.dev, method="nudge-n")
    with pytest.raises(TypeError, match="queries: expected a 2-D array"):
        nudge_rs.fit(d.corpus, d.queries[0], d.train, d.dev, method="nudge-n")
    with pytest.raises(TypeError, match=r"train: expected"):
        nudge_rs.fit(d.corpus, d.queries, [1, 2], d.dev, method="nudge-n")
    with pytest.raises(ValueError, match="method \"nudge-x\""):
        nudge_rs.fit(d.corpus, d.queries, d.train, d.dev, method="nudge-x")
    with pytest.raises(ValueError, match="gamma"):
        nudge_rs.fit(d.corpus, d.queries, d.train, d.dev, method="nudge-n", gamma=-1.0)
    with pytest.raises(ValueError, match="device"):
        nudge_rs.fit(d.corpus, d.queries, d.train, d.dev, method="nudge-n", device="tpu")
    with pytest.raises(nudge_rs.DataError, match="dimension mismatch"):
        nudge_rs.fit(d.corpus[:, :8], d.queries, d.train, d.dev, method="nudge-n")
    with pytest.raises(nudge_rs.DataError, match="no-such.npy"):
        nudge_rs.fit("no-such.npy", d.queries, d.train, d.dev, method="nudge-n")


def test_no_gpu_adapter_is_a_device_error() -> None:
    # A Vulkan loader pointed at no driver sees no adapter: device="gpu" must
    # then raise DeviceError (a RuntimeError), not crash.
    code = (
        "import nudge_rs, numpy as np\n"
        "c = np.eye(4, dtype=np.float32)\n"
        "try:\n"
        "    nudge_rs.fit(c, c, {'0': {'1': 1}}, {'2': {'1': 1}}, method='nudge-n', device='gpu')\n"
        "except nudge_rs.DeviceError as e:\n"
        "    assert isinstance(e, RuntimeError)\n"
        "    print('DeviceError:', e)\n"
    )
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent.json", VK_DRIVER_FILES="/nonexistent.json")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "DeviceError: no GPU adapter found" in r.stdout and 'device="cpu"' in r.stdout


# ---- interruption and progress ---------------------------------------------


def test_progress_callback_sees_the_phases() -> None:
    d = data("small")
    seen = []
    fit_arrays(d, "nudge-n", progress=lambda phase, done, total: seen.append((phase, done, total)))
    phases = [p for p, _, _ in seen]
    assert phases[0] == "scanning corpus" and "gamma search" in phases
    scan = [(done, total) for p, done, total in seen if p == "scanning corpus"]
    assert scan[-1] == (len(d.corpus), len(d.corpus))


def test_an_exception_in_the_callback_stops_the_fit() -> None:
    d = data("small")

    def boom(phase, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_arrays(d, "nudge-n", progress=boom)


def test_ctrl_c_raises_keyboard_interrupt() -> None:
    # A real SIGINT arrives while the fit holds no GIL; the fit notices at
    # its next chunk and raises KeyboardInterrupt once it has cleaned up.
    d = data("small")
    sent = []

    def sigint_once(phase, done, total):
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit_arrays(d, "nudge-n", progress=sigint_once)
    # The next fit runs normally.
    assert fit_arrays(d, "nudge-n").gamma == fit_arrays(d, "nudge-n").gamma


def test_devices_lists_dicts() -> None:
    for a in nudge_rs.devices():
        assert {"name", "backend", "software"} <= set(a)


def test_to_html_writes_the_report(tmp_path: Path) -> None:
    r = nudge_rs.fit_dataset(SCIFACT, method="nudge-n", device="cpu")
    page = tmp_path / "fit.html"
    r.to_html(page)
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    gamma = html[html.index('<figure id="gamma-chart">'):]
    assert gamma[: gamma.index("</figure>")].count("<circle") == 25
