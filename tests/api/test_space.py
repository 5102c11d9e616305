"""cellsInBox and nearestCells (issue 13) through GraphQL and the notebook client, against
numpy on the loader's nucleus table (positions in voxels x the voxel size).

Owns release 18931.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import neo4j
import numpy as np
import pandas as pd
import pytest

from api.client import BadRequestError, ConnectomeClient
from api.settings import ApiSettings
from cgraph.load import load_release
from graph import space
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from tests.api.conftest import GraphQL, LiveServer
from tests.helpers import drop_releases

V = 18931
VOXEL = np.array([4.0, 4.0, 40.0])  # the loader's default voxel size (nm)


@pytest.fixture(scope="module")
def cells(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[pd.DataFrame]:
    out = tmp_path_factory.mktemp("space")
    vs = generate(out, cells=500, synapses=5_000, versions=[V], seed=77).version(V)
    drop_releases(db, V)
    load_release(db, V, nuclei=vs.nuclei, synapses=vs.synapses, neurons=vs.neurons,
                 cell_types=vs.cell_types)  # fmt: skip
    nuclei = pd.read_parquet(vs.nuclei)
    ct = pd.read_parquet(vs.cell_types).set_index("target_id").cell_type
    nm = nuclei[[f"pt_position_{a}" for a in "xyz"]].to_numpy() * VOXEL
    yield pd.DataFrame({"id": nuclei["id"], "x": nm[:, 0], "y": nm[:, 1], "z": nm[:, 2],
                        "cell_type": nuclei["id"].map(ct)})  # fmt: skip
    drop_releases(db, V)


@pytest.fixture(scope="module")
def server(neo4j_settings: ConnectionSettings, cells: pd.DataFrame) -> Iterator[LiveServer]:
    s = LiveServer(ApiSettings(), neo4j_settings)
    yield s
    s.close()


def _inside(cells: pd.DataFrame, lo: np.ndarray, hi: np.ndarray) -> list[int]:
    xyz = cells[["x", "y", "z"]].to_numpy()
    mask = ((xyz >= lo) & (xyz <= hi)).all(axis=1)
    return sorted(cells.id[mask].tolist())


BOX = """query($v: Int!, $lo: [Float!]!, $hi: [Float!]!, $u: Unit!, $f: Int!, $after: String) {
  cellsInBox(version: $v, min: $lo, max: $hi, unit: $u, first: $f, after: $after) {
    totalCount nodes { nucleusId } pageInfo { hasNextPage endCursor } } }"""


def test_box_pages_equal_a_numpy_mask_in_nm_and_voxels(server: LiveServer, cells: pd.DataFrame) -> None:  # fmt: skip
    xyz = cells[["x", "y", "z"]].to_numpy()
    lo, hi = np.percentile(xyz, 20, axis=0), np.percentile(xyz, 75, axis=0)
    want = _inside(cells, lo, hi)
    assert 10 < len(want) < len(cells)
    gql = GraphQL(server, "uvicorn")
    for unit, a, b in (("NM", lo, hi), ("VOXELS", lo / VOXEL, hi / VOXEL)):
        got, after = [], None
        for _ in range(50):  # bounded
            conn = gql.data(BOX, v=V, lo=a.tolist(), hi=b.tolist(), u=unit, f=7, after=after)
            page = conn["cellsInBox"]
            assert page["totalCount"] == len(want)
            got += [n["nucleusId"] for n in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert got == want, unit


def test_box_with_a_cell_type_through_the_client(server: LiveServer, cells: pd.DataFrame) -> None:
    xyz = cells[["x", "y", "z"]].to_numpy()
    lo, hi = xyz.min(axis=0), np.percentile(xyz, 60, axis=0)
    t = cells.cell_type.dropna().value_counts().index[0]
    want = _inside(cells[cells.cell_type == t], lo, hi)
    with ConnectomeClient(server.url) as c:
        got = c.cells_in_box(V, lo.tolist(), hi.tolist(), cell_type=t)
        assert got.nucleus_id.tolist() == want and (got.cell_type == t).all()
        assert np.allclose(got[["x", "y", "z"]].to_numpy(),
                           cells.set_index("id").loc[want, ["x", "y", "z"]].to_numpy())  # fmt: skip
        assert got.attrs["provenance"]["releases"][0]["version"] == V
        with pytest.raises(BadRequestError, match="inverted on y"):
            c.cells_in_box(V, [0, 10, 0], [1, 5, 1])


@pytest.mark.parametrize("k", [1, 5, 40])
def test_nearest_cells_equal_numpy(server: LiveServer, cells: pd.DataFrame, k: int) -> None:
    rng = np.random.default_rng(k)
    xyz = cells[["x", "y", "z"]].to_numpy()
    with ConnectomeClient(server.url) as c:
        for _ in range(5):
            p = xyz.min(axis=0) + rng.random(3) * (xyz.max(axis=0) - xyz.min(axis=0))
            d = np.sqrt(((xyz - p) ** 2).sum(axis=1))
            order = np.lexsort((cells.id.to_numpy(), d))[:k]
            got = c.nearest_cells(V, p.tolist(), k)
            assert got.nucleus_id.tolist() == cells.id.to_numpy()[order].tolist()
            assert np.allclose(got.distance.to_numpy(), d[order])
            vox = c.nearest_cells(V, (p / VOXEL).tolist(), k, unit="voxels")
            assert vox.nucleus_id.tolist() == got.nucleus_id.tolist()
    # within a distance: only those, maybe fewer than k
    p = xyz.mean(axis=0)
    d = np.sqrt(((xyz - p) ** 2).sum(axis=1))
    r = float(np.sort(d)[3]) + 1.0  # the 4 nearest
    with ConnectomeClient(server.url) as c:
        got = c.nearest_cells(V, p.tolist(), 10, max_distance=r)
    assert sorted(got.nucleus_id.tolist()) == sorted(cells.id[d <= r].tolist())


def test_bad_space_arguments_are_named(server: LiveServer) -> None:
    gql = GraphQL(server, "uvicorn")
    body = gql.post(BOX, v=V, lo=[0, 0], hi=[1, 1, 1], u="NM", f=5)
    assert "min takes three finite numbers" in body["errors"][0]["message"]
    assert gql.codes(BOX, v=18999, lo=[0, 0, 0], hi=[1, 1, 1], u="NM", f=5) == ["UNKNOWN_RELEASE"]
    with ConnectomeClient(server.url) as c:
        with pytest.raises(BadRequestError, match="k must be 1..1000"):
            c.nearest_cells(V, [0, 0, 0], 0)
        with pytest.raises(BadRequestError, match="maxDistance must be >= 0"):
            c.nearest_cells(V, [0, 0, 0], 3, max_distance=-1)


def test_the_box_is_read_through_the_point_index(
    db: Database, neo4j_settings: ConnectionSettings, cells: pd.DataFrame
) -> None:
    names = {r["name"]: r for r in db.read("SHOW INDEXES YIELD name, type, properties "
                                           "RETURN name, type, properties")}  # fmt: skip
    assert names[space.POINT_INDEX]["type"] == "POINT"
    assert names[space.POINT_INDEX]["properties"] == ["position"]
    params: dict[str, Any] = {
        "versions": [V], "slots": [0], "x0": 0.0, "y0": 0.0, "z0": 0.0, "x1": 1.0, "y1": 1.0,
        "z1": 1.0, "after": None, "first": 1, "cell_types": None, "is_neuron": None,
        "systems": None, "nucleus_ids": None,
    }  # fmt: skip
    conn = neo4j_settings
    with (
        neo4j.GraphDatabase.driver(conn.uri, auth=(conn.user, conn.password)) as d,
        d.session(database=conn.database) as s,
    ):
        plan = s.run("EXPLAIN " + space.box_cells_cypher(V), params).consume().plan
    text = str(plan)
    assert "POINT INDEX" in text and "withinBBox" in text, text[:3000]
