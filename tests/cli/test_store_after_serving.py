"""The synapse store is written after the release is served (real `cgraph load` processes
against the real Neo4j). A load killed once it has served the release leaves the release
complete and its store unwritten (synapse-level readers say so by name); a rerun with other
files is refused naming the table; two reruns at once end with one store; the store a rerun
writes holds every source row as the pandas oracle computes it.

This module owns release 18621 and nucleus IDs 40,000,000-41,999,999.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from api.settings import ApiSettings
from graph import releases
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from snapshot.layout import StoreNotReady, open_snapshot, store_meta, store_ready
from snapshot.query import open_store
from tests.api.conftest import asgi_app
from tests.cli.test_load_claims import _assert_exact
from tests.cli.test_load_cli import CGRAPH, cgraph
from tests.helpers import drop_releases
from tests.unit.test_store import assert_same_rows, expected_store, read_store

V = 18621
pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One release big enough that its store takes a moment to write, and a second synapse
    table of the same cells (other files)."""
    d = tmp_path_factory.mktemp("store_after")
    generate(d, cells=3000, synapses=600_000, versions=[V], seed=21, nucleus_id_base=40_000_000)
    other = tmp_path_factory.mktemp("store_after_other")
    generate(other, cells=3000, synapses=20_000, versions=[V], seed=22, nucleus_id_base=40_000_000)
    return {"nuclei": d / f"nuclei_v{V}.parquet", "synapses": d / f"synapses_v{V}.parquet",
            "other_synapses": other / f"synapses_v{V}.parquet"}  # fmt: skip


def _args(nuclei: Path, synapses: Path, *extra: str) -> list[str]:
    return ["load", "--version", str(V), "--writer", "online", "--nuclei", str(nuclei),
            "--synapses", str(synapses), *extra]  # fmt: skip


def _store_ready_over_graphql(connection: ConnectionSettings) -> bool | None:
    with asgi_app(ApiSettings(), connection) as client:
        r = client.request("POST", "/graphql", json={
            "query": "query($v: Int!) { release(version: $v) { status synapseStoreReady } }",
            "variables": {"v": V}})  # fmt: skip
    release = r.json()["data"]["release"]
    assert release["status"] == "complete"
    ready: bool | None = release["synapseStoreReady"]
    return ready


def test_killed_after_serving_the_release_stays_served_and_a_rerun_writes_the_store(
    db: Database,
    cli_env: dict[str, str],
    files: dict[str, Path],
    neo4j_settings: ConnectionSettings,
) -> None:
    drop_releases(db, V)
    try:
        _killed_after_serving(db, cli_env, files, neo4j_settings)
    finally:
        drop_releases(db, V)


def _killed_after_serving(
    db: Database, env: dict[str, str], files: dict[str, Path], neo4j_settings: ConnectionSettings
) -> None:
    args = _args(files["nuclei"], files["synapses"], "--progress")
    proc = subprocess.Popen([CGRAPH, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:  # killed as soon as it says the release is served
        seen.append(line)
        if "served after" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])

    # the release is served, exactly as pandas computes it; its store is not there
    plain = ["--nuclei", str(files["nuclei"]), "--synapses", str(files["synapses"])]
    _assert_exact(db, V, plain)
    info = db.call(releases.get_release, V)
    assert info is not None and info.snapshot is not None
    snap = open_snapshot(V, digest=info.snapshot)
    assert not store_ready(snap), "the store was written before the kill (input too small?)"
    with pytest.raises(StoreNotReady, match=f"release {V}") as caught:
        open_store(snap)
    assert caught.value.code == "SYNAPSE_STORE_NOT_READY"
    assert _store_ready_over_graphql(neo4j_settings) is False

    # other files: refused, naming the table; nothing changes
    bad = cgraph(env, *_args(files["nuclei"], files["other_synapses"], "--no-progress"))
    assert bad.returncode != 0
    assert "synapses input" in bad.stderr and "not the file it was loaded from" in bad.stderr
    assert not store_ready(snap)

    # two reruns at once: one writes the store, the other is refused or finds it written
    cmd = [CGRAPH, *_args(files["nuclei"], files["synapses"], "--no-progress")]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=600) for p in procs]
    ok = [out for p, (out, _) in zip(procs, results, strict=True) if p.returncode == 0]
    assert ok, results
    assert "synapse store was missing" in ok[0], ok[0]
    for p, (_, err) in zip(procs, results, strict=True):
        if p.returncode != 0:
            assert "is being loaded by pid" in err, err

    # the graph is untouched, the store holds every source row as pandas computes it
    _assert_exact(db, V, plain)
    assert db.call(releases.get_release, V).snapshot == info.snapshot  # type: ignore[union-attr]
    assert store_ready(snap)
    assert _store_ready_over_graphql(neo4j_settings) is True
    src = pd.read_parquet(files["synapses"])
    want = expected_store(pd.read_parquet(files["nuclei"]), src)
    store = read_store(snap.path)
    assert len(store) == len(src) == store_meta(snap)["rows"]
    assert_same_rows(store, want, ["id", "pre_pt_root_id", "post_pt_root_id", "size",
                                   "pre_nucleus_id", "post_nucleus_id"])  # fmt: skip
    assert not list(snap.path.glob(".synapses.tmp-*"))  # no temporary store file is left

    # a complete release with its store: a rerun is refused as before
    again = cgraph(env, *_args(files["nuclei"], files["synapses"], "--no-progress"))
    assert again.returncode != 0 and "already loaded and complete" in again.stderr
