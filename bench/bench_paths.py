"""Shortest-path bench: `shortestPaths` (graph.queries.shortest_paths, allShortestPaths in Neo4j)
between random neuron pairs of a release, against scipy's breadth-first search on the same edges
(networkx cannot hold a v117-sized graph in 24 GiB), in one run; path lengths compared.

    .venv/bin/python bench/bench_paths.py --neo4j-home /tmp/cgraph-bench-neo4j-full \
        --bolt-port 7690 --http-port 7477 --data /tmp/cgraph-bench-load-full/data --version 117

The Neo4j is a bench server holding the release (bench/bench_load.py's); it is started if it is
not running. Writes bench/results/paths.{json,md}. Target (issue 13): p50 <= 200 ms at max
length 4, min synapses 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 200.0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--neo4j-home", type=Path, required=True)
    ap.add_argument("--bolt-port", type=int, default=7690)
    ap.add_argument("--http-port", type=int, default=7477)
    ap.add_argument("--data", type=Path, required=True, help="CGRAPH_DATA with the snapshot")
    ap.add_argument("--version", type=int, default=117)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--baseline-pairs", type=int, default=50)
    ap.add_argument("--max-length", type=int, default=4)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--max-timeouts", type=int, default=3, help="stop after this many TIMEOUTs")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "paths"))
    args = ap.parse_args()
    os.environ.update(CGRAPH_NEO4J_HOME=str(args.neo4j_home),
                      CGRAPH_NEO4J_BOLT_PORT=str(args.bolt_port),
                      CGRAPH_NEO4J_HTTP_PORT=str(args.http_port),
                      NEO4J_URI=f"bolt://127.0.0.1:{args.bolt_port}",
                      CGRAPH_DATA=str(args.data))  # fmt: skip
    os.environ.pop("NEO4J_PASSWORD", None)
    import pyarrow.parquet as pq
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    from core.errors import QueryTimeout
    from graph import queries, server
    from graph.driver import Database
    from graph.settings import ConnectionSettings, ServerSettings
    from snapshot.layout import open_snapshot

    srv = ServerSettings.from_env()
    server.start(srv, ConnectionSettings.from_env())
    snap = open_snapshot(args.version)
    cells = pq.read_table(snap.file("cells.parquet"), columns=["nucleus_id", "is_neuron"])
    neurons = [int(n) for n, ok in zip(cells["nucleus_id"].to_pylist(),
                                       cells["is_neuron"].to_pylist(), strict=True) if ok]  # fmt: skip
    rng = random.Random(args.seed)
    pairs = [tuple(rng.sample(neurons, 2)) for _ in range(args.pairs)]
    lat, found, lengths, timeouts = [], 0, {}, 0
    with Database() as db:
        db.verify()
        for a, b in pairs:
            t = time.perf_counter()
            try:
                paths = db.call(queries.shortest_paths, args.version, a, b,
                                max_length=args.max_length, first=10)  # fmt: skip
            except QueryTimeout:
                timeouts += 1
                if timeouts >= args.max_timeouts:  # bounded: the answer is already known
                    break
                continue
            lat.append((time.perf_counter() - t) * 1000)
            found += bool(paths)
            lengths[(a, b)] = len(paths[0].synapses) if paths else None
    if timeouts >= args.max_timeouts:
        res: dict[str, Any] = {"version": args.version, "pairs_tried": len(lat) + timeouts, "answered": len(lat),
               "timeouts": timeouts, "timeout_s": float(os.environ.get("CGRAPH_QUERY_TIMEOUT", 30)),
               "max_length": args.max_length, "target": {"p50_ms": TARGET_MS, "met": False},
               "when": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
        Path(args.out + ".json").write_text(json.dumps(res, indent=2) + "\n")
        md = (f"# Shortest paths (release {args.version}, {res['when']})\n\n"
              f"Random neuron pairs, max length {args.max_length}, min synapses 1: "
              f"{timeouts} of {res['pairs_tried']} answered TIMEOUT ({res['timeout_s']:g} s), "
              f"{len(lat)} answered; stopped there. Target p50 <= {TARGET_MS:g} ms: "
              "**missed**. No baseline run.\n")  # fmt: skip
        Path(args.out + ".md").write_text(md)
        print(md)
        return
    # baseline: scipy BFS from the source on a CSR of the same edges (load time apart)
    t = time.perf_counter()
    ids = np.asarray(cells["nucleus_id"].to_numpy())
    order = np.argsort(ids)
    pf = pq.ParquetFile(snap.file("edges.parquet"))
    pre_i: list[np.ndarray] = []
    post_i: list[np.ndarray] = []
    for batch in pf.iter_batches(batch_size=1 << 22, columns=["pre", "post"]):
        for col, out in ((batch.column(0), pre_i), (batch.column(1), post_i)):
            out.append(order[np.searchsorted(ids, col.to_numpy(), sorter=order)].astype(np.int32))
    pre, post = np.concatenate(pre_i), np.concatenate(post_i)
    g = csr_matrix((np.ones(len(pre), dtype=np.int8), (pre, post)), shape=(len(ids), len(ids)))
    del pre, post, pre_i, post_i
    load_s = time.perf_counter() - t
    index = {int(n): i for i, n in enumerate(ids)}
    base_lat, agree = [], 0
    for a, b in pairs[: args.baseline_pairs]:
        t = time.perf_counter()
        d = shortest_path(g, unweighted=True, indices=index[a], directed=True)[index[b]]
        base_lat.append((time.perf_counter() - t) * 1000)
        want = None if not np.isfinite(d) or d > args.max_length else int(d)
        agree += want == lengths[(a, b)]
    p50 = statistics.median(lat)
    res = {
        "version": args.version, "pairs": len(pairs), "found": found,
        "max_length": args.max_length, "p50_ms": round(p50, 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) >= 200 else None,
        "baseline": "scipy.sparse.csgraph.shortest_path (BFS from the source), same edges",
        "baseline_pairs": len(base_lat), "baseline_load_s": round(load_s, 1),
        "baseline_p50_ms": round(statistics.median(base_lat), 1),
        "lengths_agree": f"{agree}/{len(base_lat)}",
        "target": {"p50_ms": TARGET_MS, "met": p50 <= TARGET_MS},
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps(res, indent=2) + "\n")
    met = "met" if res["target"]["met"] else "**missed**"
    md = (
        f"# Shortest paths (release {args.version}, {res['when']})\n\n"
        f"{len(pairs)} random neuron pairs, max length {args.max_length}, min synapses 1: "
        f"shortestPaths p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms; a path found for "
        f"{found}. Baseline in the same run, {res['baseline']}: p50 "
        f"{res['baseline_p50_ms']} ms per pair over {len(base_lat)} pairs after "
        f"{res['baseline_load_s']} s building the graph; path lengths agree on "
        f"{res['lengths_agree']}. Target p50 <= {TARGET_MS:g} ms: {met}.\n"
    )
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
