"""Neuroglancer links (issue 13): each link's state is decoded here (urllib + json, not the
code under test) and its layers, selected segments, positions and annotation points are checked
against the loader's input tables (root IDs, nucleus and synapse positions in voxels) and the
pandas attribution of tests/expected.py. No network.

Owns release 18941.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest

from api import neuroglancer
from api.client import BadRequestError, ConnectomeClient
from api.settings import ApiSettings
from cgraph.load import load_release
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from tests.api.conftest import GraphQL, LiveServer
from tests.expected import expected_release
from tests.helpers import drop_releases

V = 18941
EM = "precomputed://https://bossdb-open-data.s3.amazonaws.com/iarpa_microns/minnie/minnie65/em"
SEG = "graphene://https://minnie.microns-daf.com/segmentation/table/minnie65_public"


@pytest.fixture(scope="module")
def data(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ngl")
    vs = generate(out, cells=200, synapses=20_000, versions=[V], seed=31).version(V)
    drop_releases(db, V)
    load_release(db, V, nuclei=vs.nuclei, synapses=vs.synapses, neurons=vs.neurons,
                 cell_types=vs.cell_types)  # fmt: skip
    nuclei, source = pd.read_parquet(vs.nuclei), pd.read_parquet(vs.synapses)
    yield {"nuclei": nuclei.set_index("id"), "source": source.set_index("id"),
           "edges": expected_release(nuclei, source).edges}  # fmt: skip
    drop_releases(db, V)


@pytest.fixture(scope="module")
def server(neo4j_settings: ConnectionSettings, data: dict[str, Any]) -> Iterator[LiveServer]:
    s = LiveServer(ApiSettings(), neo4j_settings)
    yield s
    s.close()


def _state(link: str) -> dict[str, Any]:
    parts = urlsplit(link)
    assert parts.scheme == "https" and parts.netloc == "neuroglancer-demo.appspot.com"
    assert parts.fragment.startswith("!")
    return dict(json.loads(unquote(parts.fragment[1:])))


def _layers(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {layer["type"]: layer for layer in st["layers"]}


def _voxels(row: pd.Series, stem: str) -> list[float]:
    return [float(row[f"{stem}_{a}"]) for a in "xyz"]


def test_a_cell_link_selects_its_root_at_its_nucleus(server: LiveServer, data: dict[str, Any]) -> None:  # fmt: skip
    nuclei = data["nuclei"]
    n = int(nuclei[nuclei.pt_root_id != 0].index[3])
    body = GraphQL(server, "uvicorn").data(
        "query($n: Int!, $v: Int!) { cell(nucleusId: $n) { neuroglancerUrl(version: $v) } }",
        n=n, v=V,
    )  # fmt: skip
    st = _state(body["cell"]["neuroglancerUrl"])
    layers = _layers(st)
    assert layers["image"]["source"] == EM and layers["segmentation"]["source"] == SEG
    assert layers["segmentation"]["segments"] == [str(nuclei.loc[n, "pt_root_id"])]
    assert st["position"] == _voxels(nuclei.loc[n], "pt_position")
    assert st["dimensions"] == {"x": [4e-9, "m"], "y": [4e-9, "m"], "z": [4e-8, "m"]}


def test_a_set_of_cells_through_the_client(server: LiveServer, data: dict[str, Any]) -> None:
    nuclei = data["nuclei"]
    ids = [int(i) for i in nuclei[nuclei.pt_root_id != 0].index[:4]]
    with ConnectomeClient(server.url) as c:
        st = _state(c.neuroglancer_url(V, ids))
        seg = _layers(st)["segmentation"]
        assert seg["segments"] == [str(nuclei.loc[i, "pt_root_id"]) for i in ids]
        assert len(set(seg["segmentColors"].values())) == 4
        assert st["position"] == _voxels(nuclei.loc[ids[0]], "pt_position")
        with pytest.raises(BadRequestError, match="no cell 1 in dataset"):
            c.neuroglancer_url(V, [ids[0], 1])
        with pytest.raises(BadRequestError, match="give 1 to 500"):
            c.neuroglancer_url(V, [])


def test_an_edge_link_has_its_synapses_as_points(server: LiveServer, data: dict[str, Any]) -> None:  # fmt: skip
    edges = data["edges"]
    e = edges.sort_values("synapses").iloc[-1]  # the strongest edge
    pre, post = int(e.pre), int(e.post)
    q = """query($n: Int!, $v: Int!) { cell(nucleusId: $n) {
      outputs(version: $v, first: 1000) { nodes { nucleusId neuroglancerUrl } } } }"""
    nodes = GraphQL(server, "uvicorn").data(q, n=pre, v=V)["cell"]["outputs"]["nodes"]
    (link,) = [x["neuroglancerUrl"] for x in nodes if x["nucleusId"] == post]
    st = _state(link)
    layers = _layers(st)
    nuclei, source = data["nuclei"], data["source"]
    assert layers["segmentation"]["segments"] == [str(nuclei.loc[pre, "pt_root_id"]),
                                                  str(nuclei.loc[post, "pt_root_id"])]  # fmt: skip
    points = layers["annotation"]["annotations"]
    ids = sorted(int(i) for i in e.synapse_ids)
    assert [int(p["id"]) for p in points] == ids and len(ids) >= 2
    assert [p["point"] for p in points] == [_voxels(source.loc[i], "ctr_pt_position") for i in ids]
    assert st["position"] == points[0]["point"]


def test_a_motif_match_link_selects_its_cells(server: LiveServer, data: dict[str, Any]) -> None:
    q = """query($v: Int!) { motifSearch(version: $v, motif: "A -> B; B -> A", first: 3) {
      nodes { assignments { name nucleusId } neuroglancerUrl } } }"""
    nodes = GraphQL(server, "uvicorn").data(q, v=V)["motifSearch"]["nodes"]
    assert nodes
    nuclei = data["nuclei"]
    for m in nodes:
        seg = _layers(_state(m["neuroglancerUrl"]))["segmentation"]
        want = [str(nuclei.loc[a["nucleusId"], "pt_root_id"]) for a in m["assignments"]]
        assert seg["segments"] == want


def test_the_sources_table_is_overridden_by_a_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "ngl.json"
    f.write_text(json.dumps({"fly": {"image": "precomputed://gs://fly/em",
                                     "viewer": "https://ngl.example.org"}}))  # fmt: skip
    monkeypatch.setenv(neuroglancer.ENV, str(f))
    src = neuroglancer.sources("fly")
    assert src["image"] == "precomputed://gs://fly/em" and src["segmentation"] == SEG
    assert neuroglancer.sources("minnie65_public")["image"] == EM
    link = neuroglancer.url("fly", neuroglancer.state("fly", [8, 8, 40], [5], [80, 80, 400]))
    assert link.startswith("https://ngl.example.org/#!")
    st = json.loads(unquote(link.split("#!", 1)[1]))
    assert st["position"] == [10, 10, 10] and st["layers"][1]["segments"] == ["5"]
    f.write_text("{not json")
    with pytest.raises(Exception, match="not a readable JSON file"):
        neuroglancer.sources("fly")
