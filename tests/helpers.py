"""Helpers shared by the test modules (one copy each)."""

from __future__ import annotations

import math
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import neo4j

from graph import releases
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.tables import Edges, ReleaseData


def drop_releases(db: Database, *versions: int) -> None:
    """Drop each of these releases that is loaded (a module's own versions). A claim a test
    left held by this process (a release kept `loading` on purpose) is given up first."""
    for v in versions:
        if db.call(releases.get_release, v) is not None:
            db.write("MATCH (r:Release {version: $v}) REMOVE r.claim", {"v": v})
            db.call(releases.drop_release, v)


def kill_once_edges_appear(
    db: Database,
    proc: subprocess.Popen[Any],
    rel_type: str,
    midway: Callable[[], bool] | None = None,
) -> bool:
    """SIGKILL a running load as soon as the graph holds one ``rel_type`` edge (a kill midway
    through its writes); False when it ended first (within two minutes) or, with ``midway``
    (asked while the load is stopped with SIGSTOP, just before the kill), when its graph write
    had already finished (a load goes on to write the synapse store after serving)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.read(f"MATCH ()-[r:{rel_type}]->() RETURN count(r) AS n")[0]["n"] > 0:
            proc.send_signal(signal.SIGSTOP)
            in_time = midway is None or midway()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return in_time
        time.sleep(0.05)
    proc.wait(timeout=60)
    return False


def edge_rows(edges: Edges, batch_size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """Edges as row dicts {pre, post, synapses, size, sizes, synapse_ids}, in batches."""
    for start in range(0, len(edges), batch_size):
        stop = min(start + batch_size, len(edges))
        rows = []
        for i in range(start, stop):
            lo, hi = int(edges.offsets[i]), int(edges.offsets[i + 1])
            rows.append(
                {
                    "pre": int(edges.pre[i]),
                    "post": int(edges.post[i]),
                    "synapses": int(edges.synapses[i]),
                    "size": None if edges.size is None else int(edges.size[i]),
                    "sizes": [] if edges.sizes is None else edges.sizes[lo:hi].tolist(),
                    "synapse_ids": edges.synapse_ids[lo:hi].tolist(),
                }
            )
        yield rows


def cell_rows(data: ReleaseData, batch_size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """Cells as row dicts; annotation keys only for the tables that were loaded."""
    c, a = data.cells, data.annotations
    labels = {k: v for k, v in (("is_neuron", a.is_neuron), ("cell_type", a.cell_type),
              ("classification_system", a.classification_system)) if v is not None}  # fmt: skip
    for start in range(0, len(c), batch_size):
        rows = []
        for i in range(start, min(start + batch_size, len(c))):
            vol = float(c.volume[i])
            row: dict[str, Any] = {
                "nucleus_id": int(c.nucleus_id[i]), "root_id": int(c.root_id[i]),
                "x": float(c.x[i]), "y": float(c.y[i]), "z": float(c.z[i]),
                "volume": None if math.isnan(vol) else vol,
                "out_synapses": int(data.out_synapses[i]), "in_synapses": int(data.in_synapses[i]),
            }  # fmt: skip
            row.update({k: v[i] for k, v in labels.items()})
            rows.append(row)
        yield rows


def read_graph(conn: ConnectionSettings) -> dict[str, Any]:
    """Every node and relationship, through the official driver."""
    with neo4j.GraphDatabase.driver(conn.uri, auth=(conn.user, conn.password)) as d:
        cells_raw = d.execute_query("MATCH (c:Cell) RETURN c", database_="neo4j").records
        rels_raw = d.execute_query(
            "MATCH (a)-[r]->(b) RETURN type(r) AS t, a.nucleus_id AS a, b.nucleus_id AS b, "
            "properties(r) AS p", database_="neo4j").records  # fmt: skip
        rel_nodes = d.execute_query("MATCH (r:Release) RETURN r", database_="neo4j").records
        others = d.execute_query("MATCH (n) WHERE NOT n:Cell AND NOT n:Release "
                                 "RETURN count(n) AS n", database_="neo4j").records  # fmt: skip
        schema = d.execute_query("SHOW INDEXES YIELD name, state RETURN name, state",
                                 database_="neo4j").records  # fmt: skip
    cells = {}
    for rec in cells_raw:
        node = rec["c"]
        props = dict(node.items())
        point = props.pop("position")
        assert point.srid == 9157  # cartesian-3d
        props["position"] = tuple(point)
        cells[props["nucleus_id"]] = {"props": props, "labels": set(node.labels)}
    releases = {}
    for rec in rel_nodes:
        props = dict(rec["r"].items())
        releases[props["version"]] = props
    rels = {(r["t"], r["a"], r["b"], tuple(sorted(r["p"].items()))) for r in rels_raw}
    return {"cells": cells, "rels": rels, "rels_n": len(rels_raw), "releases": releases,
            "others": others[0]["n"], "indexes": {r["name"]: r["state"] for r in schema}}  # fmt: skip


def typed(value: Any) -> Any:
    """Values with their types, so that True and 1, or 2.0 and 2, do not pass for each other."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(typed(v) for v in value))
    return (type(value).__name__, value)
