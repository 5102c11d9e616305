"""The DuckDB synapse query layer (snapshot/query.py, snapshot/tables.py) against pandas filters
of the source table under caveclient's documented semantics, row for row.

tests/unit/test_synapse_query.py owns releases 9501 and 9502.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import BadRequest, LimitExceeded, QueryTimeout
from snapshot.layout import Snapshot
from snapshot.query import SynapseQuery, open_store, query_synapses, run, synapse_sql
from snapshot.tables import query_cell_table, query_partners
from tests.synapse_data import POS, build_snapshot, expected_synapses, outcomes, source_tables

V1, V2 = 9501, 9502
COLUMNS = ["id", "pre_pt_root_id", "post_pt_root_id", "pre_pt_supervoxel_id",
           "post_pt_supervoxel_id", "size"] + [f"{s}_{a}" for s in POS for a in "xyz"]  # fmt: skip


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, pd.DataFrame, pd.DataFrame]:  # fmt: skip
    nuclei, syn = source_tables(seed=7)
    with pytest.MonkeyPatch.context() as mp:  # small row groups: many of them in a small store
        mp.setattr("snapshot.write.STORE_ROW_GROUP", 500)
        snap = build_snapshot(tmp_path_factory.mktemp("store"), V1, nuclei, syn)
    return snap, nuclei, syn


def _got(snap: Snapshot, **kw: object) -> pd.DataFrame:
    q = SynapseQuery.of(**kw)  # type: ignore[arg-type]
    return query_synapses(snap, q).to_pandas().sort_values("id", ignore_index=True)


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want)
    for c in COLUMNS:
        assert got[c].tolist() == want[c].tolist(), c
    assert got["spine_vol_um3"].tolist() == want["spine_vol_um3"].tolist()


def test_store_schema_is_the_contract(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:
    snap, _, syn = release
    store = open_store(snap)
    assert store.rows == len(syn)
    assert set(store.positions) == set(POS)
    assert "spine_vol_um3" in store.extras
    assert store.voxel_size_nm == (4.0, 4.0, 40.0)


def test_inputs_of_sampled_cells_and_fragments(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, nuclei, syn = release
    roots = [r for r in nuclei.pt_root_id.unique() if r != 0][:8]
    fragments = sorted(set(syn.pre_pt_root_id) - set(nuclei.pt_root_id))[:4]
    for root in [*roots, *fragments]:
        _same(_got(snap, post_root_ids=[root]), expected_synapses(syn, post_ids=[root]))
        _same(_got(snap, pre_root_ids=[root]), expected_synapses(syn, pre_ids=[root]))
    assert len(expected_synapses(syn, pre_ids=fragments[:1])) > 0


def test_pre_and_post_lists_and_together(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, nuclei, syn = release
    pre = list(syn.pre_pt_root_id.unique()[:10])
    post = list(syn.post_pt_root_id.unique()[:10])
    want = expected_synapses(syn, pre_ids=pre, post_ids=post)
    assert len(want) > 0
    _same(_got(snap, pre_root_ids=pre, post_root_ids=post), want)


def test_defaults_and_flags(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:
    snap, _, syn = release
    auto = syn[syn.pre_pt_root_id == syn.post_pt_root_id].pre_pt_root_id.iloc[0]
    _same(_got(snap, post_root_ids=[auto]), expected_synapses(syn, post_ids=[auto]))
    _same(_got(snap, post_root_ids=[auto], remove_autapses=False),
          expected_synapses(syn, post_ids=[auto], remove_autapses=False))  # fmt: skip
    _same(_got(snap, post_root_ids=[0], include_zeros=True), expected_synapses(syn, post_ids=[0]))
    assert len(_got(snap, post_root_ids=[0], include_zeros=False)) == 0
    assert len(expected_synapses(syn, post_ids=[0])) > 0


def test_include_dropped_false_is_the_used_synapses(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, nuclei, syn = release
    used = syn[outcomes(nuclei, syn).outcome == "used"]
    roots = list(nuclei.pt_root_id[nuclei.pt_root_id != 0].unique()[:20])
    got = _got(snap, post_root_ids=roots, include_dropped=False)
    _same(got, expected_synapses(used, post_ids=roots))
    assert set(got.outcome) == {"used"}


def test_nucleus_ids_go_through_the_release_roots(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, nuclei, syn = release
    cells = nuclei.iloc[3:9]
    _same(_got(snap, post_nucleus_ids=list(cells.id)),
          expected_synapses(syn, post_ids=list(cells.pt_root_id)))  # fmt: skip
    # root 0 (nucleus outside the segmentation) has no synapses of its own
    assert len(_got(snap, pre_nucleus_ids=[int(nuclei.id.iloc[2])])) == 0


def test_bounding_box_equals_a_pandas_mask(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, _, syn = release
    box = [[50_000, 40_000, 300], [120_000, 150_000, 1500]]
    for col in POS:
        want = expected_synapses(syn, bounding_box=box, bounding_box_column=col)
        assert 0 < len(want) < len(syn)
        _same(_got(snap, bounding_box=box, bounding_box_column=col), want)
    # inclusive on both ends, like PostGIS' box test
    row = syn.iloc[100]
    p = [int(row[f"post_pt_position_{a}"]) for a in "xyz"]
    got = _got(snap, bounding_box=[p, p])
    assert int(row.id) in set(got.id) or row.pre_pt_root_id == row.post_pt_root_id
    # fractional corners on integer voxels: the same rows as the mask of the numbers as given
    frac = [[v - 0.5 for v in p], [v + 0.25 for v in p]]
    _same(_got(snap, bounding_box=frac), expected_synapses(syn, bounding_box=frac))
    off = [[v + 0.5 for v in p], [v + 0.75 for v in p]]  # between two voxels: nothing
    assert len(expected_synapses(syn, bounding_box=off)) == 0
    assert len(_got(snap, bounding_box=off)) == 0


def test_post_root_lookup_reads_few_row_groups(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, nuclei, _ = release
    store = open_store(snap)
    sql, params = synapse_sql(snap, store, SynapseQuery.of(post_root_ids=[int(nuclei.pt_root_id.iloc[5])]))  # fmt: skip
    plan = run("EXPLAIN ANALYZE " + sql, params).column(1)[0].as_py()
    import pyarrow.parquet as pq

    groups = pq.ParquetFile(store.path).metadata.num_row_groups
    line = next(ln for ln in plan.splitlines() if "Row Groups Scanned" in ln)
    scanned = int(line.split(":")[1].split("/")[0])
    assert groups >= 8 and scanned <= 2, line


def test_paging_by_id(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:
    snap, nuclei, syn = release
    roots = list(nuclei.pt_root_id[nuclei.pt_root_id != 0].unique()[:10])
    want = expected_synapses(syn, post_ids=roots)
    q = SynapseQuery.of(post_root_ids=roots)
    got, after = [], None
    while True:
        page = query_synapses(snap, q, after_id=after, limit=37).to_pandas()
        got.extend(page.id)
        if len(page) < 37:
            break
        after = int(page.id.iloc[-1])
    assert got == want.id.tolist()
    assert (
        query_synapses(snap, q, limit=5, offset=3).to_pandas().id.tolist() == want.id.tolist()[3:8]
    )


@pytest.mark.parametrize(
    ("kw", "err", "needle"),
    [
        ({"post_root_ids": [], "pre_root_ids": []}, BadRequest, "pre_root_ids and post_root_ids"),
        ({}, BadRequest, "give pre/post root IDs"),
        ({"bounding_box": [[10, 0, 0], [5, 1, 1]]}, BadRequest, "inverted on x"),
        ({"bounding_box": [[0, 0], [5, 1]]}, BadRequest, "bounding_box must be"),
        ({"bounding_box": [[0, 0, 0], [1, 1, 1]], "bounding_box_column": "soma"}, BadRequest, "bounding_box_column"),
        ({"post_root_ids": ["x1"]}, BadRequest, "post_root_ids"),
        ({"post_root_ids": [-1]}, BadRequest, "post_root_ids"),
        ({"pre_root_ids": list(range(10_001))}, LimitExceeded, "pre_root_ids: at most"),
    ],
)  # fmt: skip
def test_bad_arguments_are_coded(kw: dict[str, object], err: type[Exception], needle: str) -> None:
    with pytest.raises(err, match=needle):
        SynapseQuery.of(**kw)  # type: ignore[arg-type]


def test_unknown_column_and_huge_limit(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, _, _ = release
    q = SynapseQuery.of(post_root_ids=[1])
    with pytest.raises(BadRequest, match="unknown column.*'nope'"):
        query_synapses(snap, q, columns=["id", "nope"])
    with pytest.raises(LimitExceeded, match="64 bits"):
        query_synapses(snap, q, limit=2**64)
    with pytest.raises(BadRequest, match="limit must be >= 0"):
        query_synapses(snap, q, limit=-1)


def test_a_slow_read_is_a_timeout() -> None:
    with pytest.raises(QueryTimeout) as info:
        run("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3", [], seconds=0.3)
    assert info.value.code == "TIMEOUT"


def test_partner_table_equals_pandas(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, nuclei, syn = release
    att = outcomes(nuclei, syn)
    used = pd.concat([syn, att], axis=1)[att.outcome == "used"]
    edges = used.groupby(["pre_nucleus_id", "post_nucleus_id"]).agg(
        synapses=("id", "size"), size=("size", "sum")).reset_index()  # fmt: skip
    cell = int(edges.pre_nucleus_id.value_counts().index[0])
    want = edges[edges.pre_nucleus_id == cell].sort_values(
        ["synapses", "post_nucleus_id"], ascending=[False, True])  # fmt: skip
    got = query_partners(snap, cell, "outputs").to_pandas()
    assert got.partner_nucleus_id.tolist() == want.post_nucleus_id.tolist()
    assert got.synapses.tolist() == want.synapses.tolist()
    assert got["size"].tolist() == want["size"].tolist()
    roots = dict(zip(nuclei.id, nuclei.pt_root_id, strict=True))
    assert got.partner_root_id.tolist() == [roots[n] for n in want.post_nucleus_id]
    got2 = query_partners(snap, cell, "outputs", min_synapses=2).to_pandas()
    assert got2.partner_nucleus_id.tolist() == want[want.synapses >= 2].post_nucleus_id.tolist()


def test_cell_tables_like_query_table(release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    snap, nuclei, _ = release
    got = query_cell_table(snap, "nucleus_detection_v0").to_pandas()
    want = nuclei.sort_values("id", ignore_index=True)
    assert got.id.tolist() == want.id.tolist()
    assert got.pt_root_id.tolist() == want.pt_root_id.tolist()
    assert np.array_equal(got.pt_position_x.to_numpy(), want.pt_position_x.to_numpy())
    ids = list(want.id.iloc[[1, 4, 9]])
    got = query_cell_table(snap, "nucleus_detection_v0", filter_in_dict={"id": ids}).to_pandas()
    assert got.id.tolist() == ids
    root = int(want.pt_root_id.iloc[0])
    got = query_cell_table(snap, "nucleus_detection_v0", filter_equal_dict={"pt_root_id": root})
    assert sorted(got.column("id").to_pylist()) == sorted(want.id[want.pt_root_id == root])
    with pytest.raises(BadRequest, match="unknown column 'soma'"):
        query_cell_table(snap, "nucleus_detection_v0", filter_equal_dict={"soma": 1})
    with pytest.raises(BadRequest, match="unknown table 'synapses_pni_2'"):
        query_cell_table(snap, "synapses_pni_2")


def test_a_second_release_is_independent(tmp_path: Path, release: tuple[Snapshot, pd.DataFrame, pd.DataFrame]) -> None:  # fmt: skip
    nuclei, syn = source_tables(seed=8)
    snap = build_snapshot(tmp_path, V2, nuclei, syn)
    root = int(nuclei.pt_root_id.iloc[4])
    _same(_got(snap, post_root_ids=[root]), expected_synapses(syn, post_ids=[root]))


def test_pinky100_store_equals_the_source_file(shared_data: Path, tmp_path: Path) -> None:
    """The real pinky100 synapse table (1,961 rows, positions in voxels, spine volumes) through
    `cgraph load`'s mapping: every root's inputs and outputs equal a pandas filter."""
    from cgraph.load import aggregate_to_snapshot

    d = shared_data / "microns_pinky100_v185"
    mapping = {"pre_pt_root_id": "pre_root_id", "post_pt_root_id": "post_root_id",
               "size": "cleft_vx"}  # fmt: skip
    for stem, src in (("pre_pt_position", "pre_pos"), ("ctr_pt_position", "ctr_pos"),
                      ("post_pt_position", "post_pos")):  # fmt: skip
        for a in "xyz":
            mapping[f"{stem}_{a}"] = f"{src}_{a}_vx"
    snap, _ = aggregate_to_snapshot(
        18599, nuclei=d / "soma_valence_v185.csv", synapses=d / "soma_subgraph_synapses_spines_v185.csv",
        mapping=mapping,
    )  # fmt: skip
    raw = pd.read_csv(d / "soma_subgraph_synapses_spines_v185.csv")
    syn = raw.rename(columns={v: k for k, v in mapping.items()})
    roots = sorted(set(syn.post_pt_root_id))[:: max(1, syn.post_pt_root_id.nunique() // 25)]
    for root in roots:
        for side, key in (("post_ids", "post_root_ids"), ("pre_ids", "pre_root_ids")):
            want = expected_synapses(syn, **{side: [root]})
            got = _got(snap, **{key: [root]})
            assert got.id.tolist() == want.id.tolist()
            for c in ("pre_pt_root_id", "post_pt_root_id", "size", "spine_vol_um3",
                      *(f"{s}_{a}" for s in POS for a in "xyz")):  # fmt: skip
                assert got[c].tolist() == want[c].tolist(), c


def test_a_narrowed_read_equals_the_whole_file_scan(
    release: tuple[Snapshot, pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Post-side lookups read only the row groups that can hold their roots (pyarrow, the
    footer's statistics) and answer exactly what DuckDB's scan of the whole file answers."""
    import pyarrow.parquet as pq

    from snapshot import query

    snap, nuclei, syn = release
    store = open_store(snap)
    groups = pq.ParquetFile(store.path).metadata.num_row_groups
    roots = sorted(set(syn.post_pt_root_id))[::7][:40]  # fragments and cells, across groups
    cases = [{"post_root_ids": [r]} for r in roots[:25]]
    cases += [{"post_root_ids": roots, "include_dropped": False},
              {"post_nucleus_ids": [int(n) for n in nuclei.id.iloc[:6]], "pre_root_ids": roots[:20]},
              {"post_root_ids": [123456789]}]  # fmt: skip
    for kw in cases:
        q = SynapseQuery.of(**kw)  # type: ignore[arg-type]
        rows = query.narrowed(snap, store, q)
        assert rows is not None
        if len(kw.get("post_root_ids") or ()) == 1:  # one root: one or two row groups
            assert rows.num_rows <= 2 * 500, kw
        got = query_synapses(snap, q, order_by_id=True)
        with monkeypatch.context() as mp:
            mp.setattr(query, "NARROW_MAX_GROUPS", -1)  # never narrowed: the whole file
            assert query.narrowed(snap, store, q) is None
            want = query_synapses(snap, q, order_by_id=True)
        assert got.equals(want), kw
    assert groups >= 8
