"""loaders.cave against FakeCaveClient.

FakeCaveClient is a stand-in for the remote CAVE service, which cannot be reached from here. It
implements only the three caveclient calls loaders.cave uses, over in-memory DataFrames, and it
truncates every answer at a row cap in a random order, as the real service does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.errors import LimitExceeded
from loaders.aggregate import build_release
from loaders.cave import read_cave_release
from tests.helpers import edge_rows

BIG = 864691135987654321


class FakeMaterialize:
    def __init__(self, tables: dict[str, pd.DataFrame], cap: int, seed: int = 0) -> None:
        self.tables = tables
        self.cap = cap
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def get_version_metadata(self, version: int) -> dict[str, Any]:
        return {"version": version, "time_stamp": "2021-06-11T08:10:00.215114"}

    def _cap(self, df: pd.DataFrame, limit: int | None) -> pd.DataFrame:
        self.calls += 1
        n = min(self.cap, limit or self.cap)
        if len(df) > n:  # non-deterministic truncation
            df = df.iloc[np.sort(self.rng.choice(len(df), n, replace=False))]
        return df.reset_index(drop=True)

    def query_table(
        self,
        table: str,
        filter_in_dict: dict[str, list[int]] | None = None,
        limit: int | None = None,
        split_positions: bool = False,
        materialization_version: int | None = None,
        **_: Any,
    ) -> pd.DataFrame:
        assert split_positions and materialization_version == 117
        df = self.tables[table]
        for col, values in (filter_in_dict or {}).items():
            df = df[df[col].isin(values)]
        return self._cap(df, limit)

    def synapse_query(
        self,
        pre_ids: Any = None,
        post_ids: Any = None,
        remove_autapses: bool = True,
        include_zeros: bool = True,
        limit: int | None = None,
        split_positions: bool = False,
        materialization_version: int | None = None,
        synapse_table: str | None = None,
        **_: Any,
    ) -> pd.DataFrame:
        assert split_positions and materialization_version == 117
        df = self.tables[synapse_table or "synapses_pni_2"]
        if pre_ids is not None:
            df = df[df.pre_pt_root_id.isin(pre_ids)]
        if post_ids is not None:
            df = df[df.post_pt_root_id.isin(post_ids)]
        if not include_zeros:
            df = df[(df.pre_pt_root_id != 0) & (df.post_pt_root_id != 0)]
        df = self._cap(df, limit)
        return df[df.pre_pt_root_id != df.post_pt_root_id] if remove_autapses else df


class FakeCaveClient:
    """Stand-in for caveclient.CAVEclient (the remote CAVE service cannot be reached from here)."""

    def __init__(self, tables: dict[str, pd.DataFrame], cap: int) -> None:
        self.materialize = FakeMaterialize(tables, cap)


def make_tables(seed: int = 5) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 150
    roots = BIG + rng.choice(10**9, n, replace=False).astype(np.int64)
    roots[:3] = 0
    roots[3:6] = roots[6:9]
    nuclei = pd.DataFrame(
        {
            "id": np.arange(1000, 1000 + n, dtype=np.int64),
            "pt_root_id": roots,
            "pt_position_x": rng.integers(0, 9999, n),
            "pt_position_y": rng.integers(0, 9999, n),
            "pt_position_z": rng.integers(0, 999, n),
            "volume": rng.random(n) * 300,
        }
    )
    pool = np.r_[roots, BIG + 10**10 + np.arange(300)]
    m = 20_000
    syn = pd.DataFrame(
        {
            "id": rng.permutation(m).astype(np.int64),
            "pre_pt_root_id": rng.choice(pool, m),
            "post_pt_root_id": rng.choice(pool, m),
            "size": rng.integers(1, 500, m),
            "ctr_pt_position_x": np.zeros(m, dtype=np.int64),
        }
    )
    syn.loc[::50, "post_pt_root_id"] = syn.loc[::50, "pre_pt_root_id"]
    syn.loc[:40, "pre_pt_root_id"] = roots[10]  # one busy root
    targets = np.r_[nuclei.id, np.arange(5000, 5100)]  # 100 rows match no nucleus
    neurons = pd.DataFrame(
        {
            "id": np.arange(len(targets)),
            "target_id": targets,
            "cell_type": np.where(rng.random(len(targets)) < 0.6, "neuron", "not-neuron"),
            "classification_system": "is_neuron",
        }
    )
    return {
        "nucleus_detection_v0": nuclei,
        "synapses_pni_2": syn,
        "nucleus_ref_neuron_svm": neurons,
    }


def expected_synapses(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every synapse with a nucleus root on either side: what the cell-level data needs."""
    roots = set(tables["nucleus_detection_v0"].pt_root_id) - {0}
    syn = tables["synapses_pni_2"]
    keep = syn.pre_pt_root_id.isin(roots) | syn.post_pt_root_id.isin(roots)
    return syn.loc[keep, ["id", "pre_pt_root_id", "post_pt_root_id", "size"]]


def sort(df: pd.DataFrame, key: str = "id") -> pd.DataFrame:
    return df.sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("to_parquet", [False, True])
def test_release_equals_full_tables_despite_row_cap(tmp_path, to_parquet: bool) -> None:  # noqa: ANN001
    tables = make_tables()
    client = FakeCaveClient(tables, cap=200)
    rows: list[int] = []
    got = read_cave_release(
        client,
        117,
        neuron_table="nucleus_ref_neuron_svm",
        batch_size=64,
        row_limit=200,
        on_rows=rows.append,
        synapse_path=tmp_path / "s.parquet" if to_parquet else None,
    )
    assert got.timestamp == "2021-06-11T08:10:00.215114"
    pd.testing.assert_frame_equal(sort(got.nuclei), sort(tables["nucleus_detection_v0"]))
    assert got.neurons is not None
    neurons = tables["nucleus_ref_neuron_svm"]
    assert len(neurons) > 200  # so it was fetched in batches of nucleus IDs
    matched = neurons[neurons.target_id.isin(tables["nucleus_detection_v0"].id)]
    pd.testing.assert_frame_equal(sort(got.neurons), sort(matched))
    syn = pd.read_parquet(got.synapses) if to_parquet else got.synapses
    assert isinstance(syn, pd.DataFrame)
    pd.testing.assert_frame_equal(sort(syn), sort(expected_synapses(tables)), check_dtype=False)
    assert sum(rows) == len(syn)

    live = got.build()
    full = build_release(tables["nucleus_detection_v0"], tables["synapses_pni_2"], matched)
    assert [r for b in edge_rows(live.edges) for r in b] == [
        r for b in edge_rows(full.edges) for r in b
    ]
    assert live.out_synapses.tolist() == full.out_synapses.tolist()
    assert live.in_synapses.tolist() == full.in_synapses.tolist()
    assert live.multi_nucleus_roots == full.multi_nucleus_roots
    assert live.counts["dropped_autapse"] > 0


def test_single_root_over_the_cap_raises() -> None:
    tables = make_tables()
    tables["nucleus_detection_v0"] = tables["nucleus_detection_v0"].iloc[:20]
    client = FakeCaveClient(tables, cap=30)  # the busy root has > 30 output synapses
    with pytest.raises(LimitExceeded, match="alone returns 30 rows"):
        read_cave_release(client, 117, batch_size=64, row_limit=30)


def test_nucleus_table_over_the_cap_raises() -> None:
    client = FakeCaveClient(make_tables(), cap=100)
    with pytest.raises(LimitExceeded, match="nucleus_detection_v0 v117 has at least 100 rows"):
        read_cave_release(client, 117, row_limit=100)
