"""Partner-query latency: GraphQL over HTTP vs the Neo4j driver vs pandas, in one run.

    .venv/bin/python bench/bench_api.py --small     # 200k synapses, a minute or two
    .venv/bin/python bench/bench_api.py             # 10M synapses (generate + load once: minutes)

1. Data: a synthetic release (loaders.synth) generated into --data-dir and loaded under its own
   version (9498 small, 9499 full); both steps are skipped when already done.
2. Cells: "typical" = random cells with out-degree between the 25th and 75th percentile,
   "top1%" = cells with out-degree at or above the 99th percentile (degrees from the parquet).
3. Latency per cell class, all in one run (p50/p99 over --repeats passes of the samples: 50 cells
   x 4 passes = 200 timings per path by default; a p99 of fewer than 200 timings is not reported):
   - graphql: POST /graphql to a real uvicorn (subprocess, loopback, keep-alive): the cell's
     outputs (first 1000) with partner nucleus ID, root ID, synapses and size;
   - driver: the plain Cypher of that question through the Neo4j Python driver (auto-commit
     read session, rows as value lists: the fastest plain use);
   - pandas_query: filter a synapse table already in memory by root, map roots to nuclei, group;
   - pandas_file: the same plus reading the synapse parquet (what a script does per question).
4. Targets, marked met or missed: GraphQL p50 <= 2x the driver's, >= 100x pandas reading the file.
Many clients at once: bench/bench_concurrency.py (its load generator is lighter than the server).

Writes bench/results/bench_api[_small].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import neo4j
import numpy as np
import pandas as pd

MIN_N = 200  # timings behind any reported p99
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.model import prop, rel_type  # noqa: E402
from graph.driver import Database  # noqa: E402
from graph.releases import COMPLETE, get_release  # noqa: E402
from graph.settings import ConnectionSettings  # noqa: E402

SIZES = {
    "small": {"version": 9498, "cells": 2_000, "synapses": 200_000},
    "full": {"version": 9499, "cells": 20_000, "synapses": 10_000_000},
}
QUERY = """query($n: Int!, $v: Int!) { cell(nucleusId: $n) {
  outputs(version: $v, first: 1000) { totalCount
    nodes { nucleusId rootId synapses size } } } }"""


def prepare(db: Database, data_dir: Path, spec: dict[str, int], seed: int) -> Path:
    """Generate and load the release unless already there; return the synapse parquet path."""
    v = spec["version"]
    out = data_dir / f"v{v}_{spec['synapses']}"
    files = {k: out / f"{k}_v{v}.parquet" for k in ("nuclei", "synapses", "cell_types", "neurons")}
    if not all(p.exists() for p in files.values()):
        from loaders.synth import generate

        print(f"generating {spec['synapses']:,} synapses into {out}", flush=True)
        generate(out, cells=spec["cells"], synapses=spec["synapses"], versions=[v], seed=seed)
    info = db.call(get_release, v)
    if info is None or info.status != COMPLETE:
        from cgraph.load import load_release

        print(f"loading release {v}", flush=True)
        load_release(db, v, **{k: str(p) for k, p in files.items()}, replace=True, progress=True)  # type: ignore[arg-type]
    return files["synapses"]


def owners(nuclei_path: Path) -> pd.Series:
    """root -> nucleus for roots held by exactly one nucleus (not 0): the attribution rule."""
    nuclei = pd.read_parquet(nuclei_path, columns=["id", "pt_root_id"])
    counts = nuclei["pt_root_id"].value_counts()
    ok = nuclei[(nuclei["pt_root_id"] != 0) & nuclei["pt_root_id"].map(counts).eq(1)]
    return ok.set_index("pt_root_id")["id"]


def pick_cells(syn: pd.DataFrame, owner: pd.Series, n: int, seed: int) -> dict[str, list[int]]:
    pre = syn["pre_pt_root_id"].map(owner)
    post = syn["post_pt_root_id"].map(owner)
    pairs = pd.DataFrame({"pre": pre, "post": post}).dropna()
    pairs = pairs[pairs["pre"] != pairs["post"]].drop_duplicates()
    degree = pairs["pre"].value_counts()
    rng = random.Random(seed)
    lo, hi, top = degree.quantile([0.25, 0.75, 0.99])
    typical = [int(c) for c in degree[(degree >= lo) & (degree <= hi)].index]
    busiest = [int(c) for c in degree[degree >= top].index]
    return {
        "typical": rng.sample(typical, min(n, len(typical))),
        "top1%": rng.sample(busiest, min(n, len(busiest))),
        "degree": {
            "p25": float(lo),
            "p50": float(degree.median()),
            "p75": float(hi),  # type: ignore[dict-item]
            "p99": float(top),
            "max": int(degree.max()),
        },  # fmt: skip
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summary(lat: list[float]) -> dict[str, Any]:
    """p50 always; p99 only from at least MIN_N timings (None otherwise, shown as "-")."""
    p99 = round(pct(lat, 99), 2) if len(lat) >= MIN_N else None
    return {"p50": round(pct(lat, 50), 2), "p99": p99, "n": len(lat)}


def timed(
    fn: Callable[[int], Any], cells: list[int], repeats: int, *, warm: bool = True
) -> list[float]:
    if warm:
        for c in set(cells):  # warm caches once
            fn(c)
    out = []
    for _ in range(repeats):
        for c in cells:
            t = time.perf_counter()
            fn(c)
            out.append((time.perf_counter() - t) * 1000)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, workers: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host",
           "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level",
           "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the API server did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--small", action="store_true", help="200k synapses instead of 10M")
    ap.add_argument("--synapses", type=int, help="override the synapse count (new version dir)")
    ap.add_argument("--data-dir", type=Path, default=REPO / "bench" / "results" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--samples", type=int, default=50, help="cells per class")
    ap.add_argument("--repeats", type=int, default=4, help="timed passes over the samples")
    ap.add_argument("--pandas-file-samples", type=int, default=MIN_N,
                    help="timed file reads per class (the cells, cycled)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    kind = "small" if args.small else "full"
    spec = dict(SIZES[kind])
    if args.synapses:
        spec["synapses"] = args.synapses
    v = spec["version"]
    conn = ConnectionSettings.from_env()
    db = Database(conn)
    syn_path = prepare(db, args.data_dir, spec, args.seed)
    nuclei_path = syn_path.with_name(f"nuclei_v{v}.parquet")

    t = time.perf_counter()
    syn = pd.read_parquet(syn_path)
    read_ms = (time.perf_counter() - t) * 1000
    owner = owners(nuclei_path)
    picked = pick_cells(syn, owner, args.samples, args.seed)
    root_of = {int(n): int(r) for r, n in owner.items()}  # type: ignore[call-overload]

    def pandas_query(nucleus_id: int, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        s = syn if frame is None else frame
        rows = s[s["pre_pt_root_id"].to_numpy() == root_of[nucleus_id]]
        rows = rows[rows["post_pt_root_id"] != rows["pre_pt_root_id"]]
        partner = rows["post_pt_root_id"].map(owner)
        return (
            rows.assign(partner=partner)
            .dropna(subset=["partner"])
            .groupby("partner")
            .agg(synapses=("id", "size"), size=("size", "sum"))
        )

    def pandas_file(nucleus_id: int) -> pd.DataFrame:
        frame = pd.read_parquet(
            syn_path, columns=["id", "pre_pt_root_id", "post_pt_root_id", "size"]
        )
        return pandas_query(nucleus_id, frame)

    cypher = (
        f"MATCH (c:Cell {{nucleus_id: $n}})-[e:{rel_type(v)}]->(p:Cell) "
        f"RETURN p.nucleus_id AS nucleus_id, p.{prop('root_id', v)} AS root_id, "
        "e.synapses AS synapses, e.size AS size ORDER BY synapses DESC, nucleus_id LIMIT 1000"
    )

    plain = neo4j.GraphDatabase.driver(conn.uri, auth=(conn.user, conn.password))

    def driver(nucleus_id: int) -> list[Any]:
        # the fastest plain use of the driver: one auto-commit read, rows as value lists
        with plain.session(database=conn.database, default_access_mode=neo4j.READ_ACCESS) as s:
            return s.run(cypher, {"n": nucleus_id}).values()

    port = free_port()
    server = start_server(port, args.workers)
    url = f"http://127.0.0.1:{port}/graphql"
    http = httpx.Client(timeout=60)

    def graphql(nucleus_id: int) -> dict[str, Any]:
        r = http.post(url, json={"query": QUERY, "variables": {"n": nucleus_id, "v": v}})
        body: dict[str, Any] = r.json()
        assert r.status_code == 200 and "errors" not in body, body
        return body

    # the three answers agree before anything is timed
    for c in picked["typical"][:3] + picked["top1%"][:2]:
        want = pandas_query(c)
        got = graphql(c)["data"]["cell"]["outputs"]
        assert got["totalCount"] == len(want), (c, got["totalCount"], len(want))
        assert len(driver(c)) == min(1000, len(want))

    results: dict[str, Any] = {
        "release": {"version": v, **{k: spec[k] for k in ("cells", "synapses")}},
        "edges": (db.call(get_release, v).counts.get("edges") if db.call(get_release, v) else None),  # type: ignore[union-attr]
        "degree": picked["degree"],
        "pandas_read_parquet_ms": round(read_ms, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "neo4j": db.verify(),
            "uvicorn_workers": args.workers,
        },  # fmt: skip
        "latency_ms": {},
    }
    try:
        for cls in ("typical", "top1%"):
            cells = picked[cls]
            row: dict[str, Any] = {}
            file_cells = [cells[i % len(cells)] for i in range(args.pandas_file_samples)]
            for name, fn, chosen, reps in (
                ("graphql", graphql, cells, args.repeats),
                ("driver", driver, cells, args.repeats),
                ("pandas_query", pandas_query, cells, args.repeats),
                ("pandas_file", pandas_file, file_cells, 1),
            ):
                lat = timed(fn, chosen, reps, warm=name != "pandas_file")
                row[name] = summary(lat)
                print(cls, name, row[name], flush=True)
            g = row["graphql"]["p50"]
            row["speedup_vs_pandas_query"] = round(row["pandas_query"]["p50"] / g, 1)
            row["speedup_vs_pandas_file"] = round(row["pandas_file"]["p50"] / g, 1)
            row["graphql_over_driver"] = round(g / row["driver"]["p50"], 2)
            results["latency_ms"][cls] = row
        results["targets"] = {
            f"{cls} {name}": {"value": row[key], "target": target, "met": ok(row[key])}
            for cls, row in results["latency_ms"].items()
            for name, key, target, ok in (
                ("GraphQL p50 / driver p50 <= 2", "graphql_over_driver", 2.0,
                 lambda x: x <= 2.0),
                ("pandas reading the file / GraphQL (p50) >= 100", "speedup_vs_pandas_file",
                 100.0, lambda x: x >= 100.0),
            )
        }  # fmt: skip
    finally:
        http.close()
        server.terminate()
        server.wait(timeout=30)
        db.close()

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_api" + ("_small" if args.small else "")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(results, " ".join(sys.argv[1:])))
    print((args.out / f"{stem}.md").read_text())


def markdown(r: dict[str, Any], argv: str) -> str:
    rel = r["release"]
    lines = [
        f"# API benchmark: release {rel['version']} ({rel['synapses']:,} synapses, {rel['cells']:,} cells, "
        f"{r['edges']:,} edges)",
        "",
        f"Command: `python bench/bench_api.py {argv}`. Machine: {r['machine']}.",
        f"Out-degree (partners): {r['degree']}. Reading the synapse parquet: {r['pandas_read_parquet_ms']} ms.",
        "",
        "| cells | path | p50 ms | p99 ms | n |",
        "|---|---|---:|---:|---:|",
    ]
    for cls, row in r["latency_ms"].items():
        for name in ("graphql", "driver", "pandas_query", "pandas_file"):
            x = row[name]
            p99 = "-" if x["p99"] is None else x["p99"]
            lines.append(f"| {cls} | {name} | {x['p50']} | {p99} | {x['n']} |")
    lines += ["", "| cells | GraphQL / driver (p50) | pandas (in memory) / GraphQL | pandas (read file) / GraphQL |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for cls, row in r["latency_ms"].items():
        lines.append(f"| {cls} | {row['graphql_over_driver']} | {row['speedup_vs_pandas_query']} | "
                     f"{row['speedup_vs_pandas_file']} |")  # fmt: skip
    lines += ["", "| target | value | met |", "|---|---:|---|"]
    for name, t in r["targets"].items():
        lines.append(f"| {name} | {t['value']} | {'yes' if t['met'] else '**missed**'} |")
    lines += ["", f"p99 only from >= {MIN_N} timings. Many clients at once: concurrency.md."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
