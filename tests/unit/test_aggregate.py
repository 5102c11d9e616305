"""Attribution rules and aggregation (loaders.aggregate), checked against plain pandas.

The reference below re-implements the contract with pandas merges and np.select; it shares no
code with loaders.aggregate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from loaders.aggregate import RootIndex, build_release
from tests.helpers import cell_rows, edge_rows

PINKY_MAPPING = {
    "pre_pt_root_id": "pre_root_id",
    "post_pt_root_id": "post_root_id",
    "size": "cleft_vx",
}
BIG = 864691135987654321  # > 2**53: float64 would round it


# ----------------------------------------------------------------------------- pandas reference


def reference(nuclei: pd.DataFrame, syn: pd.DataFrame) -> dict[str, object]:
    """The attribution contract, written independently with pandas."""
    nz = nuclei[nuclei.pt_root_id != 0]
    per_root = nz.groupby("pt_root_id").id.agg(list)
    single = nz.drop_duplicates("pt_root_id", keep=False).set_index("pt_root_id").id
    multi_roots = set(per_root[per_root.map(len) > 1].index)
    s = syn.copy()
    s["pre_n"] = s.pre_pt_root_id.map(single)
    s["post_n"] = s.post_pt_root_id.map(single)
    aut = s.pre_pt_root_id == s.post_pt_root_id
    zero = (s.pre_pt_root_id == 0) | (s.post_pt_root_id == 0)
    multi = s.pre_pt_root_id.isin(multi_roots) | s.post_pt_root_id.isin(multi_roots)
    frag = s.pre_n.isna() | s.post_n.isna()
    s["kind"] = np.select(
        [aut, zero, multi, frag], ["autapse", "root0", "multi", "frag"], default="used"
    )
    kinds = s.kind.value_counts()
    used = s[s.kind == "used"].sort_values("id")
    g = used.groupby(["pre_n", "post_n"])
    edges = pd.DataFrame(
        {
            "synapses": g.size(),
            "size": g["size"].sum() if "size" in s else None,
            "ids": g.id.agg(list),
            "sizes": g["size"].agg(list) if "size" in s else None,
        }
    ).reset_index()
    edges[["pre_n", "post_n"]] = edges[["pre_n", "post_n"]].astype("int64")
    non_aut = s[~aut]
    out = non_aut.dropna(subset=["pre_n"]).groupby("pre_n").size()
    inn = non_aut.dropna(subset=["post_n"]).groupby("post_n").size()
    return {
        "counts": {
            "synapses_total": len(s),
            "synapses_used": int(kinds.get("used", 0)),
            "dropped_autapse": int(kinds.get("autapse", 0)),
            "dropped_root0": int(kinds.get("root0", 0)),
            "dropped_multi_nucleus_root": int(kinds.get("multi", 0)),
            "dropped_partner_without_nucleus": int(kinds.get("frag", 0)),
            "edges": len(edges),
            "cells": len(nuclei),
        },
        "edges": edges,
        "out": {int(k): int(v) for k, v in out.items()},
        "in": {int(k): int(v) for k, v in inn.items()},
        "multi": {int(r): sorted(map(int, v)) for r, v in per_root.items() if len(v) > 1},
    }


def assert_matches(data, ref: dict[str, object], with_size: bool = True) -> None:  # noqa: ANN001
    for k, v in ref["counts"].items():  # type: ignore[attr-defined]
        assert data.counts[k] == v, k
    edges = ref["edges"]
    got = pd.DataFrame(
        {"pre_n": data.edges.pre, "post_n": data.edges.post, "synapses": data.edges.synapses}
    )
    exp = edges.sort_values(["pre_n", "post_n"]).reset_index(drop=True)  # type: ignore[union-attr]
    pd.testing.assert_frame_equal(got, exp[["pre_n", "post_n", "synapses"]], check_dtype=False)
    rows = [r for batch in edge_rows(data.edges, 7) for r in batch]
    assert [r["synapse_ids"] for r in rows] == [list(map(int, v)) for v in exp.ids]
    if with_size:
        assert [r["size"] for r in rows] == exp["size"].astype(int).tolist()
        assert [r["sizes"] for r in rows] == [list(map(int, v)) for v in exp.sizes]
    else:
        assert data.edges.size is None and data.edges.sizes is None
        assert all(r["size"] is None and r["sizes"] == [] for r in rows)
    nid = data.cells.nucleus_id.tolist()
    assert dict(zip(nid, data.out_synapses.tolist(), strict=True)) == {
        n: ref["out"].get(n, 0) for n in nid
    }  # type: ignore[attr-defined]
    assert dict(zip(nid, data.in_synapses.tolist(), strict=True)) == {
        n: ref["in"].get(n, 0) for n in nid
    }  # type: ignore[attr-defined]
    assert data.multi_nucleus_roots == ref["multi"]


# ----------------------------------------------------------------------------- hand-built table

A, B, C, M, F = BIG, BIG + 1, BIG + 2, BIG + 3, BIG + 99  # M: two nuclei; F: fragment


def hand_nuclei() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [101, 102, 103, 104, 105, 106],
            "pt_root_id": np.array([A, B, C, M, M, 0], dtype=np.int64),
            "pt_position": ["[1 2 3]"] * 6,
            "volume": [10.0, np.nan, 30.0, 40.0, 50.0, 60.0],
        }
    )


def hand_synapses() -> pd.DataFrame:
    rows = [  # id, pre, post, size
        (50, A, B, 5),
        (10, A, B, 7),
        (30, A, B, 1),  # used A->B, ids out of order
        (20, B, A, 2),  # used B->A
        (21, B, C, 3),  # used B->C
        (1, A, A, 9),
        (2, F, F, 9),
        (3, M, M, 9),
        (4, 0, 0, 9),  # autapses (rule 1 first)
        (5, A, 0, 1),
        (6, 0, B, 1),
        (7, M, 0, 1),  # root 0 (rule 2 before 3)
        (8, A, M, 1),
        (9, M, B, 1),
        (11, M, F, 1),  # multi-nucleus root (rule 3 before 4)
        (12, A, F, 1),
        (13, F, C, 1),
        (14, F, F + 1, 1),  # fragments
    ]
    return pd.DataFrame(rows, columns=["id", "pre_pt_root_id", "post_pt_root_id", "size"]).astype(
        "int64"
    )


def test_hand_built_rules_match_pandas() -> None:
    nuclei, syn = hand_nuclei(), hand_synapses()
    data = build_release(nuclei, syn)
    assert_matches(data, reference(nuclei, syn))
    # the same rules, spelled out
    assert data.counts["dropped_autapse"] == 4
    assert data.counts["dropped_root0"] == 3
    assert data.counts["dropped_multi_nucleus_root"] == 3
    assert data.counts["dropped_partner_without_nucleus"] == 3
    assert data.counts["synapses_used"] == 5
    ab = next(r for r in next(edge_rows(data.edges)) if (r["pre"], r["post"]) == (101, 102))
    assert ab == {
        "pre": 101,
        "post": 102,
        "synapses": 3,
        "size": 13,
        "sizes": [7, 1, 5],
        "synapse_ids": [10, 30, 50],
    }
    assert data.multi_nucleus_roots == {M: [104, 105]}


def test_cells_record() -> None:
    data = build_release(hand_nuclei().iloc[::-1], hand_synapses())
    c = data.cells
    assert c.nucleus_id.tolist() == [101, 102, 103, 104, 105, 106]  # sorted
    assert c.root_id.dtype == np.int64 and c.root_id.tolist()[:3] == [A, B, C]
    assert (c.x.tolist(), c.z.tolist()) == ([4.0] * 6, [120.0] * 6)
    assert np.isnan(c.volume[1]) and c.volume[0] == 10.0
    cell = next(cell_rows(data))[1]
    assert cell["volume"] is None and cell["root_id"] == B and "cell_type" not in cell


def test_no_size_column_gives_none_never_numbers() -> None:
    nuclei, syn = hand_nuclei(), hand_synapses().drop(columns="size")
    data = build_release(nuclei, syn)
    assert_matches(data, reference(nuclei, syn), with_size=False)


def test_no_id_column_uses_row_index() -> None:
    syn = hand_synapses().drop(columns="id")
    data = build_release(hand_nuclei(), syn)
    ab = next(r for r in next(edge_rows(data.edges)) if (r["pre"], r["post"]) == (101, 102))
    assert ab["synapse_ids"] == [0, 1, 2] and ab["sizes"] == [5, 7, 1]


def test_batching_does_not_change_the_result() -> None:
    nuclei, syn = hand_nuclei(), hand_synapses()
    seen: list[int] = []
    data = build_release(nuclei, syn, batch_rows=4, on_rows=seen.append)
    assert seen == [4, 4, 4, 4, 2]
    assert_matches(data, reference(nuclei, syn))


def test_random_tables_match_pandas() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    roots = BIG + rng.choice(10**12, size=n, replace=False).astype(np.int64)
    roots[:20] = 0
    roots[20:60] = roots[60:100]  # 40 multi-nucleus roots
    nuclei = pd.DataFrame(
        {
            "id": rng.permutation(10**6)[:n],
            "pt_root_id": roots,
            "pt_position": [np.array([1, 2, 3])] * n,
        }
    )
    pool = np.r_[roots, BIG + 10**13 + np.arange(2000)]  # cells, root 0, fragments
    m = 200_000
    syn = pd.DataFrame(
        {
            "id": rng.permutation(m) + 5,
            "pre_pt_root_id": rng.choice(pool, m),
            "post_pt_root_id": rng.choice(pool, m),
            "size": rng.integers(0, 999, m),
        }
    )
    syn.loc[::97, "post_pt_root_id"] = syn.loc[::97, "pre_pt_root_id"]
    data = build_release(nuclei, syn, batch_rows=30_000)
    ref = reference(nuclei, syn)
    assert_matches(data, ref)
    assert min(ref["counts"].values()) > 0  # type: ignore[attr-defined]  # every rule was hit


def test_root_index_against_dict_lookup() -> None:
    rng = np.random.default_rng(3)
    roots = BIG + rng.choice(2**40, size=5000, replace=False).astype(np.int64)
    index = RootIndex(roots)
    assert (index.slot_key == -2).any(), "the test must exercise hash collisions"
    queries = np.r_[roots, BIG + rng.integers(0, 2**40, 50_000), 0, 2**63 - 1]
    expected = {int(r): i for i, r in enumerate(roots)}
    want = [-3 if q == 0 else expected.get(int(q), -1) for q in queries.tolist()]
    assert index.lookup(queries).tolist() == want


# ----------------------------------------------------------------------------- annotations


def test_annotations_neuron_and_cell_type_tables() -> None:
    nuclei = hand_nuclei()
    neurons = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "target_id": [101, 102, 103, 999],
            "cell_type": ["neuron", "not-neuron", "neuron", "neuron"],
            "classification_system": ["is_neuron"] * 4,
        }
    )
    types = pd.DataFrame(
        {
            "id": [103, 101, 7],
            "cell_type": ["BC", "23P", "MC"],
            "classification_system": ["inhibitory_neuron", None, "x"],
        }
    )
    data = build_release(nuclei, hand_synapses(), neurons, types)
    a = data.annotations
    assert a.is_neuron is not None and a.is_neuron.tolist() == [True, False, True, None, None, None]
    assert a.cell_type is not None and a.cell_type.tolist()[:4] == ["23P", None, "BC", None]
    assert a.classification_system is not None
    assert a.classification_system.tolist()[:3] == [None, None, "inhibitory_neuron"]
    assert data.counts["neuron_rows_unmatched"] == 1
    first = next(cell_rows(data, 2))
    assert [(c["nucleus_id"], c["is_neuron"], c["cell_type"]) for c in first] == [
        (101, True, "23P"),
        (102, False, None),
    ]
    assert data.counts["cell_type_rows_unmatched"] == 1


def test_annotation_duplicate_and_bad_value() -> None:
    dup = pd.DataFrame({"target_id": [101, 102, 101], "cell_type": ["neuron"] * 3})
    with pytest.raises(InputError) as err:
        build_release(hand_nuclei(), hand_synapses(), neurons=dup)
    assert (err.value.column, err.value.row) == ("target_id", 3)
    bad = pd.DataFrame({"target_id": [101, 102], "cell_type": ["neuron", "glia"]})
    with pytest.raises(InputError, match="'glia'") as err:
        build_release(hand_nuclei(), hand_synapses(), neurons=bad)
    assert (err.value.column, err.value.row) == ("cell_type", 2)


# ----------------------------------------------------------------------------- real data


def test_pinky100_counts_match_pandas(shared_data: Path) -> None:
    d = shared_data / "microns_pinky100_v185"
    somas, syn_file = d / "soma_valence_v185.csv", d / "soma_subgraph_synapses_spines_v185.csv"
    data = build_release(somas, syn_file, cell_types=somas, mapping=PINKY_MAPPING)
    nuclei = pd.read_csv(somas, dtype={"pt_root_id": "int64"})
    syn = pd.read_csv(syn_file, dtype={"pre_root_id": "int64", "post_root_id": "int64"}).rename(
        columns={v: k for k, v in PINKY_MAPPING.items()}
    )
    ref = reference(nuclei, syn)
    assert_matches(data, ref)
    # SOURCE.txt: 3 roots with 2 somas each, 2 autapses
    assert len(data.multi_nucleus_roots) == 3
    assert all(len(v) == 2 for v in data.multi_nucleus_roots.values())
    assert data.counts["dropped_autapse"] == 2
    assert data.cells.root_id.tolist() == nuclei.sort_values("id").pt_root_id.tolist()
    assert data.annotations.cell_type is not None
    assert set(data.annotations.cell_type.tolist()) == set(nuclei.cell_type)


# ----------------------------------------------------------------------------- garbage refused
# issue 12: each of these loaded and exited 0


def _synapses(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` synapses among the hand-built cells A, B, C (every one used), ascending ids."""
    rng = np.random.default_rng(seed)
    roots = np.array([A, B, C], dtype=np.int64)
    pre = rng.integers(0, 3, n)
    post = (pre + rng.integers(1, 3, n)) % 3  # never an autapse
    return pd.DataFrame({"id": np.arange(1000, 1000 + n, dtype=np.int64), "pre_pt_root_id": roots[pre],
                         "post_pt_root_id": roots[post], "size": rng.integers(1, 500, n)})  # fmt: skip


