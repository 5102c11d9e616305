"""Scale benchmark: a release from files to served, by stage, with peak memory, against
baselines doing the same work in the same run.

    .venv/bin/python bench/bench_load.py                     # CI size (2,000 cells, 1M synapses)
    .venv/bin/python bench/bench_load.py --full --data-dir /tmp/v117   # the MICrONS v117 shape

Stages (each in its own process, so its peak RSS is its own; RSS of children such as the
neo4j-admin JVM is reported apart):
  * snapshot: `cgraph load`'s read + validate + aggregate + snapshot (loaders, snapshot/), then
    the synapse store, timed apart (a load writes it after the release is served)
  * duckdb: baseline: DuckDB doing the same attribution and grouping into the same two files
  * bulk: the snapshot into a fresh store of a bench Neo4j (graph.bulk: CSV, import, start,
    indexes, count check)
  * admin: baseline: a plain script feeding neo4j-admin (CSV from the snapshot, import into a
    scratch database folder; no release nodes, no indexes, no checks)
  * online: the online writer on the first --online-edges edges of the same snapshot
  * serve: partner queries through GraphQL (both directions, >= 200 cells, cold after a server
    restart and warm) and whole-release analytics (motifCount reciprocal pair cold and warm,
    motifCensus without null model)
  * e2e: the product end to end: `cgraph load` into the project's own empty local server (a
    second bench home, ports 7691/7478), timed to its "served" line and to its exit; when it
    ran, files_to_served is its served time (else snapshot - store + bulk). It stops the bench
    server and removes its store first (disk and memory for a second load): it runs last
The bench Neo4j lives in --neo4j-home (default /tmp/cgraph-bench-neo4j-{ci,full}, ports
7690/7477), never the project's own server. Results: bench/results/load[_full].json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
RESULTS = HERE / "results"
VERSION = 117
CI_SIZE = {"cells": 2_000, "synapses": 1_000_000}
FULL_SIZE = {"cells": 144_120, "synapses": 337_312_429}
TARGETS = {
    "files_to_served_s": 360.0,
    "loader_peak_gib": 6.0,
    "bulk_edges_per_s": 500_000.0,
    "online_edges_per_s": 60_000.0,
    "partner_p50_warm_ms": 15.0,
    "partner_p99_warm_ms": 150.0,
    "reciprocal_cold_s": 20.0,
    "reciprocal_warm_s": 2.0,
}


# --------------------------------------------------------------------------- environment


def bench_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGRAPH_NEO4J_HOME=str(args.neo4j_home),
        CGRAPH_NEO4J_BOLT_PORT=str(args.bolt_port),
        CGRAPH_NEO4J_HTTP_PORT=str(args.http_port),
        NEO4J_URI=f"bolt://127.0.0.1:{args.bolt_port}",
        CGRAPH_DATA=str(args.work / "data"),
        CGRAPH_QUERY_TIMEOUT=str(args.timeout),
    )
    return env


def prepare_home(args: argparse.Namespace) -> None:
    """A bench Neo4j home that shares the project server's jars (CGRAPH_NEO4J_HOME of the
    caller, default .neo4j) when they are there; otherwise the bench home fetches its own."""
    from graph.settings import ServerSettings

    lib = args.neo4j_home / "lib"
    shared = ServerSettings.from_env().home / "lib"
    if lib.is_symlink() and not lib.exists():
        lib.unlink()  # a link to jars that are gone
    if not lib.exists() and shared.is_dir():
        args.neo4j_home.mkdir(parents=True, exist_ok=True)
        lib.symlink_to(shared.resolve())


def dataset(args: argparse.Namespace) -> Path:
    files = args.data_dir / f"synapses_v{VERSION}.parquet"
    if not files.exists():
        from loaders.synth import generate

        size = FULL_SIZE if args.full else CI_SIZE
        generate(args.data_dir, cells=size["cells"], synapses=size["synapses"],
                 versions=[VERSION], seed=VERSION, progress=True)  # fmt: skip
    return args.data_dir


# --------------------------------------------------------------------------- stages


def stage_snapshot(args: argparse.Namespace) -> dict[str, Any]:
    """Read + aggregate + the snapshot (cells, edges, manifest), then the synapse store (a
    second read of the inputs), which a load writes after the release is served
    (cgraph.load.load_release)."""
    from cgraph.load import aggregate_to_snapshot
    from snapshot.layout import store_meta

    d = args.data_dir
    seconds: dict[str, float] = {}
    snap, _ = aggregate_to_snapshot(
        VERSION, nuclei=d / f"nuclei_v{VERSION}.parquet", synapses=d / f"synapses_v{VERSION}.parquet",
        neurons=d / f"neurons_v{VERSION}.parquet", cell_types=d / f"cell_types_v{VERSION}.parquet",
        progress=False, seconds=seconds,
    )  # fmt: skip
    store_s = seconds["snapshot_store"]
    store_bytes = snap.file("synapses.parquet").stat().st_size
    st = store_meta(snap)
    store = {"rows": st["rows"], "bytes": store_bytes, "bytes_per_row": store_bytes / st["rows"],
             "seconds": store_s, "rows_per_s": st["rows"] / store_s if store_s else None,
             "row_groups": st["row_groups"], "position_type": st["position_type"],
             "after_serving": True, "second_read": True}  # fmt: skip
    return {"seconds": seconds, "counts": snap.counts, "path": str(snap.path), "store": store}


def stage_e2e(args: argparse.Namespace) -> dict[str, Any]:
    """The product end to end: `cgraph load` of the release into the project's own empty local
    server (a second bench home, its own ports and data folder), timed from the command's start
    to its "served" line (the bulk writer's import, start and indexes done; the synapse store
    is written after it) and to its exit."""
    from graph import server
    from graph.settings import ServerSettings

    # room for a second load (its spill, snapshot and store: ~35 GB at the v117 shape) and
    # memory for a second server: the bench server is stopped and its store removed (run the
    # bulk stage again before a later online or serve stage)
    bench_srv = ServerSettings.from_env()
    server.stop(bench_srv)
    shutil.rmtree(bench_srv.data_dir, ignore_errors=True)
    work = args.work / "e2e"
    shutil.rmtree(work, ignore_errors=True)
    home = work / "neo4j"
    home.mkdir(parents=True)
    (home / "lib").symlink_to((args.neo4j_home / "lib").resolve())
    env = dict(os.environ, CGRAPH_NEO4J_HOME=str(home),
               CGRAPH_NEO4J_BOLT_PORT=str(args.bolt_port + 1),
               CGRAPH_NEO4J_HTTP_PORT=str(args.http_port + 1),
               NEO4J_URI=f"bolt://127.0.0.1:{args.bolt_port + 1}", CGRAPH_DATA=str(work / "data"))  # fmt: skip
    os.environ.update(env)
    srv = ServerSettings.from_env()
    cgraph = str(Path(sys.executable).with_name("cgraph"))
    # an empty store, running, started as users start it (`cgraph neo4j start` exits and the
    # server is not this process's child: the load's stop need not wait for it to be reaped)
    subprocess.run([cgraph, "neo4j", "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    d = args.data_dir
    cmd = [cgraph, "load", "--version", str(VERSION),
           "--nuclei", str(d / f"nuclei_v{VERSION}.parquet"),
           "--synapses", str(d / f"synapses_v{VERSION}.parquet"),
           "--neurons", str(d / f"neurons_v{VERSION}.parquet"),
           "--cell-types", str(d / f"cell_types_v{VERSION}.parquet"), "--progress"]  # fmt: skip
    try:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
        served = None
        lines: collections.deque[str] = collections.deque(maxlen=40)  # progress bars too
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                lines.append(line.rstrip())
            if served is None and "served after" in line:
                served = time.perf_counter() - t
        _, status, usage = os.wait4(proc.pid, 0)
        total = time.perf_counter() - t
        if status != 0 or served is None:
            raise SystemExit("cgraph load failed:\n" + "\n".join(lines))
    finally:
        server.stop(srv)
        shutil.rmtree(work, ignore_errors=True)
    timing = next((x.strip() for x in lines if x.strip().startswith("time:")), "")
    return {"served_s": served, "complete_s": total, "store_after_serving_s": total - served,
            "load_timing": timing,
            "load_peak_rss_gib": usage.ru_maxrss / (1 << 20),
            "load_cpu_s": usage.ru_utime + usage.ru_stime,
            "output": [x for x in lines if "%|" not in x]}  # fmt: skip


DUCKDB_SQL = """
CREATE TEMP TABLE roots AS
  SELECT pt_root_id AS root, min(id) AS nucleus, count(*) AS k
  FROM read_parquet('{nuclei}') WHERE pt_root_id <> 0 GROUP BY pt_root_id;
