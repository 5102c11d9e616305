"""The per-release synapse store (snapshot/layout.py, loaders/store.py), checked against plain
pandas computations on the source tables (never against the store's own output), in
synthetic releases and in pinky100."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cgraph.load import aggregate_to_snapshot
from core.errors import InputError
from loaders.synth import generate
from snapshot.layout import SnapshotError, open_snapshot, snapshots_dir, store_meta
from snapshot.read import edge_synapses

V1, V2 = 9117, 9343
POINTS = ("pre_pt_position", "ctr_pt_position", "post_pt_position")
POS = [f"{p}_{k}" for p in POINTS for k in "xyz"]
NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}
PINKY_MAP = {
    "pre_pt_root_id": "pre_root_id",
    "post_pt_root_id": "post_root_id",
    "size": "cleft_vx",
    "pre_pt_position": "pre_pos_*_vx",
    "ctr_pt_position": "ctr_pos_*_vx",
    "post_pt_position": "post_pos_*_vx",
}


# ----------------------------------------------------------------------------- pandas reference


def expected_store(nuclei: pd.DataFrame, syn: pd.DataFrame) -> pd.DataFrame:
    """Outcome and nuclei of every synapse row, derived independently with pandas."""
    nz = nuclei[nuclei.pt_root_id != 0]
    counts = nz.pt_root_id.value_counts()
    single = nz[nz.pt_root_id.map(counts) == 1].set_index("pt_root_id").id
    multi = set(counts[counts > 1].index)
    s = syn.copy()
    s["pre_nucleus_id"] = s.pre_pt_root_id.map(single).astype("Int64")
    s["post_nucleus_id"] = s.post_pt_root_id.map(single).astype("Int64")
    aut = s.pre_pt_root_id == s.post_pt_root_id
    zero = (s.pre_pt_root_id == 0) | (s.post_pt_root_id == 0)
    mul = s.pre_pt_root_id.isin(multi) | s.post_pt_root_id.isin(multi)
    frag = s.pre_nucleus_id.isna() | s.post_nucleus_id.isna()
    s["outcome"] = np.select(
        [aut, zero, mul, frag],
        ["autapse", "root0", "multi_nucleus_root", "partner_without_nucleus"],
        default="used",
    )
    return s.sort_values("id", kind="stable").reset_index(drop=True)


def read_store(snap_path: Path) -> pd.DataFrame:
    t = pq.read_table(snap_path / "synapses.parquet")
    df = t.to_pandas(types_mapper=NULLABLE.get)
    df["outcome"] = df["outcome"].astype(str)
    return df


def by_id(store: pd.DataFrame) -> pd.DataFrame:
    return store.sort_values("id", kind="stable").reset_index(drop=True)


def assert_same_rows(store: pd.DataFrame, want: pd.DataFrame, columns: list[str]) -> None:
    got = by_id(store)
    assert len(got) == len(want)
    assert got["id"].is_unique or len(got) == len(want)
    for c in columns:
        a = got[c].astype("float64") if got[c].dtype.kind == "f" else got[c]
        b = want[c]
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            np.testing.assert_allclose(
                a.astype("float64").to_numpy(), b.astype("float64").to_numpy(), err_msg=c
            )
        else:
            assert a.astype("Int64").tolist() == b.astype("Int64").tolist(), c


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("store_synth")
    generate(d, cells=300, synapses=60_000, versions=[V1, V2], seed=21)
    return d


def load(d: Path, v: int, **kw: object) -> Path:
    snap, _ = aggregate_to_snapshot(
        v,
        nuclei=d / f"nuclei_v{v}.parquet",
        synapses=kw.pop("synapses", d / f"synapses_v{v}.parquet"),  # type: ignore[arg-type]
        neurons=d / f"neurons_v{v}.parquet",
        **kw,  # type: ignore[arg-type]
    )
    return snap.path


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CGRAPH_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


# ----------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("v", [V1, V2])
def test_every_source_row_once_with_its_columns(synth: Path, v: int) -> None:
    path = load(synth, v)
    src = pd.read_parquet(synth / f"synapses_v{v}.parquet")
    want = expected_store(pd.read_parquet(synth / f"nuclei_v{v}.parquet"), src)
    store = read_store(path)
    assert store["id"].is_unique and set(store["id"]) == set(src["id"])
    cols = ["id", "pre_pt_root_id", "post_pt_root_id", "size", "pre_pt_supervoxel_id",
            "post_pt_supervoxel_id", *POS, "pre_nucleus_id", "post_nucleus_id"]  # fmt: skip
    assert_same_rows(store, want, cols)
    assert by_id(store)["outcome"].tolist() == want["outcome"].tolist()
    manifest = json.loads((path / "manifest.json").read_text())
    store_manifest = json.loads((path / "synapses.json").read_text())
    import hashlib

    # the store's own manifest names the snapshot manifest it belongs to
    assert (
        store_manifest["snapshot"]
        == hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    )
    assert manifest["synapse_store"] == {"manifest": "synapses.json"}
    assert "synapses.parquet" not in manifest["files"]
    st = store_manifest["store"]
    assert st["rows"] == len(src) and st["position_type"] == "int32"
    assert st["outcomes"] == want["outcome"].value_counts().to_dict() | {
        k: 0 for k in st["outcomes"] if k not in set(want["outcome"])
    }
    assert st["position_unit"] == "voxel" and st["voxel_size_nm"] == [4.0, 4.0, 40.0]
    assert st["sort"] == ["post_pt_root_id", "id"] and st["row_group_rows"] == 65536
    digest = hashlib.sha256((path / "synapses.parquet").read_bytes()).hexdigest()
    assert store_manifest["file"]["sha256"] == digest
    assert store_manifest["file"]["rows"] == len(src)
    schema = pq.read_schema(path / "synapses.parquet")
    assert schema.field("pre_pt_position_x").type == pa.int32()
    assert schema.field("outcome").type == pa.dictionary(pa.int8(), pa.string())


def test_sorted_and_row_group_statistics_locate_a_post_root(synth: Path) -> None:
    path = load(synth, V1)
    f = pq.ParquetFile(path / "synapses.parquet")
    t = f.read(columns=["post_pt_root_id", "id"]).to_pandas()
    assert t.equals(t.sort_values(["post_pt_root_id", "id"]).reset_index(drop=True))
    md = f.metadata
    col = f.schema_arrow.get_field_index("post_pt_root_id")
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sizes[:-1] == [65536] * (len(sizes) - 1)
    stats = [(md.row_group(i).column(col).statistics.min, md.row_group(i).column(col).statistics.max)
             for i in range(md.num_row_groups)]  # fmt: skip
    assert all(a[1] <= b[0] for a, b in zip(stats, stats[1:], strict=False))
    root = int(t.post_pt_root_id.value_counts().index[0])
    hit = [i for i, (lo, hi) in enumerate(stats) if lo <= root <= hi]
    assert 1 <= len(hit) <= 2


def test_edge_synapses_equal_a_pandas_groupby(synth: Path) -> None:
    load(synth, V2)
    snap = open_snapshot(V2)
    want = expected_store(pd.read_parquet(synth / f"nuclei_v{V2}.parquet"),
                          pd.read_parquet(synth / f"synapses_v{V2}.parquet"))  # fmt: skip
    used = want[want.outcome == "used"]
    g = used.groupby(["pre_nucleus_id", "post_nucleus_id"])
    ids, sizes = g["id"].agg(list), g["size"].agg(list)
    pairs = [(int(a), int(b)) for a, b in ids.index[:: max(1, len(ids) // 300)]]
    pairs.append((int(used.pre_nucleus_id.iloc[0]), 1))  # no such post nucleus
    got = edge_synapses(snap, pairs)
    for pair in pairs[:-1]:
        assert got[pair] == (ids[pair], sizes[pair])
    assert got[pairs[-1]] == ([], [])


def test_small_memory_spills_and_gives_the_identical_store(synth: Path, tmp_path: Path) -> None:
    a = read_store(load(synth, V1))
    spill = tmp_path / "spill"
    spill.mkdir()
    b = read_store(load(synth, V1, memory=4 << 20, batch_rows=7_000, spill_dir=spill))
    pd.testing.assert_frame_equal(a, b)
    assert not list(spill.iterdir())  # spill folders removed


def test_input_sorted_by_post_root_is_split_again(synth: Path, tmp_path: Path) -> None:
    src = pd.read_parquet(synth / f"synapses_v{V1}.parquet")
    skewed = tmp_path / "sorted.parquet"
    src.sort_values("post_pt_root_id", kind="stable").to_parquet(skewed, index=False)
    a = read_store(load(synth, V1))
    b = read_store(load(synth, V1, synapses=skewed, memory=4 << 20, batch_rows=5_000))
    pd.testing.assert_frame_equal(a, b)


def test_without_positions_the_columns_are_null(tmp_path: Path) -> None:
    d = tmp_path / "nopos"
    generate(d, cells=80, synapses=3_000, versions=[V1], seed=4, positions=False)
    path = load(d, V1)
    store = read_store(path)
    assert store[POS + ["pre_pt_supervoxel_id", "post_pt_supervoxel_id"]].isna().all().all()
    assert json.loads((path / "synapses.json").read_text())["store"]["position_type"] is None


def test_position_encodings_and_no_id_column(synth: Path, tmp_path: Path) -> None:
    """Arrays and strings give the same voxels as split columns; without ids, row numbers."""
    src = pd.read_parquet(synth / f"synapses_v{V1}.parquet").head(4_000)
    packed = src.drop(columns=[*POS, "id"])
    for p in POINTS:
        xyz = src[[f"{p}_x", f"{p}_y", f"{p}_z"]].to_numpy()
        packed[p] = [f"[{x} {y}  {z}]" for x, y, z in xyz] if p == "ctr_pt_position" \
            else list(xyz.astype(np.float64))  # fmt: skip
    path = tmp_path / "packed.parquet"
    packed.to_parquet(path, index=False)
    store = by_id(read_store(load(synth, V1, synapses=path)))
    assert store["id"].tolist() == list(range(len(src)))
    for c in POS:
        assert store[c].astype("int64").tolist() == src[c].astype("int64").tolist(), c


def test_bad_position_names_file_column_row_and_leaves_no_snapshot(
    synth: Path, tmp_path: Path, data_dir: Path
) -> None:
    src = pd.read_parquet(synth / f"synapses_v{V1}.parquet").head(500)
    bad = src.drop(columns=[c for c in POS if c.startswith("post_pt")])
    bad["post_pt_position"] = [f"[{i} 2 3]" for i in range(len(bad))]
    bad.loc[123, "post_pt_position"] = "[1 2 nope]"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(InputError) as e:
        load(synth, V1, synapses=path)
    msg = str(e.value)
    assert "bad.csv" in msg and "post_pt_position" in msg and "124" in msg
    base = snapshots_dir(data_dir)
    assert not base.exists() or not [p for p in base.iterdir()]


def test_format_1_snapshot_is_refused_with_a_way_out(tmp_path: Path) -> None:
    d = snapshots_dir(tmp_path) / f"v{V1}"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"format": 1, "version": V1}))
    with pytest.raises(SnapshotError, match="--replace"):
        open_snapshot(V1, tmp_path)


# ----------------------------------------------------------------------------- pinky100


def test_pinky100_every_row_positions_and_extra_columns(shared_data: Path) -> None:
    d = shared_data / "microns_pinky100_v185"
    syn_file = d / "soma_subgraph_synapses_spines_v185.csv"
    snap, _ = aggregate_to_snapshot(
        185, nuclei=d / "soma_valence_v185.csv", synapses=syn_file, mapping=PINKY_MAP
    )
    src = pd.read_csv(syn_file)
    nuclei = pd.read_csv(d / "soma_valence_v185.csv")
    renamed = src.rename(columns={"pre_root_id": "pre_pt_root_id", "post_root_id": "post_pt_root_id",
                                  "cleft_vx": "size"})  # fmt: skip
    for p, short in (("pre_pt_position", "pre_pos"), ("ctr_pt_position", "ctr_pos"),
                     ("post_pt_position", "post_pos")):  # fmt: skip
        for k in "xyz":
            renamed[f"{p}_{k}"] = src[f"{short}_{k}_vx"]
    want = expected_store(nuclei, renamed)
    store = read_store(snap.path)
    assert len(store) == len(src)
    extras = ["spine_vol_um3", "ctr_pt_x_nm", "ctr_pt_y_nm", "ctr_pt_z_nm"]
    assert_same_rows(store, want, ["id", "pre_pt_root_id", "post_pt_root_id", "size", *POS,
                                   "pre_nucleus_id", "post_nucleus_id", *extras])  # fmt: skip
    assert by_id(store)["outcome"].tolist() == want["outcome"].tolist()
    st = store_meta(snap)
    assert st["extra_columns"] == [c for c in src.columns if c in extras]
    assert st["position_type"] == "int32"
    assert store[["pre_pt_supervoxel_id", "post_pt_supervoxel_id"]].isna().all().all()
    # nm columns of the source agree with voxels x voxel size
    s = by_id(store)
    assert (s["ctr_pt_position_x"].astype("int64") * 4 == s["ctr_pt_x_nm"].astype("int64")).all()
