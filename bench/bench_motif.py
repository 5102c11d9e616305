"""Motif and census benchmark: ours (analysis.census, graph.motif, analysis.nullmodel) against
networkx.triadic_census and DotMotif's GrandIsoExecutor, on one >= 1M-edge synthetic release
(and on a smaller one where the references finish). Writes bench/results/bench_motif.{json,md}.

    .venv/bin/python bench/bench_motif.py                 # full run (references time-boxed)
    .venv/bin/python bench/bench_motif.py --quick         # small graphs only (a smoke run)

Graphs come from `loaders.synth.generate` (MICrONS-like: distance-dependent, reciprocity,
heavy tails) reduced with the loader's attribution rules in pandas (one nucleus per root,
no root 0, no autapses, (pre, post) merged). Each reference runs in a child process that is
stopped at its time box; a stopped run is reported as "> box" and the speed-up as a lower
bound. Timings are wall-clock seconds on this machine (`nproc` CPUs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.census import ReleaseGraph, triad_census  # noqa: E402
from analysis.motif import count_motif, parse_motif  # noqa: E402
from analysis.nullmodel import degree_preserving_null  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MOTIFS = {
    "reciprocal pair": "A -> B; B -> A",
    "feed-forward loop": "A -> B; B -> C; A -> C",
    "3-cycle": "A -> B; B -> C; C -> A",
    "constrained 4-node": (
        'A -> B [synapses >= 2]; B -> C; C -> D; A -> D\nA.cell_type = "23P"\nD.cell_type != "BC"'
    ),
    # DotMotif constructs beyond plain edges: a macro with a named-edge constraint, and a
    # constraint between two edges (weight = synapses)
    "macro strong path": (
        "strong(a, b) {\n  a -> b as e\n  e.weight >= 2\n}\nstrong(A, B)\nstrong(B, C)\nA -> C"
    ),
    "inter-edge feed-forward": "A -> B as ab\nB -> C\nA -> C as ac\nab.weight > ac.weight",
}
GRAPHS = {"large": (40_000, 4_000_000, 7), "small": (4_000, 150_000, 7)}
QUICK = {"large": (3_000, 60_000, 7), "small": (1_000, 12_000, 7)}


def build(cells: int, synapses: int, seed: int, version: int) -> ReleaseGraph:
    from loaders.synth import generate

    folder = RESULTS / "data" / f"v{version}_{cells}c_{synapses}s_seed{seed}"
    if not (folder / f"synapses_v{version}.parquet").exists():
        generate(folder, cells=cells, synapses=synapses, versions=[version], seed=seed)
    nuc = pd.read_parquet(folder / f"nuclei_v{version}.parquet", columns=["id", "pt_root_id"])
    syn = pd.read_parquet(folder / f"synapses_v{version}.parquet",
                          columns=["pre_pt_root_id", "post_pt_root_id"])  # fmt: skip
    types = pd.read_parquet(folder / f"cell_types_v{version}.parquet").set_index("target_id")
    per_root = nuc[nuc.pt_root_id != 0].groupby("pt_root_id").id.agg(["count", "first"])
    owner = per_root[per_root["count"] == 1]["first"]
    pre, post = syn.pre_pt_root_id.map(owner), syn.post_pt_root_id.map(owner)
    ok = pre.notna() & post.notna() & (syn.pre_pt_root_id != syn.post_pt_root_id)
    e = pd.DataFrame({"pre": pre[ok].astype("int64"), "post": post[ok].astype("int64")})
    e = e.groupby(["pre", "post"]).size().rename("synapses").reset_index()
    ids = np.sort(nuc.id.to_numpy())
    cell_type = [types.cell_type.get(int(i)) for i in ids]
    return ReleaseGraph.from_ids(ids, e.pre, e.post, synapses=e.synapses, cell_type=cell_type)


def to_nx(g: ReleaseGraph) -> Any:
    import networkx as nx

    G = nx.DiGraph()
    ct = g.cell_type if g.cell_type is not None else [None] * g.n
    G.add_nodes_from((int(v), {"cell_type": t}) for v, t in zip(g.nodes, ct, strict=True))
    G.add_edges_from(
        (int(a), int(b), {"synapses": int(s), "weight": int(s)})
        for a, b, s in zip(g.nodes[g.src], g.nodes[g.dst], g.synapses, strict=True)
    )
    return G


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _child(conn: Any, fn: Callable[[], Any]) -> None:
    conn.send(timed(fn))


def boxed(fn: Callable[[], Any], box: float) -> tuple[float | None, Any]:
    """(seconds, result) of fn() in a forked child, or (None, None) when it outlasts box."""
    parent, child = mp.Pipe(duplex=False)
    proc = mp.get_context("fork").Process(target=_child, args=(child, fn))
    proc.start()
    ready = parent.poll(box)
    if not ready:
        proc.kill()  # our own child, by its handle
        proc.join()
        return None, None
    out = parent.recv()
    proc.join()
    return out  # type: ignore[no-any-return]


def ratio(ref: float | None, ours: float, box: float) -> str:
    return f">= {box / ours:,.0f}x" if ref is None else f"{ref / ours:,.0f}x"


def _grandiso_count(G: Any, text: str) -> int:
    from dotmotif import GrandIsoExecutor
    from dotmotif import Motif as DotMotif

    return len(GrandIsoExecutor(graph=G).find(DotMotif(text)))


#: results a ReleaseGraph keeps (analysis.census, analysis.motif.count)
KEPT = ("census", "census_work", "reciprocal_pairs")


def bench_graph(name: str, g: ReleaseGraph, box: float, rows: list[dict[str, Any]]) -> None:
    import networkx as nx

    print(f"[{name}] {g.n:,} cells, {g.m:,} edges", flush=True)
    ours_t, ours = timed(lambda: triad_census(g))
    G = to_nx(g)
    ref_t, ref = boxed(lambda: nx.triadic_census(G), box)
    assert ref is None or ref == ours, "census differs from networkx"
    rows.append({"graph": name, "cells": g.n, "edges": g.m, "task": "triad census",
                 "reference": "networkx.triadic_census", "ours_s": ours_t, "reference_s": ref_t,
                 "box_s": box, "speedup": ratio(ref_t, ours_t, box)})  # fmt: skip
    print(f"  census: ours {ours_t:.2f}s, networkx {ref_t or f'> {box:.0f}'}s", flush=True)
    for label, text in MOTIFS.items():
        motif = parse_motif(text)
        g.forget(*KEPT)  # cold: a census-backed count must not reuse the census timed above
        ours_t, n = timed(partial(count_motif, g, motif))
        ref_t, found = boxed(partial(_grandiso_count, G, text), box)
        assert found is None or found == n, f"{label}: {n} != GrandIso {found}"
        rows.append({"graph": name, "cells": g.n, "edges": g.m, "task": f"count {label}",
                     "count": n, "reference": "dotmotif GrandIsoExecutor", "ours_s": ours_t,
                     "reference_s": ref_t, "box_s": box,
                     "speedup": ratio(ref_t, ours_t, box)})  # fmt: skip
        print(
            f"  {label}: {n:,} ours {ours_t:.3f}s, GrandIso {ref_t or f'> {box:.0f}'}s", flush=True
        )


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    out = [f"# bench_motif ({meta['date']}, {meta['cpus']} CPUs, {meta['machine']})", "",
           f"Command: `{meta['command']}`", "",
           "| graph | cells | edges | task | ours (s) | reference | reference (s) | speed-up |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ref = "-" if r.get("reference") is None else r["reference"]
        if r.get("reference_s") is None:
            ref_s = f"> {r['box_s']:.0f} (stopped)" if r.get("box_s") else "-"
        else:
            ref_s = f"{r['reference_s']:.2f}"
        out.append(f"| {r['graph']} | {r['cells']:,} | {r['edges']:,} | {r['task']} | "
                   f"{r['ours_s']:.3f} | {ref} | {ref_s} | {r.get('speedup', '-')} |")  # fmt: skip
    return "\n".join(out) + "\n"


def placement(cells: int, synapses: int, seed: int, version: int) -> list[dict[str, Any]]:
    """Where should work run? The same counts in Neo4j (compiled Cypher, count mode) and in
    memory (after one read of the release into a ReleaseGraph), plus one anchored page."""
    from analysis.motif import find_motif
    from cgraph.load import load_release
    from graph import releases
    from graph.driver import Database
    from graph.motif.search import count_motif_cypher, search_motif
    from graph.whole_release import clear_cache, get_release_graph

    folder = RESULTS / "data" / f"v{version - 5}_{cells}c_{synapses}s_seed{seed}"
    build(cells, synapses, seed, version - 5)  # makes the files if needed
    f = {t: folder / f"{t}_v{version - 5}.parquet" for t in ("nuclei", "synapses", "cell_types")}
    rows: list[dict[str, Any]] = []
    with Database() as db:
        if db.call(releases.get_release, version) is not None:
            db.call(releases.drop_release, version)
        nuclei, syn = pd.read_parquet(f["nuclei"]), pd.read_parquet(f["synapses"])
        ct = pd.read_parquet(f["cell_types"])
        t_load, _ = timed(
            lambda: load_release(db, version, nuclei=nuclei, synapses=syn, cell_types=ct)
        )
        try:
            clear_cache()
            t_read, g = timed(lambda: db.call(get_release_graph, version))
            base = {"graph": f"neo4j v{version}", "cells": g.n, "edges": g.m}
            rows.append({**base, "task": "read release into memory (cold, once)", "ours_s": t_read,
                         "reference": f"(load took {t_load:.0f} s)", "reference_s": None, "box_s": None})  # fmt: skip
            for label, text in MOTIFS.items():
                motif = parse_motif(text)
                g.forget(*KEPT)
                ours_t, n = timed(partial(count_motif, g, motif))
                ref_t, ref = timed(partial(db.call, count_motif_cypher, version, motif))
                assert ref == n, f"{label}: Cypher {ref} != {n}"
                rows.append({**base, "task": f"count {label}", "count": n, "ours_s": ours_t,
                             "reference": "Neo4j Cypher count", "reference_s": ref_t, "box_s": None,
                             "speedup": f"{ref_t / ours_t:,.0f}x"})  # fmt: skip
            anchor = int(g.nodes[int(np.argmax(np.bincount(g.src, minlength=g.n)))])
            motif = parse_motif(f"A -> B; B -> C; A -> C\nA.nucleus_id = {anchor}")
            ours_t, page = timed(partial(find_motif, g, motif, limit=100))
            ref_t, cy = timed(partial(db.call, search_motif, version, motif, limit=100))
            assert cy == page
            rows.append({**base, "task": "first page (100) of an anchored FFL", "ours_s": ours_t,
                         "reference": "Neo4j Cypher search", "reference_s": ref_t, "box_s": None,
                         "speedup": f"{ref_t / ours_t:,.1f}x"})  # fmt: skip
        finally:
            db.call(releases.drop_release, version)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small graphs only (smoke run)")
    ap.add_argument("--box", type=float, default=600.0, help="seconds per reference run")
    ap.add_argument("--samples", type=int, default=100, help="null-model samples")
    ap.add_argument("--workers", type=int, default=2, help="null-model processes")
    ap.add_argument(
        "--placement",
        action="store_true",
        help="only: Neo4j Cypher vs in-memory on the small graph (loads release 9596)",
    )
    args = ap.parse_args()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "command": "python bench/bench_motif.py " + " ".join(sys.argv[1:])}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.placement:
        placed = placement(*GRAPHS["small"], version=9596)
        (RESULTS / "bench_motif_placement.json").write_text(
            json.dumps({"meta": meta, "rows": placed}, indent=1)
        )
        (RESULTS / "bench_motif_placement.md").write_text(markdown(meta, placed))
        print(markdown(meta, placed))
        return
    sizes = QUICK if args.quick else GRAPHS
    rows: list[dict[str, Any]] = []
    graphs = {
        name: build(c, s, seed, 9590 + i) for i, (name, (c, s, seed)) in enumerate(sizes.items())
    }
    large = graphs["large"]
    # ours first, on a quiet machine: the null model (the 2-core target)
    t, null = timed(
        lambda: degree_preserving_null(large, args.samples, seed=1, workers=args.workers)
    )
    rows.append({"graph": "large", "cells": large.n, "edges": large.m,
                 "task": f"degree-preserving null, {args.samples} samples, {args.workers} workers",
                 "ours_s": t, "reference": None, "reference_s": None, "box_s": None,
                 "speedup": "target < 60 s"})  # fmt: skip
    print(f"null model: {t:.1f}s for {args.samples} samples on {large.m:,} edges", flush=True)
    for name, g in graphs.items():
        bench_graph(name, g, args.box, rows)
    stem = "bench_motif_quick" if args.quick else "bench_motif"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / f"{stem}.md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))


if __name__ == "__main__":
    main()