CREATE TEMP VIEW used AS
  SELECT a.nucleus AS pre, b.nucleus AS post, s.id, s.size
  FROM read_parquet('{synapses}') s
  JOIN roots a ON s.pre_pt_root_id = a.root AND a.k = 1
  JOIN roots b ON s.post_pt_root_id = b.root AND b.k = 1
  WHERE s.pre_pt_root_id <> s.post_pt_root_id;
COPY (SELECT pre, post, count(*) AS synapses, sum(size) AS size FROM used
      GROUP BY pre, post ORDER BY pre, post) TO '{out}/edges.parquet' (FORMAT parquet);
COPY (SELECT pre, post, id, size FROM used ORDER BY pre, post, id)
  TO '{out}/synapses.parquet' (FORMAT parquet);
"""


def stage_duckdb(args: argparse.Namespace) -> dict[str, Any]:
    import duckdb

    d, out = args.data_dir, args.work / "duckdb"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 2}; SET memory_limit = '4GB'; "
                f"SET temp_directory = '{out / 'tmp'}'; SET preserve_insertion_order = false")  # fmt: skip
    t = time.perf_counter()
    con.execute(DUCKDB_SQL.format(nuclei=d / f"nuclei_v{VERSION}.parquet",
                                  synapses=d / f"synapses_v{VERSION}.parquet", out=out))  # fmt: skip
    dt = time.perf_counter() - t
    edges = con.execute(f"SELECT count(*), sum(synapses) FROM '{out}/edges.parquet'").fetchone()
    assert edges is not None
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": dt, "edges": int(edges[0]), "synapses": int(edges[1])}


def _settings() -> tuple[Any, Any]:
    from graph.settings import ConnectionSettings, ServerSettings

    return ServerSettings.from_env(), ConnectionSettings.from_env()


def stage_bulk(args: argparse.Namespace) -> dict[str, Any]:
    from graph.bulk import bulk_import
    from snapshot.layout import open_snapshot

    srv, conn = _settings()
    report = bulk_import([open_snapshot(VERSION)], srv, conn, progress=False)
    return {"seconds": dict(report.seconds), "edges": report.relationships,
            "edges_per_s": report.edges_per_s, "store_bytes": report.store_bytes}  # fmt: skip


def stage_admin(args: argparse.Namespace) -> dict[str, Any]:
    """The anchor: a plain script writes neo4j-admin CSV from the snapshot and imports it."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from snapshot.layout import open_snapshot

    srv, _ = _settings()
    snap = open_snapshot(VERSION)
    work = args.work / "admin"
    shutil.rmtree(work, ignore_errors=True)
    (work / "conf").mkdir(parents=True)
    (work / "conf" / "neo4j.conf").write_text(
        f"server.directories.data={work / 'data'}\nserver.directories.logs={work / 'logs'}\n"
        f"server.directories.run={work / 'run'}\n"
    )
    t = time.perf_counter()
    cells = pq.read_table(snap.file("cells.parquet"), columns=["nucleus_id", "root_id"])
    (work / "cells.csv").write_text(
        f"nucleus_id:ID(Cell){{id-type:long}},root_id_v{VERSION}:long\n"
    )
    with (work / "cells.csv").open("ab") as fh:
        pacsv.write_csv(cells, fh, pacsv.WriteOptions(include_header=False))
    (work / "edges_h.csv").write_text(":START_ID(Cell),:END_ID(Cell),synapses:long,size:long\n")
    with pacsv.CSVWriter(str(work / "edges.csv"), pa.schema(
            [("pre", pa.int64()), ("post", pa.int64()), ("synapses", pa.int64()), ("size", pa.int64())]),
            write_options=pacsv.WriteOptions(include_header=False)) as w:  # fmt: skip
        for b in pq.ParquetFile(snap.file("edges.parquet")).iter_batches(batch_size=1 << 20):
            w.write_batch(b)
    t_csv = time.perf_counter() - t
    java = shutil.which("java") or "java"
    cmd = [java, "-Xmx2g", "--add-opens=java.base/java.nio=ALL-UNNAMED",
           "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED", "-cp", f"{srv.lib}/*",
           "org.neo4j.cli.AdminTool", "database", "import", "full", "neo4j",
           "--overwrite-destination=true", f"--threads={os.cpu_count() or 2}",
           f"--nodes=Cell={work / 'cells.csv'}",
           f"--relationships=SYNAPSE_V{VERSION}={work / 'edges_h.csv'},{work / 'edges.csv'}"]  # fmt: skip
    env = dict(os.environ, NEO4J_HOME=str(work), NEO4J_CONF=str(work / "conf"))
    t = time.perf_counter()
    subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
    t_import = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    edges = snap.counts["edges"]
    return {"seconds": {"csv": t_csv, "import": t_import}, "edges": edges,
            "edges_per_s": edges / t_import}  # fmt: skip


