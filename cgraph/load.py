"""read -> validate/aggregate -> write: one data release into the graph.

Nothing is written before the whole input is read, validated and aggregated, so bad input
leaves the database unchanged. The release is `loading` while its cells and edges are written
and becomes `complete` in one final transaction; a load that dies midway leaves it `loading`
(or `failed`), and running the same load again clears that attempt first, so it ends in exactly
the graph of a clean load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tqdm import tqdm

from core.errors import CGraphError
from core.model import check_version
from graph import releases
from graph.driver import Database
from loaders.aggregate import build_release
from loaders.readers import Source
from loaders.tables import ReleaseData

CELL_BATCH = 5_000
EDGE_BATCH = 20_000
RELEASE_PROPS = ("root_id", "is_neuron", "cell_type", "classification_system",
                 "out_synapses", "in_synapses")  # fmt: skip


@dataclass(frozen=True)
class LoadSummary:
    version: int
    counts: Mapping[str, int]
    multi_nucleus_roots: Mapping[int, list[int]]


def release_counts(data: ReleaseData) -> dict[str, int]:
    """The counts stored on the (:Release) node."""
    c = dict(data.counts)
    out = {k: int(v) for k, v in c.items() if k != "synapses_used"}
    out["synapses"] = int(c["synapses_used"])
    out["multi_nucleus_roots"] = len(data.multi_nucleus_roots)
    return out


def cell_rows(data: ReleaseData, version: int, batch: int) -> Any:
    for rows in data.iter_cell_batches(batch):
        yield [
            {
                "nucleus_id": r["nucleus_id"],
                "x": r["x"],
                "y": r["y"],
                "z": r["z"],
                "volume": r["volume"],
                "props": {f"{k}_v{version}": r[k] for k in RELEASE_PROPS if k in r},
            }
            for r in rows
        ]


def write_release(
    db: Database,
    version: int,
    data: ReleaseData,
    *,
    timestamp: datetime | None = None,
    replace: bool = False,
    progress: bool = False,
    workers: int = 1,
) -> LoadSummary:
    """Write an aggregated release. Raises ReleaseExists when complete and not `replace`."""
    v = check_version(version)
    releases.begin_load(db, v, timestamp, replace=replace)
    try:
        with tqdm(total=len(data.cells), desc=f"v{v} cells", unit=" cells",
                  disable=not progress, unit_scale=True) as bar:  # fmt: skip
            for rows in cell_rows(data, v, CELL_BATCH):
                bar.update(releases.write_cells(db, v, rows))
        with tqdm(total=len(data.edges), desc=f"v{v} edges", unit=" edges",
                  disable=not progress, unit_scale=True) as bar, \
                ThreadPoolExecutor(max_workers=workers) as pool:  # fmt: skip
            batches = data.edges.iter_batches(EDGE_BATCH)
            for n in pool.map(lambda rows: releases.write_edges(db, v, rows), batches):
                bar.update(n)
        counts = release_counts(data)
        releases.finish_load(db, v, counts)
    except BaseException as exc:
        # connection gone: the release stays `loading`, never `complete`
        with contextlib.suppress(CGraphError, OSError):
            releases.mark_failed(db, v, f"{type(exc).__name__}: {exc}")
        raise
    return LoadSummary(v, counts, data.multi_nucleus_roots)


def load_release(
    db: Database,
    version: int,
    *,
    nuclei: Source,
    synapses: Source,
    neurons: Source | None = None,
    cell_types: Source | None = None,
    mapping: Mapping[str, str] | None = None,
    voxel_size: Sequence[float] = (4.0, 4.0, 40.0),
    timestamp: datetime | None = None,
    replace: bool = False,
    progress: bool = False,
    batch_rows: int = 1_000_000,
    on_aggregated: Callable[[ReleaseData], None] | None = None,
) -> LoadSummary:
    """Load one release from DataFrames or files (Parquet, Feather, CSV, CSV.gz, CAVE dumps)."""
    v = check_version(version)
    existing = releases.get_release(db, v)
    if existing is not None and existing.status == releases.COMPLETE and not replace:
        raise releases.ReleaseExists(v)
    with tqdm(desc=f"v{v} synapses read", unit=" rows", unit_scale=True,
              disable=not progress) as bar:  # fmt: skip
        data = build_release(
            nuclei, synapses, neurons, cell_types, mapping=mapping, voxel_size=voxel_size,
            batch_rows=batch_rows, on_rows=bar.update,
        )  # fmt: skip
    if on_aggregated is not None:
        on_aggregated(data)
    return write_release(db, v, data, timestamp=timestamp, replace=replace, progress=progress)
