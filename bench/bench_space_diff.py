"""Space and change bench (issue 13): `cellsInBox` (graph.space, Neo4j's point index) on random
10 um boxes, and the whole-release diff between two releases (snapshot.diff, DuckDB on the
snapshots), each against a baseline doing the same work in the same run; answers compared.

    # two v117-sized releases (no synapse positions: neither query reads them)
    cgraph synth --cells 144120 --synapses 337312429 --versions 117,343 --seed 117 \
        --no-positions --out /tmp/v117np
    .venv/bin/python bench/bench_space_diff.py --inputs /tmp/v117np --versions 117,343 \
        --data /tmp/cgraph-bench-sd/data --neo4j-home /tmp/cgraph-bench-neo4j-sd
    .venv/bin/python bench/bench_space_diff.py --ci     # CI-sized (2,000 cells, 1,000,000 synapses)

Steps: each release's snapshot is written by the loader (`cgraph load`'s aggregation) unless it
is there, then `cgraph rebuild` bulk-imports them into the bench Neo4j (its own home and ports,
never the project's server) unless the store holds them. Box queries: ``--boxes`` cubes of
``--box-um`` um centred on random nuclei of the first release; baseline: a numpy mask over the
release's cells held in memory (and pandas reading ``cells.parquet`` then masking). Diff:
`releaseDiff`'s totals and per-type table cold (first call in the process) and warm; baseline:
pandas reading both edge files and merging them (outer join on pre, post). Targets: box p50
<= 20 ms, whole-release diff <= 60 s. Writes bench/results/space_diff.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CGRAPH = str(Path(sys.executable).parent / "cgraph")
BOX_TARGET_MS = 20.0
DIFF_TARGET_S = 60.0


def _ensure_snapshots(inputs: Path, versions: list[int]) -> dict[int, float]:
    from cgraph.load import aggregate_to_snapshot
    from snapshot.layout import open_snapshot, snapshot_path

    took = {}
    for v in versions:
        if snapshot_path(v).exists():
            open_snapshot(v)
            continue
        t = time.perf_counter()
        aggregate_to_snapshot(v, nuclei=inputs / f"nuclei_v{v}.parquet",
                              synapses=inputs / f"synapses_v{v}.parquet",
                              neurons=inputs / f"neurons_v{v}.parquet",
                              cell_types=inputs / f"cell_types_v{v}.parquet")  # fmt: skip
        took[v] = round(time.perf_counter() - t, 1)
        print(f"snapshot v{v}: {took[v]} s", flush=True)
    return took


def _ensure_store(versions: list[int]) -> float | None:
    from graph import releases, server
    from graph.driver import Database
    from graph.settings import ConnectionSettings, ServerSettings

    server.start(ServerSettings.from_env(), ConnectionSettings.from_env())
    with Database() as db:
        have = {r.version for r in db.call(releases.list_releases) if r.status == "complete"}
    if set(versions) <= have:
        return None
    t = time.perf_counter()
    subprocess.run([CGRAPH, "rebuild", "--no-progress"], check=True, timeout=3600)
    took = round(time.perf_counter() - t, 1)
    print(f"rebuild: {took} s", flush=True)
    return took


def bench_boxes(version: int, boxes: int, box_um: float, seed: int) -> dict[str, Any]:
    import pandas as pd
    import pyarrow.parquet as pq

    from graph import space
    from graph.driver import Database
    from snapshot.layout import CELLS, open_snapshot

    path = open_snapshot(version).file(CELLS)
    cells = pq.read_table(path, columns=["nucleus_id", "x", "y", "z", "root_id"]).to_pandas()
    cells = cells[cells.root_id.notna()]
    xyz, ids = cells[["x", "y", "z"]].to_numpy(), cells.nucleus_id.to_numpy()
    rng = np.random.default_rng(seed)
    half = box_um * 1000 / 2
    centres = xyz[rng.choice(len(xyz), size=boxes, replace=False)]
    lat, base, base_file, sizes, agree = [], [], [], [], 0
    with Database() as db:
        db.verify()
        for c in centres:
            lo, hi = (c - half).tolist(), (c + half).tolist()
            t = time.perf_counter()
            got: list[int] = []
            after = None
            for _ in range(100):  # bounded: a 10 um box holds a few cells
                page = db.call(space.list_cells_in_box, version, lo, hi, first=1000, after=after)
                got += [r.nucleus_id for r in page.cells]
                if not page.has_next:
                    break
                after = page.cells[-1].nucleus_id
            lat.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            mask = ((xyz >= lo) & (xyz <= hi)).all(axis=1)
            want = sorted(int(i) for i in ids[mask])
            base.append((time.perf_counter() - t) * 1000)
            agree += got == want
            sizes.append(len(want))
        for c in centres[:20]:  # what a user does without the index: read the file, mask it
            lo, hi = c - half, c + half
            t = time.perf_counter()
            f = pd.read_parquet(path, columns=["nucleus_id", "x", "y", "z"])
            m = f.x.between(lo[0], hi[0]) & f.y.between(lo[1], hi[1]) & f.z.between(lo[2], hi[2])
            f.nucleus_id[m].tolist()
            base_file.append((time.perf_counter() - t) * 1000)
    p50 = statistics.median(lat)
    return {
        "boxes": boxes, "box_um": box_um, "cells": int(len(ids)),
        "cells_per_box_mean": round(float(np.mean(sizes)), 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) >= 200 else None,
        "answers_agree": f"{agree}/{boxes}",
        "baseline_numpy_in_memory_p50_ms": round(statistics.median(base), 2),
        "baseline_pandas_read_and_mask_p50_ms": round(statistics.median(base_file), 1),
        "target": {"p50_ms": BOX_TARGET_MS, "met": p50 <= BOX_TARGET_MS},
    }  # fmt: skip


def pandas_diff(a: Path, b: Path) -> dict[str, int]:
    import pandas as pd

    ea = pd.read_parquet(a, columns=["pre", "post", "synapses"])
    eb = pd.read_parquet(b, columns=["pre", "post", "synapses"])
    d = ea.merge(eb, on=["pre", "post"], how="outer", suffixes=("_a", "_b"), indicator=True)
    both = d["_merge"] == "both"
    changed = int((both & (d.synapses_a != d.synapses_b)).sum())
    return {"added": int((d["_merge"] == "right_only").sum()),
            "removed": int((d["_merge"] == "left_only").sum()),
            "changed": changed, "unchanged": int(both.sum()) - changed,
            "synapses_before": int(ea.synapses.sum()), "synapses_after": int(eb.synapses.sum())}  # fmt: skip


def bench_diff(a_v: int, b_v: int, repeats: int, baseline: bool) -> dict[str, Any]:
    from snapshot import diff
    from snapshot.layout import EDGES, open_snapshot

    a, b = open_snapshot(a_v), open_snapshot(b_v)
    t = time.perf_counter()
    totals = diff.diff_totals(a, b, seconds=3600)
    cold = time.perf_counter() - t
    warm = []
    for _ in range(repeats):
        t = time.perf_counter()
        diff.diff_totals(a, b, seconds=3600)
        warm.append(time.perf_counter() - t)
    t = time.perf_counter()
    types = diff.diff_by_type(a, b, seconds=3600)
    by_type = time.perf_counter() - t
    t = time.perf_counter()
    diff.diff_edges(a, b, change="added", limit=100, seconds=3600)
    page = time.perf_counter() - t
    t = time.perf_counter()
    diff.stability_summary([a, b], seconds=3600)
    stability = time.perf_counter() - t
    out: dict[str, Any] = {
        "from": a_v, "to": b_v, "edges_from": a.counts.get("edges"),
        "edges_to": b.counts.get("edges"), "totals": totals,
        "cold_s": round(cold, 2), "warm_s": round(statistics.median(warm), 2),
        "by_type_s": round(by_type, 2), "type_pairs": types.num_rows,
        "first_edges_page_s": round(page, 2), "stability_summary_s": round(stability, 2),
        "target": {"s": DIFF_TARGET_S, "met": cold <= DIFF_TARGET_S},
    }  # fmt: skip
    if baseline:
        t = time.perf_counter()
        want = pandas_diff(a.file(EDGES), b.file(EDGES))
        out["baseline_pandas_merge_s"] = round(time.perf_counter() - t, 2)
        out["answers_agree"] = want == totals
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--inputs", type=Path, help="cgraph synth output (nuclei_vV.parquet, ...)")
    ap.add_argument("--versions", default="117,343")
    ap.add_argument("--data", type=Path, default=Path("/tmp/cgraph-bench-sd/data"))
    ap.add_argument("--neo4j-home", type=Path, default=Path("/tmp/cgraph-bench-neo4j-sd"))
    ap.add_argument("--bolt-port", type=int, default=7691)
    ap.add_argument("--http-port", type=int, default=7478)
    ap.add_argument("--boxes", type=int, default=200)
    ap.add_argument("--box-um", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-baseline", action="store_true", help="skip the pandas diff baseline")
    ap.add_argument("--ci", action="store_true", help="a CI-sized pair of releases")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "space_diff"))
    args = ap.parse_args()
    versions = [int(v) for v in args.versions.split(",")]
    os.environ.update(CGRAPH_NEO4J_HOME=str(args.neo4j_home),
                      CGRAPH_NEO4J_BOLT_PORT=str(args.bolt_port),
                      CGRAPH_NEO4J_HTTP_PORT=str(args.http_port),
                      NEO4J_URI=f"bolt://127.0.0.1:{args.bolt_port}",
                      CGRAPH_DATA=str(args.data))  # fmt: skip
    os.environ.pop("NEO4J_PASSWORD", None)
    if args.ci:
        from loaders.synth import generate

        args.inputs = args.data.parent / "inputs"
        if not args.inputs.exists():
            generate(args.inputs, cells=2000, synapses=1_000_000, versions=versions, seed=1)
    if args.inputs is None:
        ap.error("give --inputs (cgraph synth output) or --ci")
    snapshots = _ensure_snapshots(args.inputs, versions)
    # the diff first: its pandas baseline holds both edge tables (~15 GB at v117), before the
    # bench Neo4j takes its page cache
    diff_res = bench_diff(versions[0], versions[1], args.repeats, not args.no_baseline)
    print(json.dumps(diff_res), flush=True)
    rebuild = _ensure_store(versions)
    boxes = bench_boxes(versions[0], args.boxes, args.box_um, args.seed)
    print(json.dumps(boxes), flush=True)
    res = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} CPUs, "
           f"{platform.machine()}", "inputs": str(args.inputs), "snapshot_s": snapshots,
           "rebuild_s": rebuild, "box": boxes, "diff": diff_res}  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps(res, indent=2) + "\n")
    met = {True: "met", False: "**missed**"}
    d = diff_res
    md = (
        f"# Space and release change (releases {versions[0]}, {versions[1]}; {res['when']}, "
        f"{res['machine']})\n\n"
        f"Inputs `{args.inputs}`; {boxes['cells']:,} cells, {d['edges_from']:,} and "
        f"{d['edges_to']:,} edges.\n\n"
        "| query | ours | baseline (same run) | target |\n|---|---|---|---|\n"
        f"| cellsInBox, {boxes['boxes']} random {boxes['box_um']:g} um boxes "
        f"({boxes['cells_per_box_mean']} cells each on average), p50 | {boxes['p50_ms']} ms "
        f"(p99 {boxes['p99_ms']} ms) | numpy mask over the cells in memory "
        f"{boxes['baseline_numpy_in_memory_p50_ms']} ms; pandas reading cells.parquet + mask "
        f"{boxes['baseline_pandas_read_and_mask_p50_ms']} ms | <= {BOX_TARGET_MS:g} ms: "
        f"{met[boxes['target']['met']]} |\n"
        f"| releaseDiff totals, cold | {d['cold_s']} s (warm {d['warm_s']} s) | pandas outer "
        f"merge of both edge files {d.get('baseline_pandas_merge_s', 'not run')} s | <= "
        f"{DIFF_TARGET_S:g} s: {met[d['target']['met']]} |\n"
        f"| releaseDiff byType ({d['type_pairs']} type pairs) | {d['by_type_s']} s | | |\n"
        f"| releaseDiff first page of added edges | {d['first_edges_page_s']} s | | |\n"
        f"| edgeStability summary (2 releases) | {d['stability_summary_s']} s | | |\n\n"
        f"Answers agree: boxes {boxes['answers_agree']}, diff totals "
        f"{d.get('answers_agree', 'not compared')}. Totals: {d['totals']}.\n"
    )
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
