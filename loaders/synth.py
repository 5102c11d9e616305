"""Synthetic MICrONS-like CAVE tables (for demos, tests and benchmarks).

``generate(out_dir, cells=..., synapses=..., versions=[...])`` writes, per version ``V``:

- ``nuclei_v{V}.parquet``: ``id, volume, pt_position_x, pt_position_y, pt_position_z, pt_root_id``
- ``synapses_v{V}.parquet``: ``id, pre_pt_root_id, post_pt_root_id, size``, then (unless
  ``positions=False``) ``pre_pt_supervoxel_id, post_pt_supervoxel_id`` and the split positions
  ``pre_pt_position_x/_y/_z, ctr_pt_position_x/_y/_z, post_pt_position_x/_y/_z`` (int32
  voxels, see :mod:`loaders.synth_positions`); streamed in row groups of ``batch_rows``; the
  same synapse rows (positions and supervoxels included) in every version, only root
  bindings change
- ``cell_types_v{V}.parquet``: ``id, target_id, classification_system, cell_type``
  (AIBS metamodel vocabulary)
- ``neurons_v{V}.parquet``: ``id, target_id, classification_system ('is_neuron'), cell_type``

Output is deterministic for a seed and independent of ``batch_rows``; the tables of a version
do not depend on later versions in the list. Positions are voxels (4x4x40 nm) inside
:data:`X_BOUNDS`, :data:`Y_BOUNDS`, :data:`Z_BOUNDS`. See :mod:`loaders.synth_cells`,
:mod:`loaders.synth_edges` and :mod:`loaders.synth_roots` for the models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loaders.synth_cells import (
    CELL_TYPES,
    CLASS_OF_TYPE,
    X_BOUNDS,
    Y_BOUNDS,
    Z_BOUNDS,
    Cells,
    IntArray,
    make_cells,
)
from loaders.synth_edges import Plan, SynapseModel
from loaders.synth_positions import synapse_points
from loaders.synth_roots import ROOT_BASE, RootState, VersionRoots

__all__ = [
    "ROOT_BASE",
    "SYNAPSE_ID_BASE",
    "X_BOUNDS",
    "Y_BOUNDS",
    "Z_BOUNDS",
    "SynthSummary",
    "VersionSummary",
    "generate",
]

SYNAPSE_ID_BASE = 100_000_000
SYNAPSE_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("pre_pt_root_id", pa.int64()),
        ("post_pt_root_id", pa.int64()),
        ("size", pa.int64()),
    ]
)
POINTS = ("pre_pt_position", "ctr_pt_position", "post_pt_position")
POSITION_SCHEMA = pa.schema(
    [
        *SYNAPSE_SCHEMA,
        ("pre_pt_supervoxel_id", pa.int64()),
        ("post_pt_supervoxel_id", pa.int64()),
        *[(f"{p}_{k}", pa.int32()) for p in POINTS for k in "xyz"],
    ]
)


@dataclass(frozen=True)
class VersionSummary:
    """Files and counts of one synthetic version."""

    version: int
    nuclei: Path
    synapses: Path
    cell_types: Path
    neurons: Path
    zero_root_nuclei: int  # nuclei with pt_root_id = 0
    multi_nucleus_roots: int  # roots carrying 2+ nuclei
    changed_roots: int  # nuclei whose pt_root_id differs from the previous version
    autapses: int  # synapses with pre root == post root
    fragment_synapses: int  # synapses with at least one side on a root without nucleus

    @property
    def files(self) -> tuple[Path, Path, Path, Path]:
        return (self.nuclei, self.synapses, self.cell_types, self.neurons)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    seed: int
    cells: int
    neurons: int
    synapses: int
    fragments: int  # fragment pieces (orphan axons/dendrites) available to synapses
    versions: tuple[VersionSummary, ...]

    def version(self, v: int) -> VersionSummary:
        for vs in self.versions:
            if vs.version == v:
                return vs
        raise KeyError(v)


def _table_cell_types(cells: Cells) -> pa.Table:
    names = np.asarray(CELL_TYPES, dtype=object)[cells.type_code]
    classes = np.asarray(CLASS_OF_TYPE, dtype=object)[cells.type_code]
    return pa.table(
        {
            "id": pa.array(np.arange(1, cells.n + 1, dtype=np.int64)),
            "target_id": pa.array(cells.nucleus_id),
            "classification_system": pa.array(classes, type=pa.string()),
            "cell_type": pa.array(names, type=pa.string()),
        }
    )


def _table_neurons(cells: Cells) -> pa.Table:
    kind = np.where(cells.is_neuron, "neuron", "not-neuron").astype(object)
    return pa.table(
        {
            "id": pa.array(np.arange(1, cells.n + 1, dtype=np.int64) + cells.n),
            "target_id": pa.array(cells.nucleus_id),
            "classification_system": pa.array(["is_neuron"] * cells.n, type=pa.string()),
            "cell_type": pa.array(kind, type=pa.string()),
        }
    )


def _table_nuclei(cells: Cells, roots: VersionRoots) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(cells.nucleus_id),
            "volume": pa.array(cells.volume),
            "pt_position_x": pa.array(cells.pos[:, 0]),
            "pt_position_y": pa.array(cells.pos[:, 1]),
            "pt_position_z": pa.array(cells.pos[:, 2]),
            "pt_root_id": pa.array(roots.nucleus_root),
        }
    )


def _synapse_ids(seed: int, chunk: int, start: int, n: int) -> IntArray:
    """Unique, increasing, non-contiguous synapse IDs (4 slots per row, one used)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 9_101, chunk]))
    slot = np.arange(start, start + n, dtype=np.int64)
    return SYNAPSE_ID_BASE + 4 * slot + rng.integers(0, 4, size=n)


