"""Tests of the synthetic CAVE table generator (independent checks with pandas/networkx)."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loaders.synth import X_BOUNDS, Y_BOUNDS, Z_BOUNDS, SynthSummary, generate

VERSIONS = [117, 343, 661]
TABLES = ("nuclei", "synapses", "cell_types", "neurons")
COLUMNS = {
    "nuclei": {
        "id": pa.int64(),
        "volume": pa.float64(),
        "pt_position_x": pa.int64(),
        "pt_position_y": pa.int64(),
        "pt_position_z": pa.int64(),
        "pt_root_id": pa.int64(),
    },
    "synapses": {
        "id": pa.int64(),
        "pre_pt_root_id": pa.int64(),
        "post_pt_root_id": pa.int64(),
        "size": pa.int64(),
        "pre_pt_supervoxel_id": pa.int64(),
        "post_pt_supervoxel_id": pa.int64(),
        **{f"{p}_pt_position_{k}": pa.int32() for p in ("pre", "ctr", "post") for k in "xyz"},
    },
    "cell_types": {
        "id": pa.int64(),
        "target_id": pa.int64(),
        "classification_system": pa.string(),
        "cell_type": pa.string(),
    },
    "neurons": {
        "id": pa.int64(),
        "target_id": pa.int64(),
        "classification_system": pa.string(),
        "cell_type": pa.string(),
    },
}
EXC = {"23P", "4P", "5P-IT", "5P-ET", "5P-NP", "6P-IT", "6P-CT"}
INH = {"BC", "BPC", "MC", "NGC"}
NON = {"OPC", "astrocyte", "microglia", "pericyte", "oligo"}


def read(d: Path, table: str, v: int) -> pd.DataFrame:
    return pd.read_parquet(d / f"{table}_v{v}.parquet")


def cell_edges(d: Path, v: int) -> pd.DataFrame:
    """Cell-to-cell synapses the CAVE way: single-nucleus, non-zero roots, no autapses."""
    nuc = read(d, "nuclei", v)
    nuc = nuc[nuc.pt_root_id != 0].drop_duplicates("pt_root_id", keep=False)
    root_to_cell = nuc.set_index("pt_root_id")["id"]
    syn = read(d, "synapses", v)
    syn = syn.assign(
        pre=syn.pre_pt_root_id.map(root_to_cell), post=syn.post_pt_root_id.map(root_to_cell)
    )
    syn = syn.dropna(subset=["pre", "post"])
    return syn[syn.pre != syn.post].astype({"pre": "int64", "post": "int64"})


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    d = tmp_path_factory.mktemp("synth_small")
    return d, generate(d, cells=50, synapses=2_000, versions=VERSIONS, seed=3)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    d = tmp_path_factory.mktemp("synth_medium")
    return d, generate(d, cells=1_500, synapses=30_000, versions=[117, 343], seed=11)


def test_files_columns_and_dtypes(small: tuple[Path, SynthSummary]) -> None:
    d, summary = small
    assert [vs.version for vs in summary.versions] == VERSIONS
    for v in VERSIONS:
        for table in TABLES:
            path = d / f"{table}_v{v}.parquet"
            assert path.is_file()
            schema = pq.read_schema(path)
            assert dict(zip(schema.names, schema.types, strict=True)) == COLUMNS[table]
        assert summary.version(v).files == tuple(d / f"{t}_v{v}.parquet" for t in TABLES)


def test_deterministic_and_independent_of_batch_rows(tmp_path: Path) -> None:
    kw = {"cells": 60, "synapses": 3_000, "versions": [117, 343], "seed": 5}
    generate(tmp_path / "a", **kw)  # type: ignore[arg-type]
    generate(tmp_path / "b", **kw, batch_rows=700)  # type: ignore[arg-type]
    generate(tmp_path / "c", **{**kw, "seed": 6})  # type: ignore[arg-type]
    for v in (117, 343):
        for table in TABLES:
            a = read(tmp_path / "a", table, v)
            pd.testing.assert_frame_equal(a, read(tmp_path / "b", table, v))
        assert not read(tmp_path / "a", "synapses", v).equals(read(tmp_path / "c", "synapses", v))
    md = pq.ParquetFile(tmp_path / "b" / "synapses_v117.parquet").metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sizes[:-1] == [700] * (len(sizes) - 1) and sum(sizes) == 3_000


def test_earlier_versions_do_not_depend_on_later_ones(tmp_path: Path) -> None:
    generate(tmp_path / "one", cells=50, synapses=1_000, versions=[117], seed=2)
    generate(tmp_path / "two", cells=50, synapses=1_000, versions=[117, 343], seed=2)
    for table in TABLES:
        pd.testing.assert_frame_equal(
            read(tmp_path / "one", table, 117), read(tmp_path / "two", table, 117)
        )


def test_nuclei(small: tuple[Path, SynthSummary]) -> None:
    d, _ = small
    first = read(d, "nuclei", VERSIONS[0])
    assert first.id.is_unique and len(first) == 50
    assert first.id.between(100_000, 999_999).all()
    assert (first.volume > 25).all()
    for col, (lo, hi) in zip("xyz", (X_BOUNDS, Y_BOUNDS, Z_BOUNDS), strict=True):
        assert first[f"pt_position_{col}"].between(lo, hi).all()
    for v in VERSIONS[1:]:
        nuc = read(d, "nuclei", v)
        assert set(nuc.id) == set(first.id)
        cols = ["id", "volume", "pt_position_x", "pt_position_y", "pt_position_z"]
        pd.testing.assert_frame_equal(nuc[cols], first[cols])


def test_root_ids_are_exact_int64_above_2_53(small: tuple[Path, SynthSummary]) -> None:
    d, _ = small
    for v in VERSIONS:
        roots = read(d, "nuclei", v).pt_root_id
        syn = read(d, "synapses", v)
        values = pd.concat([roots[roots != 0], syn.pre_pt_root_id, syn.post_pt_root_id])
        assert values.dtype == np.int64
        assert (values > 2**53).all()
        assert values.astype(str).str.len().eq(18).all()
        # A float64 round trip would leave only multiples of 128 at this magnitude.
        assert (values % 128 != 0).any()


def test_synapse_rows_stable_root_bindings_change(small: tuple[Path, SynthSummary]) -> None:
    d, _ = small
    base = read(d, "synapses", VERSIONS[0])
    assert base.id.is_unique and len(base) == 2_000
    assert (base["size"] >= 1).all()
    for v in VERSIONS[1:]:
        syn = read(d, "synapses", v)
        pd.testing.assert_series_equal(syn.id, base.id)
        pd.testing.assert_series_equal(syn["size"], base["size"])
        changed = (syn.pre_pt_root_id != base.pre_pt_root_id) | (
            syn.post_pt_root_id != base.post_pt_root_id
        )
        assert 0 < changed.sum() < len(syn)


def test_about_half_of_synapses_touch_fragments(medium: tuple[Path, SynthSummary]) -> None:
    d, summary = medium
    for vs in summary.versions:
        nuc = read(d, "nuclei", vs.version)
        cell_roots = set(nuc.pt_root_id[nuc.pt_root_id != 0])
        syn = read(d, "synapses", vs.version)
        touch = ~syn.pre_pt_root_id.isin(cell_roots) | ~syn.post_pt_root_id.isin(cell_roots)
        assert 0.4 < touch.mean() < 0.6
        assert touch.sum() == vs.fragment_synapses
        fragment_roots = set(syn.pre_pt_root_id) - cell_roots
        assert len(fragment_roots) > 100


@pytest.mark.parametrize("v", VERSIONS)
def test_every_version_has_every_trap(small: tuple[Path, SynthSummary], v: int) -> None:
    d, summary = small
    nuc = read(d, "nuclei", v)
    syn = read(d, "synapses", v)
    zero = int((nuc.pt_root_id == 0).sum())
    multi = nuc[nuc.pt_root_id != 0].pt_root_id.value_counts()
    autapses = int((syn.pre_pt_root_id == syn.post_pt_root_id).sum())
    assert zero >= 1
    assert multi.max() in (2, 3, 4, 5) and (multi > 1).sum() >= 1
    assert autapses >= 1
    vs = summary.version(v)
    assert (vs.zero_root_nuclei, vs.multi_nucleus_roots, vs.autapses) == (
        zero,
        int((multi > 1).sum()),
        autapses,
    )


def test_churn_between_versions(medium: tuple[Path, SynthSummary]) -> None:
    d, summary = medium
    n1, n2 = read(d, "nuclei", 117), read(d, "nuclei", 343)
    changed = (n1.pt_root_id != n2.pt_root_id).sum()
    assert 0.02 * len(n1) < changed < 0.5 * len(n1)
    assert changed == summary.version(343).changed_roots
    # Fragment merged into a cell: a synapse on a root without nucleus in 117 lies on a
    # nucleus's (single-cell) root in 343.
    s1, s2 = read(d, "synapses", 117), read(d, "synapses", 343)
    roots1 = set(n1.pt_root_id) - {0}
    roots2 = set(n2.pt_root_id) - {0}
    merged = ~s1.pre_pt_root_id.isin(roots1) & s2.pre_pt_root_id.isin(roots2)
    merged |= ~s1.post_pt_root_id.isin(roots1) & s2.post_pt_root_id.isin(roots2)
    assert merged.sum() > 0
    # ... and roots that were a nucleus's stop being one (split off / edited away).
    assert len(roots1 - roots2) > 0 and len(roots2 - roots1) > 0


def test_reciprocity_above_chance(medium: tuple[Path, SynthSummary]) -> None:
    d, _ = medium
    for v in (117, 343):
        e = cell_edges(d, v)
        g = nx.DiGraph()
        g.add_edges_from(e[["pre", "post"]].drop_duplicates().itertuples(index=False))
        assert nx.reciprocity(g) > 2 * nx.density(g)
        counts = e.groupby(["pre", "post"]).size()
        assert (counts > 1).any()  # multi-synapse connections
        assert counts.max() < 60


def test_reciprocity_above_chance_small(small: tuple[Path, SynthSummary]) -> None:
    d, _ = small
    e = cell_edges(d, VERSIONS[0])[["pre", "post"]].drop_duplicates()
    pairs = set(e.itertuples(index=False, name=None))
    reciprocated = np.mean([(b, a) in pairs for a, b in pairs])
    n = len(set(e.pre) | set(e.post))
    assert reciprocated > len(pairs) / (n * (n - 1))


def test_connections_are_local(medium: tuple[Path, SynthSummary]) -> None:
    d, _ = medium
    nuc = read(d, "nuclei", 117).set_index("id")
    um = nuc[["pt_position_x", "pt_position_y", "pt_position_z"]] * [0.004, 0.004, 0.04]
    e = cell_edges(d, 117)[["pre", "post"]].drop_duplicates()
    dist = np.linalg.norm(um.loc[e.pre].to_numpy() - um.loc[e.post].to_numpy(), axis=1)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(um), (2, 20_000))
    rand = np.linalg.norm(um.to_numpy()[a] - um.to_numpy()[b], axis=1)
    assert np.median(dist) < 0.7 * np.median(rand)


def test_synapse_sizes_heavy_tailed(medium: tuple[Path, SynthSummary]) -> None:
    d, _ = medium
    size = read(d, "synapses", 117)["size"]
    assert size.min() >= 1
    assert size.quantile(0.999) > 5 * size.median()
    assert 0.5 < np.log(size).std() < 1.5


def test_cell_types_and_neurons(medium: tuple[Path, SynthSummary]) -> None:
    d, summary = medium
    ct = read(d, "cell_types", 117)
    nr = read(d, "neurons", 117)
    nuc = read(d, "nuclei", 117)
    assert set(ct.target_id) == set(nuc.id) == set(nr.target_id)
    assert ct.id.is_unique and nr.id.is_unique
    expected_class = ct.cell_type.map(
        lambda t: (
            "excitatory_neuron" if t in EXC else "inhibitory_neuron" if t in INH else "nonneuron"
        )
    )
    assert (ct.cell_type.isin(EXC | INH | NON)).all()
    assert (ct.classification_system == expected_class).all()
    assert (nr.classification_system == "is_neuron").all()
    merged = ct.merge(nr, on="target_id", suffixes=("_ct", "_nr"))
    is_neuron = merged.classification_system_ct != "nonneuron"
    assert (merged.cell_type_nr == np.where(is_neuron, "neuron", "not-neuron")).all()
    neuron_frac = is_neuron.mean()
    assert 0.5 < neuron_frac < 0.65
    assert summary.neurons == int(is_neuron.sum())
    inh = (ct.classification_system == "inhibitory_neuron").sum() / is_neuron.sum()
    assert 0.08 < inh < 0.25
    depth = ct.merge(nuc, left_on="target_id", right_on="id").groupby("cell_type").pt_position_y
    mean_depth = depth.mean()
    assert mean_depth["23P"] < mean_depth["4P"] < mean_depth["5P-IT"] < mean_depth["6P-CT"]
    for v in (343,):
        pd.testing.assert_frame_equal(read(d, "cell_types", v), ct)
        pd.testing.assert_frame_equal(read(d, "neurons", v), nr)


def test_summary_counts(medium: tuple[Path, SynthSummary]) -> None:
    d, summary = medium
    assert summary.cells == 1_500 and summary.synapses == 30_000
    assert summary.out_dir == d and summary.seed == 11
    with pytest.raises(KeyError):
        summary.version(999)


def test_zero_synapses_and_validation(tmp_path: Path) -> None:
    s = generate(tmp_path, cells=20, synapses=0, versions=[1])
    syn = read(tmp_path, "synapses", 1)
    assert len(syn) == 0 and list(syn.columns) == list(COLUMNS["synapses"])
    assert s.synapses == 0
    with pytest.raises(ValueError):
        generate(tmp_path, cells=2, synapses=10, versions=[1])
    with pytest.raises(ValueError):
        generate(tmp_path, cells=50, synapses=10, versions=[])
    with pytest.raises(ValueError):
        generate(tmp_path, cells=50, synapses=-1, versions=[1])


def test_positions_inside_the_volume_near_each_other(medium: tuple[Path, SynthSummary]) -> None:
    d, _ = medium
    syn = read(d, "synapses", 117)
    nm = np.asarray([4.0, 4.0, 40.0])
    pts = {
        p: syn[[f"{p}_pt_position_{k}" for k in "xyz"]].to_numpy() for p in ("pre", "ctr", "post")
    }
    for xyz in pts.values():
        for k, (lo, hi) in enumerate((X_BOUNDS, Y_BOUNDS, Z_BOUNDS)):
            assert xyz[:, k].min() >= lo and xyz[:, k].max() < hi
    gap = np.linalg.norm((pts["pre"] - pts["post"]) * nm, axis=1)
    assert 100 < np.median(gap) < 500 and np.percentile(gap, 99) < 700
    mid = (pts["pre"] + pts["post"]) / 2
    assert (
        np.percentile(np.linalg.norm((mid - pts["ctr"]) * nm, axis=1), 99) <= 80
    )  # voxel rounding
    # onto a cell: near its soma (dendrites), measured independently from the nucleus table
    nuc = read(d, "nuclei", 117)
    nuc = nuc[nuc.pt_root_id != 0].drop_duplicates("pt_root_id", keep=False)
    soma = nuc.set_index("pt_root_id")[["pt_position_x", "pt_position_y", "pt_position_z"]]
    onto = syn.post_pt_root_id.isin(soma.index).to_numpy()
    where = soma.loc[syn.post_pt_root_id[onto]].to_numpy()
    dist_um = np.linalg.norm((pts["post"][onto] - where) * nm, axis=1) / 1000
    assert np.median(dist_um) < 120


def test_supervoxels_follow_positions_and_rows_are_shared(
    medium: tuple[Path, SynthSummary],
) -> None:
    d, _ = medium
    a, b = read(d, "synapses", 117), read(d, "synapses", 343)
    shared = ["id", "size", "pre_pt_supervoxel_id", "post_pt_supervoxel_id",
              *[f"{p}_pt_position_{k}" for p in ("pre", "ctr", "post") for k in "xyz"]]  # fmt: skip
    pd.testing.assert_frame_equal(a[shared], b[shared])
    for side in ("pre", "post"):
        sv = a[f"{side}_pt_supervoxel_id"].to_numpy()
        assert (sv >> 56 == 1).all()  # layer 1
        chunk = np.stack([(sv >> s) & 1023 for s in (46, 36, 26)], axis=1)
        pos = a[[f"{side}_pt_position_{k}" for k in "xyz"]].to_numpy()
        assert (chunk == pos // np.asarray([512, 512, 64])).all()


def test_no_positions_option(tmp_path: Path) -> None:
    generate(tmp_path / "a", cells=60, synapses=2_000, versions=[117], seed=5, positions=False)
    generate(tmp_path / "b", cells=60, synapses=2_000, versions=[117], seed=5)
    a, b = read(tmp_path / "a", "synapses", 117), read(tmp_path / "b", "synapses", 117)
    assert list(a.columns) == ["id", "pre_pt_root_id", "post_pt_root_id", "size"]
    pd.testing.assert_frame_equal(a, b[a.columns])
