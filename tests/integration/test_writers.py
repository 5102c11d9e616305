"""The two writers, one contract: `cgraph load` as users run it on a second local server (bulk
into the empty store, then online for the next release), `cgraph rebuild` (bulk of both), and
the online writer alone on the suite's server must leave the same graph; a bulk import killed
midway leaves the previous store, and a rerun ends in the clean result.

This module owns releases 9701, 9702 and nucleus IDs 7,100,000-7,999,999.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cgraph.load import load_release
from core.model import display_label
from graph import bulk, releases, server
from graph.driver import Database
from graph.settings import ConnectionSettings, ServerSettings
from loaders.synth import generate
from snapshot.layout import open_snapshot
from tests.helpers import drop_releases, read_graph, typed

V1, V2 = 9701, 9702
BASE = 7_000_000
CGRAPH = str(Path(sys.executable).parent / "cgraph")
pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("writers")
    generate(out, cells=500, synapses=60_000, versions=[V1, V2], seed=97, nucleus_id_base=BASE)
    return out


def _env(settings: ServerSettings, conn: ConnectionSettings, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NEO4J_URI=conn.uri, NEO4J_PASSWORD=conn.password, CGRAPH_NEO4J_HOME=str(settings.home),
        CGRAPH_NEO4J_BOLT_PORT=str(settings.bolt_port),
        CGRAPH_NEO4J_HTTP_PORT=str(settings.http_port), CGRAPH_NEO4J_HEAP="512m",
        CGRAPH_NEO4J_PAGECACHE="64m", CGRAPH_DATA=str(data),
    )  # fmt: skip
    return env


def _load_args(files: Path, v: int) -> list[str]:
    return ["load", "--version", str(v), "--nuclei", str(files / f"nuclei_v{v}.parquet"),
            "--synapses", str(files / f"synapses_v{v}.parquet"),
            "--neurons", str(files / f"neurons_v{v}.parquet"),
            "--cell-types", str(files / f"cell_types_v{v}.parquet")]  # fmt: skip


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CGRAPH, *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def comparable(graph: dict[str, Any]) -> dict[str, Any]:
    """A graph read by tests.helpers.read_graph, without what differs by when and from which
    copy of the snapshot it was written (load times, snapshot digests), for this module's cells."""
    cells = {n: c for n, c in graph["cells"].items() if BASE <= n < BASE + 1_000_000}
    rels = {r for r in graph["rels"] if r[0] in (f"SYNAPSE_V{V1}", f"SYNAPSE_V{V2}")}
    releases = {
        v: {k: p for k, p in props.items() if k not in ("started_at", "finished_at", "snapshot")}
        for v, props in graph["releases"].items()
        if v in (V1, V2)
    }
    return typed({"cells": cells, "rels": sorted(rels), "releases": releases})


@pytest.fixture(scope="module")
def mixed(
    second_server: tuple[ServerSettings, ConnectionSettings],
    files: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, str], dict[str, Any]]:
    """V1 through `cgraph load` into the empty second server (bulk), V2 after it (online)."""
    settings, conn = second_server
    env = _env(settings, conn, tmp_path_factory.mktemp("data"))
    first = _run(env, *_load_args(files, V1))
    assert "bulk writer" in first.stderr and "complete (bulk writer" in first.stdout
    # the server is down during the import: the load claim's heartbeats wait, the driver does
    # not print failed-and-retried transactions on the console of a load that succeeds
    assert "Transaction failed" not in first.stderr and "Couldn't connect" not in first.stderr
    second = _run(env, *_load_args(files, V2))
    assert "online writer" in second.stderr and "complete (online writer" in second.stdout
    return env, comparable(read_graph(conn))


@pytest.fixture(scope="module")
def online_only(db: Database, neo4j_settings: ConnectionSettings, files: Path) -> Any:
    """Both releases through the online writer alone, on the suite's server."""
    drop_releases(db, V1, V2)
    for v in (V1, V2):
        load_release(db, v, nuclei=files / f"nuclei_v{v}.parquet",
                     synapses=files / f"synapses_v{v}.parquet",
                     neurons=files / f"neurons_v{v}.parquet",
                     cell_types=files / f"cell_types_v{v}.parquet", writer="online")  # fmt: skip
    yield comparable(read_graph(neo4j_settings))
    drop_releases(db, V1, V2)