def stage_online(args: argparse.Namespace) -> dict[str, Any]:
    """The online writer on a snapshot holding the first --online-edges edges."""
    import pyarrow.parquet as pq

    from cgraph.load import write_snapshot
    from graph import server
    from graph.driver import Database
    from snapshot.layout import open_snapshot
    from snapshot.write import SnapshotWriter

    server.start(*_settings())  # after the bulk stage it runs; alone, it may not
    full = open_snapshot(VERSION)
    v = VERSION + 1
    with SnapshotWriter(v, has_size=full.has_size) as w:
        w.write_cells(pq.read_table(full.file("cells.parquet")))
        left = args.online_edges
        for b in pq.ParquetFile(full.file("edges.parquet")).iter_batches(batch_size=1 << 20):
            import pyarrow as pa

            part = pa.Table.from_batches([b]).slice(0, left)
            w.write_edges(part)
            left -= part.num_rows
            if left <= 0:
                break
        counts = {**full.counts, "edges": w.rows["edges.parquet"]}
        snap = w.commit(counts=counts, sources=[], timestamp=None)
    from graph import releases

    edges = snap.counts["edges"]
    out: dict[str, Any] = {"edges": edges}
    with Database() as db:
        # twice: first into a server that has just started (cold JVM and caches: the first
        # release after a restart), then again with --replace (a server that has been running)
        for label in ("first", "again"):
            steps: dict[str, float] = {}
            t = time.perf_counter()
            write_snapshot(db, snap, replace=True, seconds=steps)
            dt = time.perf_counter() - t
            out[label] = {"seconds": dt, "steps": steps, "edges_per_s": edges / steps["edges"],
                          "overall_edges_per_s": edges / dt}  # fmt: skip
        # baseline in the same run: the same edges, batches and writers with the statement the
        # online writer used before (an index seek on (dataset, nucleus_id) per end of an edge)
        t = time.perf_counter()
        db.call(_index_seek_write, snap)
        dt = time.perf_counter() - t
        out["index_seek"] = {"seconds": dt, "edges_per_s": edges / dt}
        db.run_autocommit(f"MATCH ()-[r:{BASELINE_REL}]->() CALL (r) {{ DELETE r }} "
                          "IN TRANSACTIONS OF 50000 ROWS")  # fmt: skip
        db.call(releases.drop_release, v)
    out["edges_per_s"] = out["first"]["edges_per_s"]
    out["steps"] = out["first"]["steps"]
    return out


