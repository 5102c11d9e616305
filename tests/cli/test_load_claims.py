"""Concurrent loads of one release (issue 12): real `cgraph load` processes against the real
Neo4j. One loader holds a version's claim; a second is refused naming the holder; a killed
loader's claim is taken over; a loader that lost its claim never marks anything complete; the
release ends with exactly the edges pandas computes from the input."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from core.errors import ClaimLost, LoadInProgress, ReleaseExists
from graph import releases
from graph.driver import Database
from snapshot.layout import open_snapshot
from tests.cli.test_load_cli import CGRAPH, cgraph
from tests.expected import expected_release
from tests.helpers import drop_releases

V_RACE, V_HELD, V_KILLED, V_LOST, V_DROP = 18611, 18612, 18613, 18614, 18615


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """Per version: the `cgraph load` input arguments (one synthetic release, big enough that
    a load runs for seconds)."""
    from loaders.synth import generate

    out: dict[int, list[str]] = {}
    for i, v in enumerate((V_RACE, V_HELD, V_KILLED)):
        d = tmp_path_factory.mktemp(f"claims{v}")
        generate(d, cells=3000, synapses=300_000, versions=[v], seed=11 + i,
                 nucleus_id_base=6_100_000 + 10_000 * i)  # fmt: skip
        out[v] = ["--nuclei", str(d / f"nuclei_v{v}.parquet"),
                  "--synapses", str(d / f"synapses_v{v}.parquet"), "--no-progress"]  # fmt: skip
    return out


@pytest.fixture
def drop_after(db: Database) -> Iterator[list[int]]:
    versions: list[int] = []
    yield versions
    drop_releases(db, *versions)


def _edges(db: Database, v: int) -> pd.DataFrame:
    rows = db.read(
        f"MATCH (a)-[r:SYNAPSE_V{v}]->(b) RETURN a.nucleus_id AS pre, b.nucleus_id AS post, "
        "r.synapses AS synapses, r.size AS size ORDER BY pre, post",
        timeout=120,
    )
    return pd.DataFrame(rows, columns=["pre", "post", "synapses", "size"])


def _assert_exact(db: Database, v: int, args: list[str]) -> None:
    """The release holds exactly pandas' edges of the input, once each, and says so."""
    nuclei = pd.read_parquet(args[1])
    synapses = pd.read_parquet(args[3])
    want = expected_release(nuclei, synapses)
    got = _edges(db, v)
    assert len(got) == len(want.edges)
    assert not got.duplicated(["pre", "post"]).any()
    expect = want.edges[["pre", "post", "synapses", "size"]].astype("int64")
    pd.testing.assert_frame_equal(got.astype("int64"), expect.reset_index(drop=True))
    info = db.call(releases.get_release, v)
    assert info is not None and info.status == "complete"
    assert info.counts["edges"] == len(want.edges) and info.counts["cells"] == len(nuclei)


