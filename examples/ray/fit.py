"""A NUDGE fit of a dataset folder on a Ray cluster: one map task per corpus
part (a GPU each when the cluster has GPUs), the partials gathered on the
driver, one reduce there. The delta equals ``nudge fit --delta`` byte for
byte.

    python examples/ray/fit.py --dataset DIR --parts N --method nudge-m --delta OUT
    python examples/ray/fit.py --address ray://head:10001 ...   # an existing cluster

Each map task reads only its rows of the corpus, so every worker must see the
dataset folder at the same path (a shared file system, or the same copy on
every node). A partial is kilobytes to megabytes whatever the part's size:
it travels back through Ray's object store as bytes, so the driver needs no
shared storage of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Dict

import ray

import nudge_rs


def use_threads(threads: int) -> None:
    """As many compute threads as the task reserved CPUs: Ray runs several
    tasks on a node at once, and each would otherwise start a thread per
    core of the node. (Set before the worker's first fit: the thread pool
    is made then. Not through a runtime_env, which would start a worker
    pool of its own for the tasks instead of using the warm one.)"""
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))


@ray.remote
def warm_up(threads: int) -> int:
    """Starts a worker: its process, numpy and the extension loaded."""
    use_threads(threads)
    assert nudge_rs.__version__
    return os.getpid()


@ray.remote
def map_part(dataset: str, i: int, parts: int, device: str, threads: int) -> Dict[str, bytes]:
    """Map part i of parts into a partial; return its files' bytes."""
    use_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "partial")
        nudge_rs.map_dataset(dataset, out, part=(i, parts), device=device)
        files = {}
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), "rb") as f:
                files[name] = f.read()
        return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, help="dataset folder (as nudge fit --dataset)")
    ap.add_argument("--parts", type=int, required=True, help="corpus parts, one map task each")
    ap.add_argument("--method", required=True, choices=["nudge-m", "nudge-n"])
    ap.add_argument("--delta", required=True, help="where to write ids.txt and vectors.npy")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    ap.add_argument("--report", default=None, help="also write the fit's JSON report here")
    ap.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs each map task reserves")
    args = ap.parse_args()
    dataset = os.path.abspath(args.dataset)

    t0 = time.perf_counter()
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    # One GPU per map task when the cluster has GPUs; the CPU path otherwise.
    gpus = ray.cluster_resources().get("GPU", 0)
    device = "gpu" if gpus > 0 else "cpu"
    threads = max(1, int(args.cpus_per_task))
    opts = dict(num_gpus=1 if gpus > 0 else 0, num_cpus=args.cpus_per_task)
    # Ray's start-up: the cluster, and a worker per task slot with the
    # extension loaded (reported apart from the fit's own time).
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // args.cpus_per_task))
    ray.get([warm_up.options(**opts).remote(threads) for _ in range(min(slots, args.parts))])
    startup = time.perf_counter() - t0
    task = map_part.options(**opts)

    t1 = time.perf_counter()
    futures = [task.remote(dataset, i, args.parts, device, threads) for i in range(args.parts)]
    results = ray.get(futures)
    maps = time.perf_counter() - t1

    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for i, files in enumerate(results):
            d = os.path.join(tmp, f"part-{i:05d}")
            os.makedirs(d)
            for name, data in files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            dirs.append(d)
        r = nudge_rs.reduce_dataset(dataset, dirs, method=args.method, delta=args.delta)
    reduce = time.perf_counter() - t2
    ray.shutdown()

    if args.report:
        with open(args.report, "w") as f:
            json.dump(r.report, f, indent=2)
    partial_bytes = sum(len(b) for files in results for b in files.values())
    print(
        json.dumps(
            {
                "method": r.method,
                "gamma": r.gamma,
                "moved_records": len(r.moved),
                "parts": args.parts,
                "device": device,
                "ray_startup_s": round(startup, 3),
                "maps_s": round(maps, 3),
                "reduce_s": round(reduce, 3),
                "partial_bytes": partial_bytes,
                "after": r.after,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
