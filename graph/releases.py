"""Release lifecycle in the graph: begin (status `loading`), write cells and edges, finish
(`complete`) or fail; list, get, drop. Loading release V only touches V's relationship type,
V's `*_vV` properties and cells that belong to no other release.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.errors import ReleaseExists, ReleaseNotReady, UnknownRelease
from graph.driver import Database

__all__ = ["ReleaseExists", "ReleaseInfo"]
from core.model import RELEASE_PROPERTIES, check_version, prop, rel_type
from graph.schema import drop_release_schema, ensure_release_schema, ensure_schema

LOADING, COMPLETE, FAILED = "loading", "complete", "failed"
COUNT_KEYS = (
    "cells",
    "edges",
    "synapses",
    "synapses_total",
    "dropped_autapse",
    "dropped_root0",
    "dropped_multi_nucleus_root",
    "dropped_partner_without_nucleus",
    "multi_nucleus_roots",
)


@dataclass(frozen=True)
class ReleaseInfo:
    version: int
    status: str
    timestamp: datetime | None
    counts: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> ReleaseInfo:
        ts: Any = node.get("timestamp")
        return cls(
            version=int(node["version"]),
            status=str(node["status"]),
            timestamp=ts.to_native() if hasattr(ts, "to_native") else ts,
            counts={k: int(node[k]) for k in COUNT_KEYS if node.get(k) is not None},
        )


GET_RELEASE = "MATCH (r:Release {version: $version}) RETURN properties(r) AS r"
LIST_RELEASES = "MATCH (r:Release) RETURN properties(r) AS r ORDER BY r.version"


def get_release(db: Database, version: int) -> ReleaseInfo | None:
    rows = db.read(GET_RELEASE, {"version": check_version(version)})
    return ReleaseInfo.from_node(rows[0]["r"]) if rows else None


def list_releases(db: Database) -> list[ReleaseInfo]:
    return [ReleaseInfo.from_node(r["r"]) for r in db.read(LIST_RELEASES)]


def require_complete(db: Database, version: int) -> ReleaseInfo:
    info = get_release(db, version)
    if info is None:
        raise UnknownRelease(version)
    if info.status != COMPLETE:
        raise ReleaseNotReady(version, info.status)
    return info


def _clear(db: Database, version: int) -> None:
    """Remove everything release `version` wrote, in bounded transactions."""
    v = check_version(version)
    db.run_autocommit(
        f"MATCH ()-[r:{rel_type(v)}]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 20000 ROWS"
    )
    removed = ", ".join(f"c.{prop(stem, v)}" for stem in RELEASE_PROPERTIES)
    db.run_autocommit(
        f"MATCH (c:Cell) WHERE $version IN c.releases "
        f"CALL (c) {{ REMOVE {removed} "
        f"SET c.releases = [x IN c.releases WHERE x <> $version] }} IN TRANSACTIONS OF 20000 ROWS",
        {"version": v},
    )
    db.run_autocommit(
        "MATCH (c:Cell) WHERE size(c.releases) = 0 "
        "CALL (c) { DELETE c } IN TRANSACTIONS OF 20000 ROWS"
    )


BEGIN = """
MERGE (r:Release {version: $version})
SET r = {version: $version, status: $status, timestamp: $timestamp, started_at: datetime()}
"""


def begin_load(db: Database, version: int, timestamp: datetime | None, *, replace: bool) -> None:
    """Mark `version` as loading, clearing an earlier attempt (or, with replace, a complete load)."""
    ensure_schema(db)
    existing = get_release(db, version)
    if existing is not None and existing.status == COMPLETE and not replace:
        raise ReleaseExists(version)
    db.write(BEGIN, {"version": version, "status": LOADING, "timestamp": timestamp})
    if existing is not None:
        _clear(db, version)
    ensure_release_schema(db, version)


WRITE_CELLS = """
UNWIND $rows AS row
MERGE (c:Cell {nucleus_id: row.nucleus_id})
  ON CREATE SET c.position = point({x: row.x, y: row.y, z: row.z}), c.volume = row.volume,
                c.releases = []
