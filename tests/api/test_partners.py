"""outputs / inputs / connectivityDiff / root IDs over HTTP equal pandas on the input files."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from tests.api.conftest import V1, V2, Expected, GraphQL

PARTNERS = """
query($n: Int!, $v: Int!, $first: Int!, $after: String, $order: PartnerOrder!,
      $minSynapses: Int!, $type: String, $minSize: Float, $inputs: Boolean = false) {
  cell(nucleusId: $n) {
    nucleusId
    rootId(version: $v)
    outputs(version: $v, first: $first, after: $after, orderBy: $order,
            minSynapses: $minSynapses, partnerCellType: $type, minSize: $minSize)
            @skip(if: $inputs) { ...page }
    inputs(version: $v, first: $first, after: $after, orderBy: $order,
           minSynapses: $minSynapses, partnerCellType: $type, minSize: $minSize)
           @include(if: $inputs) { ...page }
  }
}
fragment page on PartnerConnection {
  totalCount
  pageInfo { hasNextPage endCursor }
  nodes { synapses size meanSize sizes synapseIds nucleusId rootId cellType
          cell { nucleusId rootId(version: $v) cellType(version: $v) } }
}
"""


def sampled_cells(exp: Expected, n: int = 12) -> list[int]:
    """The busiest cells (top degree), some quiet ones and one with no partners at all."""
    degree = pd.concat([exp.edges["pre"], exp.edges["post"]]).value_counts()
    busy = list(degree.index[:4])
    quiet = list(degree.sample(n - 5, random_state=exp.version).index)
    lonely = sorted(set(exp.nuclei["id"]) - set(degree.index))[:1]
    return [int(x) for x in busy + quiet + lonely]


def fetch_all(gql: GraphQL, nucleus_id: int, version: int, field: str, first: int = 1000,
              order: str = "SYNAPSES", **filters: Any) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """Every partner node, page after page; and the totalCount of the first page."""
    nodes: list[dict[str, Any]] = []
    after = None
    total = None
    vars_ = {
        "minSynapses": 1,
        "type": None,
        "minSize": None,
        "inputs": field == "inputs",
        **filters,
    }
    for _ in range(1000):
        data = gql.data(
            PARTNERS, n=nucleus_id, v=version, first=first, after=after, order=order, **vars_
        )
        page = data["cell"][field]
        total = page["totalCount"] if total is None else total
        assert page["totalCount"] == total
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert total is not None
    return nodes, total


def as_frame(nodes: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "partner": [n["cell"]["nucleusId"] for n in nodes],
            "synapses": [n["synapses"] for n in nodes],
            "size": [n["size"] for n in nodes],
            "sizes": [n["sizes"] for n in nodes],
            "ids": [[int(i) for i in n["synapseIds"]] for n in nodes],
        }
    )


def _canon(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(
        (int(r.partner), int(r.synapses), float(r.size), tuple(r.sizes), tuple(r.ids))
        for r in frame.itertuples()
    )


@pytest.mark.parametrize("version", [V1, V2])
@pytest.mark.parametrize("field", ["outputs", "inputs"])
def test_partners_equal_pandas(gql: GraphQL, releases: dict[int, Expected], version: int,
                               field: str) -> None:  # fmt: skip
    exp = releases[version]
    for nucleus_id in sampled_cells(exp):
        nodes, total = fetch_all(gql, nucleus_id, version, field)
        want = exp.partners(nucleus_id, field)
        assert total == len(want)
        assert _canon(as_frame(nodes)) == _canon(want), (gql.name, nucleus_id)
        # page order: most synapses first, ties by nucleus ID
        keys = [(-n["synapses"], n["cell"]["nucleusId"]) for n in nodes]
        assert keys == sorted(keys)
        for n in nodes:
            assert n["meanSize"] == pytest.approx(n["size"] / n["synapses"])


@pytest.mark.parametrize("version", [V1, V2])
def test_partner_root_ids_round_trip_as_strings(gql: GraphQL, releases: dict[int, Expected],
                                                version: int) -> None:  # fmt: skip
    exp = releases[version]
    roots = exp.nuclei.set_index("id")["pt_root_id"]
    for nucleus_id in sampled_cells(exp, 6):
        data = gql.data(PARTNERS, n=nucleus_id, v=version, first=1000, after=None,
                        order="SYNAPSES", minSynapses=1, type=None, minSize=None)  # fmt: skip
        assert data["cell"]["rootId"] == str(roots[nucleus_id])
        assert int(data["cell"]["rootId"]) > 2**53  # JSON numbers would have lost digits
        for n in data["cell"]["outputs"]["nodes"]:
            assert n["cell"]["rootId"] == str(roots[n["cell"]["nucleusId"]])
            # the flat fields of Partner are the nested cell's, in the page's release
            assert (n["nucleusId"], n["rootId"], n["cellType"]) == (
                n["cell"]["nucleusId"],
                n["cell"]["rootId"],
                n["cell"]["cellType"],
            )


@pytest.mark.parametrize("order", ["SYNAPSES", "SIZE", "NUCLEUS_ID"])
def test_pagination_returns_every_partner_once(gql: GraphQL, releases: dict[int, Expected],
                                               order: str) -> None:  # fmt: skip
    exp = releases[V1]
    busiest = sampled_cells(exp)[:2]
    for nucleus_id in busiest:
        for field in ("outputs", "inputs"):
            nodes, total = fetch_all(gql, nucleus_id, V1, field, first=3, order=order)
            ids = [n["cell"]["nucleusId"] for n in nodes]
            assert len(ids) == len(set(ids)) == total == len(exp.partners(nucleus_id, field))
            if order == "NUCLEUS_ID":
                assert ids == sorted(ids)
            if order == "SIZE":
                keys = [(-n["size"], n["cell"]["nucleusId"]) for n in nodes]
                assert keys == sorted(keys)


def test_filters_equal_pandas(gql: GraphQL, releases: dict[int, Expected]) -> None:
    exp = releases[V2]
    for nucleus_id in sampled_cells(exp)[:4]:
        want = exp.partners(nucleus_id, "outputs")
        nodes, total = fetch_all(gql, nucleus_id, V2, "outputs", minSynapses=2)
        assert total == int((want["synapses"] >= 2).sum())
        threshold = float(want["size"].median()) if len(want) else 0.0
        nodes, total = fetch_all(gql, nucleus_id, V2, "outputs", minSize=threshold)
        assert total == int((want["size"] >= threshold).sum())


def test_partner_cell_type_filter(gql: GraphQL, releases: dict[int, Expected]) -> None:
    exp = releases[V1]
    nucleus_id = sampled_cells(exp)[0]
    nodes, _ = fetch_all(gql, nucleus_id, V1, "inputs")
    some_type = nodes[0]["cell"]["cellType"]
    filtered, total = fetch_all(gql, nucleus_id, V1, "inputs", type=some_type)
    assert total == sum(n["cell"]["cellType"] == some_type for n in nodes)
    assert {n["cell"]["nucleusId"] for n in filtered} == {
        n["cell"]["nucleusId"] for n in nodes if n["cell"]["cellType"] == some_type
    }


DIFF = """query($n: Int!, $a: Int!, $b: Int!, $d: Direction!) {
  cell(nucleusId: $n) { connectivityDiff(fromVersion: $a, toVersion: $b, direction: $d) {
    cell { nucleusId rootId(version: $b) } before after change } } }"""


@pytest.mark.parametrize("direction", ["OUTPUTS", "INPUTS"])
def test_connectivity_diff_equals_pandas(gql: GraphQL, releases: dict[int, Expected],
                                         direction: str) -> None:  # fmt: skip
    a, b = releases[V1], releases[V2]
    field = direction.lower()
    own = "pre" if direction == "OUTPUTS" else "post"
    keys = ["pre", "post"]
    merged = a.edges[keys].merge(b.edges[keys], how="outer", indicator=True)
    added = merged.loc[merged["_merge"] == "right_only", own].head(2).tolist()
    removed = merged.loc[merged["_merge"] == "left_only", own].head(2).tolist()
    changes_seen = set()
    for nucleus_id in sampled_cells(a) + sampled_cells(b)[:4] + added + removed:
        before = a.partners(nucleus_id, field).set_index("partner")["synapses"]
        after = b.partners(nucleus_id, field).set_index("partner")["synapses"]
        partners = sorted(set(before.index) | set(after.index))
        want = []
        for p in partners:
            x, y = int(before.get(p, 0)), int(after.get(p, 0))
            change = (
                "ADDED" if x == 0 else "REMOVED" if y == 0 else "UNCHANGED" if x == y else "CHANGED"
            )
            want.append((int(p), x, y, change))
        data = gql.data(DIFF, n=nucleus_id, a=V1, b=V2, d=direction)
        got = [(c["cell"]["nucleusId"], c["before"], c["after"], c["change"])
               for c in data["cell"]["connectivityDiff"]]  # fmt: skip
        assert got == want, (gql.name, nucleus_id)
        changes_seen |= {w[3] for w in want}
    assert {"UNCHANGED"} | ({"ADDED"} if added else set()) | (
        {"REMOVED"} if removed else set()
    ) <= changes_seen


ROOT = """query($r: String!, $v: Int!) {
  cellByRootId(rootId: $r, version: $v) { nucleusId rootId(version: $v) }
  cellsByRootId(rootId: $r, version: $v) { nucleusId }
}"""


@pytest.mark.parametrize("version", [V1, V2])
def test_cell_by_root_id(gql: GraphQL, releases: dict[int, Expected], version: int) -> None:
    nuclei = releases[version].nuclei
    counts = nuclei["pt_root_id"].value_counts()
    single = nuclei[nuclei["pt_root_id"].map(counts) == 1].head(20)
    for row in single.itertuples():
        data = gql.data(ROOT, r=str(row.pt_root_id), v=version)
        assert data["cellByRootId"] == {"nucleusId": row.id, "rootId": str(row.pt_root_id)}
    # a root ID held by no nucleus
    assert gql.data(ROOT, r="864691135000000001", v=version) == {
        "cellByRootId": None,
        "cellsByRootId": [],
    }
    # a multi-nucleus root: ambiguous for cellByRootId, listed by cellsByRootId
    multi = counts[(counts > 1) & (counts.index != 0)]
    if len(multi):
        root = int(multi.index[0])
        body = gql.post(ROOT, r=str(root), v=version)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_REQUEST"]
        want = sorted(nuclei.loc[nuclei["pt_root_id"] == root, "id"])
        data = gql.data("query($r: String!, $v: Int!) { cellsByRootId(rootId: $r, version: $v) { nucleusId } }",
                        r=str(root), v=version)  # fmt: skip
        assert [c["nucleusId"] for c in data["cellsByRootId"]] == want


CELLS = """query($v: Int!, $after: String, $neuron: Boolean) {
  cells(version: $v, first: 40, after: $after, isNeuron: $neuron) {
    totalCount pageInfo { hasNextPage endCursor } nodes { nucleusId rootId(version: $v) } } }"""


def test_cells_pages_cover_the_release_once(gql: GraphQL, releases: dict[int, Expected]) -> None:
    nuclei = releases[V2].nuclei
    seen: list[int] = []
    after = None
    while True:
        page = gql.data(CELLS, v=V2, after=after, neuron=None)["cells"]
        assert page["totalCount"] == len(nuclei)
        seen += [n["nucleusId"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == sorted(nuclei["id"])


def test_release_counts(gql: GraphQL, releases: dict[int, Expected]) -> None:
    data = gql.data(
        "query($v: Int!) { release(version: $v) { version status cells edges synapses } }", v=V1
    )
    exp = releases[V1]
    assert data["release"] == {"version": V1, "status": "complete", "cells": len(exp.nuclei),
                               "edges": len(exp.edges), "synapses": float(len(exp.synapses))}  # fmt: skip
    versions = {r["version"] for r in gql.data("{ releases { version } }")["releases"]}
    assert {V1, V2} <= versions
    assert gql.data("{ release(version: 9409) { version } }") == {"release": None}
