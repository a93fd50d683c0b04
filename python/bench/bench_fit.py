"""How much a fit costs from Python over the library's own fit.

    python python/bench/bench_fit.py [DATASET_DIR ...]

For each dataset (default: the bundled SciFact, and ../shared's nfcorpus
when present) and method, runs `nudge_rs.fit` on arrays already in memory
N times and reports the median wall time of the Python call against the
median time the library itself spent fitting (the phases of the report's
`timings`, measured inside the same call): the ratio is what the Python
layer (argument conversion, judgement dicts, result arrays) adds. Not a
test: timings are printed, never asserted.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

import nudge_rs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import Data  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RUNS = 15


def main() -> None:
    dirs = [Path(a) for a in sys.argv[1:]] or [ROOT / "data" / "scifact", ROOT.parent / "shared" / "datasets" / "nfcorpus"]
    print(f"{'dataset':<12} {'method':<8} {'python ms':>10} {'library ms':>11} {'ratio':>6}")
    for d in dirs:
        if not (d / "corpus.npy").exists():
            continue
        data = Data(d)
        corpus = np.ascontiguousarray(data.corpus, dtype=np.float32) if data.corpus.dtype == np.float64 else data.corpus
        for method in ("nudge-m", "nudge-n"):
            walls, inner = [], []
            for i in range(RUNS + 2):
                t = time.perf_counter()
                r = nudge_rs.fit(corpus, data.queries, data.train, data.dev, test=data.test, method=method,
                                 corpus_ids=data.corpus_ids, query_ids=data.query_ids, device="cpu")
                wall = time.perf_counter() - t
                if i >= 2:  # warm-up runs
                    walls.append(wall)
                    inner.append(sum(r.report["timings"].values()))
            w, f = statistics.median(walls) * 1e3, statistics.median(inner) * 1e3
            print(f"{d.name:<12} {method:<8} {w:>10.1f} {f:>11.1f} {w / f:>6.2f}")


if __name__ == "__main__":
    main()
