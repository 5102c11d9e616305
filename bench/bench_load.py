"""Load benchmark: aggregation and Bolt writes vs a plain-pandas baseline, in one run.

    .venv/bin/python bench/bench_load.py                 # CI size (1M) and 10M synapses
    .venv/bin/python bench/bench_load.py --sizes 1000000 # one size

For each size a synthetic release is generated (cached in bench/data/), then, each stage in its
own process so its peak memory is its own:
  * aggregate: loaders.aggregate.build_release (stream, validate, attribute, group) -> rows/s
  * pandas: the baseline a user writes today: read the whole table, drop autapses, map roots to
    nuclei, groupby (pre, post) -> rows/s
  * write: the aggregated edges written over Bolt into a scratch release (at most --write-limit
    edges, then dropped) -> edges/s
Results go to bench/results/load.json and bench/results/load.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DATA = HERE / "data"
RESULTS = HERE / "results"
SCRATCH_VERSION = 990777


def dataset(synapses: int) -> Path:
    from loaders.synth import generate

    out = DATA / f"load_{synapses}"
    if not (out / "synapses_v1.parquet").exists():
        generate(out, cells=max(2000, synapses // 500), synapses=synapses, versions=[1], seed=11)
    return out


def stage_aggregate(path: Path, batch_rows: int) -> dict[str, float]:
    from loaders.aggregate import build_release

    t = time.perf_counter()
    data = build_release(
        path / "nuclei_v1.parquet", path / "synapses_v1.parquet", batch_rows=batch_rows
    )
    dt = time.perf_counter() - t
    return {"seconds": dt, "rows": data.counts["synapses_total"], "edges": len(data.edges)}


def stage_pandas(path: Path) -> dict[str, float]:
    import pandas as pd

    t = time.perf_counter()
    syn = pd.read_parquet(path / "synapses_v1.parquet")
    nuc = pd.read_parquet(path / "nuclei_v1.parquet")
    roots = (
        nuc[nuc.pt_root_id != 0]
        .drop_duplicates("pt_root_id", keep=False)
        .set_index("pt_root_id")
        .id
    )
    syn = syn[syn.pre_pt_root_id != syn.post_pt_root_id]
    syn["pre"] = syn.pre_pt_root_id.map(roots)
    syn["post"] = syn.post_pt_root_id.map(roots)
    edges = (
        syn.dropna(subset=["pre", "post"])
        .groupby(["pre", "post"])
        .agg(synapses=("id", "size"), size=("size", "sum"), ids=("id", list), sizes=("size", list))
    )
    dt = time.perf_counter() - t
    return {"seconds": dt, "rows": len(syn), "edges": len(edges)}


def stage_write(path: Path, limit: int) -> dict[str, float]:
    import dataclasses

    from graph import releases
    from graph.driver import Database
    from loaders.aggregate import build_release
    from loaders.tables import Edges

    data = build_release(path / "nuclei_v1.parquet", path / "synapses_v1.parquet")
    e = data.edges
    n = min(limit, len(e))
    cut = int(e.offsets[n])
    sub = Edges(e.pre[:n], e.post[:n], e.synapses[:n], None if e.size is None else e.size[:n],
                e.offsets[: n + 1], e.synapse_ids[:cut], None if e.sizes is None else e.sizes[:cut])  # fmt: skip
    data = dataclasses.replace(data, edges=sub)
    from cgraph.load import cell_rows

    with Database() as db:
        if releases.get_release(db, SCRATCH_VERSION) is not None:
            releases.drop_release(db, SCRATCH_VERSION)
        releases.begin_load(db, SCRATCH_VERSION, None, replace=True)
        t = time.perf_counter()
        for rows in cell_rows(data, SCRATCH_VERSION, 5000):
            releases.write_cells(db, SCRATCH_VERSION, rows)
        t_cells = time.perf_counter() - t
        t = time.perf_counter()
        for rows in sub.iter_batches(20_000):
            releases.write_edges(db, SCRATCH_VERSION, rows)
        dt = time.perf_counter() - t
        releases.drop_release(db, SCRATCH_VERSION)
    return {"seconds": dt, "edges": n, "cells": len(data.cells), "cell_seconds": t_cells}


def run_stage(args: list[str]) -> tuple[dict[str, float], float]:
    """Run one stage in a child process; return its result and its peak RSS in MiB."""
    proc = subprocess.Popen([sys.executable, __file__, "--stage", *args], stdout=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"stage {args} failed")
    return json.loads(out), usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--batch-rows", type=int, default=1_000_000)
    ap.add_argument("--write-limit", type=int, default=300_000)
    ap.add_argument("--stage", nargs="+")
    a = ap.parse_args()
    if a.stage:
        kind, path, *rest = a.stage
        fn = {"aggregate": lambda: stage_aggregate(Path(path), int(rest[0])),
              "pandas": lambda: stage_pandas(Path(path)),
              "write": lambda: stage_write(Path(path), int(rest[0]))}[kind]  # fmt: skip
        print(json.dumps(fn()))
        return
    results = []
    for size in (int(s) for s in a.sizes.split(",")):
        path = dataset(size)
        agg, agg_mem = run_stage(["aggregate", str(path), str(a.batch_rows)])
        pds, pd_mem = run_stage(["pandas", str(path)])
        wr, wr_mem = run_stage(["write", str(path), str(a.write_limit)])
        row = {
            "synapses": size,
            "edges": agg["edges"],
            "aggregate_rows_per_s": agg["rows"] / agg["seconds"],
            "aggregate_peak_mib": agg_mem,
            "pandas_rows_per_s": size / pds["seconds"],
            "pandas_peak_mib": pd_mem,
            "speedup_vs_pandas": pds["seconds"] / agg["seconds"],
            "edges_written": wr["edges"],
            "edges_per_s": wr["edges"] / wr["seconds"],
            "cells_per_s": wr["cells"] / wr["cell_seconds"],
            "batch_rows": a.batch_rows,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    (RESULTS / "load.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = ["| synapses | edges | aggregation rows/s | pandas rows/s | speedup | agg peak MiB | pandas peak MiB | edges/s written (Bolt) | cells/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        lines.append(
            f"| {r['synapses']:,} | {r['edges']:,} | {r['aggregate_rows_per_s'] / 1e6:.1f}M | "
            f"{r['pandas_rows_per_s'] / 1e6:.2f}M | {r['speedup_vs_pandas']:.1f}x | {r['aggregate_peak_mib']:.0f} | "
            f"{r['pandas_peak_mib']:.0f} | {r['edges_per_s']:,.0f} ({r['edges_written']:,} edges) | {r['cells_per_s']:,.0f} |"
        )
    (RESULTS / "load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