BASELINE_REL = "BENCH_INDEX_SEEK"
INDEX_SEEK = f"""
UNWIND $groups AS g
MATCH (a:Cell {{dataset: $dataset, nucleus_id: g[0]}})
UNWIND g[1] AS e
MATCH (b:Cell {{dataset: $dataset, nucleus_id: e[0]}})
CREATE (a)-[:{BASELINE_REL} {{synapses: e[1], size: e[2]}}]->(b)
"""


async def _index_seek_write(adb: Any, snap: Any) -> None:
    import pyarrow.parquet as pq

    from graph import releases
    from snapshot.layout import snapshot_dataset

    ds = snapshot_dataset(snap)

    def groups() -> Any:
        f = pq.ParquetFile(snap.file("edges.parquet"))
        for b in f.iter_batches(batch_size=releases.EDGE_BATCH):
            yield releases.group_edges(*(b.column(c).to_pylist()
                                         for c in ("pre", "post", "synapses", "size")))  # fmt: skip

    async def write(g: Any) -> int:
        await adb.write(INDEX_SEEK, {"groups": g, "dataset": ds})
        return 0

    await releases._pipelined(groups(), write, None, writers=releases.EDGE_WRITERS)


def stage_serve(args: argparse.Namespace) -> dict[str, Any]:
    from graph import server

    srv, conn = _settings()
    server.stop(srv)  # cold: page cache empty, no graph cached in any process
    server.start(srv, conn)
    import uvloop  # the loop `cgraph serve` runs on (uvicorn's loop="auto" picks it)

    return uvloop.run(_serve(args))


