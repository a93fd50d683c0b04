"""The fit split over corpus parts: ``map_dataset`` + ``reduce_dataset``
equal ``fit_dataset`` and ``nudge fit --delta`` byte for byte, bad partial
sets are refused with a ``DataError`` naming the rows, and the Ray example
(examples/ray/fit.py) on a local Ray instance writes the same delta as
``nudge fit --delta``.

Ray is installed by .ci/run, so it is imported unconditionally: a CI
without it fails here instead of skipping the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray  # noqa: F401  (installed by .ci/run; the example imports it)

import nudge_rs

from conftest import ROOT, SCIFACT, run_cli


def same_files(a: Path, b: Path) -> None:
    for name in ("ids.txt", "vectors.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("method", ["nudge-m", "nudge-n"])
def test_map_and_reduce_equal_the_fit(tmp_path: Path, method: str) -> None:
    # Three parts by index, in reverse order, and the parts as row ranges
    # would name them give the same partials.
    parts = []
    for i in (2, 1, 0):
        out = tmp_path / f"part-{i}"
        manifest = nudge_rs.map_dataset(SCIFACT, out, part=(i, 3), device="cpu")
        assert manifest["format"] == "nudge-partial"
        parts.append(out)
    r = nudge_rs.reduce_dataset(SCIFACT, parts, method=method, delta=tmp_path / "delta", device="cpu")
    f = nudge_rs.fit_dataset(SCIFACT, method=method, device="cpu")
    assert r.gamma == f.gamma
    assert r.moved_ids == f.moved_ids
    assert np.array_equal(r.vectors.view(np.uint32), f.vectors.view(np.uint32))
    assert r.before == f.before and r.after == f.after
    run_cli("fit", "--dataset", str(SCIFACT), "--method", method, "--delta", str(tmp_path / "cli"), "--device", "cpu")
    same_files(tmp_path / "delta", tmp_path / "cli")


def test_lean_partials_give_the_same_delta(tmp_path: Path) -> None:
    parts = []
    for i in range(2):
        out = tmp_path / f"lean-{i}"
        manifest = nudge_rs.map_dataset(SCIFACT, out, part=(i, 2), lean=True, device="cpu")
        assert manifest["lean"] is True and not (out / "moved.npy").exists()
        parts.append(out)
    nudge_rs.reduce_dataset(SCIFACT, parts, method="nudge-n", delta=tmp_path / "delta", device="cpu")
    run_cli("fit", "--dataset", str(SCIFACT), "--method", "nudge-n", "--delta", str(tmp_path / "cli"), "--device", "cpu")
    same_files(tmp_path / "delta", tmp_path / "cli")


def test_unsynced_partials_and_delta_are_the_same_bytes(tmp_path: Path) -> None:
    # sync=False renames the files into place without an fsync (as the CLI's
    # --no-sync): the same files as the synced run, and no temporary left.
    for sync in (True, False):
        parts = []
        for i in range(2):
            out = tmp_path / f"{sync}-part-{i}"
            nudge_rs.map_dataset(SCIFACT, out, part=(i, 2), lean=True, device="cpu", sync=sync)
            parts.append(out)
        nudge_rs.reduce_dataset(
            SCIFACT, parts, method="nudge-m", delta=tmp_path / f"{sync}-delta", device="cpu", sync=sync
        )
    for i in range(2):
        a, b = tmp_path / f"True-part-{i}", tmp_path / f"False-part-{i}"
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        for f in a.iterdir():
            if f.name == "partial.json":  # holds the map's seconds
                ja, jb = json.loads(f.read_text()), json.loads((b / f.name).read_text())
                ja.pop("seconds"), jb.pop("seconds")
                assert ja == jb
            else:
                assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    same_files(tmp_path / "True-delta", tmp_path / "False-delta")
    assert not any(p.name.startswith(".nudge-partial-") for p in tmp_path.rglob("*"))


def test_a_missing_part_is_a_data_error_naming_its_rows(tmp_path: Path) -> None:
    nudge_rs.map_dataset(SCIFACT, tmp_path / "a", rows=(0, 2000), device="cpu")
    nudge_rs.map_dataset(SCIFACT, tmp_path / "b", rows=(3000, 5183), device="cpu")
    with pytest.raises(nudge_rs.DataError, match=r"no partial covers corpus rows 2000\.\.3000"):
        nudge_rs.reduce_dataset(SCIFACT, [tmp_path / "a", tmp_path / "b"], method="nudge-m", delta=tmp_path / "d")
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="rows or part"):
        nudge_rs.map_dataset(SCIFACT, tmp_path / "c", rows=(0, 1), part=(0, 2))


def test_map_warns_of_skipped_judgements_as_the_fit_does(tmp_path: Path) -> None:
    # A dataset folder whose dev qrels name a record that is not there.
    folder = tmp_path / "ds"
    folder.mkdir()
    for name in ("corpus.npy", "corpus_ids.txt", "queries.npy", "query_ids.txt"):
        (folder / name).symlink_to(SCIFACT / name)
    (folder / "qrels").mkdir()
    for split in ("train", "test"):
        (folder / "qrels" / f"{split}.tsv").symlink_to(SCIFACT / "qrels" / f"{split}.tsv")
    dev = (SCIFACT / "qrels" / "dev.tsv").read_text().splitlines()
    query = dev[1].split("\t")[0]
    (folder / "qrels" / "dev.tsv").write_text("\n".join([*dev, f"{query}\tno-such-record\t1"]) + "\n")
    with pytest.raises(nudge_rs.DataError, match="no-such-record"):
        nudge_rs.map_dataset(folder, tmp_path / "p0", device="cpu")
    with pytest.warns(UserWarning, match="skipped 1 lines? with unknown ids") as fit_warned:
        nudge_rs.fit_dataset(folder, method="nudge-m", skip_unknown_ids=True, device="cpu")
    with pytest.warns(UserWarning, match="skipped 1 lines? with unknown ids") as map_warned:
        nudge_rs.map_dataset(folder, tmp_path / "p1", skip_unknown_ids=True, device="cpu")
    assert [str(w.message) for w in map_warned] == [
        str(w.message) for w in fit_warned if "skipped" in str(w.message)
    ]


def test_the_ray_example_writes_the_delta_of_nudge_fit(tmp_path: Path) -> None:
    # A local Ray instance, 4 map tasks; Ray's start-up is reported apart.
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "ray" / "fit.py"),
            "--dataset", str(SCIFACT),
            "--parts", "4",
            "--method", "nudge-m",
            "--delta", str(tmp_path / "ray"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["parts"] == 4 and summary["moved_records"] == 555
    run_cli("fit", "--dataset", str(SCIFACT), "--method", "nudge-m", "--delta", str(tmp_path / "cli"), "--device", "cpu")
    same_files(tmp_path / "ray", tmp_path / "cli")
