"""Provenance on every answer (issue 13): GraphQL `extensions.provenance`, client DataFrames'
`.attrs`, export files' metadata. Expected values come from outside the code under test: the
manifest file's sha256 computed here with hashlib, the time stamps passed to the loader, the
installed package's version from importlib.metadata, and the clock around each load.

Owns release 18911 (and 18912, never loaded: the unknown one).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from api.client import ConnectomeClient
from api.settings import ApiSettings
from cgraph.load import load_release
from graph import releases as graph_releases
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from snapshot.layout import data_dir, snapshots_dir
from tests.api.conftest import GraphQL, LiveServer
from tests.helpers import drop_releases

V = 18911
CGRAPH = str(Path(sys.executable).parent / "cgraph")
STAMP_A = datetime(2023, 4, 1, tzinfo=UTC)
STAMP_B = datetime(2024, 9, 2, 6, 0, tzinfo=UTC)
SOFTWARE = {"name": "connectome-graph", "version": metadata.version("connectome-graph")}
CELLS = "query($v: Int!) { cells(version: $v, first: 3) { nodes { nucleusId } } }"


def _manifest_sha(version: int) -> str:
    """sha256 of the served snapshot's manifest.json, read from disk here."""
    found = [p / "manifest.json" for p in snapshots_dir(data_dir()).glob(f"v{version}*")
             if (p / "manifest.json").exists()]  # fmt: skip
    assert len(found) == 1, found
    return hashlib.sha256(found[0].read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("prov")
    a = generate(out / "a", cells=120, synapses=6_000, versions=[V], seed=5).version(V)
    b = generate(out / "b", cells=130, synapses=7_000, versions=[V], seed=6).version(V)
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def server(db: Database, neo4j_settings: ConnectionSettings) -> Iterator[LiveServer]:
    drop_releases(db, V)
    s = LiveServer(ApiSettings(), neo4j_settings)
    yield s
    s.close()
    drop_releases(db, V)


def _load(db: Database, vs: Any, stamp: datetime, replace: bool) -> tuple[datetime, datetime]:
    before = datetime.now(UTC)
    load_release(db, V, nuclei=vs.nuclei, synapses=vs.synapses, neurons=vs.neurons,
                 cell_types=vs.cell_types, timestamp=stamp, replace=replace)  # fmt: skip
    return before, datetime.now(UTC)


@pytest.fixture
def loaded(db: Database, server: LiveServer, files: dict[str, Any]) -> None:
    if db.call(graph_releases.get_release, V) is None:
        _load(db, files["a"], STAMP_A, False)


def _release(prov: dict[str, Any]) -> dict[str, Any]:
    assert prov["software"] == SOFTWARE
    (entry,) = [r for r in prov["releases"] if r["version"] == V]
    return entry


def test_provenance_follows_a_reload_from_different_files(
    db: Database, server: LiveServer, files: dict[str, Any], tmp_path: Path,
    cli_env: dict[str, str],
) -> None:  # fmt: skip
    gql = GraphQL(server, "uvicorn")
    seen = []
    for name, stamp, replace in (("a", STAMP_A, False), ("b", STAMP_B, True)):
        t0, t1 = _load(db, files[name], stamp, replace)
        sha = _manifest_sha(V)
        body = gql.post(CELLS, v=V)
        assert not body.get("errors"), body
        r = _release(body["extensions"]["provenance"])
        assert r["snapshot"] == sha
        assert r["dataset"] == "default" and r["status"] == "complete"
        assert datetime.fromisoformat(r["timestamp"]) == stamp
        assert t0 <= datetime.fromisoformat(r["loadedAt"]) <= t1
        # the notebook client: DataFrames carry the same in .attrs
        with ConnectomeClient(server.url) as c:
            frame = c.type_connectivity(V)
            assert _release(frame.attrs["provenance"])["snapshot"] == sha
            syn = c.synapse_query(post_ids=[0], version=V)  # Arrow export: file metadata
            assert _release(syn.attrs["provenance"])["snapshot"] == sha
        # an export file made by the CLI carries it as Parquet metadata
        out = tmp_path / f"cells_{name}.parquet"
        r2 = subprocess.run([CGRAPH, "export", "release", str(V), "cells", "--out", str(out)],
                            env=cli_env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r2.returncode == 0, r2.stderr
        meta = pq.read_schema(out).metadata[b"cgraph.provenance"]
        entry = _release(json.loads(meta))
        assert entry["snapshot"] == sha and datetime.fromisoformat(entry["timestamp"]) == stamp
        seen.append(r)
    assert seen[0]["snapshot"] != seen[1]["snapshot"]
    assert seen[0]["loadedAt"] < seen[1]["loadedAt"]


def test_an_answer_lists_only_the_releases_it_read(server: LiveServer, loaded: None) -> None:
    gql = GraphQL(server, "uvicorn")
    body = gql.post(CELLS, v=V)
    assert [r["version"] for r in body["extensions"]["provenance"]["releases"]] == [V]
    # an unknown release: an error, and nothing read
    body = gql.post(CELLS, v=18912)
    assert body["errors"][0]["extensions"]["code"] == "UNKNOWN_RELEASE"
    assert body["extensions"]["provenance"] == {"software": SOFTWARE, "releases": []}
    # a query reading no release still names the software
    body = gql.post("{ __typename }")
    assert body["extensions"]["provenance"] == {"software": SOFTWARE, "releases": []}


def test_wiring_csv_export_has_a_provenance_file_beside_it(
    loaded: None, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    out = tmp_path / "w.csv"
    r = subprocess.run([CGRAPH, "export", "wiring", str(V), "--out", str(out)], env=cli_env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    side = json.loads((tmp_path / "w.csv.provenance.json").read_text())
    assert _release(side)["snapshot"] == _manifest_sha(V)


def test_a_snapshot_only_answer_describes_the_snapshot_without_neo4j(loaded: None) -> None:
    """A server whose Neo4j is unreachable still answers snapshot fields, and their provenance
    comes from the manifest (the lookup would otherwise wait for the dead database)."""
    s = LiveServer(ApiSettings(), ConnectionSettings(uri="bolt://127.0.0.1:9"))
    try:
        body = GraphQL(s, "uvicorn").post(
            "query($v: Int!) { typeConnectivity(version: $v) { edges } }", v=V
        )
    finally:
        s.close()
    assert not body.get("errors"), body
    r = _release(body["extensions"]["provenance"])
    assert r["snapshot"] == _manifest_sha(V) and r["loadedAt"] is None
    (manifest,) = [json.loads((p / "manifest.json").read_text())
                   for p in snapshots_dir(data_dir()).glob(f"v{V}*")]  # fmt: skip
    assert datetime.fromisoformat(r["timestamp"]) in (STAMP_A, STAMP_B)
    assert r["timestamp"] == manifest["timestamp"]
