"""Synapse store bench: a cell's inputs through the notebook client, a ~10k-synapse bounding box,
a whole-release synapse export, against what a user has today in the same run (pyarrow/pandas
filtering the source Parquet file; DuckDB on the unsorted source file).

    .venv/bin/python bench/bench_synapses.py                       # CI-sized synth release
    .venv/bin/python bench/bench_synapses.py --data /tmp/v117pdata --version 117 \
        --source /path/synapses_v117.parquet                       # an existing store

Writes bench/results/synapses.{json,md} (``--out`` to change the stem). The server is the real
app on uvicorn (loopback); the synapse fields need no Neo4j.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent


def _pandas_filter(source: Path, keep: Any) -> Any:
    """What a pandas user does with a file larger than memory: batch by batch, filter, concat."""
    import pandas as pd

    parts = []
    for batch in pq.ParquetFile(source).iter_batches(batch_size=1 << 20):
        df = batch.to_pandas()
        parts.append(df[keep(df)])
    return pd.concat(parts, ignore_index=True)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _server(data: Path) -> tuple[Any, str]:
    os.environ["CGRAPH_DATA"] = str(data)
    import uvicorn

    from api.app import create_app
    from api.settings import ApiSettings
    from graph.settings import ConnectionSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ApiSettings(), connection=ConnectionSettings(uri="bolt://127.0.0.1:9"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def synth(work: Path, cells: int, synapses: int, version: int) -> tuple[Path, Path]:
    from loaders.synth import generate

    os.environ["CGRAPH_DATA"] = str(work / "data")
    from cgraph.load import aggregate_to_snapshot

    vs = generate(work / "src", cells=cells, synapses=synapses, versions=[version], seed=3).version(version)  # fmt: skip
    aggregate_to_snapshot(version, nuclei=vs.nuclei, synapses=vs.synapses)
    return work / "data", Path(vs.synapses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="a CGRAPH_DATA holding the release snapshot")
    ap.add_argument("--version", type=int, default=117)
    ap.add_argument("--source", type=Path, help="the source synapse Parquet file (baselines)")
    ap.add_argument("--cells", type=int, default=200, help="cells sampled for the client timing")
    ap.add_argument("--baseline-cells", type=int, default=10)
    ap.add_argument("--synth-cells", type=int, default=2000)
    ap.add_argument("--synth-synapses", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "synapses"))
    args = ap.parse_args()

    if args.data is None:
        work = Path(tempfile.mkdtemp(prefix="cgraph-bench-syn-"))
        data, source = synth(work, args.synth_cells, args.synth_synapses, args.version)
        shape = f"synthetic, {args.synth_cells:,} cells, {args.synth_synapses:,} synapses (CI size)"
    else:
        data, source = args.data, args.source
        shape = f"store at {args.data}"
    server, url = _server(data)
    from api.client import ConnectomeClient
    from snapshot.layout import open_snapshot

    snap = open_snapshot(args.version)
    store = snap.file("synapses.parquet")
    cells = pq.read_table(snap.file("cells.parquet"), columns=["root_id", "in_synapses"])
    rng = np.random.default_rng(0)
    roots = cells.filter(pc.greater(cells["root_id"], 0))["root_id"].to_numpy()
    sample = [int(r) for r in rng.choice(roots, min(args.cells, len(roots)), replace=False)]
    client = ConnectomeClient(url, timeout=600)
    client.synapse_query(post_ids=sample[0], version=args.version)  # warm up
    t_cell, n_cell = [], []
    for r in sample:
        t0 = time.perf_counter()
        df = client.synapse_query(post_ids=r, version=args.version)
        t_cell.append(time.perf_counter() - t0)
        n_cell.append(len(df))
    res: dict[str, Any] = {"shape": shape, "version": args.version, "store_rows": pq.ParquetFile(store).metadata.num_rows,  # fmt: skip
                           "cells": len(sample), "cell_synapses_median": statistics.median(n_cell),
                           "cell_p50_ms": _pct(t_cell, 50) * 1e3, "cell_p99_ms": _pct(t_cell, 99) * 1e3}  # fmt: skip
    print(f"client: {len(sample)} cells, p50 {res['cell_p50_ms']:.1f} ms", flush=True)
    base = sample[: args.baseline_cells]
    if source is not None:
        t_pd = []
        for r in base:
            t0 = time.perf_counter()
            t = _pandas_filter(source, lambda df, r=r: df["post_pt_root_id"] == r)
            t = t[t.pre_pt_root_id != t.post_pt_root_id]
            t_pd.append(time.perf_counter() - t0)
        con = duckdb.connect()
        con.execute("SET memory_limit = '4GB'")  # the store side's cap is 2GB
        t_dk = []
        for r in base:
            t0 = time.perf_counter()
            con.execute("SELECT * FROM read_parquet(?) WHERE post_pt_root_id = ? AND "
                        "pre_pt_root_id <> post_pt_root_id", [str(source), r]).df()  # fmt: skip
            t_dk.append(time.perf_counter() - t0)
        res.update(
            baseline_cells=len(base),
            pandas_cell_p50_ms=_pct(t_pd, 50) * 1e3,
            duckdb_source_cell_p50_ms=_pct(t_dk, 50) * 1e3,  # fmt: skip
            speedup_vs_pandas=_pct(t_pd, 50) / _pct(t_cell, 50),
        )
    print(f"baselines: { ({k: v for k, v in res.items() if 'p50' in k}) }", flush=True)
    # a bounding box of ~10k synapses around the median post position, chosen from a sample of
    # row groups (the whole position columns of a v117 store do not fit in memory as floats)
    pf = pq.ParquetFile(store)
    groups = sorted(rng.choice(pf.num_row_groups, min(32, pf.num_row_groups), replace=False))
    pos = pf.read_row_groups(groups, columns=[f"post_pt_position_{a}" for a in "xyz"])
    xyz = np.stack([pos.column(i).to_numpy(zero_copy_only=False) for i in range(3)], axis=1)
    xyz = xyz[~np.isnan(xyz.astype(float)).any(axis=1)].astype(float)
    frac = min(1.0, 10_000 / pf.metadata.num_rows) ** (1 / 3)
    lo = np.floor(np.quantile(xyz, 0.5 - frac / 2, axis=0))
    hi = np.ceil(np.quantile(xyz, 0.5 + frac / 2, axis=0))
    box = [lo.tolist(), hi.tolist()]
    t0 = time.perf_counter()
    df = client.synapse_query(bounding_box=box, version=args.version)
    res.update(bbox=box, bbox_rows=len(df), bbox_ms=(time.perf_counter() - t0) * 1e3)
    if source is not None:
        cols = [f"post_pt_position_{a}" for a in "xyz"]
        t0 = time.perf_counter()
        t = _pandas_filter(
            source,
            lambda df: np.logical_and.reduce(
                [df[c].between(box[0][k], box[1][k]).to_numpy() for k, c in enumerate(cols)]
            ),
        )
        res["pandas_bbox_ms"] = (time.perf_counter() - t0) * 1e3
        res["pandas_bbox_rows"] = len(t)
        del t
        t0 = time.perf_counter()
        got = con.execute(
            "SELECT * FROM read_parquet(?) WHERE "
            + " AND ".join(f"{c} BETWEEN ? AND ?" for c in cols),
            [str(source), *[v for i in range(3) for v in (box[0][i], box[1][i])]],
        ).df()
        res["duckdb_source_bbox_ms"] = (time.perf_counter() - t0) * 1e3
        res["duckdb_source_bbox_rows"] = len(got)
    print(f"bbox: { ({k: v for k, v in res.items() if 'bbox' in k}) }", flush=True)
    # whole-release export over HTTP (Arrow IPC, batch by batch)
    t0 = time.perf_counter()
    rows = sum(len(b) for b in client.iter_release(args.version, "synapses"))
    dt = time.perf_counter() - t0
    res.update(export_rows=rows, export_s=dt, export_rows_per_s=rows / dt)
    res["targets"] = {"cell_p50_ms<=50": res["cell_p50_ms"] <= 50,
                      "speedup>=20": res.get("speedup_vs_pandas", 0) >= 20,
                      "export>=2M/s": res["export_rows_per_s"] >= 2e6}  # fmt: skip
    client.close()
    server.should_exit = True
    Path(args.out + ".json").write_text(json.dumps(res, indent=2) + "\n")
    md = [f"# Synapse store bench ({shape})", "", "| measure | value |", "|---|---|"]
    md += [f"| {k} | {v:,.1f} |" if isinstance(v, float) else f"| {k} | {v} |"
           for k, v in res.items() if k != "targets"]  # fmt: skip
    md += ["", "targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in res["targets"].items())]  # fmt: skip
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
