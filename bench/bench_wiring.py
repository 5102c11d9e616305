"""Cell-type wiring bench: the whole release's type x type matrix (snapshot/wiring.py, DuckDB on
the snapshot) against pandas doing the same work on the same files, in one run.

    .venv/bin/python bench/bench_wiring.py --data /tmp/cgraph-bench-load-full/data --version 117
    .venv/bin/python bench/bench_wiring.py            # a CI-sized synthetic release (no Neo4j)

Both sides read ``cells.parquet`` and ``edges.parquet`` of the release snapshot, join each edge's
two cells' types, group by (pre type, post type) and compute edges, synapses, summed size and the
connection probability; the answers are compared row for row before anything is reported.
Cold = the first call in this process (files not yet in DuckDB's or the OS's cache as far as this
process goes), warm = the median of the next ``--repeats`` calls. Target: <= 10 s (issue 13).

Writes bench/results/wiring.{json,md} (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 10.0


def pandas_wiring(cells_path: Path, edges_path: Path, min_synapses: int) -> pd.DataFrame:
    cells = pd.read_parquet(cells_path, columns=["nucleus_id", "cell_type"])
    edges = pd.read_parquet(edges_path, columns=["pre", "post", "synapses", "size"])
    edges = edges[edges["synapses"] >= min_synapses]
    t = cells.set_index("nucleus_id")["cell_type"]
    e = edges.assign(pre_type=edges["pre"].map(t), post_type=edges["post"].map(t))
    keys = ["pre_type", "post_type"]
    got = (e.groupby(keys, dropna=False, sort=False)
           .agg(edges=("pre", "size"), synapses=("synapses", "sum"), size=("size", "sum"))
           .reset_index())  # fmt: skip
    n = t.value_counts(dropna=False)
    pre_n = got["pre_type"].map(n).to_numpy()
    post_n = got["post_type"].map(n).to_numpy()
    same = (got["pre_type"] == got["post_type"]) | (
        got["pre_type"].isna() & got["post_type"].isna()
    )
    got["possible_pairs"] = np.where(same, pre_n * (pre_n - 1), pre_n * post_n)
    got["probability"] = got["edges"] / got["possible_pairs"]
    return got.sort_values(keys, na_position="last").reset_index(drop=True)


def timed(fn: Any, repeats: int) -> tuple[Any, float, list[float]]:
    t = time.perf_counter()
    out = fn()
    cold = time.perf_counter() - t
    warm = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t)
    return out, cold, warm


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, help="a CGRAPH_DATA holding the release snapshot")
    ap.add_argument("--version", type=int, default=117)
    ap.add_argument("--min-synapses", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synth-cells", type=int, default=2000)
    ap.add_argument("--synth-synapses", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "wiring"))
    args = ap.parse_args()

    if args.data is None:  # a CI-sized release, snapshot only (no Neo4j needed)
        from cgraph.load import aggregate_to_snapshot
        from loaders.synth import generate

        work = Path(tempfile.mkdtemp(prefix="cgraph-bench-wiring-"))
        os.environ["CGRAPH_DATA"] = str(work / "data")
        vs = generate(work / "files", cells=args.synth_cells, synapses=args.synth_synapses,
                      versions=[args.version], seed=7).version(args.version)  # fmt: skip
        aggregate_to_snapshot(args.version, nuclei=vs.nuclei, synapses=vs.synapses,
                              neurons=vs.neurons, cell_types=vs.cell_types)  # fmt: skip
        shape = f"synthetic, {args.synth_cells:,} cells, {args.synth_synapses:,} synapses (CI size)"
    else:
        os.environ["CGRAPH_DATA"] = str(args.data)
        shape = f"snapshot v{args.version} in {args.data}"

    from snapshot.layout import CELLS, EDGES, open_snapshot
    from snapshot.wiring import type_connectivity

    snap = open_snapshot(args.version)
    cells_path, edges_path = snap.file(CELLS), snap.file(EDGES)
    ours, ours_cold, ours_warm = timed(
        lambda: type_connectivity(snap, "cell_type", args.min_synapses, seconds=3600), args.repeats
    )
    theirs, pd_cold, pd_warm = timed(
        lambda: pandas_wiring(cells_path, edges_path, args.min_synapses), args.repeats
    )
    got = ours.to_pandas()
    assert len(got) == len(theirs), (len(got), len(theirs))
    for col in ("edges", "synapses", "possible_pairs"):
        assert got[col].astype("int64").tolist() == theirs[col].astype("int64").tolist(), col
    assert np.allclose(got["probability"], theirs["probability"].astype(float))
    assert [(_k(a), _k(b)) for a, b in zip(got.pre_type, got.post_type, strict=True)] == [
        (_k(a), _k(b)) for a, b in zip(theirs.pre_type, theirs.post_type, strict=True)
    ]
    warm = statistics.median(ours_warm)
    result = {
        "shape": shape,
        "version": args.version,
        "cells": snap.counts.get("cells"),
        "edges": snap.counts.get("edges"),
        "type_pairs": len(got),
        "duckdb_cold_s": round(ours_cold, 2),
        "duckdb_warm_s": round(warm, 2),
        "pandas_cold_s": round(pd_cold, 2),
        "pandas_warm_s": round(statistics.median(pd_warm), 2),
        "speedup_warm": round(statistics.median(pd_warm) / warm, 1),
        "repeats": args.repeats,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "target": {"seconds": TARGET_S, "met": ours_cold <= TARGET_S},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.data is None:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(out.with_suffix(".md").read_text())


def _k(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x


def markdown(r: dict[str, Any]) -> str:
    met = "met" if r["target"]["met"] else "**missed**"
    return (
        f"# Cell-type wiring bench ({r['shape']})\n\n"
        f"Release {r['version']}: {r['cells']:,} cells, {r['edges']:,} edges, {r['type_pairs']} "
        f"type pairs; {r['when']}, {r['machine']['cpus']} cores.\n\n"
        "| | cold s | warm s (median) |\n|---|---:|---:|\n"
        f"| typeConnectivity (DuckDB on the snapshot) | {r['duckdb_cold_s']} | {r['duckdb_warm_s']} |\n"
        f"| pandas on the same files | {r['pandas_cold_s']} | {r['pandas_warm_s']} |\n\n"
        f"Warm: {r['speedup_warm']}x pandas; the answers are equal row for row. Peak RSS of the "
        f"process (both sides) {r['peak_rss_gib']} GiB. Target: the full matrix in <= "
        f"{r['target']['seconds']:g} s (cold): {met}.\n"
    )


if __name__ == "__main__":
    main()
