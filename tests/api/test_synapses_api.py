"""Synapses over HTTP without Neo4j: GraphQL `synapses`, the export endpoint and the notebook
client's caveclient-shaped calls, against pandas filters of the source tables.

tests/api/test_synapses_api.py owns releases 9601 and 9602 (snapshots only, no graph).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.app import create_app
from api.client import BadRequestError, ConnectomeClient, LimitExceededError, UnknownReleaseError
from api.settings import ApiSettings
from graph.settings import ConnectionSettings
from tests.api.conftest import LiveServer
from tests.synapse_data import (
    POS,
    VOXEL,
    build_snapshot,
    expected_synapses,
    outcomes,
    source_tables,
)

V1, V2 = 9601, 9602
NOWHERE = ConnectionSettings(uri="bolt://127.0.0.1:9")  # never contacted by these fields
CAVE_COLUMNS = ["id", "size", "pre_pt_supervoxel_id", "pre_pt_root_id", "post_pt_supervoxel_id",
                "post_pt_root_id", "spine_vol_um3", *POS]  # fmt: skip


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[pd.DataFrame, pd.DataFrame]]:  # fmt: skip
    out = {}
    for v, seed in ((V1, 11), (V2, 12)):
        nuclei, syn = source_tables(seed=seed)
        build_snapshot(tmp_path_factory.mktemp(f"v{v}"), v, nuclei, syn)
        out[v] = (nuclei, syn)
    return out


class Asgi:
    def __init__(self, token: str | None = None) -> None:
        self.runner = asyncio.Runner()
        app = create_app(ApiSettings(token=token), connection=NOWHERE)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        )

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.runner.run(self.http.post(path, **kw))

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        r = self.post("/graphql", json={"query": query, "variables": variables})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def close(self) -> None:
        self.runner.run(self.http.aclose())
        self.runner.close()


@pytest.fixture(scope="module")
def asgi(sources: dict[int, Any]) -> Iterator[Asgi]:
    client = Asgi()
    yield client
    client.close()


@pytest.fixture(scope="module")
def client(sources: dict[int, Any]) -> Iterator[ConnectomeClient]:
    server = LiveServer(ApiSettings(), NOWHERE)
    with ConnectomeClient(server.url) as c:
        yield c
    server.close()


SYNAPSES = """query($v: Int!, $pre: [String!], $post: [String!], $preN: [Int!], $postN: [Int!],
  $box: [[Float!]!], $col: String! = "post_pt_position", $dropped: Boolean! = true,
  $first: Int! = 1000, $after: String) {
  synapses(version: $v, preRootIds: $pre, postRootIds: $post, preNucleusIds: $preN,
           postNucleusIds: $postN, boundingBox: $box, boundingBoxColumn: $col,
           includeDropped: $dropped, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id preRootId postRootId preSupervoxelId postSupervoxelId size outcome
            prePosition postPosition ctrPosition prePositionVoxels postPositionVoxels
            ctrPositionVoxels preNucleusId postNucleusId extra { name value } }
  }
}"""


def _all_pages(asgi: Asgi, first: int = 1000, **variables: Any) -> tuple[list[dict[str, Any]], int]:
    nodes: list[dict[str, Any]] = []
    after = None
    total = -1
    while True:
        body = asgi.gql(SYNAPSES, first=first, after=after, **variables)
        assert not body.get("errors"), body["errors"]
        page = body["data"]["synapses"]
        total = page["totalCount"]
        nodes.extend(page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return nodes, total
        after = page["pageInfo"]["endCursor"]


def _check_nodes(nodes: list[dict[str, Any]], want: pd.DataFrame) -> None:
    assert [int(n["id"]) for n in nodes] == want.id.tolist()
    for n, (_, row) in zip(nodes, want.iterrows(), strict=True):
        assert int(n["preRootId"]) == row.pre_pt_root_id
        assert int(n["postRootId"]) == row.post_pt_root_id
        assert int(n["preSupervoxelId"]) == row.pre_pt_supervoxel_id
        assert int(n["postSupervoxelId"]) == row.post_pt_supervoxel_id
        assert n["size"] == row["size"]
        for stem, key in zip(POS, ("pre", "post", "ctr"), strict=True):
            vox = [float(row[f"{stem}_{a}"]) for a in "xyz"]
            assert n[f"{key}PositionVoxels"] == vox
            assert n[f"{key}Position"] == [v * s for v, s in zip(vox, VOXEL, strict=True)]
        assert n["extra"] == [{"name": "spine_vol_um3", "value": row.spine_vol_um3}]


@pytest.mark.parametrize("version", [V1, V2])
def test_graphql_synapses_of_cells_and_fragments(asgi: Asgi, sources: dict[int, Any], version: int) -> None:  # fmt: skip
    nuclei, syn = sources[version]
    roots = [int(r) for r in nuclei.pt_root_id.unique() if r != 0][3:6]
    fragments = sorted(set(syn.pre_pt_root_id) - set(nuclei.pt_root_id))[:2]
    for root in [*roots, *fragments]:
        want = expected_synapses(syn, post_ids=[root])
        nodes, total = _all_pages(asgi, first=7, v=version, post=[str(root)])
        assert total == len(want) > 0
        _check_nodes(nodes, want)
        nodes, _ = _all_pages(asgi, v=version, pre=[str(root)])
        _check_nodes(nodes, expected_synapses(syn, pre_ids=[root]))
    att = outcomes(nuclei, syn)
    nodes, _ = _all_pages(asgi, v=version, post=[str(r) for r in roots])
    assert {n["outcome"] for n in nodes} <= set(att.outcome)


def test_graphql_bounding_box_nuclei_and_used_only(asgi: Asgi, sources: dict[int, Any]) -> None:
    nuclei, syn = sources[V1]
    box = [[60_000.0, 60_000.0, 500.0], [90_000.0, 120_000.0, 1200.0]]
    nodes, _ = _all_pages(asgi, v=V1, box=box, col="ctr_pt_position")
    _check_nodes(nodes, expected_synapses(syn, bounding_box=box, bounding_box_column="ctr_pt_position"))  # fmt: skip
    cells = nuclei.iloc[4:8]
    nodes, _ = _all_pages(asgi, v=V1, postN=[int(i) for i in cells.id])
    _check_nodes(nodes, expected_synapses(syn, post_ids=list(cells.pt_root_id)))
    used = syn[outcomes(nuclei, syn).outcome == "used"]
    nodes, _ = _all_pages(asgi, v=V1, postN=[int(i) for i in cells.id], dropped=False)
    _check_nodes(nodes, expected_synapses(used, post_ids=list(cells.pt_root_id)))


@pytest.mark.parametrize(
    ("variables", "code", "needle"),
    [
        ({"pre": [], "post": []}, "BAD_REQUEST", "preRootIds and postRootIds are all empty"),
        ({"box": [[5, 0, 0], [1, 9, 9]]}, "BAD_REQUEST", "inverted on x"),
        ({"box": [[0, 0, 0], [1, 1, 1]], "col": "soma_position"}, "BAD_REQUEST", "boundingBoxColumn"),
        ({"post": ["12x"]}, "BAD_REQUEST", "postRootIds"),
        ({"post": ["1"], "first": 5000}, "LIMIT_EXCEEDED", "first must be <= 1000"),
        ({"post": [str(i) for i in range(10_001)]}, "LIMIT_EXCEEDED", "postRootIds: at most"),
        ({"post": ["1"], "v": 9699}, "UNKNOWN_RELEASE", "9699"),
    ],
)  # fmt: skip
def test_graphql_bad_arguments_are_coded(asgi: Asgi, variables: dict[str, Any], code: str, needle: str) -> None:  # fmt: skip
    body = asgi.gql(SYNAPSES, **{"v": V1, **variables})
    (error,) = body["errors"]
    assert error["extensions"]["code"] == code
    assert needle in error["message"]


def test_graphql_timeout_is_coded(asgi: Asgi, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import QueryTimeout

    def slow(*a: Any, **kw: Any) -> Any:
        raise QueryTimeout(30)

    monkeypatch.setattr("api.synapses.query_synapses", slow)
    body = asgi.gql(SYNAPSES, v=V1, post=["1"])
    assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"


# --------------------------------------------------------------------------- the client


def _cave(want: pd.DataFrame, split: bool = False) -> pd.DataFrame:
    order = ["id", *(f"{s}_{a}" for s in POS for a in "xyz"), "size", "pre_pt_supervoxel_id",
             "pre_pt_root_id", "post_pt_supervoxel_id", "post_pt_root_id", "spine_vol_um3"]  # fmt: skip
    out = want[order].reset_index(drop=True)
    # caveclient's book-keeping columns; synthetic sources have none: unknown / not superseded
    out.insert(1, "created", pd.Series([pd.NaT] * len(out), dtype="datetime64[ns, UTC]"))
    out.insert(2, "superceded_id", pd.Series([np.nan] * len(out), dtype="float64"))
    out.insert(3, "valid", pd.Series([True] * len(out), dtype="bool"))
    for c in out.columns:
        if c.startswith(POS):
            out[c] = out[c].astype("int64")
    if split:
        return out
    for stem in POS:
        cols = [f"{stem}_{a}" for a in "xyz"]
        out[stem] = [np.array(v) for v in out[cols].values.tolist()]
        out = out.drop(columns=cols)
    return out


def _equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for c in want.columns:
        if c in POS:
            assert all(np.array_equal(a, b) for a, b in zip(got[c], want[c], strict=True)), c
            assert all(a.dtype == b.dtype for a, b in zip(got[c], want[c], strict=True)), c
        elif c in ("created", "superceded_id"):
            assert got[c].dtype == want[c].dtype and got[c].isna().all(), c
        else:
            assert got[c].dtype == want[c].dtype, c
            assert got[c].tolist() == want[c].tolist(), c


@pytest.mark.parametrize("version", [V1, V2])
def test_client_synapse_query_is_caveclient_shaped(client: ConnectomeClient, sources: dict[int, Any], version: int) -> None:  # fmt: skip
    nuclei, syn = sources[version]
    roots = [int(r) for r in nuclei.pt_root_id.unique() if r != 0][:6]
    fragment = sorted(set(syn.post_pt_root_id) - set(nuclei.pt_root_id))[1]
    for root in [*roots, fragment]:
        got = client.synapse_query(post_ids=root, version=version)
        _equal(got, _cave(expected_synapses(syn, post_ids=[root])))
        assert got.attrs["dataframe_resolution"] == list(VOXEL)
    got = client.synapse_query(pre_ids=roots, post_ids=roots[:3], version=version, split_positions=True)  # fmt: skip
    _equal(got, _cave(expected_synapses(syn, pre_ids=roots, post_ids=roots[:3]), split=True))


def test_client_synapse_query_options(client: ConnectomeClient, sources: dict[int, Any]) -> None:
    nuclei, syn = sources[V1]
    auto = int(syn[syn.pre_pt_root_id == syn.post_pt_root_id].pre_pt_root_id.iloc[0])
    _equal(client.synapse_query(pre_ids=[auto], remove_autapses=False, version=V1),
           _cave(expected_synapses(syn, pre_ids=[auto], remove_autapses=False)))  # fmt: skip
    _equal(client.synapse_query(post_ids=[0, auto], include_zeros=False, version=V1),
           _cave(expected_synapses(syn, post_ids=[0, auto], include_zeros=False)))  # fmt: skip
    box = [[50_000, 50_000, 400], [150_000, 100_000, 1500]]
    want = expected_synapses(syn, bounding_box=box)
    _equal(client.synapse_query(bounding_box=box, version=V1), _cave(want))
    got = client.synapse_query(bounding_box=box, limit=10, offset=5, version=V1)
    assert got.id.tolist() == want.id.tolist()[5:15]
    nm = client.synapse_query(bounding_box=box, desired_resolution=[1, 1, 1], split_positions=True, version=V1)  # fmt: skip
    for stem in POS:
        for a, s in zip("xyz", VOXEL, strict=True):
            assert nm[f"{stem}_{a}"].dtype == "float64"
            assert nm[f"{stem}_{a}"].tolist() == (want[f"{stem}_{a}"] * s).astype(float).tolist()
    with pytest.raises(BadRequestError, match="inverted"):
        client.synapse_query(bounding_box=[[9, 9, 9], [1, 1, 1]], version=V1)
    with pytest.raises(BadRequestError, match="give pre_ids"):
        client.synapse_query(version=V1)
    with pytest.raises(BadRequestError, match="all empty"):
        client.synapse_query(pre_ids=[], post_ids=[], version=V1)
    with pytest.raises(UnknownReleaseError):
        client.synapse_query(post_ids=1, version=9698)
    with pytest.raises(LimitExceededError):
        client.synapse_query(post_ids=1, limit=2**64, version=V1)


def test_client_query_table(client: ConnectomeClient, sources: dict[int, Any]) -> None:
    nuclei, _ = sources[V1]
    ids = [int(i) for i in nuclei.id.iloc[[2, 5, 7]]]
    got = client.query_table("nucleus_detection_v0", filter_in_dict={"id": ids}, version=V1)
    assert list(got.columns) == ["id", "volume", "pt_root_id", "pt_position"]
    want = nuclei.set_index("id").loc[ids]
    assert got.id.tolist() == ids and got.pt_root_id.dtype == "int64"
    assert got.pt_root_id.tolist() == want.pt_root_id.tolist()
    for pos, (_, row) in zip(got.pt_position, want.iterrows(), strict=True):
        assert pos.tolist() == [row.pt_position_x, row.pt_position_y, row.pt_position_z]
    root = int(nuclei.pt_root_id.iloc[0])
    got = client.query_table("nucleus_detection_v0", filter_equal_dict={"pt_root_id": root}, version=V1)  # fmt: skip
    assert sorted(got.id) == sorted(nuclei.id[nuclei.pt_root_id == root])
    with pytest.raises(BadRequestError, match="unknown column 'root'"):
        client.query_table("nucleus_detection_v0", filter_equal_dict={"root": 1}, version=V1)


# --------------------------------------------------------------------------- bulk export


def test_release_export_equals_source_rows(client: ConnectomeClient, sources: dict[int, Any], tmp_path: Path) -> None:  # fmt: skip
    nuclei, syn = sources[V2]
    table = client.export_release(V2, "synapses")
    got = table.to_pandas().sort_values("id", ignore_index=True)
    want = syn.sort_values("id", ignore_index=True)
    assert len(got) == len(syn)
    for c in syn.columns:
        assert got[c].tolist() == want[c].tolist(), c
    assert got.outcome.tolist() == outcomes(nuclei, want).outcome.tolist()
    batches = list(client.iter_release(V2, "synapses", batch_rows=1000))
    assert max(len(b) for b in batches) <= 1000 and sum(len(b) for b in batches) == len(syn)
    path = client.download_release(V2, "cells", str(tmp_path / "cells.parquet"))
    assert pq.read_table(path).column("nucleus_id").to_pylist() == nuclei.id.tolist()


def test_synapse_and_partner_exports(client: ConnectomeClient, sources: dict[int, Any]) -> None:
    nuclei, syn = sources[V1]
    roots = [int(r) for r in nuclei.pt_root_id.unique() if r != 0][:5]
    t = client.export_synapses(V1, post_root_ids=[str(r) for r in roots], include_dropped=False)
    att = outcomes(nuclei, syn)
    used = syn[att.outcome == "used"]
    assert sorted(t.column("id").to_pylist()) == expected_synapses(used, post_ids=roots).id.tolist()
    assert isinstance(t, pa.Table)
    full = pd.concat([syn, att], axis=1)[att.outcome == "used"]
    edges = full.groupby(["pre_nucleus_id", "post_nucleus_id"]).agg(
        synapses=("id", "size"), size=("size", "sum")).reset_index()  # fmt: skip
    cell = int(edges.post_nucleus_id.value_counts().index[0])
    want = edges[edges.post_nucleus_id == cell].sort_values(
        ["synapses", "pre_nucleus_id"], ascending=[False, True])  # fmt: skip
    got = client.export_partners(cell, V1, "inputs")
    assert list(got.columns) == ["nucleus_id", "partner_nucleus_id", "partner_root_id",
                                 "partner_cell_type", "synapses", "size"]  # fmt: skip
    assert got.partner_nucleus_id.tolist() == want.pre_nucleus_id.tolist()
    assert got.synapses.tolist() == want.synapses.tolist()


def test_export_errors_and_auth(asgi: Asgi, sources: dict[int, Any]) -> None:
    r = asgi.post("/export/synapses", json={"version": V1, "post_root_ids": [1], "columns": ["nope"]})  # fmt: skip
    assert r.status_code == 400 and r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "nope" in r.json()["errors"][0]["message"]
    r = asgi.post("/export/synapses", json={"version": V1, "post_root_ids": [1], "colour": 1})
    assert r.status_code == 400 and "colour" in r.text
    r = asgi.post("/export/synapses", json={"version": 9697, "post_root_ids": [1]})
    assert r.status_code == 404 and r.json()["errors"][0]["extensions"]["code"] == "UNKNOWN_RELEASE"
    locked = Asgi(token="s3cret-token")
    try:
        r = locked.post("/export/synapses", json={"version": V1, "post_root_ids": [1]})
        assert r.status_code == 401
        r = locked.post("/export/synapses", json={"version": V1, "post_root_ids": [1]},
                        headers={"Authorization": "Bearer s3cret-token"})  # fmt: skip
        assert r.status_code == 200
    finally:
        locked.close()


def test_a_served_release_without_its_store_yet_says_so_then_answers(
    asgi: Asgi, client: ConnectomeClient, tmp_path: Path
) -> None:
    """A load serves the release before it writes the synapse store: meanwhile synapse-level
    answers are SYNAPSE_STORE_NOT_READY (GraphQL and export, and the notebook client's named
    error); once the store is committed they equal the pandas filter of the source."""
    from api.client import StoreNotReadyError
    from cgraph.load import prepare_snapshot
    from snapshot.layout import store_ready

    v = 9603
    nuclei, syn = source_tables(seed=13)
    nuclei.to_parquet(tmp_path / "nuclei.parquet", index=False)
    syn.to_parquet(tmp_path / "synapses.parquet", index=False)
    prepared = prepare_snapshot(v, nuclei=tmp_path / "nuclei.parquet",
                                synapses=tmp_path / "synapses.parquet")  # fmt: skip
    try:
        assert not store_ready(prepared.snap)
        post = [str(r) for r in syn.post_pt_root_id.unique()[:3]]
        body = asgi.gql(SYNAPSES, v=v, post=post)
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "SYNAPSE_STORE_NOT_READY"
        assert f"release {v}" in error["message"] and "cgraph load" in error["message"]
        r = asgi.post("/export/synapses", json={"version": v, "post_root_ids": [int(post[0])]})
        assert r.status_code == 503
        assert r.json()["errors"][0]["extensions"]["code"] == "SYNAPSE_STORE_NOT_READY"
        with pytest.raises(StoreNotReadyError):
            client.synapse_query(post_ids=[int(post[0])], version=v)
        # the unwritten store is not remembered: once committed, the same queries answer
        prepared.write_store()
        assert store_ready(prepared.snap)
        body = asgi.gql(SYNAPSES, v=v, post=post)
        assert "errors" not in body, body
        want = expected_synapses(syn, post_ids=[int(p) for p in post])
        assert sorted(int(n["id"]) for n in body["data"]["synapses"]["nodes"]) == sorted(
            want["id"].tolist()
        )
    finally:
        prepared.discard()
