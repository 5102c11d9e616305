"""Synapse stores for the tests, and caveclient's semantics computed independently in pandas.

``source_tables`` makes CAVE-named nuclei and synapse tables with every trap (fragments,
autapses, root 0, a multi-nucleus root, extra numeric columns). ``build_snapshot`` turns them
into a release snapshot with the real loader (``cgraph.load.aggregate_to_snapshot``). ``expected_synapses`` filters the
*source* table the way caveclient's ``synapse_query`` documents, never reading the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from snapshot import layout

POS = ("pre_pt_position", "post_pt_position", "ctr_pt_position")
VOXEL = (4.0, 4.0, 40.0)
ROOT0 = 864691135000000000


def source_tables(seed: int, cells: int = 60, synapses: int = 6000) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    rng = np.random.default_rng(seed)
    nucleus = np.sort(100_000 + rng.choice(899_999, cells, replace=False))
    roots = ROOT0 + 1 + rng.choice(10**9, cells, replace=False)
    roots[1] = roots[0]  # a root carrying two nuclei (merge error)
    roots[2] = 0  # a nucleus outside the segmentation
    nuclei = pd.DataFrame({
        "id": nucleus, "volume": rng.uniform(30, 400, cells),
        "pt_position_x": rng.integers(10_000, 200_000, cells),
        "pt_position_y": rng.integers(10_000, 200_000, cells),
        "pt_position_z": rng.integers(100, 2_000, cells), "pt_root_id": roots,
    })  # fmt: skip
    fragments = ROOT0 + 2 * 10**9 + np.arange(40)
    pool = np.concatenate([roots[roots != 0], fragments, [0]])
    pre = rng.choice(pool, synapses)
    post = rng.choice(pool, synapses)
    post[:30] = pre[:30]  # autapses
    syn = pd.DataFrame({
        "id": 10**6 + rng.choice(10**8, synapses, replace=False),
        "pre_pt_root_id": pre.astype(np.int64), "post_pt_root_id": post.astype(np.int64),
        "size": rng.integers(1, 5000, synapses),
        "pre_pt_supervoxel_id": 88_000_000_000_000_000 + rng.integers(0, 10**12, synapses),
        "post_pt_supervoxel_id": 88_000_000_000_000_000 + rng.integers(0, 10**12, synapses),
    })  # fmt: skip
    for stem in POS:
        syn[f"{stem}_x"] = rng.integers(10_000, 200_000, synapses).astype(np.int32)
        syn[f"{stem}_y"] = rng.integers(10_000, 200_000, synapses).astype(np.int32)
        syn[f"{stem}_z"] = rng.integers(100, 2_000, synapses).astype(np.int32)
    syn["spine_vol_um3"] = rng.uniform(0, 1, synapses)
    return nuclei, syn


def outcomes(nuclei: pd.DataFrame, syn: pd.DataFrame) -> pd.DataFrame:
    """Attribution (README 'Attribution rules'): outcome, pre/post nucleus per synapse row."""
    per_root = nuclei[nuclei.pt_root_id != 0].groupby("pt_root_id").id.agg(["count", "first"])
    unique = per_root[per_root["count"] == 1]["first"]
    multi = set(per_root[per_root["count"] > 1].index)
    pre, post = syn.pre_pt_root_id, syn.post_pt_root_id
    out = np.full(len(syn), "used", dtype=object)
    no_nuc = ~pre.isin(unique.index) | ~post.isin(unique.index)
    out[no_nuc.to_numpy()] = "partner_without_nucleus"
    out[(pre.isin(multi) | post.isin(multi)).to_numpy()] = "multi_nucleus_root"
    out[((pre == 0) | (post == 0)).to_numpy()] = "root0"
    out[(pre == post).to_numpy()] = "autapse"
    return pd.DataFrame({
        "outcome": out,
        "pre_nucleus_id": pre.map(unique).astype("Int64"),
        "post_nucleus_id": post.map(unique).astype("Int64"),
    }, index=syn.index)  # fmt: skip


def build_snapshot(tmp: Path, version: int, nuclei: pd.DataFrame, syn: pd.DataFrame) -> layout.Snapshot:  # fmt: skip
    """The release snapshot of these source tables in CGRAPH_DATA (the session's folder),
    made by the real loader as `cgraph load` makes it."""
    from cgraph.load import aggregate_to_snapshot

    src = tmp / f"src_v{version}"
    src.mkdir(parents=True, exist_ok=True)
    nuclei.to_parquet(src / "nuclei.parquet", index=False)
    syn.to_parquet(src / "synapses.parquet", index=False)
    snap, _ = aggregate_to_snapshot(version, nuclei=src / "nuclei.parquet",
                                    synapses=src / "synapses.parquet")  # fmt: skip
    return snap


# --------------------------------------------------------------------------- expectations


def expected_synapses(
    syn: pd.DataFrame,
    pre_ids: Sequence[int] | None = None,
    post_ids: Sequence[int] | None = None,
    bounding_box: Any = None,
    bounding_box_column: str = "post_pt_position",
    remove_autapses: bool = True,
    include_zeros: bool = True,
) -> pd.DataFrame:
    """caveclient's synapse_query on the source table: pre IN, post IN (AND), inclusive box in
    voxels on one position, rows with root 0 out unless include_zeros, autapses out by default;
    sorted by id."""
    m = pd.Series(True, index=syn.index)
    if pre_ids is not None:
        m &= syn.pre_pt_root_id.isin(list(pre_ids))
    if post_ids is not None:
        m &= syn.post_pt_root_id.isin(list(post_ids))
    if bounding_box is not None:
        (x0, y0, z0), (x1, y1, z1) = bounding_box
        c = bounding_box_column
        m &= syn[f"{c}_x"].between(x0, x1) & syn[f"{c}_y"].between(y0, y1)
        m &= syn[f"{c}_z"].between(z0, z1)
    if not include_zeros:
        m &= (syn.pre_pt_root_id != 0) & (syn.post_pt_root_id != 0)
    if remove_autapses:
        m &= syn.pre_pt_root_id != syn.post_pt_root_id
    return syn[m].sort_values("id", ignore_index=True)