def _duplicate_error(syn: pd.DataFrame, **kw: object) -> InputError:
    with pytest.raises(InputError, match="duplicate synapse ID") as err:
        build_release(hand_nuclei(), syn, **kw)  # type: ignore[arg-type]
    return err.value


def _first_repeat(ids: pd.Series) -> tuple[int, int, int]:
    """(id, row, first row) of the earliest row repeating an earlier one, 1-based (pandas)."""
    row = int(np.flatnonzero(ids.duplicated().to_numpy())[0])
    value = int(ids.iloc[row])
    return value, row + 1, int(np.flatnonzero(ids.to_numpy() == value)[0]) + 1


@pytest.mark.parametrize("batch_rows", [1_000_000, 7])
def test_duplicate_synapse_id_names_both_rows(batch_rows: int) -> None:
    ascending = _synapses(40)
    ascending.loc[25, "id"] = ascending.loc[24, "id"]  # non-decreasing: row 26 repeats row 25
    ascending.loc[26:, "id"] += 1
    e = _duplicate_error(ascending, batch_rows=batch_rows)
    assert (e.column, e.row) == ("id", 26) and "row 26 repeats row 25" in str(e)
    shuffled = _synapses(40).sample(frac=1, random_state=3).reset_index(drop=True)
    shuffled.loc[31, "id"] = shuffled.loc[4, "id"]  # different roots, the same id
    value, row, first = _first_repeat(shuffled["id"])
    e = _duplicate_error(shuffled, batch_rows=batch_rows)
    assert (e.column, e.row) == ("id", row)
    assert f"ID {value} (row {row} repeats row {first};" in str(e)