SET c += row.props,
    c.releases = CASE WHEN $version IN c.releases THEN c.releases ELSE c.releases + $version END
"""


def write_cells(db: Database, version: int, rows: list[dict[str, Any]]) -> int:
    """rows: {nucleus_id, x, y, z (nm), volume, props: {root_id_vV: ..., cell_type_vV: ...}}."""
    db.write(WRITE_CELLS, {"rows": rows, "version": check_version(version)})
    return len(rows)


def write_edges_cypher(version: int) -> str:
    return f"""
UNWIND $rows AS row
MATCH (a:Cell {{nucleus_id: row.pre}})
MATCH (b:Cell {{nucleus_id: row.post}})
CREATE (a)-[:{rel_type(version)} {{synapses: row.synapses, size: row.size, sizes: row.sizes,
                                   synapse_ids: row.synapse_ids}}]->(b)
"""


def write_edges(db: Database, version: int, rows: list[dict[str, Any]]) -> int:
    """rows: {pre, post (nucleus IDs), synapses, size (None if unknown), sizes, synapse_ids}."""
    db.write(write_edges_cypher(version), {"rows": rows})
    return len(rows)


FINISH = """
MATCH (r:Release {version: $version})
SET r += $counts, r.status = $status, r.finished_at = datetime()
"""


#: display labels for Neo4j Browser colours (graph/browser-style.grass), from cell types
DISPLAY_LABELS = ("Excitatory", "Inhibitory", "NonNeuron")
CLASS_OF_TYPE = {
    "Excitatory": [
        "23P",
        "4P",
        "5P-IT",
        "5P-ET",
        "5P-NP",
        "5P-PT",
        "6P-IT",
        "6P-CT",
        "6IT",
        "6CT",
        "e",
    ],
    "Inhibitory": ["BC", "MC", "BPC", "NGC", "i"],
    "NonNeuron": ["OPC", "astrocyte", "microglia", "pericyte", "oligo", "g", "glia"],
}
CLASS_OF_SYSTEM = {"excitatory_neuron": "Excitatory", "inhibitory_neuron": "Inhibitory",
                   "nonneuron": "NonNeuron"}  # fmt: skip


def display_labels_cypher(version: int) -> str:
    ct, cs = prop("cell_type", version), prop("classification_system", version)
    return f"""
MATCH (c:Cell) WHERE c.{ct} IS NOT NULL
WITH c, coalesce($by_system[c.{cs}],
                 CASE WHEN c.{ct} IN $exc THEN 'Excitatory'
                      WHEN c.{ct} IN $inh THEN 'Inhibitory'
                      WHEN c.{ct} IN $non THEN 'NonNeuron' END) AS label
REMOVE c:Excitatory:Inhibitory:NonNeuron
WITH c, label WHERE label IS NOT NULL
SET c:$(label)
"""


def finish_load(db: Database, version: int, counts: Mapping[str, int]) -> None:
    """Mark complete; cells' display labels follow the newest loaded release with cell types."""
    db.write(
        display_labels_cypher(version),
        {"by_system": CLASS_OF_SYSTEM, "exc": CLASS_OF_TYPE["Excitatory"],
         "inh": CLASS_OF_TYPE["Inhibitory"], "non": CLASS_OF_TYPE["NonNeuron"]},
    )  # fmt: skip
    db.write(FINISH, {"version": version, "counts": dict(counts), "status": COMPLETE})


MARK_FAILED = "MATCH (r:Release {version: $version}) SET r.status = $status, r.error = $error"


def mark_failed(db: Database, version: int, error: str) -> None:
    db.write(MARK_FAILED, {"version": version, "status": FAILED, "error": error[:500]})


def drop_release(db: Database, version: int) -> None:
    if get_release(db, version) is None:
        raise UnknownRelease(version)
    db.write(MARK_FAILED, {"version": version, "status": "dropping", "error": ""})
    _clear(db, version)
    drop_release_schema(db, version)
    db.write("MATCH (r:Release {version: $version}) DELETE r", {"version": version})


def iter_batches(rows: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
