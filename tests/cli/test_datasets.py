"""Datasets never mix (issue 11): two datasets whose nucleus IDs overlap, loaded into one graph,
keep their own cells. Loading a C. elegans stage with nucleus ID 100112 used to merge it into the
demo's cell 100112 (positions kept, `releases` of both). Checked against pandas on each dataset's
own input files, through the online writer, the bulk writer's import files, GraphQL and the CLI."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.settings import ApiSettings
from cgraph.load import load_release
from core.errors import DatasetMismatch
from graph import bulk
from graph import releases as graph_releases
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from snapshot.layout import open_snapshot
from tests.api.conftest import GraphQL, LiveServer
from tests.cli.test_load_cli import CGRAPH
from tests.expected import expected_release
from tests.helpers import drop_releases

VA, VB, VD = 18961, 18962, 18963  # dataset "minnie_test", "worm_test", and one named by none
DS = {VA: "minnie_test", VB: "worm_test"}
VOXEL = np.array([4.0, 4.0, 40.0])
BASE = 7_300_000


def _renumber(path: Path, column: str, ids: dict[int, int]) -> None:
    df = pd.read_parquet(path)
    df[column] = df[column].map(ids).astype("int64")
    df.to_parquet(path, index=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Path]]:
    """Three unrelated synthetic releases; B's and D's nuclei then take A's nucleus IDs (as a
    second dataset numbering its nuclei from the same range would)."""
    out = {}
    for i, v in enumerate((VA, VB, VD)):
        d = tmp_path_factory.mktemp(f"ds{v}")
        vs = generate(d, cells=400, synapses=30_000, versions=[v], seed=50 + i,
                      nucleus_id_base=BASE).version(v)  # fmt: skip
        out[v] = {"nuclei": vs.nuclei, "synapses": vs.synapses, "cell_types": vs.cell_types}
    a_ids = sorted(pd.read_parquet(out[VA]["nuclei"])["id"])
    for v in (VB, VD):
        own = sorted(pd.read_parquet(out[v]["nuclei"])["id"])
        ids = {int(x): int(y) for x, y in zip(own, a_ids, strict=True)}
        _renumber(out[v]["nuclei"], "id", ids)
        _renumber(out[v]["cell_types"], "target_id", ids)
    return out


@pytest.fixture(scope="module")
def loaded(db: Database, files: dict[int, dict[str, Path]]) -> Iterator[dict[int, pd.DataFrame]]:
    drop_releases(db, VA, VB, VD)
    for v, ds in DS.items():
        load_release(db, v, dataset=ds, **files[v])  # type: ignore[arg-type]
    yield {v: pd.read_parquet(files[v]["nuclei"]) for v in DS}
    drop_releases(db, VA, VB, VD)


def shared_ids(loaded: dict[int, pd.DataFrame]) -> list[int]:
    ids = sorted(set(loaded[VA]["id"]) & set(loaded[VB]["id"]))
    assert len(ids) > 50, "the two datasets should share nucleus IDs"
    return [int(i) for i in ids]


def test_each_dataset_keeps_its_own_cells(db: Database, loaded: dict[int, pd.DataFrame]) -> None:
    shared = shared_ids(loaded)
    rows = db.read(
        "MATCH (c:Cell) WHERE c.nucleus_id IN $ids RETURN c.dataset AS ds, c.nucleus_id AS n, "
        "c.releases AS releases, [c.position.x, c.position.y, c.position.z] AS pos, "
        f"c.root_id_v{VA} AS root_a, c.root_id_v{VB} AS root_b",
        {"ids": shared},
    )
    assert len(rows) == 2 * len(shared)  # one cell per dataset, never one merged
    for v, ds in DS.items():
        nuclei = loaded[v].set_index("id")
        mine = {r["n"]: r for r in rows if r["ds"] == ds}
        assert sorted(mine) == shared
        for n, r in mine.items():
            assert r["releases"] == [v]
            want = nuclei.loc[n, [f"pt_position_{a}" for a in "xyz"]].to_numpy(float) * VOXEL
            assert np.allclose(r["pos"], want)
            root = r["root_a"] if v == VA else r["root_b"]
            other = r["root_b"] if v == VA else r["root_a"]
            assert root == int(nuclei.loc[n, "pt_root_id"]) and other is None
    for v, ds in DS.items():
        (got,) = db.read("MATCH (r:Release {version: $v}) RETURN r.dataset AS ds", {"v": v})
        assert got["ds"] == ds


def _gql(server: LiveServer) -> GraphQL:
    return GraphQL(server, "uvicorn")


@pytest.fixture(scope="module")
def server(neo4j_settings: ConnectionSettings, loaded: dict[int, pd.DataFrame]) -> Iterator[LiveServer]:  # fmt: skip
    s = LiveServer(ApiSettings(), neo4j_settings)
    yield s
    s.close()


PARTNERS = """query($n: Int!, $d: String, $v: Int!) { cell(nucleusId: $n, dataset: $d) {
  dataset releases rootId(version: $v)
  outputs(version: $v, first: 1000) { totalCount nodes { synapses cell { nucleusId dataset } } }
} }"""


def test_graphql_answers_each_datasets_cell(
    server: LiveServer, files: dict[int, dict[str, Path]], loaded: dict[int, pd.DataFrame]
) -> None:
    gql = _gql(server)
    shared = set(shared_ids(loaded))
    for v, ds in DS.items():
        exp = expected_release(loaded[v], pd.read_parquet(files[v]["synapses"])).edges
        busiest = [int(n) for n in exp.pre.value_counts().index if int(n) in shared][:3]
        assert busiest
        for n in busiest:
            cell = gql.data(PARTNERS, n=n, d=ds, v=v)["cell"]
            assert cell["dataset"] == ds and cell["releases"] == [v]
            assert cell["rootId"] == str(int(loaded[v].set_index("id").loc[n, "pt_root_id"]))
            want = exp[exp.pre == n].set_index("post").synapses.to_dict()
            got = {x["cell"]["nucleusId"]: x["synapses"] for x in cell["outputs"]["nodes"]}
            assert got == want and cell["outputs"]["totalCount"] == len(want)
            assert {x["cell"]["dataset"] for x in cell["outputs"]["nodes"]} == {ds}
            # the same nucleus ID, asked of the other dataset's release: refused, not mixed
            other = VB if v == VA else VA
            body = gql.post(PARTNERS, n=n, d=ds, v=other)
            codes = [e["extensions"]["code"] for e in body.get("errors") or ()]
            if codes:
                assert codes == ["BAD_REQUEST"] and DS[other] in body["errors"][0]["message"]
            else:  # no partners of this ID there: nothing of the other dataset shown
                assert body["data"]["cell"]["outputs"]["totalCount"] == 0
                assert body["data"]["cell"]["rootId"] is None
    # no dataset named: the default one, which holds none of these cells
    assert gql.data(PARTNERS, n=min(shared), d=None, v=VA)["cell"] is None
    diff = """query($n: Int!, $d: String) { cell(nucleusId: $n, dataset: $d) {
      connectivityDiff(fromVersion: %d, toVersion: %d, direction: OUTPUTS) { change } } }"""
    assert _gql(server).codes(diff % (VA, VB), n=min(shared), d=DS[VA]) == ["BAD_REQUEST"]
    assert gql.data("{ releases { version dataset } }")["releases"]
    assert {(r["version"], r["dataset"]) for r in gql.data("{ releases { version dataset } }")[
        "releases"] if r["version"] in DS} == set(DS.items())  # fmt: skip


def test_a_release_of_one_dataset_cannot_be_loaded_as_another(
    db: Database, files: dict[int, dict[str, Path]], loaded: dict[int, pd.DataFrame],
    cli_env: dict[str, str],
) -> None:  # fmt: skip
    before = db.read(f"MATCH ()-[r:SYNAPSE_V{VA}]->() RETURN count(r) AS n")[0]["n"]
    with pytest.raises(DatasetMismatch, match="belongs to dataset 'minnie_test', not 'worm_test'"):
        load_release(db, VA, dataset=DS[VB], replace=True, **files[VA])  # type: ignore[arg-type]
    r = subprocess.run(
        [CGRAPH, "load", "--version", str(VA), "--dataset", DS[VB], "--replace", "--nuclei",
         str(files[VA]["nuclei"]), "--synapses", str(files[VA]["synapses"]), "--no-progress"],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0
    assert f"release {VA} belongs to dataset 'minnie_test', not 'worm_test'" in r.stderr
    r = subprocess.run(
        [CGRAPH, "load", "--version", str(VD), "--dataset", "no spaces", "--nuclei",
         str(files[VD]["nuclei"]), "--synapses", str(files[VD]["synapses"]), "--no-progress"],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0 and "--dataset: dataset must be 1-64 letters" in r.stderr
    info = db.call(graph_releases.get_release, VA)
    assert info is not None and info.status == "complete" and info.dataset == DS[VA]
    assert db.read(f"MATCH ()-[r:SYNAPSE_V{VA}]->() RETURN count(r) AS n")[0]["n"] == before
    assert db.call(graph_releases.get_release, VD) is None


def test_a_load_naming_no_dataset_goes_to_the_default(
    db: Database, files: dict[int, dict[str, Path]], loaded: dict[int, pd.DataFrame],
    cli_env: dict[str, str],
) -> None:  # fmt: skip
    r = subprocess.run(
        [CGRAPH, "load", "--version", str(VD), "--nuclei", str(files[VD]["nuclei"]),
         "--synapses", str(files[VD]["synapses"]), "--no-progress"],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    info = db.call(graph_releases.get_release, VD)
    assert info is not None and info.dataset == "default"
    n = int(pd.read_parquet(files[VD]["nuclei"])["id"].iloc[0])
    rows = db.read("MATCH (c:Cell {nucleus_id: $n}) RETURN c.dataset AS ds ORDER BY ds", {"n": n})
    assert "default" in [x["ds"] for x in rows]
    listed = subprocess.run([CGRAPH, "releases"], env=cli_env, capture_output=True, text=True,
                            timeout=120).stdout  # fmt: skip
    assert any(line.split()[:2] == [str(VD), "default"] for line in listed.splitlines())
    assert any(line.split()[:2] == [str(VA), DS[VA]] for line in listed.splitlines())
    db.call(graph_releases.drop_release, VD)
    # dropping the default dataset's release left the other datasets' cells of that ID alone
    left = db.read("MATCH (c:Cell {nucleus_id: $n}) RETURN c.dataset AS ds", {"n": n})
    assert "default" not in [x["ds"] for x in left]


def test_bulk_import_files_keep_datasets_apart(
    loaded: dict[int, pd.DataFrame], tmp_path: Path, files: dict[int, dict[str, Path]]
) -> None:
    """The bulk writer's neo4j-admin input for both releases: one node row per (dataset,
    nucleus ID), and every edge between its own dataset's cells, as pandas says."""
    snaps = [open_snapshot(v) for v in DS]
    made = bulk.write_import_files(snaps, tmp_path)
    header = made.cells.read_text().splitlines()[0].split(",")
    cells = pd.read_csv(made.cells, header=0, names=header, usecols=[0, 1, 2])
    assert list(cells.columns) == [":ID(Cell){id-type:long}", "nucleus_id:long", "dataset:string"]
    key = dict(zip(cells.iloc[:, 0], zip(cells.iloc[:, 2], cells.iloc[:, 1], strict=True),
                   strict=True))  # fmt: skip
    assert len(key) == len(set(key.values())) == len(loaded[VA]) + len(loaded[VB])
    for (name, _, data), v in zip(made.relationships, sorted(DS), strict=True):
        assert name == f"SYNAPSE_V{v}"
        got = pd.read_csv(data, header=None, names=["a", "b", "synapses", "size"])
        pairs = {(key[a], key[b], s) for a, b, s in zip(got.a, got.b, got.synapses, strict=True)}
        exp = expected_release(loaded[v], pd.read_parquet(files[v]["synapses"])).edges
        want = {((DS[v], int(a)), (DS[v], int(b)), int(s))
                for a, b, s in zip(exp.pre, exp.post, exp.synapses, strict=True)}  # fmt: skip
        assert pairs == want