PARTNERS = """query($n: Int!, $v: Int!) { cell(nucleusId: $n) {
  outputs(version: $v, first: 1000) { totalCount nodes { nucleusId synapses size } }
  inputs(version: $v, first: 1000) { totalCount nodes { nucleusId synapses size } } } }"""
RECIPROCAL = '{ motifCount(version: %d, motif: "A -> B; B -> A") }'
CENSUS = "{ motifCensus(version: %d, nullModel: NONE) { cells edges reciprocalPairs } }"
START_CENSUS = "{ startMotifCensus(version: %d, nullModel: NONE) { id state } }"
POLL = '{ analysisJob(id: "%s") { state progress census { cells edges reciprocalPairs } } }'


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    import pyarrow.parquet as pq

    from api.app import served_app
    from snapshot.layout import open_snapshot

    cells = pq.read_table(open_snapshot(VERSION).file("cells.parquet"), columns=["nucleus_id"])
    ids = cells["nucleus_id"].to_pylist()
    picked = random.Random(VERSION).sample(ids, min(args.cells, len(ids)))
    app = served_app()  # what `cgraph serve` runs in each worker
    out: dict[str, Any] = {"cells": len(picked)}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                                 timeout=600) as client:  # fmt: skip

        async def ask(query: str, variables: dict[str, Any] | None = None) -> tuple[float, Any]:
            t = time.perf_counter()
            r = await client.post("/graphql", json={"query": query, "variables": variables or {}})
            dt = time.perf_counter() - t
            body = r.json()
            if body.get("errors"):
                raise RuntimeError(body["errors"])
            return dt, body["data"]

        partners = 0
        for label in ("cold", "warm"):
            lat = []
            for n in picked:
                dt, data = await ask(PARTNERS, {"n": n, "v": VERSION})
                lat.append(dt * 1000)
                if label == "cold":
                    c = data["cell"]
                    partners += c["outputs"]["totalCount"] + c["inputs"]["totalCount"]
            out[f"partners_{label}_ms"] = {
                "p50": _pct(lat, 50),
                "p99": _pct(lat, 99),
                "n": len(lat),
            }
        out["mean_partners"] = partners / max(len(picked), 1)
        for label in ("cold", "warm"):
            dt, data = await ask(RECIPROCAL % VERSION)
            out[f"reciprocal_{label}_s"] = dt
            out["reciprocal_count"] = data["motifCount"]
        # the full triad census: inline when the cost model says it fits the query timeout,
        # else a background job, polled (at most --job-wait seconds)
        t = time.perf_counter()
        r = await client.post("/graphql", json={"query": CENSUS % VERSION})
        body = r.json()
        if not body.get("errors"):
            out["census_none_s"] = time.perf_counter() - t
            out["census"] = body["data"]["motifCensus"]
            out["census_how"] = "inline"
        else:
            out["census_inline_answer"] = body["errors"][0]["message"]
            t = time.perf_counter()
            _, started = await ask(START_CENSUS % VERSION)
            job = started["startMotifCensus"]["id"]
            while time.perf_counter() - t < args.job_wait:
                _, polled = await ask(POLL % job)
                state = polled["analysisJob"]["state"]
                if state in ("DONE", "FAILED"):
                    break
                await asyncio.sleep(2)
            waited = time.perf_counter() - t
            out["census_how"] = (f"background job, {state} after {waited:.0f} s (progress "
                                 f"{polled['analysisJob']['progress']:.2f})")  # fmt: skip
            out["census_none_s"] = time.perf_counter() - t
            out["census"] = polled["analysisJob"]["census"]
    return out