def _wait_for_claim(db: Database, v: int, proc: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        rows = db.read("MATCH (r:Release {version: $v}) RETURN properties(r) AS p", {"v": v})
        if rows and rows[0]["p"].get("claim"):
            return dict(rows[0]["p"])
        time.sleep(0.02)
    raise AssertionError(f"the first loader of {v} never claimed it (exit {proc.poll()})")


def test_two_loads_started_together_give_one_exact_release(
    db: Database, cli_env: dict[str, str], inputs: dict[int, list[str]], drop_after: list[int]
) -> None:
    v = V_RACE
    drop_after.append(v)
    cmd = [CGRAPH, "load", "--version", str(v), *inputs[v]]
    procs = [subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = next(err for p, (_, err) in zip(procs, results, strict=True) if p.returncode != 0)
    # refused at once (the claim), or after the winner finished (already complete)
    assert "is being loaded by pid" in loser or "already loaded and complete" in loser, loser
    assert len(loser.strip().splitlines()) == 1, loser
    _assert_exact(db, v, inputs[v])


HOLDER = """
import sys, time
from pathlib import Path
from cgraph.load import holding_claim
from graph.driver import Database

version, ready, stop = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
deadline = time.monotonic() + 300
with Database() as db, holding_claim(db, version, replace=False):
    ready.write_text("")
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def test_a_second_loader_is_refused_naming_the_holder(
    db: Database,
    cli_env: dict[str, str],
    inputs: dict[int, list[str]],
    drop_after: list[int],
    tmp_path: Path,
) -> None:
    """Another process holds the claim (as a loader reading its input does) for as long as the
    test needs: a load, a replace and a drop of the version are each refused naming it."""
    v = V_HELD
    drop_after.append(v)
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(v), str(ready), str(stop)],
                              env=cli_env, text=True)  # fmt: skip
    try:
        held = _wait_for_claim(db, v, holder)
        assert held["claim_pid"] == holder.pid
        for args in (["load", "--version", str(v), *inputs[v]],
                     ["load", "--version", str(v), "--replace", *inputs[v]],
                     ["drop-release", str(v)]):  # fmt: skip
            proc = cgraph(cli_env, *args)
            assert proc.returncode != 0, (args, proc.stdout)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1, proc.stderr
            assert f"is being loaded by pid {holder.pid} of " in lines[0], lines[0]
        assert holder.poll() is None, "the holder ended early"
    finally:
        stop.write_text("")
        holder.wait(timeout=60)
    assert holder.returncode == 0
    # the claim was given up (the Release node it created with it too): the load goes ahead
    assert db.call(releases.get_release, v) is None
    proc = cgraph(cli_env, "load", "--version", str(v), "--writer", "online", *inputs[v])
    assert proc.returncode == 0, proc.stderr
    _assert_exact(db, v, inputs[v])
    rows = db.read("MATCH (r:Release {version: $v}) RETURN keys(r) AS k", {"v": v})
    assert not [k for k in rows[0]["k"] if k.startswith("claim")]  # given up at the end


def test_a_killed_loaders_claim_is_taken_over(
    db: Database, cli_env: dict[str, str], inputs: dict[int, list[str]], drop_after: list[int]
) -> None:
    v = V_KILLED
    drop_after.append(v)
    first = subprocess.Popen([CGRAPH, "load", "--version", str(v), *inputs[v]], env=cli_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for_claim(db, v, first)  # killed while it reads its input, claim held
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    rerun = cgraph(cli_env, "load", "--version", str(v), *inputs[v])
    assert rerun.returncode == 0, rerun.stderr
    _assert_exact(db, v, inputs[v])


def test_a_load_that_lost_its_claim_never_completes(db: Database, drop_after: list[int]) -> None:
    v = V_LOST
    drop_after.append(v)
    old = releases.Claim(v)
    db.call(releases.begin_load, v, None, replace=False, claim_of=old)
    # the first loader went silent (its heartbeat stopped three minutes ago)
    db.write(
        "MATCH (r:Release {version: $v}) SET r.claim_heartbeat = datetime() - duration('PT3M')",
        {"v": v},
    )
    new = releases.Claim(v)
    db.call(releases.claim, new, replace=False)  # stale: taken over
    with pytest.raises(ClaimLost):
        db.call(releases.finish_load, v, {"cells": 0, "edges": 0}, claim_of=old)
    with pytest.raises(LoadInProgress, match=f"pid {new.pid}"):
        db.call(releases.claim, releases.Claim(v), replace=True)  # the new holder is alive
    info = db.call(releases.get_release, v)
    assert info is not None and info.status == "loading"
    db.call(releases.finish_load, v, {"cells": 0, "edges": 0}, claim_of=new)
    db.call(releases.unclaim, new)
    with pytest.raises(ReleaseExists):
        db.call(releases.claim, releases.Claim(v), replace=False)


def test_finish_refuses_counts_the_graph_does_not_hold(
    db: Database, inputs: dict[int, list[str]], drop_after: list[int]
) -> None:
    """An edge gone between the writes and `complete` (as when two loads raced) is caught."""
    from cgraph.load import aggregate_to_snapshot

    v = V_DROP
    drop_after.append(v)
    args = inputs[V_RACE]
    snap, _ = aggregate_to_snapshot(v, nuclei=Path(args[1]), synapses=Path(args[3]))
    c = releases.Claim(v)
    db.call(releases.begin_load, v, None, replace=False, claim_of=c)
    nodes: releases.NodeIds = {}
    for rows in releases.cell_rows(snap):
        db.call(releases.write_cells, v, rows, node_ids=nodes)
    for groups in releases.edge_rows(snap, nodes):
        db.call(releases.write_edges, v, groups)
    db.write(f"MATCH ()-[r:SYNAPSE_V{v}]->() WITH r LIMIT 1 DELETE r")
    counts = {k: snap.counts[k] for k in ("cells", "edges")}
    with pytest.raises(releases.WriteMismatch, match="was not marked complete"):
        db.call(releases.finish_load, v, counts, claim_of=c)
    info = db.call(releases.get_release, v)
    assert info is not None and info.status == "loading"
    assert open_snapshot(v).counts["edges"] == counts["edges"]
