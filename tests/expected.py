"""Independent expectations computed with plain pandas from the loader's input files.

This re-implements the documented attribution rules (README, loaders/aggregate.py) in the most
direct pandas way, without importing any loader code.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class Expected:
    cells: pd.DataFrame  # nucleus_id, root_id, out_synapses, in_synapses
    edges: pd.DataFrame  # pre, post, synapses, size, sizes (tuple), synapse_ids (tuple)
    counts: dict[str, int]
    used: pd.DataFrame  # synapses on edges: id, pre_pt_root_id, post_pt_root_id, size, pre, post


def expected_release(
    nuclei: pd.DataFrame,
    synapses: pd.DataFrame,
    *,
    nucleus_col: str = "id",
    root_col: str = "pt_root_id",
    pre_col: str = "pre_pt_root_id",
    post_col: str = "post_pt_root_id",
    size_col: str | None = "size",
    id_col: str | None = "id",
) -> Expected:
    nuc = nuclei[[nucleus_col, root_col]].rename(
        columns={nucleus_col: "nucleus_id", root_col: "root_id"}
    )
    per_root = nuc[nuc.root_id != 0].groupby("root_id").nucleus_id.agg(["count", "first"])
    unique_root = per_root[per_root["count"] == 1]["first"]  # root -> nucleus
    multi = set(per_root[per_root["count"] > 1].index)

    syn = pd.DataFrame(
        {
            "pre_root": synapses[pre_col].astype("int64"),
            "post_root": synapses[post_col].astype("int64"),
        }
    )
    syn["sid"] = synapses[id_col].astype("int64") if id_col else range(len(synapses))
    syn["size"] = synapses[size_col].astype("int64") if size_col else pd.NA
    total = len(syn)
    autapse = syn.pre_root == syn.post_root
    syn = syn[~autapse]
    root0 = (syn.pre_root == 0) | (syn.post_root == 0)
    multi_m = ~root0 & (syn.pre_root.isin(multi) | syn.post_root.isin(multi))
    syn["pre"] = syn.pre_root.map(unique_root)
    syn["post"] = syn.post_root.map(unique_root)
    no_nuc = ~root0 & ~multi_m & (syn.pre.isna() | syn.post.isna())
    used = syn[~root0 & ~multi_m & ~no_nuc].copy()
    used["pre"] = used.pre.astype("int64")
    used["post"] = used.post.astype("int64")

    out_tot = syn.dropna(subset=["pre"]).groupby("pre").size()
    in_tot = syn.dropna(subset=["post"]).groupby("post").size()
    cells = nuc.copy()
    cells["out_synapses"] = cells.nucleus_id.map(out_tot).fillna(0).astype("int64")
    cells["in_synapses"] = cells.nucleus_id.map(in_tot).fillna(0).astype("int64")
    # a cell on a shared (or 0) root gets no attributed totals
    cells.loc[~cells.root_id.isin(unique_root.index), ["out_synapses", "in_synapses"]] = 0

    used = used.sort_values(["pre", "post", "sid"])
    grouped = used.groupby(["pre", "post"], sort=True)
    edges = pd.DataFrame(
        {
            "synapses": grouped.size(),
            "synapse_ids": grouped.sid.agg(tuple),
        }
    )
    if size_col:
        edges["size"] = grouped["size"].sum()
        edges["sizes"] = grouped["size"].agg(tuple)
    else:
        edges["size"] = None
        edges["sizes"] = [()] * len(edges)
    edges = edges.reset_index()
    counts = {
        "cells": len(nuc),
        "edges": len(edges),
        "synapses": len(used),
        "synapses_total": total,
        "dropped_autapse": int(autapse.sum()),
        "dropped_root0": int(root0.sum()),
        "dropped_multi_nucleus_root": int(multi_m.sum()),
        "dropped_partner_without_nucleus": int(no_nuc.sum()),
        "multi_nucleus_roots": len(multi),
    }
    used_rows = used.rename(
        columns={"sid": "id", "pre_root": "pre_pt_root_id", "post_root": "post_pt_root_id"}
    )[["id", "pre_pt_root_id", "post_pt_root_id", "size", "pre", "post"]]
    return Expected(cells, edges, counts, used_rows.reset_index(drop=True))