STAGES = {"snapshot": stage_snapshot, "duckdb": stage_duckdb, "bulk": stage_bulk,
          "admin": stage_admin, "online": stage_online, "serve": stage_serve,
          "e2e": stage_e2e}  # fmt: skip


def run_stage(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """One stage in a child process: its result, its wall time and its peak RSS (GiB)."""
    cmd = [sys.executable, __file__, "--stage", name, *sys.argv[1:]]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"stage {name} failed (status {status})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["wall_s"] = wall
    result["peak_rss_gib"] = usage.ru_maxrss / (1 << 20)
    # CPU time of the stage and the children it waited for (neo4j-admin; not the server)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(name, json.dumps(result), flush=True)
    return dict(result)


# --------------------------------------------------------------------------- report


HIGHER = {"bulk_edges_per_s", "online_edges_per_s"}  # targets to reach or pass; others: at most


def verdicts(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target the results have a number for."""
    got: dict[str, float] = {}
    if "e2e" in r:  # the product's own `cgraph load`, start to "served"
        got["files_to_served_s"] = r["e2e"]["served_s"]
    elif "snapshot" in r and "bulk" in r:  # the stages; the store is written after serving
        store = r["snapshot"]["seconds"].get("snapshot_store", 0.0)
        after = (r["snapshot"].get("store") or {}).get("after_serving", False)
        got["files_to_served_s"] = r["snapshot"]["wall_s"] - (store if after else 0.0) + \
            r["bulk"]["wall_s"]  # fmt: skip
    if "snapshot" in r:
        got["loader_peak_gib"] = r["snapshot"]["peak_rss_gib"]
    if "bulk" in r:
        got["bulk_edges_per_s"] = r["bulk"]["edges_per_s"]
    if "online" in r:
        got["online_edges_per_s"] = r["online"]["edges_per_s"]
    if "serve" in r:
        serve = r["serve"]
        got.update(
            partner_p50_warm_ms=serve["partners_warm_ms"]["p50"],
            partner_p99_warm_ms=serve["partners_warm_ms"]["p99"],
            reciprocal_cold_s=serve["reciprocal_cold_s"],
            reciprocal_warm_s=serve["reciprocal_warm_s"],
        )
    higher = HIGHER
    return {
        k: {
            "value": v,
            "target": TARGETS[k],
            "met": v >= TARGETS[k] if k in higher else v <= TARGETS[k],
        }  # fmt: skip
        for k, v in got.items()
    }


def _cpu(stage: dict[str, Any]) -> str:
    """CPU seconds of a stage's process and the children it waited for (not the Neo4j
    server, which runs on its own); n/a for stages run before CPU times were recorded."""
    return f"{stage['cpu_s']:.0f}" if "cpu_s" in stage else "n/a"


def markdown(r: dict[str, Any]) -> str:
    s, d, b, a, o = (r[k] for k in ("snapshot", "duckdb", "bulk", "admin", "online"))
    v = r.get("serve")
    c = s["counts"]
    lines = [
        f"Synthetic release v{VERSION}: {r['size']['cells']:,} cells, {c['synapses_total']:,} "
        f"synapses, {c['edges']:,} edges ({r['meta']['when']}, {r['meta']['cpus']} cores).",
        "",
        "| stage | ours | peak RSS GiB | CPU s | baseline in the same run |",
        "|---|---:|---:|---:|---|",
        f"| read + validate + aggregate | {s['seconds']['read_aggregate']:.1f} s | "
        f"{s['peak_rss_gib']:.2f} | {_cpu(s)} | DuckDB, same attribution + grouping + the same two files: "
        f"{d['seconds']:.1f} s, {d['peak_rss_gib']:.2f} GiB, {_cpu(d)} CPU s |",
        *_snapshot_rows(s),
        f"| Neo4j write, bulk (CSV {b['seconds'].get('csv', 0):.1f} s, import "
        f"{b['seconds'].get('import', 0):.1f} s, start {b['seconds'].get('start', 0):.1f} s, "
        f"indexes {b['seconds'].get('indexes', 0):.1f} s) | {b['wall_s']:.1f} s, "
        f"{b['edges_per_s']:,.0f} edges/s | {b['peak_rss_gib']:.2f} | {_cpu(b)} | plain script + neo4j-admin: "
        f"CSV {a['seconds']['csv']:.1f} s + import {a['seconds']['import']:.1f} s "
        f"({a['edges_per_s']:,.0f} edges/s, {_cpu(a)} CPU s) |",
        f"| Neo4j write, online ({o['edges']:,} edges; cells {o['steps']['cells']:.1f} s, edges "
        f"{o['steps']['edges']:.1f} s, count check + labels {o['steps']['finish']:.1f} s) | "
        f"{o['edges_per_s']:,.0f} edges/s (edges step; {o['again']['edges_per_s']:,.0f} when "
        f"written again into the running server) | {o['peak_rss_gib']:.2f} | {_cpu(o)} | "
        + (
            f"the same edges with the index-seek statement the online writer used before: "
            f"{o['index_seek']['edges_per_s']:,.0f} edges/s |"
            if "index_seek" in o
            else "|"
        ),
        "",
    ]
    if "e2e" in r:
        lines += _e2e_lines(r["e2e"])
    if v is not None:
        lines += _serve_lines(v)
    lines += [
        "",
        "| target | value | met |",
        "|---|---:|---|",
    ]
    for k, t in r["targets"].items():
        op = ">=" if k in HIGHER else "<="
        lines.append(f"| {k} {op} {t['target']:,} | {t['value']:,.2f} | "
                     f"{'yes' if t['met'] else '**missed**'} |")  # fmt: skip
    runs: dict[str, list[str]] = {}  # command -> "stage (when)"
    for k in STAGES:
        if k in r:
            cmd = r[k].get("command", "python " + r["meta"]["command"])
            runs.setdefault(cmd, []).append(f"{k} ({r[k].get('when', '?')})")
    lines += ["", "Runs: " + "; ".join(f"`{c}`: {', '.join(ks)}" for c, ks in runs.items())]
    return "\n".join(lines) + "\n"


def _snapshot_rows(s: dict[str, Any]) -> list[str]:
    st = s.get("store") or {}
    if not st.get("after_serving"):  # runs before the store was committed on its own
        return [f"| snapshot (Parquet + manifest{_store_note(s)}) | {s['seconds']['snapshot']:.1f} s "
                "| (same process) | (in the row above) | |"]  # fmt: skip
    return [
        f"| snapshot (cells, edges, manifest) | {s['seconds']['snapshot']:.1f} s | (same process) "
        "| (in the row above) | |",
        f"| synapse store (committed on its own; a load reads the inputs again and writes it after "
        f"serving{'' if st.get('second_read') else ', here from rows kept by the first read'}): {st['rows']:,} "
        f"rows, {st['bytes'] / 1e9:.2f} GB, {st['rows_per_s'] / 1e6:.2f}M rows/s | "
        f"{st['seconds']:.1f} s | (same process) | (in the row above) | |",
    ]


def _e2e_lines(e: dict[str, Any]) -> list[str]:
    return [
        f"End to end, `cgraph load` of the release into the project's own empty local server "
        f"(the bulk writer, chosen by the command): served after {e['served_s']:.1f} s (cells, "
        f"edges, import, start, indexes); the synapse store is written after that, "
        f"{e['store_after_serving_s']:.1f} s more (complete after {e['complete_s']:.1f} s); peak "
        f"RSS {e['load_peak_rss_gib']:.2f} GiB (the load process or its neo4j-admin, the larger), "
        f"{e['load_cpu_s']:.0f} CPU s of both (not the server) "
        f"({e.get('when', '?')}). The command's own {_load_timing(e)}.",
        "",
    ]


def _load_timing(e: dict[str, Any]) -> str:
    """The `time:` line `cgraph load` printed (runs before it was kept: found in the output)."""
    line = e.get("load_timing") or next(
        (x for x in e.get("output", []) if x.strip().startswith("time:")), "time: not kept"
    )
    return str(line).strip().replace("time:", "times:", 1)


def _store_note(s: dict[str, Any]) -> str:
    st = s.get("store")
    if not st:
        return ""
    return (
        f"; synapse store: {st['rows']:,} rows, {st['bytes'] / 1e9:.2f} GB, written in "
        f"{st['seconds']:.1f} s = {st['rows_per_s'] / 1e6:.2f}M rows/s"
    )


def _serve_lines(v: dict[str, Any]) -> list[str]:
    return [
        f"Partner queries through GraphQL, both directions, first 1000 each, {v['cells']} random "
        f"cells (mean {v['mean_partners']:,.0f} partners): cold p50 "
        f"{v['partners_cold_ms']['p50']:.1f} ms / p99 {v['partners_cold_ms']['p99']:.1f} ms; warm "
        f"p50 {v['partners_warm_ms']['p50']:.1f} ms / p99 {v['partners_warm_ms']['p99']:.1f} ms.",
        f"Whole release: motifCount reciprocal pair cold {v['reciprocal_cold_s']:.1f} s "
        f"(reads the snapshot), warm {v['reciprocal_warm_s']:.2f} s; motifCensus (no null model, "
        "the full triad census): "
        + (
            f"inline, {v['census_none_s']:.1f} s."
            if v.get("census_how", "inline") == "inline"
            else f'inline it answers "{v["census_inline_answer"]}"; as a {v["census_how"]}.'
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the MICrONS v117 shape")
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--work", type=Path, help="default /tmp/cgraph-bench-load-{ci,full}")
    ap.add_argument("--neo4j-home", type=Path, help="default /tmp/cgraph-bench-neo4j-{ci,full}")
    ap.add_argument("--bolt-port", type=int, default=7690)
    ap.add_argument("--http-port", type=int, default=7477)
    ap.add_argument("--online-edges", type=int, default=1_000_000)
    ap.add_argument("--cells", type=int, default=250, help="cells for the partner queries")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--job-wait", type=float, default=120.0, help="seconds to poll a census job")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--stage")
    ap.add_argument("--report", action="store_true", help="rewrite the markdown from the JSON")
    args = ap.parse_args()
    size = FULL_SIZE if args.full else CI_SIZE
    kind = "full" if args.full else "ci"
    args.work = args.work or Path(f"/tmp/cgraph-bench-load-{kind}")
    args.neo4j_home = args.neo4j_home or Path(f"/tmp/cgraph-bench-neo4j-{kind}")
    if args.data_dir is None:
        args.data_dir = HERE / "data" / f"load_{size['synapses']}"
    if args.stage:
        print(json.dumps(STAGES[args.stage](args), default=str))
        return
    if args.report:
        name = "load_full" if args.full else "load"
        report(json.loads((RESULTS / f"{name}.json").read_text()), name)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    prepare_home(args)
    dataset(args)
    env = bench_env(args)
    name = "load_full" if args.full else "load"
    out = RESULTS / f"{name}.json"
    # a run of some stages updates those stages of the last results file of the same size
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if results.get("size") != size:
        results = {"size": size}
    for k in STAGES:  # stages of an earlier run keep the command that ran them
        if k in results and "command" not in results[k] and "meta" in results:
            results[k]["command"] = "python " + results["meta"]["command"]
    try:
        for stage in args.stages.split(","):
            results[stage] = run_stage(stage, args, env)
            results[stage]["when"] = time.strftime("%Y-%m-%d %H:%M")
            results[stage]["command"] = " ".join(["python", *sys.argv])
    finally:
        from graph import server
        from graph.settings import ServerSettings

        os.environ.update(env)
        server.stop(ServerSettings.from_env())
    results["meta"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "when": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv)}  # fmt: skip
    report(results, name)


def report(results: dict[str, Any], name: str) -> None:
    """Targets, the JSON and (once every load stage ran) the markdown of the results."""
    results["targets"] = verdicts(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    if {"snapshot", "duckdb", "bulk", "admin", "online"} <= set(results):
        (RESULTS / f"{name}.md").write_text(markdown(results))
        print(markdown(results))


if __name__ == "__main__":
    main()
