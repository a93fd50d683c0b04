"""Shared fixtures: the repository's test datasets, the CLI binary, and
readers for the dataset layout (numpy only, as users have)."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SCIFACT = ROOT / "data" / "scifact"
# Fixtures with nudge-ft reference outputs (reference/*.npy, reference.json).
REFERENCE_FIXTURES = ["small", "edge", "f16", "rawnorms-stringids"]


def nudge_bin() -> Path:
    """The `nudge` binary the CLI parity tests compare with: $NUDGE_BIN, or
    the release build `cargo test --release` leaves in target/."""
    p = Path(os.environ.get("NUDGE_BIN", ROOT / "target" / "release" / "nudge"))
    if not p.exists():
        pytest.fail(f"{p} does not exist: build it first (cargo build --release) or set NUDGE_BIN")
    return p


def run_cli(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([str(nudge_bin()), *args, "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def read_ids(path: Path) -> Optional[List[str]]:
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8-sig")
    return [line.rstrip("\r") for line in text.split("\n") if line != ""] if text else []


def read_qrels(path: Path) -> Optional[Dict[str, Dict[str, float]]]:
    if not path.exists():
        return None
    out: Dict[str, Dict[str, float]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)
        for row in rows:
            if not row:
                continue
            q, c, s = row[0].strip(), row[1].strip(), float(row[2])
            out.setdefault(q, {})[c] = s
    return out


class Data:
    """A dataset folder read into numpy arrays and dicts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.corpus = np.load(folder / "corpus.npy")
        self.queries = np.load(folder / "queries.npy")
        self.corpus_ids = read_ids(folder / "corpus_ids.txt")
        self.query_ids = read_ids(folder / "query_ids.txt")
        self.train = read_qrels(folder / "qrels" / "train.tsv")
        self.dev = read_qrels(folder / "qrels" / "dev.tsv")
        self.test = read_qrels(folder / "qrels" / "test.tsv")


@pytest.fixture(scope="session")
def scifact() -> Data:
    return Data(SCIFACT)


def data(name: str) -> Data:
    return Data(FIXTURES / name)