def test_fully_duplicated_rows_are_refused_not_double_counted() -> None:
    syn = _synapses(2000)
    doubled = pd.concat([syn, syn.iloc[:500]], ignore_index=True)  # 500 rows copied at the end
    e = _duplicate_error(doubled, batch_rows=256)
    assert e.row == 2001 and "row 2001 repeats row 1" in str(e)


def test_synapse_id_check_against_pandas_with_spills_and_skew(tmp_path: Path) -> None:
    from loaders.store import SynapseIdCheck

    rng = np.random.default_rng(5)
    n = 600_000
    cases = {
        "unique": rng.permutation(n * 3)[:n],
        "one repeat": rng.permutation(n * 3)[:n],
        # the first batch spans a narrow range: the plan is skewed, the last partition too big
        "skewed": np.r_[rng.permutation(1000), 10_000 + rng.permutation(n - 1000)],
        "one id fills a partition": np.r_[rng.permutation(n // 2), np.full(n // 2, 7 * n)],
    }
    cases["one repeat"][n - 10] = cases["one repeat"][123]
    cases["skewed"][n - 5] = cases["skewed"][n - 300_000]
    for name, ids in cases.items():
        ids = ids.astype(np.int64)
        check = SynapseIdCheck(memory=64 << 20, expected_rows=n, spill_dir=tmp_path)
        found = None
        for lo in range(0, n, 50_000):
            found = found or check.add(ids[lo : lo + 50_000])
        found = found or check.finish()
        series = pd.Series(ids)
        assert found == (None if name == "unique" else _first_repeat(series)), name
        assert list(tmp_path.iterdir()) == [], name  # the spill is gone


def test_summed_sizes_past_int64_are_an_error_not_a_wrapped_number() -> None:
    syn = _synapses(6)
    syn["size"] = [2**62, 3, 2**62 - 1, 4, 5, 6]  # rows 1 and 3 on one pair, from 2**63 - 1 ...
    pair_roots = [syn.pre_pt_root_id[0], syn.post_pt_root_id[0]]
    syn.loc[2, ["pre_pt_root_id", "post_pt_root_id"]] = pair_roots
    data = build_release(hand_nuclei(), syn)  # ... which fits exactly
    nid = dict(zip(hand_nuclei().pt_root_id, hand_nuclei().id, strict=False))
    pair = (nid[syn.pre_pt_root_id[0]], nid[syn.post_pt_root_id[0]])
    i = int(np.flatnonzero((data.edges.pre == pair[0]) & (data.edges.post == pair[1]))[0])
    assert int(data.edges.size[i]) == 2**63 - 1  # type: ignore[index]
    syn.loc[2, "size"] = 2**62 + 5  # now 2**63 + 5: stored as -9223372036854775803 before
    with pytest.raises(InputError) as err:
        build_release(hand_nuclei(), syn)
    e = err.value
    assert e.column == "size" and f"from nucleus {pair[0]} to nucleus {pair[1]}" in str(e)
    assert f"{2**63 + 5:,}" in str(e)


@pytest.mark.parametrize(
    ("value", "word"), [(np.inf, "infinite"), (-np.inf, "infinite"), (-0.5, "negative")]
)
def test_infinite_or_negative_volume_names_row(value: float, word: str) -> None:
    nuclei = hand_nuclei()
    nuclei.loc[4, "volume"] = value  # data row 5
    with pytest.raises(InputError, match=word) as err:
        build_release(nuclei, hand_synapses())
    assert (err.value.column, err.value.row) == ("volume", 5)
    nuclei.loc[4, "volume"] = np.nan  # unknown: allowed
    assert np.isnan(build_release(nuclei, hand_synapses()).cells.volume[4])


def test_integer_cell_type_is_refused_in_typed_files_kept_as_text_in_csv(tmp_path: Path) -> None:
    types = pd.DataFrame({"target_id": [101, 102, 103], "cell_type": [4, 23, 5]})
    path = tmp_path / "types.parquet"
    types.to_parquet(path)
    with pytest.raises(InputError, match="must be text, got a column of int64") as err:
        build_release(hand_nuclei(), hand_synapses(), cell_types=path)
    assert (err.value.column, err.value.row) == ("cell_type", 1)
    csv = tmp_path / "types.csv"
    csv.write_text("target_id,cell_type,classification_system\n101,04,\n102,23,x\n")
    a = build_release(hand_nuclei(), hand_synapses(), cell_types=csv).annotations
    assert a.cell_type is not None and a.cell_type.tolist()[:3] == ["04", "23", None]
    assert a.classification_system is not None
    assert a.classification_system.tolist()[:2] == [None, "x"]


def test_one_huge_label_is_refused_with_memory_in_proportion(tmp_path: Path) -> None:
    import tracemalloc

    cells = 200
    nuclei = pd.DataFrame({"id": np.arange(1, cells + 1), "pt_root_id": np.arange(1, cells + 1) + BIG,
                           "pt_position": ["[1 2 3]"] * cells})  # fmt: skip
    labels = ["23P"] * cells
    labels[41] = "x" * (8 << 20)  # data row 42; fixed-width strings: 8 MiB x 4 B x 200 rows
    path = tmp_path / "types.parquet"
    pd.DataFrame({"target_id": nuclei.id, "cell_type": labels}).to_parquet(path)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="label of 8,388,608 characters") as err:
            build_release(nuclei, hand_synapses(), cell_types=path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (err.value.column, err.value.row) == ("cell_type", 42) and len(str(err.value)) < 300
    assert peak < 256 << 20  # not 6.25 GiB
