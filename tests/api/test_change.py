"""Whole-release change and stability (issue 13): releaseDiff, edgeStability and motifCounts
through GraphQL and the notebook client, against pandas joins of each release's edges computed
from the loader's input files (tests/expected.py) and networkx motif counts.

Owns releases 18921, 18922, 18923 (one synthetic dataset, three releases with root-ID churn and
proofreading) and 18924 (another dataset).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from functools import reduce
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from api.client import BadRequestError, ConnectomeClient
from api.settings import ApiSettings
from cgraph.load import load_release
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from snapshot import diff
from tests.api.conftest import GraphQL, LiveServer
from tests.expected import expected_release
from tests.helpers import drop_releases

V1, V2, V3, V_OTHER = 18921, 18922, 18923, 18924
VS = (V1, V2, V3)
CGRAPH = str(Path(sys.executable).parent / "cgraph")


@pytest.fixture(scope="module")
def inputs(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Any]]:
    out = tmp_path_factory.mktemp("change")
    gen = generate(out, cells=300, synapses=30_000, versions=list(VS), seed=4321)
    other = generate(out / "o", cells=60, synapses=2_000, versions=[V_OTHER], seed=1)
    drop_releases(db, *VS, V_OTHER)
    files = {v: gen.version(v) for v in VS}
    for v, vs in files.items():
        load_release(db, v, nuclei=vs.nuclei, synapses=vs.synapses, neurons=vs.neurons,
                     cell_types=vs.cell_types)  # fmt: skip
    o = other.version(V_OTHER)
    load_release(db, V_OTHER, nuclei=o.nuclei, synapses=o.synapses, dataset="elsewhere")
    yield files
    drop_releases(db, *VS, V_OTHER)


def edges_of(vs: Any) -> pd.DataFrame:
    return expected_release(pd.read_parquet(vs.nuclei), pd.read_parquet(vs.synapses)).edges[
        ["pre", "post", "synapses"]
    ]


def types_of(vs: Any) -> pd.Series:
    nuclei = pd.read_parquet(vs.nuclei)
    ct = pd.read_parquet(vs.cell_types).set_index("target_id").cell_type
    return pd.Series(nuclei["id"].map(ct).to_numpy(), index=nuclei["id"].to_numpy())


def pandas_diff(a: Any, b: Any, m: int = 1) -> pd.DataFrame:
    ea, eb = (e[e.synapses >= m] for e in (edges_of(a), edges_of(b)))
    d = ea.merge(eb, on=["pre", "post"], how="outer", suffixes=("_a", "_b"))
    d["change"] = "unchanged"
    d.loc[d.synapses_a != d.synapses_b, "change"] = "changed"
    d.loc[d.synapses_a.isna(), "change"] = "added"
    d.loc[d.synapses_b.isna(), "change"] = "removed"
    return d.sort_values(["pre", "post"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def server(neo4j_settings: ConnectionSettings, inputs: dict[int, Any]) -> Iterator[LiveServer]:
    s = LiveServer(ApiSettings(), neo4j_settings)
    yield s
    s.close()


TOTALS = """query($a: Int!, $b: Int!, $m: Int!) { releaseDiff(fromVersion: $a, toVersion: $b,
  minSynapses: $m) { added removed changed unchanged synapsesBefore synapsesAfter } }"""
BY_TYPE = """query($a: Int!, $b: Int!) { releaseDiff(fromVersion: $a, toVersion: $b) {
  byType { preType postType added removed changed unchanged } } }"""
EDGES = """query($a: Int!, $b: Int!, $c: Change, $f: Int!, $after: String) {
  releaseDiff(fromVersion: $a, toVersion: $b) { edges(change: $c, first: $f, after: $after) {
    nodes { preNucleusId postNucleusId before after change }
    pageInfo { hasNextPage endCursor } } } }"""


@pytest.mark.parametrize("m", [1, 3])
def test_totals_equal_a_pandas_outer_join(server: LiveServer, inputs: dict[int, Any], m: int) -> None:  # fmt: skip
    want = pandas_diff(inputs[V1], inputs[V2], m)
    got = GraphQL(server, "uvicorn").data(TOTALS, a=V1, b=V2, m=m)["releaseDiff"]
    counts = want.change.value_counts()
    for k in ("added", "removed", "changed", "unchanged"):
        assert got[k] == int(counts.get(k, 0)), k
    assert got["synapsesBefore"] == want.synapses_a.sum()
    assert got["synapsesAfter"] == want.synapses_b.sum()
    assert min(got["added"], got["removed"], got["changed"], got["unchanged"]) > 0  # churn


def test_by_type_equals_pandas(server: LiveServer, inputs: dict[int, Any]) -> None:
    d = pandas_diff(inputs[V1], inputs[V2])
    ta, tb = types_of(inputs[V1]), types_of(inputs[V2])
    t = tb.combine_first(ta)  # the type in toVersion, else in fromVersion
    d["pre_type"], d["post_type"] = d.pre.map(t), d.post.map(t)
    want = (d.groupby(["pre_type", "post_type", "change"], dropna=False).size()
            .unstack(fill_value=0).reset_index())  # fmt: skip
    got = GraphQL(server, "uvicorn").data(BY_TYPE, a=V1, b=V2)["releaseDiff"]["byType"]
    key = lambda x: "~none" if x is None or (isinstance(x, float) and math.isnan(x)) else x  # noqa: E731
    wanted = {(key(r.pre_type), key(r.post_type)): {c: int(getattr(r, c, 0)) for c in
              ("added", "removed", "changed", "unchanged")} for r in want.itertuples()}  # fmt: skip
    found = {(key(r["preType"]), key(r["postType"])): {c: r[c] for c in
             ("added", "removed", "changed", "unchanged")} for r in got}  # fmt: skip
    assert found == wanted and len(found) >= 4
    assert [(key(r["preType"]), key(r["postType"])) for r in got] == sorted(found)


@pytest.mark.parametrize("window", [512, 3])  # one window per page, and many (doubling)
def test_edges_page_through_every_change(server: LiveServer, inputs: dict[int, Any],
                                         window: int, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(diff, "WINDOW_CELLS", window)  # the server runs in this process
    want = pandas_diff(inputs[V1], inputs[V2])
    gql = GraphQL(server, "uvicorn")
    for change in ("ADDED", "CHANGED", None):
        rows, after = [], None
        for _ in range(200):  # bounded
            page = gql.data(EDGES, a=V1, b=V2, c=change, f=97, after=after)
            conn = page["releaseDiff"]["edges"]
            rows += conn["nodes"]
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
        w = want if change is None else want[want.change == change.lower()]
        assert [(r["preNucleusId"], r["postNucleusId"]) for r in rows] == list(
            zip(w.pre, w.post, strict=True))  # fmt: skip
        assert [r["before"] for r in rows] == w.synapses_a.fillna(0).astype(int).tolist()
        assert [r["after"] for r in rows] == w.synapses_b.fillna(0).astype(int).tolist()
        assert [r["change"].lower() for r in rows] == w.change.tolist()


@pytest.mark.parametrize("window", [512, 5])
def test_stability_equals_a_pandas_join_over_the_releases(
    server: LiveServer, inputs: dict[int, Any], window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diff, "WINDOW_CELLS", window)
    frames = [edges_of(inputs[v]).rename(columns={"synapses": f"s{i}"})
              for i, v in enumerate(VS)]  # fmt: skip
    j = reduce(lambda x, y: x.merge(y, on=["pre", "post"], how="outer"), frames)
    j["releases"] = j[["s0", "s1", "s2"]].notna().sum(axis=1)
    j = j.sort_values(["pre", "post"]).reset_index(drop=True)
    with ConnectomeClient(server.url) as c:
        summary, edges = c.edge_stability_summary(list(VS)), c.edge_stability(list(VS))
        assert summary.releases.tolist() == [1, 2, 3]
        assert summary.edges.tolist() == [int((j.releases == k).sum()) for k in (1, 2, 3)]
        stable = j[j.releases >= 2]
        got = c.edge_stability(list(VS), min_releases=2)
        assert list(zip(got.pre_nucleus_id, got.post_nucleus_id, strict=True)) == list(
            zip(stable.pre, stable.post, strict=True))  # fmt: skip
        for i, v in enumerate(VS):
            assert got[f"synapses_{v}"].tolist() == stable[f"s{i}"].astype("Int64").tolist()
        assert len(edges) == len(j)
        n = int(pd.concat([j.pre, j.post]).value_counts().index[0])  # the busiest cell
        one = c.edge_stability(list(VS), nucleus_id=n)
        mine = j[(j.pre == n) | (j.post == n)]
        assert one.releases.tolist() == mine.releases.tolist()
        assert edges.attrs["provenance"]["releases"][0]["version"] == V1


def test_motif_counts_per_release_equal_networkx(server: LiveServer, inputs: dict[int, Any]) -> None:  # fmt: skip
    want = []
    for v in VS:
        g = nx.DiGraph()
        g.add_edges_from(edges_of(inputs[v])[["pre", "post"]].itertuples(index=False))
        want.append(sum(1 for a, b in g.edges if g.has_edge(b, a)))  # ordered reciprocal pairs
    with ConnectomeClient(server.url) as c:
        got = c.motif_counts(list(VS), "A -> B; B -> A")
    assert got.version.tolist() == list(VS)
    assert got["count"].astype(int).tolist() == want and min(want) > 0


def test_bad_arguments_are_named(server: LiveServer) -> None:
    gql = GraphQL(server, "uvicorn")
    assert gql.codes(TOTALS, a=V1, b=18999, m=1) == ["UNKNOWN_RELEASE"]
    body = gql.post(TOTALS, a=V1, b=V_OTHER, m=1)
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "elsewhere" in body["errors"][0]["message"]
    body = gql.post(TOTALS, a=V1, b=V1, m=1)
    assert "both 18921" in body["errors"][0]["message"]
    body = gql.post(TOTALS, a=V1, b=V2, m=0)
    assert "minSynapses must be >= 1" in body["errors"][0]["message"]
    with ConnectomeClient(server.url) as c:
        with pytest.raises(BadRequestError, match="2 to 16 releases"):
            c.edge_stability([V1])
        with pytest.raises(BadRequestError, match="distinct"):
            c.motif_counts([V1, V1], "A -> B")
        with pytest.raises(BadRequestError, match="min_releases must be 1..3"):
            c.edge_stability(list(VS), min_releases=4)


def test_client_release_diff_frames(server: LiveServer, inputs: dict[int, Any]) -> None:
    want = pandas_diff(inputs[V2], inputs[V3])
    with ConnectomeClient(server.url) as c:
        totals = c.release_diff(V2, V3)
        edges = c.release_diff_edges(V2, V3, change="removed")
        types = c.release_diff_by_type(V2, V3)
    counts = want.change.value_counts()
    assert totals == {k: int(counts.get(k, 0)) for k in ("added", "removed", "changed", "unchanged")} | {  # fmt: skip
        "synapses_before": int(want.synapses_a.sum()), "synapses_after": int(want.synapses_b.sum())}  # fmt: skip
    r = want[want.change == "removed"]
    assert edges.pre_nucleus_id.tolist() == r.pre.tolist()
    assert (edges.after == 0).all() and edges.before.tolist() == r.synapses_a.astype(int).tolist()
    assert types[["added", "removed", "changed", "unchanged"]].to_numpy().sum() == len(want)
    assert edges.attrs["provenance"]["releases"][-1]["version"] == V3


def test_cli_exports_the_changed_edges(inputs: dict[int, Any], tmp_path: Path,
                                       cli_env: dict[str, str]) -> None:  # fmt: skip
    want = pandas_diff(inputs[V1], inputs[V3], 2)
    out = tmp_path / "d.parquet"
    r = subprocess.run([CGRAPH, "export", "diff", str(V1), str(V3), "--min-synapses", "2",
                        "--change", "added", "--change", "changed", "--out", str(out)],
                       env=cli_env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    counts = want.change.value_counts()
    assert f"added {int(counts['added']):,}, removed {int(counts['removed']):,}" in r.stdout
    got = pd.read_parquet(out)
    w = want[want.change.isin(["added", "changed"])]
    assert list(zip(got.pre, got.post, got.change, strict=True)) == list(
        zip(w.pre, w.post, w.change, strict=True))  # fmt: skip
    meta = json.loads(pq.read_schema(out).metadata[b"cgraph.provenance"])
    assert [e["version"] for e in meta["releases"]] == [V1, V3]
    r = subprocess.run([CGRAPH, "export", "diff", str(V1), str(V_OTHER), "--out", str(tmp_path / "x")],
                       env=cli_env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode != 0 and "elsewhere" in r.stderr and not (tmp_path / "x").exists()
