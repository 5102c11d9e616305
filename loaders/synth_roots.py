"""Root-ID bindings per version for :mod:`loaders.synth` (proofreading churn).

Synapses are bound to *pieces* (stable, version independent): pieces ``0..C-1`` are the cells'
core segments, pieces ``C..C+F-1`` are fragments (orphan axons/dendrites without a nucleus).
In each version every piece belongs to one *object*, named by an owner piece, and every object
has a root ID. Churn from one version to the next edits this partition:

- proofreading edits: an object gets a new root ID (same pieces);
- fragment merges/splits: a fragment joins a cell's object (its synapses move to the cell's
  root) or leaves it again; both objects get new roots;
- multi-nucleus merge errors: 2-3 neighbouring cells share one object/root; some are resolved;
- ``pt_root_id = 0``: some nuclei lie outside the segmentation (nucleus table only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loaders.synth_cells import BoolArray, Cells, IntArray

ROOT_BASE = 864_691_135_000_000_000  # 18-digit root IDs, > 2**53
ROOT_BLOCK = 1_000_000_000  # one block of IDs per version step (later versions: larger IDs)
_ROOT_PRIME = 999_999_937  # largest prime < 1e9: affine permutation of the block

# Churn rates per version step (fractions of the eligible population).
EDIT_NEURON = 0.08
EDIT_GLIA = 0.01
FRAG_MERGE_INITIAL = 0.03  # of fragments, already merged into neurons in the first version
FRAG_MERGE_CELLS = 0.05  # of neurons absorb 1-4 fragments per step
FRAG_SPLIT_CELLS = 0.03  # x neurons fragments split off per step
GROUPS_PER_CELL = 0.002  # multi-nucleus roots
ZERO_PER_CELL = 0.0015  # nuclei with pt_root_id = 0
KEEP_GROUP = 0.6
KEEP_ZERO = 0.6


@dataclass(frozen=True)
class VersionRoots:
    """Root bindings of one version."""

    piece_root: IntArray  # root ID of every piece (cells first, then fragments)
    nucleus_root: IntArray  # pt_root_id per cell (0 for nuclei outside the segmentation)
    piece_has_nucleus: BoolArray  # piece's root carries at least one (non-zero) nucleus


class RootState:
    """Mutable partition of pieces into objects; call :meth:`advance` once per version."""

    def __init__(self, cells: Cells, n_fragments: int, seed: int) -> None:
        self.cells = cells
        self.c = cells.n
        self.f = n_fragments
        self.seed = seed
        self.step = -1
        self.group = np.arange(self.c, dtype=np.int64)  # owner (leader) cell of each cell
        self.host = np.full(n_fragments, -1, dtype=np.int64)  # cell a fragment is merged into
        self.zero = np.zeros(self.c, dtype=bool)
        self.obj_root = np.zeros(self.c + n_fragments, dtype=np.int64)
        self._pos = cells.pos_um()

    # -- helpers -----------------------------------------------------------------------------
    def _owner(self) -> IntArray:
        frag_owner = np.where(
            self.host >= 0,
            self.group[np.maximum(self.host, 0)],
            np.arange(self.c, self.c + self.f, dtype=np.int64),
        )
        return np.concatenate([self.group, frag_owner])

    def _new_roots(self, n: int, rng: np.random.Generator) -> IntArray:
        a = int(rng.integers(1, _ROOT_PRIME))
        b = int(rng.integers(0, _ROOT_PRIME))
        k = np.arange(n, dtype=np.int64)
        return ROOT_BASE + self.step * ROOT_BLOCK + (a * k + b) % _ROOT_PRIME

    def _grouped(self) -> BoolArray:
        counts = np.bincount(self.group, minlength=self.c)
        return np.asarray(counts[self.group] > 1)

    # -- churn operations --------------------------------------------------------------------
    def _groups(self, rng: np.random.Generator, keep: float, dirty: BoolArray) -> None:
        grouped = self._grouped()
        leaders = np.unique(self.group[grouped])
        drop = leaders[rng.random(leaders.size) >= keep]
        members = np.flatnonzero(np.isin(self.group, drop))
        self.group[members] = members
        dirty[members] = True
        n_new = max(1, round(GROUPS_PER_CELL * self.c * (1.0 - keep)))
        free = ~self._grouped() & ~self.zero
        neurons = np.flatnonzero(free & self.cells.is_neuron)
        for seed_cell in rng.permutation(neurons)[:n_new]:
            if not free[seed_cell]:
                continue
            cand = np.flatnonzero(free)
            cand = cand[cand != seed_cell]
            if cand.size == 0:
                break
            size = int(rng.integers(1, 3))  # 1-2 partners: 2-3 nuclei on one root
            d2 = ((self._pos[cand] - self._pos[seed_cell]) ** 2).sum(axis=1)
            partners = cand[np.argsort(d2, kind="stable")[:size]]
            self.group[partners] = seed_cell
            free[partners] = False
            free[seed_cell] = False
            dirty[seed_cell] = True

    def _zeros(self, rng: np.random.Generator, keep: float) -> None:
        current = np.flatnonzero(self.zero)
        self.zero[current[rng.random(current.size) >= keep]] = False
        n_new = max(1, round(ZERO_PER_CELL * self.c * (1.0 - keep)))
        cand = np.flatnonzero(~self.zero & ~self._grouped())
        self.zero[rng.permutation(cand)[:n_new]] = True

    def _split_fragments(self, rng: np.random.Generator, dirty: BoolArray) -> None:
        """Split merged fragments off ``FRAG_SPLIT_CELLS`` x neurons hosts."""
        merged = np.flatnonzero(self.host >= 0)
        n = min(merged.size, round(FRAG_SPLIT_CELLS * int(self.cells.is_neuron.sum())))
        split = rng.permutation(merged)[:n]
        dirty[self.group[self.host[split]]] = True
        dirty[self.c + split] = True
        self.host[split] = -1

    def _merge_fragments(
        self, rng: np.random.Generator, p_free: float, p_host: float, dirty: BoolArray
    ) -> None:
        """Merge a fraction of free fragments into random neurons (``p_free``), or 1-4
        fragments into each of a fraction of the neurons (``p_host``)."""
        free = np.flatnonzero(self.host < 0)
        neurons = np.flatnonzero(self.cells.is_neuron)
        if p_free > 0:
            join = free[rng.random(free.size) < p_free]
            hosts = neurons[rng.integers(0, neurons.size, size=join.size)]
        else:
            chosen = neurons[rng.random(neurons.size) < p_host]
            hosts = np.repeat(chosen, rng.integers(1, 5, size=chosen.size))
            join = rng.permutation(free)[: hosts.size]
            hosts = hosts[: join.size]
        self.host[join] = hosts
        dirty[self.group[hosts]] = True

    def _edits(self, rng: np.random.Generator, dirty: BoolArray) -> None:
        p = np.where(self.cells.is_neuron, EDIT_NEURON, EDIT_GLIA)
        dirty[self.group[rng.random(self.c) < p]] = True

    # -- public ------------------------------------------------------------------------------
    def advance(self) -> VersionRoots:
        """Apply one version step (the first step builds the initial release) and bind roots."""
        self.step += 1
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7_001, self.step]))
        dirty = np.zeros(self.c + self.f, dtype=bool)
        if self.step == 0:
            dirty[:] = True
            self._groups(rng, 0.0, dirty)
            self._zeros(rng, 0.0)
            self._merge_fragments(rng, FRAG_MERGE_INITIAL, 0.0, dirty)
        else:
            self._groups(rng, KEEP_GROUP, dirty)
            self._zeros(rng, KEEP_ZERO)
            self._split_fragments(rng, dirty)
            self._merge_fragments(rng, 0.0, FRAG_MERGE_CELLS, dirty)
            self._edits(rng, dirty)
        owner = self._owner()
        is_owner = np.zeros(self.c + self.f, dtype=bool)
        is_owner[owner] = True
        renew = np.flatnonzero(dirty & is_owner)
        self.obj_root[renew] = self._new_roots(renew.size, rng)
        piece_root = self.obj_root[owner]
        nucleus_root = np.where(self.zero, 0, piece_root[: self.c])
        owner_has_nucleus = np.zeros(self.c + self.f, dtype=bool)
        owner_has_nucleus[self.group[~self.zero]] = True
        return VersionRoots(piece_root, nucleus_root, owner_has_nucleus[owner])
