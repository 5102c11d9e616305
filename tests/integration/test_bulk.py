"""The offline bulk writer (graph/bulk.py) against a real Neo4j: a SECOND local server in a temp
home (its own ports, the installed jars symlinked), so the suite's server is never stopped.

Expected values are computed here with pandas from the Parquet files these tests write, never
from the CSV the bulk writer produces. Release versions 901-903 belong to this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import neo4j
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from graph import bulk, server
from graph.driver import Database
from graph.settings import ConnectionSettings, ServerSettings
from snapshot.layout import CELL_SCHEMA, EDGE_SCHEMA, FORMAT, Snapshot, read_snapshot
from tests.helpers import read_graph, typed

pytestmark = pytest.mark.neo4j

A, B, BAD = 901, 902, 903
COUNT_KEYS = (
    "cells", "edges", "synapses", "synapses_total", "dropped_autapse", "dropped_root0",
    "dropped_multi_nucleus_root", "dropped_partner_without_nucleus", "multi_nucleus_roots",
    "neuron_rows_unmatched", "cell_type_rows_unmatched",
)  # fmt: skip
ROOT = 864691135_000_000_000  # root IDs beyond 2**53: exact int64 or nothing

# the display-label rule, written out for the values used here (README "Display labels")
LABEL_OF_SYSTEM = {"excitatory_neuron": "Excitatory", "inhibitory_neuron": "Inhibitory",
                   "nonneuron": "NonNeuron"}  # fmt: skip
LABEL_OF_TYPE = {"23P": "Excitatory", "MC": "Inhibitory", "astrocyte": "NonNeuron"}  # fmt: skip


# --------------------------------------------------------------------------- snapshots


def _cell(nid: int, x: float, y: float, z: float, volume: float | None, root: int,
          out_s: int, in_s: int, is_neuron: bool | None = None, cell_type: str | None = None,
          system: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"nucleus_id": nid, "x": x, "y": y, "z": z, "volume": volume, "root_id": root,
            "is_neuron": is_neuron, "cell_type": cell_type, "classification_system": system,
            "out_synapses": out_s, "in_synapses": in_s}  # fmt: skip


def write_snapshot(
    base: Path,
    version: int,
    cells: list[dict[str, Any]],
    edges: Sequence[tuple[int, int, int, int | None]],
    *,
    has_size: bool,
    annotations: list[str],
    timestamp: str | None,
) -> Snapshot:
    """A snapshot folder exactly as snapshot/layout.py describes it."""
    path = base / f"v{version}"
    path.mkdir(parents=True)
    cell_table = pa.Table.from_pylist(sorted(cells, key=lambda c: c["nucleus_id"]), CELL_SCHEMA)
    pq.write_table(cell_table, path / "cells.parquet")
    rows = [{"pre": a, "post": b, "synapses": n, "size": s} for a, b, n, s in sorted(edges)]
    pq.write_table(pa.Table.from_pylist(rows, EDGE_SCHEMA), path / "edges.parquet")
    synapses = sum(e[2] for e in edges)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts.update(cells=len(cells), edges=len(edges), synapses=synapses,
                  synapses_total=synapses + 7, dropped_autapse=3, dropped_root0=4,
                  multi_nucleus_roots=1, neuron_rows_unmatched=version % 5)  # fmt: skip
    manifest = {"format": FORMAT, "version": version, "timestamp": timestamp, "counts": counts,
                "has_size": has_size, "annotations": annotations,
                "created_at": "2024-01-01T00:00:00+00:00"}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return read_snapshot(path)


def snapshot_a(base: Path) -> Snapshot:
    """v901: sizes, cell types (30: the system wins over the type), a cell without volume."""
    cells = [
        _cell(10, 1.5, 2.25, 3.125, 261.8, ROOT + 1, 4, 1, None, "23P", None),
        _cell(20, 100.1, 200.2, 300.3, 0.1, ROOT + 2, 3, 4, None, "23P", None),
        _cell(30, 7e5, 8e5, 9.5e5, 1 / 3, ROOT + 3, 5, 2, None, "MC", "excitatory_neuron"),
        _cell(40, 4.0, 5.0, 6.0, None, ROOT + 4, 0, 5, None, None, None),
    ]
    edges = [(10, 20, 3, 300), (20, 10, 1, 50), (20, 30, 2, 120), (30, 40, 5, 1000),
             (10, 40, 1, 2**40)]  # fmt: skip
    return write_snapshot(base, A, cells, edges, has_size=True,
                          annotations=["cell_type", "classification_system"],
                          timestamp="2021-07-01T10:00:00+00:00")  # fmt: skip


def snapshot_b(base: Path) -> Snapshot:
    """v902: no sizes, is_neuron + cell types (odd strings too); shares 20 (its type wins) and
    30 (no type here: v901's label stays)."""
    cells = [
        _cell(20, 999.0, 999.0, 999.0, 5.0, ROOT + 22, 4, 2, True, "MC"),
        _cell(30, 1.0, 1.0, 1.0, 6.0, ROOT + 33, 7, 4, True, None),
        _cell(50, 11.0, 12.0, 13.0, 2.5, ROOT + 5, 1, 7, False, "astrocyte", "nonneuron"),
        _cell(60, 21.0, 22.0, 23.0, 3.5, ROOT + 6, 2, 1, True, 'odd "type", with comma'),
        _cell(70, 31.0, 32.0, 33.0, None, ROOT + 7, 0, 0, None, ""),
    ]
    edges = [(20, 30, 4, None), (50, 60, 1, None), (60, 20, 2, None), (30, 50, 7, None)]
    return write_snapshot(base, B, cells, edges, has_size=False,
                          annotations=["is_neuron", "cell_type"], timestamp=None)  # fmt: skip


def snapshot_bad(base: Path) -> Snapshot:
    """v903: an edge to nucleus 999, which is no cell: neo4j-admin must refuse it."""
    cells = [
        _cell(10, 1.0, 2.0, 3.0, 1.0, ROOT + 1, 1, 0),
        _cell(80, 1.0, 2.0, 3.0, 1.0, ROOT, 0, 1),
    ]
    return write_snapshot(base, BAD, cells, [(10, 80, 1, 5), (10, 999, 2, 6)], has_size=True,
                          annotations=[], timestamp=None)  # fmt: skip


# --------------------------------------------------------------------------- expectations


def _value(v: Any) -> Any:
    """A pandas cell as a plain Python value (None for missing)."""
    if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def expected_cells(snaps: list[Snapshot]) -> dict[int, dict[str, Any]]:
    """Every Cell node (labels + properties) from the Parquet files, with pandas."""
    frames = {s.version: pd.read_parquet(s.path / "cells.parquet", dtype_backend="pyarrow")
              for s in sorted(snaps, key=lambda s: s.version)}  # fmt: skip
    out: dict[int, dict[str, Any]] = {}
    for v, df in frames.items():  # ascending: the first version seen gives position/volume
        for row in df.to_dict("records"):
            r = {k: _value(x) for k, x in row.items()}
            if r["nucleus_id"] not in out:
                props = {"nucleus_id": r["nucleus_id"], "position": (r["x"], r["y"], r["z"]),
                         "releases": [], "dataset": "default"}  # fmt: skip
                if r["volume"] is not None:
                    props["volume"] = r["volume"]
                out[r["nucleus_id"]] = {"props": props, "type_from": None}
            cell = out[r["nucleus_id"]]
            cell["props"]["releases"].append(v)
            for stem in ("root_id", "is_neuron", "cell_type", "classification_system",
                         "out_synapses", "in_synapses"):  # fmt: skip
                if r[stem] is not None:
                    cell["props"][f"{stem}_v{v}"] = r[stem]
            if r["cell_type"] is not None:  # later (higher) versions overwrite
                cell["type_from"] = (r["cell_type"], r["classification_system"])
    for cell in out.values():
        labels = {"Cell"}
        if cell["type_from"] is not None:
            ct, cs = cell["type_from"]
            label = LABEL_OF_SYSTEM.get(cs) or LABEL_OF_TYPE.get(ct)
            labels |= {label} if label else set()
        cell["labels"] = labels
        del cell["type_from"]
    return out


def expected_edges(snaps: list[Snapshot]) -> set[tuple[str, int, int, tuple[tuple[str, int], ...]]]:
    out = set()
    for s in snaps:
        df = pd.read_parquet(s.path / "edges.parquet", dtype_backend="pyarrow")
        for row in df.to_dict("records"):
            props = {"synapses": _value(row["synapses"]), "size": _value(row["size"])}
            kept = tuple(sorted((k, v) for k, v in props.items() if v is not None))
            out.add((f"SYNAPSE_V{s.version}", _value(row["pre"]), _value(row["post"]), kept))
    return out


def expected_releases(snaps: list[Snapshot]) -> dict[int, dict[str, Any]]:
    out = {}
    for s in snaps:
        raw = (s.path / "manifest.json").read_bytes()
        m = json.loads(raw)
        props = {"version": m["version"], "status": "complete", "slot": 0, "dataset": "default",
                 "snapshot": hashlib.sha256(raw).hexdigest(), **m["counts"]}  # fmt: skip
        if m["timestamp"]:
            props["timestamp"] = pd.Timestamp(m["timestamp"]).to_pydatetime()
        out[m["version"]] = props
    return out


# --------------------------------------------------------------------------- read back


def assert_holds(conn: ConnectionSettings, snaps: list[Snapshot]) -> None:
    got = read_graph(conn)
    want_cells = expected_cells(snaps)
    assert {n: c["labels"] for n, c in got["cells"].items()} == {
        n: c["labels"] for n, c in want_cells.items()
    }
    assert {n: typed(c["props"]) for n, c in got["cells"].items()} == {
        n: typed(c["props"]) for n, c in want_cells.items()
    }
    want_rels = expected_edges(snaps)
    assert typed(sorted(got["rels"])) == typed(sorted(want_rels))
    assert got["rels_n"] == len(want_rels)
    assert got["others"] == 0
    want_rel = expected_releases(snaps)
    assert set(got["releases"]) == set(want_rel)
    for v, props in got["releases"].items():
        started, finished = props.pop("started_at"), props.pop("finished_at")
        assert isinstance(started, neo4j.time.DateTime) and isinstance(
            finished, neo4j.time.DateTime
        )
        assert started.to_native() <= finished.to_native()
        if "timestamp" in props:
            props["timestamp"] = props["timestamp"].to_native()
        assert typed(props) == typed(want_rel[v]), v
    want_indexes = {
        "cell_dataset_nucleus_id",
        "cell_nucleus_id_lookup",
        "release_version",
        "cell_position",
    } | {f"cell_{stem}_v{s.version}" for s in snaps for stem in ("root_id", "cell_type")}
    assert want_indexes <= set(got["indexes"])
    assert all(got["indexes"][n] == "ONLINE" for n in want_indexes)


@pytest.fixture(scope="module")
def imported(
    second_server: tuple[ServerSettings, ConnectionSettings],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[Snapshot], bulk.BulkReport]:
    settings, conn = second_server
    base = tmp_path_factory.mktemp("snapshots")
    snaps = [snapshot_b(base), snapshot_a(base)]  # any order
    with Database(conn) as db:
        assert db.call(bulk.is_local_empty, settings, conn) is True
    report = bulk.bulk_import(snaps, settings, conn, progress=False)
    return snaps, report


# --------------------------------------------------------------------------- tests


def test_bulk_import_two_releases_reads_back_as_the_snapshots(
    second_server: tuple[ServerSettings, ConnectionSettings],
    imported: tuple[list[Snapshot], bulk.BulkReport],
) -> None:
    settings, conn = second_server
    snaps, report = imported
    assert_holds(conn, snaps)
    assert report.versions == (A, B)
    assert report.nodes == 7 + 2 and report.relationships == 9
    assert {"csv", "import", "start", "indexes"} <= set(report.seconds) and report.edges_per_s > 0
    assert server.status(settings, conn).answering
    with Database(conn) as db:
        assert db.call(bulk.is_local_empty, settings, conn) is False
    assert not list(settings.data_dir.glob("bulk-backup-*"))
    assert not list((settings.home / "import-work").glob("*"))


def test_failed_import_leaves_the_previous_store(
    second_server: tuple[ServerSettings, ConnectionSettings],
    imported: tuple[list[Snapshot], bulk.BulkReport],
    tmp_path: Path,
) -> None:
    settings, conn = second_server
    snaps, _ = imported
    with pytest.raises(bulk.BulkImportError) as err:
        bulk.bulk_import([snapshot_bad(tmp_path)], settings, conn, progress=False)
    message = str(err.value)
    assert err.value.step == "import" and "\n" not in message
    assert "missing node 999" in message and "import.log" in message
    assert "previous store is back" in message
    assert server.status(settings, conn).answering
    assert_holds(conn, snaps)
    assert not list(settings.data_dir.glob("bulk-backup-*"))


def test_corrupt_snapshot_fails_before_touching_the_store(
    second_server: tuple[ServerSettings, ConnectionSettings],
    imported: tuple[list[Snapshot], bulk.BulkReport],
    tmp_path: Path,
) -> None:
    settings, conn = second_server
    snaps, _ = imported
    bad = snapshot_bad(tmp_path)
    edges = bad.path / "edges.parquet"
    edges.write_bytes(edges.read_bytes()[:40])  # truncated
    pid = server.status(settings, conn).pid
    with pytest.raises(bulk.BulkImportError) as err:
        bulk.bulk_import([bad], settings, conn, progress=False)
    assert err.value.step == "csv" and "not touched" in str(err.value)
    assert server.status(settings, conn).pid == pid  # never stopped
    assert_holds(conn, snaps)


@pytest.mark.parametrize("uri", [
    "bolt://db.example.org:7687", "neo4j+s://127.0.0.1:{port}", "bolt://127.0.0.1:1",
    "neo4j://10.0.0.5:{port}",
])  # fmt: skip
def test_refuses_anything_but_the_local_server(uri: str, tmp_path: Path) -> None:
    settings = ServerSettings(home=tmp_path / "home", bolt_port=17687)
    conn = ConnectionSettings(uri=uri.format(port=settings.bolt_port))
    snap = snapshot_bad(tmp_path)
    with pytest.raises(bulk.BulkRefused, match="local server only"):
        bulk.bulk_import([snap], settings, conn, progress=False)
    assert not (tmp_path / "home").exists()  # nothing written
    assert bulk.is_local(ConnectionSettings(uri="bolt://localhost:17687"), settings)
    assert bulk.is_local(ConnectionSettings(uri="neo4j://127.0.0.1:17687"), settings)


# --------------------------------------------------------------------------- memory sizing

GiB, MiB = 1 << 30, 1 << 20


@pytest.mark.parametrize(("ram", "store", "heap", "pagecache"), [
    # 24 GiB, empty store: the suite's server stays small
    (24 * GiB, 0, "1g", "512m"),
    # 24 GiB, the 7 GB v117 store: heap half the store, page cache store + 20%
    (24 * GiB, 7_000_000_000, "3337m", "8011m"),
    # 16 GiB, 100 GiB store: bracket heap 5 GiB, page cache what is left after 4 GiB OS + heap
    (16 * GiB, 100 * GiB, "5g", "7g"),
    # 20 GiB (between the 16 and 24 brackets: heap 6.5, OS 5), 50 GiB store
    (20 * GiB, 50 * GiB, "6656m", "8704m"),
    # 256 GiB, 200 GiB store: heap capped at 31 GiB, page cache 256 - 20 - 31
    (256 * GiB, 200 * GiB, "31g", "205g"),
    # 2 GiB machine: the minimums
    (2 * GiB, 10 * GiB, "1g", "512m"),
])  # fmt: skip
def test_memory_plan_sizes_from_ram_and_store(
    ram: int, store: int, heap: str, pagecache: str, tmp_path: Path
) -> None:
    plan = server.memory_plan(ServerSettings(home=tmp_path), ram=ram, store=store)
    assert (plan.heap, plan.pagecache, plan.source) == (heap, pagecache, "sized")
    assert (plan.ram_bytes, plan.store_bytes) == (ram, store)


def test_memory_plan_explicit_settings_win_and_store_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "data" / "databases" / "neo4j"
    store.mkdir(parents=True)
    with (store / "neostore.relationshipstore.db").open("wb") as fh:
        fh.truncate(3 * GiB)  # sparse: 3 GiB by size, nothing on disk
    (store / "neostore").write_bytes(b"x" * 1000)
    settings = ServerSettings(home=tmp_path)
    plan = server.memory_plan(settings, ram=24 * GiB)
    assert plan.store_bytes == 3 * GiB + 1000
    assert (plan.heap, plan.pagecache) == ("1536m", "3687m")
    both = server.memory_plan(ServerSettings(home=tmp_path, heap="2g", pagecache="300m"), ram=GiB)
    assert (both.heap, both.pagecache, both.source) == ("2g", "300m", "from settings")
    half = server.memory_plan(ServerSettings(home=tmp_path, pagecache="1g"), ram=24 * GiB)
    assert (half.heap, half.pagecache) == ("1536m", "1g")
    assert half.source == "heap sized, page cache from settings"
    assert "the store does not fit in the page cache" in half.describe()
    monkeypatch.setenv("CGRAPH_NEO4J_HEAP", "")
    monkeypatch.setenv("CGRAPH_NEO4J_PAGECACHE", "768m")
    env = ServerSettings.from_env()
    assert (env.heap, env.pagecache) == (None, "768m")
    status = server.Status(False, None, "bolt://x", "http://x", "5.26.30", False, memory=plan)
    assert "next start: heap 1536m, page cache 3687m (sized), store 3.0 GiB" in status.describe()