class _BufferedWriter:
    """ParquetWriter that emits row groups of exactly ``batch_rows`` (last one shorter)."""

    def __init__(self, path: Path, batch_rows: int, schema: pa.Schema) -> None:
        self.writer = pq.ParquetWriter(path, schema)
        self.batch_rows = batch_rows
        self.parts: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.parts.append(table)
        self.rows += table.num_rows
        if self.rows >= self.batch_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        buf = pa.concat_tables(self.parts).combine_chunks()
        n_full = (buf.num_rows // self.batch_rows) * self.batch_rows
        cut = buf.num_rows if final else n_full
        if cut:
            self.writer.write_table(buf.slice(0, cut), row_group_size=self.batch_rows)
        rest = buf.slice(cut)
        self.parts = [rest] if rest.num_rows else []
        self.rows = rest.num_rows

    def close(self) -> None:
        if self.rows:
            self._flush(final=True)
        self.writer.close()


def _normalise_versions(versions: Iterable[int]) -> list[int]:
    vs = sorted({int(v) for v in versions})
    if not vs or vs[0] < 0:
        raise ValueError(f"versions must be a non-empty list of non-negative ints, got {versions}")
    return vs


def generate(
    out_dir: str | Path,
    *,
    cells: int,
    synapses: int,
    versions: Sequence[int],
    seed: int = 0,
    batch_rows: int = 2_000_000,
    progress: bool = False,
    nucleus_id_base: int = 0,
    positions: bool = True,
) -> SynthSummary:
    """Write synthetic nucleus, synapse, cell-type and neuron tables for each version.

    ``cells`` in [3, 900000] nuclei (~57% neurons); ``synapses`` >= 0 rows per version;
    ``versions`` are sorted and de-duplicated (churn is applied in that order, the first
    version already holds root-0 nuclei, multi-nucleus roots and autapses). Synapses are
    generated in chunks of about 1M rows and streamed to Parquet in row groups of
    ``batch_rows``; memory stays well under ~1 GB for 100k cells x 50M synapses.
    ``nucleus_id_base`` is added to every nucleus ID (test modules sharing one database keep
    their cells apart with it). ``positions=False`` leaves out positions and supervoxel IDs
    (the other columns are the same either way). Raises ``ValueError`` on invalid arguments.
    """
    if synapses < 0:
        raise ValueError(f"synapses must be >= 0, got {synapses}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    vs = _normalise_versions(versions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    pop = make_cells(
        cells, np.random.default_rng(np.random.SeedSequence([seed, 6_001])), id_base=nucleus_id_base
    )
    plan = Plan.for_total(synapses)
    model = SynapseModel(pop, plan, seed)
    state = RootState(pop, model.n_fragments, seed)
    roots = [state.advance() for _ in vs]

    ct_table, nr_table = _table_cell_types(pop), _table_neurons(pop)
    paths = {
        v: {k: out / f"{k}_v{v}.parquet" for k in ("nuclei", "synapses", "cell_types", "neurons")}
        for v in vs
    }
    for v, r in zip(vs, roots, strict=True):
        pq.write_table(_table_nuclei(pop, r), paths[v]["nuclei"])
        pq.write_table(ct_table, paths[v]["cell_types"])
        pq.write_table(nr_table, paths[v]["neurons"])

    schema = POSITION_SCHEMA if positions else SYNAPSE_SCHEMA
    writers = [_BufferedWriter(paths[v]["synapses"], batch_rows, schema) for v in vs]
    autapses = [0] * len(vs)
    frag_syn = [0] * len(vs)
    chunks: Iterable[int] = range(plan.n_chunks)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="synapse chunks", unit="chunk")
    start = 0
    try:
        for i in chunks:
            pre, post, size = model.chunk(i)
            ids = _synapse_ids(seed, i, start, pre.size)
            start += pre.size
            shared: list[pa.Array] = []
            if positions:
                rng = np.random.default_rng(np.random.SeedSequence([seed, 9_201, i]))
                pre_pt, ctr_pt, post_pt, pre_sv, post_sv = synapse_points(
                    rng, pre, post, pop.pos, seed
                )
                shared = [pa.array(pre_sv), pa.array(post_sv)]
                shared += [pa.array(pt[:, k]) for pt in (pre_pt, ctr_pt, post_pt) for k in range(3)]
            for j, (r, w) in enumerate(zip(roots, writers, strict=True)):
                pre_root, post_root = r.piece_root[pre], r.piece_root[post]
                autapses[j] += int(np.count_nonzero(pre_root == post_root))
                cell_cell = r.piece_has_nucleus[pre] & r.piece_has_nucleus[post]
                frag_syn[j] += int(pre.size - np.count_nonzero(cell_cell))
                w.write(
                    pa.Table.from_arrays(
                        [
                            pa.array(ids),
                            pa.array(pre_root),
                            pa.array(post_root),
                            pa.array(size),
                            *shared,
                        ],
                        schema=schema,
                    )
                )
    finally:
        for w in writers:
            w.close()

    summaries = []
    prev: IntArray | None = None
    for j, (v, r) in enumerate(zip(vs, roots, strict=True)):
        nz = r.nucleus_root[r.nucleus_root != 0]
        _, counts = np.unique(nz, return_counts=True)
        changed = 0 if prev is None else int(np.count_nonzero(prev != r.nucleus_root))
        prev = r.nucleus_root
        p = paths[v]
        summaries.append(
            VersionSummary(
                version=v,
                nuclei=p["nuclei"],
                synapses=p["synapses"],
                cell_types=p["cell_types"],
                neurons=p["neurons"],
                zero_root_nuclei=int(np.count_nonzero(r.nucleus_root == 0)),
                multi_nucleus_roots=int(np.count_nonzero(counts > 1)),
                changed_roots=changed,
                autapses=autapses[j],
                fragment_synapses=frag_syn[j],
            )
        )
    return SynthSummary(
        out_dir=out,
        seed=seed,
        cells=pop.n,
        neurons=int(pop.is_neuron.sum()),
        synapses=start,
        fragments=model.n_fragments,
        versions=tuple(summaries),
    )