def test_bulk_and_online_paths_leave_the_same_graph(
    mixed: tuple[dict[str, str], dict[str, Any]], online_only: dict[str, Any]
) -> None:
    _, graph = mixed
    assert graph["cells"] and graph["rels"] and set(graph["releases"]) == {V1, V2}
    assert graph == online_only


def test_rebuild_reimports_every_snapshot_identically(
    second_server: tuple[ServerSettings, ConnectionSettings],
    mixed: tuple[dict[str, str], dict[str, Any]],
    online_only: dict[str, Any],
) -> None:
    _, conn = second_server
    env, _ = mixed
    proc = _run(env, "rebuild", "--no-progress")
    assert f"releases [{V1}, {V2}]" in proc.stdout
    assert comparable(read_graph(conn)) == online_only


def test_killed_bulk_import_keeps_the_previous_store_and_a_rerun_is_clean(
    second_server: tuple[ServerSettings, ConnectionSettings],
    mixed: tuple[dict[str, str], dict[str, Any]],
    online_only: dict[str, Any],
) -> None:
    settings, conn = second_server
    env, _ = mixed
    proc = subprocess.Popen([CGRAPH, "rebuild"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    try:  # kill the CLI and its neo4j-admin child once the old store has been moved aside
        while not list(settings.data_dir.glob("bulk-backup-*")):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the import never started"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not server.status(settings, conn).running
    server.start(settings, conn)  # puts the previous store back
    assert comparable(read_graph(conn)) == online_only
    _run(env, "rebuild", "--no-progress")
    assert comparable(read_graph(conn)) == online_only
    assert not list(settings.data_dir.glob("bulk-backup-*"))


def _labels_in_graph(conn: ConnectionSettings) -> dict[int, set[str]]:
    cells = read_graph(conn)["cells"]
    return {n: set(c["labels"]) - {"Cell"} for n, c in cells.items() if BASE <= n < BASE + 10**6}


def _labels_of_bulk(*versions: int) -> dict[int, set[str]]:
    """The bulk writer's labels (graph.bulk.cells_table) for the snapshots of `versions`."""
    table = bulk.cells_table([open_snapshot(v) for v in versions])
    ids = table.column(0).to_pylist()
    return {
        n: set(lb.split(";")[1:]) for n, lb in zip(ids, table[":LABEL"].to_pylist(), strict=True)
    }


def test_display_labels_follow_the_newest_release_in_any_load_order(
    db: Database, neo4j_settings: ConnectionSettings, files: Path
) -> None:
    """V2 loaded before V1, V1 typing every cell Inhibitory, V2 typing half of them: the
    labels follow V2 where it types a cell and V1 elsewhere, as the bulk writer's do; after
    dropping V2 they are V1's (issue 11: they followed the release loaded last)."""
    ct = {v: pd.read_parquet(files / f"cell_types_v{v}.parquet") for v in (V1, V2)}
    v1 = ct[V1].assign(classification_system="inhibitory_neuron", cell_type="BC")
    v2 = ct[V2].iloc[::2]
    drop_releases(db, V1, V2)
    try:
        for v, types in ((V2, v2), (V1, v1)):
            load_release(db, v, nuclei=files / f"nuclei_v{v}.parquet",
                         synapses=files / f"synapses_v{v}.parquet", cell_types=types,
                         writer="online")  # fmt: skip
        want = {int(n): {display_label(t, s)} for n, t, s in v1[["target_id", "cell_type",
                "classification_system"]].itertuples(index=False)}  # fmt: skip
        want.update({int(n): {display_label(t, s)} for n, t, s in v2[["target_id", "cell_type",
                     "classification_system"]].itertuples(index=False)})  # fmt: skip
        got = _labels_in_graph(neo4j_settings)
        assert {n: lb for n, lb in got.items() if lb} == {n: lb - {None} for n, lb in want.items()
                                                         if lb - {None}}  # fmt: skip
        assert got == _labels_of_bulk(V1, V2)
        assert any(lb != {"Inhibitory"} for lb in got.values())
        db.call(releases.drop_release, V2)
        assert _labels_in_graph(neo4j_settings) == _labels_of_bulk(V1)
        assert {frozenset(lb) for lb in _labels_in_graph(neo4j_settings).values()} == {
            frozenset({"Inhibitory"})}  # fmt: skip
    finally:
        drop_releases(db, V1, V2)
