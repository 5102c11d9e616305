"""The notebook client against a real uvicorn server, and the quickstart notebook."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from api.client import (
    BadRequestError,
    ConnectomeClient,
    LimitExceededError,
    ReleaseNotReadyError,
    UnauthenticatedError,
    UnknownReleaseError,
)
from api.settings import ApiSettings
from graph.settings import ConnectionSettings
from tests.api.conftest import TIMESTAMPS, V1, V2, V_LOADING, Expected, GraphQL, LiveServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(live: GraphQL) -> Iterator[ConnectomeClient]:
    assert isinstance(live.transport, LiveServer)
    with ConnectomeClient(live.transport.url) as c:
        yield c


def busiest(exp: Expected, n: int = 3) -> list[int]:
    return [int(x) for x in exp.edges["pre"].value_counts().index[:n]]


@pytest.mark.parametrize("version", [V1, V2])
def test_outputs_and_inputs_frames(
    client: ConnectomeClient, releases: dict[int, Expected], version: int
) -> None:
    exp = releases[version]
    roots = exp.nuclei.set_index("id")["pt_root_id"]
    for nucleus_id in busiest(exp):
        for field in ("outputs", "inputs"):
            got = getattr(client, field)(nucleus_id, version)
            want = exp.partners(nucleus_id, field)
            assert got["partner_root_id"].dtype == "int64"
            assert sorted(
                zip(got["partner_nucleus_id"], got["synapses"], got["size"], strict=True)
            ) == sorted(
                zip(want["partner"], want["synapses"], want["size"].astype(float), strict=True)
            )
            assert (got["partner_root_id"] == got["partner_nucleus_id"].map(roots)).all()
        got = client.outputs(nucleus_id, version, min_synapses=3)
        assert len(got) == int((exp.partners(nucleus_id, "outputs")["synapses"] >= 3).sum())


@pytest.mark.parametrize("version", [V1, V2])
def test_synapse_query_like_caveclient(
    client: ConnectomeClient, releases: dict[int, Expected], version: int
) -> None:
    """caveclient's semantics on the source table: every synapse of the root (fragments
    included), pre and post ids AND together, autapses removed, positions as [x, y, z] voxels."""
    exp = releases[version]
    src = exp.source[exp.source["pre_pt_root_id"] != exp.source["post_pt_root_id"]]
    for nucleus_id in busiest(exp, 2):
        root = exp.root_of(nucleus_id)
        got = client.synapse_query(pre_ids=root, version=version)
        assert list(got.columns[:4]) == ["id", "created", "superceded_id", "valid"]
        assert set(got.columns) == {"id", "created", "superceded_id", "valid", "size",
                                    "pre_pt_supervoxel_id", "pre_pt_root_id",
                                    "post_pt_supervoxel_id", "post_pt_root_id",
                                    "pre_pt_position", "post_pt_position",
                                    "ctr_pt_position"}  # fmt: skip
        assert got["valid"].all() and got["superceded_id"].isna().all()
        assert all(got[c].dtype == "int64" for c in ("id", "pre_pt_root_id", "post_pt_root_id"))
        want = src[src["pre_pt_root_id"] == root].sort_values("id")
        assert len(want) > len(exp.synapses[exp.synapses["pre_pt_root_id"] == root])  # fragments
        cols = ["id", "pre_pt_root_id", "post_pt_root_id", "size"]
        pd.testing.assert_frame_equal(got[cols].reset_index(drop=True),
                                      want[cols].reset_index(drop=True), check_dtype=False)  # fmt: skip
        for stem in ("pre_pt_position", "post_pt_position", "ctr_pt_position"):
            got_xyz = np.stack(got[stem].to_numpy())
            want_xyz = want[[f"{stem}_{a}" for a in "xyz"]].to_numpy()
            assert np.array_equal(got_xyz, want_xyz), stem
        got_in = client.synapse_query(post_ids=[root], version=version)
        assert sorted(got_in["id"]) == sorted(src.loc[src["post_pt_root_id"] == root, "id"])
        partners = list(want["post_pt_root_id"].unique()[:3])
        both = client.synapse_query(pre_ids=root, post_ids=partners, version=version)
        assert sorted(both["id"]) == sorted(want.loc[want["post_pt_root_id"].isin(partners), "id"])


def test_cells_and_roots(client: ConnectomeClient, releases: dict[int, Expected]) -> None:
    nucleus_id = busiest(releases[V1], 1)[0]
    frame = client.cell(nucleus_id)
    assert frame["root_id"].dtype == "int64"
    by_version = frame.set_index("version")["root_id"]
    for v in (V1, V2):
        assert by_version[v] == releases[v].root_of(nucleus_id)
        again = client.cell_by_root_id(by_version[v], v)
        assert again["nucleus_id"].tolist() == [nucleus_id]
    assert client.cell(2_000_000_000).empty  # no such nucleus
    rel = client.releases().set_index("version")
    assert rel.loc[V1, "edges"] == len(releases[V1].edges)
    assert rel.loc[V_LOADING, "status"] == "loading"
    for v in (V1, V2):  # one stamp without fractional seconds, one with (issue 11)
        assert rel.loc[v, "timestamp"] == pd.Timestamp(TIMESTAMPS[v])
    assert pd.isna(rel.loc[V_LOADING, "timestamp"])


def test_releases_reads_every_iso_timestamp_form() -> None:
    """Mixed ISO 8601 forms in one answer (pandas infers one format from the first value)."""
    stamps = ["2020-01-01T00:00:00.123456+00:00", "2020-01-01T00:00:00+00:00",
              "2021-06-01T12:30:15Z", "2021-06-01T14:30:15.5+02:00", None]  # fmt: skip
    rows = [{"version": i + 1, "status": "complete", "timestamp": t, "cells": 1, "edges": 0,
             "synapses": 0, "synapsesTotal": 0} for i, t in enumerate(stamps)]  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"releases": rows}})

    client = ConnectomeClient("http://test")
    client._http = httpx.Client(transport=httpx.MockTransport(answer))
    got = client.releases()["timestamp"]
    assert str(got.dtype).startswith("datetime64") and str(got.dt.tz) == "UTC"
    want = [pd.Timestamp("2020-01-01 00:00:00.123456", tz="UTC"),
            pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2021-06-01 12:30:15", tz="UTC"),
            pd.Timestamp("2021-06-01 12:30:15.5", tz="UTC")]  # fmt: skip
    assert got.iloc[:4].tolist() == want and pd.isna(got.iloc[4])


def test_connectivity_diff_frame(client: ConnectomeClient, releases: dict[int, Expected]) -> None:
    nucleus_id = busiest(releases[V1], 1)[0]
    diff = client.connectivity_diff(nucleus_id, V1, V2)
    a = releases[V1].partners(nucleus_id, "outputs").set_index("partner")["synapses"]
    b = releases[V2].partners(nucleus_id, "outputs").set_index("partner")["synapses"]
    assert sorted(diff["partner_nucleus_id"]) == sorted(set(a.index) | set(b.index))
    for row in diff.itertuples():
        assert row.before == a.get(row.partner_nucleus_id, 0) and row.after == b.get(
            row.partner_nucleus_id, 0
        )


def test_server_errors_are_named_exceptions(
    client: ConnectomeClient, releases: dict[int, Expected]
) -> None:
    nucleus_id = busiest(releases[V1], 1)[0]
    with pytest.raises(UnknownReleaseError) as info:
        client.outputs(nucleus_id, 9409)
    assert info.value.code == "UNKNOWN_RELEASE"
    with pytest.raises(ReleaseNotReadyError):
        client.inputs(nucleus_id, V_LOADING)
    with pytest.raises(LimitExceededError):
        client.query("{ cells(version: 9401, first: 1001) { totalCount } }")
    with pytest.raises(BadRequestError):
        client.query("{ nope }")


def test_token(neo4j_settings: ConnectionSettings, releases: dict[int, Expected]) -> None:
    server = LiveServer(ApiSettings(token="tok-123"), neo4j_settings)
    try:
        with pytest.raises(UnauthenticatedError):
            ConnectomeClient(server.url).releases()
        assert V1 in ConnectomeClient(server.url, token="tok-123").releases()["version"].tolist()
    finally:
        server.close()


def test_quickstart_notebook_runs(
    live: GraphQL, releases: dict[int, Expected], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(live.transport, LiveServer)
    monkeypatch.setenv("CGRAPH_URL", live.transport.url)
    monkeypatch.setenv("CGRAPH_NOTEBOOK_VERSIONS", f"{V1},{V2}")
    monkeypatch.delenv("CGRAPH_API_TOKEN", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()  # fmt: skip
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = str(outputs)
    assert f"comparing release {V1} with release {V2}" in text
    assert "UNKNOWN_RELEASE" in text
