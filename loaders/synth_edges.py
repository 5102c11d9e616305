"""Synapse generator for :mod:`loaders.synth`: version-independent (pre piece, post piece, size).

Model (vectorised, streamed in chunks):

- Cell-to-cell synapses (~48%): a presynaptic neuron is drawn by its out-propensity (log-normal,
  x2 for inhibitory cells); the postsynaptic neuron by a Gaussian displacement around the
  presynaptic soma (per-type anisotropic widths, e.g. Martinotti axons ascend) and, within the
  landing grid bin, by in-propensity; then accepted with a type-pair weight (E->E, E->I, BC->E,
  BPC->MC ...). Each connection carries 1..15 synapses (geometric, more for inhibitory
  axons); a fraction of connections gets a reciprocal connection (reciprocity above chance).
- Fragment synapses (~52%): orphan axon fragments onto cells, cells onto orphan dendrite
  fragments, and fragment-to-fragment; fragment activity is heavy tailed (log-normal weights).
- A few autapses (pre piece == post piece); merges in :mod:`loaders.synth_roots` add more.
- Sizes (cleft voxels): log-normal, median ~2500, with a shared per-connection factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loaders.synth_cells import (
    CELL_TYPES,
    VOXEL_NM,
    X_BOUNDS,
    Y_BOUNDS,
    Z_BOUNDS,
    Cells,
    FloatArray,
    IntArray,
    T,
)

FRAC_CELL_CELL = 0.48
FRAC_FRAG_TO_CELL = 0.36
FRAC_CELL_TO_FRAG = 0.11  # the rest of the non-autapse synapses are fragment -> fragment
AUTAPSE_RATE = 1e-4
P_RECIPROCAL = 0.25
PROPENSITY_CAP = 8.0  # x median
SIZE_MEDIAN = 2500.0
K_MIN_NEIGHBOURS = 30.0  # widen the distance kernel when cells are sparse (small demos)
CHUNK_ROWS = 1 << 20
SYN_PER_CONN = 1.6  # rough synapses per connection (multi-synapse + reciprocal)
HUB_SPREAD = 4.0  # acceptable targets in reach per expected connection
MAX_WIDENING = 5.0
_MAX_ROUNDS = 40
_SORTED_SEARCH_MIN = 1 << 16

_EXC = ("23P", "4P", "5P-IT", "5P-ET", "5P-NP", "6P-IT", "6P-CT")
_INH = ("BC", "MC", "BPC", "NGC")
# Distance kernel widths (x, y=depth, z) in um per presynaptic type.
_SIGMA_E = (80.0, 120.0, 80.0)
_SIGMA = {
    "5P-ET": (100.0, 200.0, 100.0),
    "BC": (70.0, 90.0, 70.0),
    "MC": (70.0, 220.0, 70.0),
    "BPC": (50.0, 150.0, 50.0),
    "NGC": (90.0, 90.0, 90.0),
}
# Type-pair weights by presynaptic inhibitory type: (to E, to BC, to MC, to BPC, to NGC).
_FROM_I = {
    "BC": (2.5, 2.0, 1.0, 0.5, 0.5),
    "MC": (2.0, 1.0, 0.3, 1.0, 0.5),
    "BPC": (0.5, 1.0, 2.0, 0.3, 0.5),
    "NGC": (1.0, 0.8, 0.8, 0.8, 0.8),
}
_FROM_E = (1.0, 1.8, 1.5, 1.0, 0.8)
_E_BOOST = {
    ("4P", "23P"): 1.6,
    ("23P", "5P-IT"): 1.4,
    ("23P", "5P-ET"): 1.4,
    ("23P", "5P-NP"): 1.3,
    ("6P-CT", "4P"): 1.2,
}


def _box_sum(grid: FloatArray, h: int) -> FloatArray:
    """Sum over the (2h+1)^3 box around each grid cell (truncated at the edges)."""
    out = grid
    for axis in range(grid.ndim):
        n = out.shape[axis]
        c = np.concatenate([np.zeros_like(out.take([0], axis=axis)), out.cumsum(axis=axis)], axis)
        hi = np.minimum(np.arange(n) + h + 1, n)
        lo = np.maximum(np.arange(n) - h, 0)
        out = c.take(hi, axis=axis) - c.take(lo, axis=axis)
    return out


def type_pair_weights() -> FloatArray:
    """16x16 matrix W[pre type, post type] (zero for glia)."""
    w = np.zeros((len(CELL_TYPES), len(CELL_TYPES)))
    for pre in _EXC + _INH:
        row = _FROM_E if pre in _EXC else _FROM_I[pre]
        for post in _EXC:
            w[T[pre], T[post]] = row[0] * _E_BOOST.get((pre, post), 1.0)
            if pre == "5P-ET":  # ET axons mostly leave the volume
                w[T[pre], T[post]] *= 0.6
        for j, post in enumerate(_INH, start=1):
            w[T[pre], T[post]] = row[j]
    return w


class WeightedSampler:
    """Draw indices with probability proportional to non-negative weights (searchsorted)."""

    def __init__(self, weights: FloatArray) -> None:
        self.cum = np.cumsum(weights, dtype=np.float64)
        if self.cum.size == 0 or self.cum[-1] <= 0:
            raise ValueError("no positive weight to sample from")
        self.last = int(np.flatnonzero(weights > 0)[-1])

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        u = rng.random(n) * self.cum[-1]
        if self.cum.size > _SORTED_SEARCH_MIN:  # sorted queries are cache friendly; reshuffle
            idx = np.searchsorted(self.cum, np.sort(u), side="right")[rng.permutation(n)]
        else:
            idx = np.searchsorted(self.cum, u, side="right")
        return np.minimum(idx, self.last).astype(np.int64)


@dataclass(frozen=True)
class Plan:
    """Synapse counts per category; chunk ``i`` gets a proportional slice of each."""

    total: int
    autapse: int
    cell_cell: int
    frag_cell: int
    cell_frag: int
    frag_frag: int

    @staticmethod
    def for_total(m: int) -> Plan:
        aut = min(m, max(3, round(m * AUTAPSE_RATE))) if m > 0 else 0
        rest = m - aut
        cc = round(rest * FRAC_CELL_CELL)
        fc = round(rest * FRAC_FRAG_TO_CELL)
        cf = round(rest * FRAC_CELL_TO_FRAG)
        return Plan(m, aut, cc, fc, cf, rest - cc - fc - cf)

    @property
    def n_chunks(self) -> int:
        return max(1, math.ceil(self.total / CHUNK_ROWS))

    def chunk(self, i: int) -> tuple[int, int, int, int, int]:
        n = self.n_chunks

        def part(k: int) -> int:
            return k * (i + 1) // n - k * i // n

        return (
            part(self.autapse),
            part(self.cell_cell),
            part(self.frag_cell),
            part(self.cell_frag),
            part(self.frag_frag),
        )


class SynapseModel:
    """Precomputed propensities, distance grid and fragment pools."""

    def __init__(self, cells: Cells, plan: Plan, seed: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 8_001]))
        self.cells = cells
        self.plan = plan
        self.seed = seed
        neuron = cells.is_neuron
        inh = cells.is_inhibitory
        tc = cells.type_code
        # Heavy-tailed but bounded propensities (an unbounded tail piles 100+ synapses on one
        # pair where a hub's distance kernel holds few neurons, e.g. layer 1).
        out = np.minimum(rng.lognormal(0.0, 0.75, cells.n), PROPENSITY_CAP)
        self.w_out = np.where(neuron, out, 0.0) * np.where(inh, 1.8, 1.0)
        in_factor = np.ones(len(CELL_TYPES))
        in_factor[[T["5P-ET"], T["5P-NP"], T["BC"]]] = (1.5, 0.6, 1.3)
        inn = np.minimum(rng.lognormal(0.0, 0.6, cells.n), PROPENSITY_CAP)
        self.w_in = np.where(neuron, inn, 0.0) * in_factor[tc]
        w = type_pair_weights()
        self.accept = w / np.maximum(w.max(axis=1, keepdims=True), 1e-12)
        self.p_geom = np.where(inh, 0.5, 0.72)
        self.pre_sampler = WeightedSampler(self.w_out)
        self.post_sampler = WeightedSampler(self.w_in)
        # Fragment pools: axon fragments are presynaptic, dendrite fragments postsynaptic.
        self.n_axon_frags = max(16, math.ceil((plan.frag_cell + plan.frag_frag) / 4))
        self.n_dend_frags = max(16, math.ceil((plan.cell_frag + plan.frag_frag) / 3))
        self.axon_sampler = WeightedSampler(rng.lognormal(0.0, 1.2, self.n_axon_frags))
        self.dend_sampler = WeightedSampler(rng.lognormal(0.0, 1.2, self.n_dend_frags))
        self._build_grid()

    @property
    def n_fragments(self) -> int:
        return self.n_axon_frags + self.n_dend_frags

    def _build_grid(self) -> None:
        cells = self.cells
        self.pos = cells.pos_um()
        um = np.asarray(VOXEL_NM) / 1000.0
        self.lo = np.asarray([X_BOUNDS[0], Y_BOUNDS[0], Z_BOUNDS[0]]) * um
        extent = np.asarray([X_BOUNDS[1], Y_BOUNDS[1], Z_BOUNDS[1]]) * um - self.lo
        targets = np.flatnonzero(self.w_in > 0)
        self.extent = extent
        density = targets.size / float(np.prod(extent))
        kernel = density * (2 * np.pi) ** 1.5 * float(np.prod(_SIGMA_E))
        scale = max(1.0, (K_MIN_NEIGHBOURS / kernel) ** (1 / 3))
        sig = np.tile(np.asarray(_SIGMA_E), (len(CELL_TYPES), 1))
        for name, s in _SIGMA.items():
            sig[T[name]] = s
        self.sigma = sig * scale
        self.bin = np.asarray(_SIGMA_E) * scale * 0.5
        self.nb = np.maximum(1, np.ceil(extent / self.bin)).astype(np.int64)
        b = self._bin_of(self.pos[targets])
        order = np.argsort(b, kind="stable")
        self.sorted_targets = targets[order]
        sorted_bins = b[order]
        self.tcum = np.concatenate([[0.0], np.cumsum(self.w_in[self.sorted_targets])])
        all_bins = np.arange(int(np.prod(self.nb)))
        self.bstart = np.searchsorted(sorted_bins, all_bins, side="left")
        self.bend = np.searchsorted(sorted_bins, all_bins, side="right")
        self.cell_sigma = self.sigma[cells.type_code] * self._hub_widening(targets, b)[:, None]

    def _hub_widening(self, targets: IntArray, target_bins: IntArray) -> FloatArray:
        """Per-cell kernel widening so a cell's expected connections stay well below the
        acceptable targets near it (hubs, layer 1, the volume's edges): otherwise the same
        pair is drawn again and again and gets hundreds of synapses."""
        tc = self.cells.type_code
        n_types = T["NGC"] + 1
        nbins = int(np.prod(self.nb))
        mean_w = float(self.w_in[targets].mean())
        box = np.empty((n_types, nbins))
        for t in range(n_types):
            sel = tc[targets] == t
            grid = np.bincount(target_bins[sel], self.w_in[targets][sel] / mean_w, nbins)
            box[t] = _box_sum(grid.reshape(tuple(self.nb)), 2).ravel()
        cell_bins = self._bin_of(self.pos)
        neuron = self.cells.is_neuron
        eff = np.zeros(self.cells.n)
        acc = self.accept[tc[neuron]][:, :n_types]
        eff[neuron] = (acc * box[:, cell_bins[neuron]].T).sum(axis=1)
        conns = self.plan.cell_cell / SYN_PER_CONN * self.w_out / self.w_out.sum()
        need = HUB_SPREAD * conns
        return np.clip((need / np.maximum(eff, 0.5)) ** (1 / 3), 1.0, MAX_WIDENING)

    def _bin_of(self, p: FloatArray) -> IntArray:
        ijk = np.floor((p - self.lo) / self.bin).astype(np.int64)
        ijk = np.clip(ijk, 0, self.nb - 1)
        return np.asarray((ijk[:, 0] * self.nb[1] + ijk[:, 1]) * self.nb[2] + ijk[:, 2])

    def _posts(self, rng: np.random.Generator, pre: IntArray) -> IntArray:
        """Postsynaptic neuron per presynaptic neuron (distance + propensity + type pair)."""
        post = np.full(pre.size, -1, dtype=np.int64)
        todo = np.arange(pre.size)
        tc = self.cells.type_code
        for _ in range(_MAX_ROUNDS):
            if todo.size == 0:
                return post
            p = pre[todo]
            d = self.pos[p] - self.lo + rng.standard_normal((p.size, 3)) * self.cell_sigma[p]
            d = np.abs(d) % (2 * self.extent)  # reflect at the volume's faces
            q = self.lo + np.where(d > self.extent, 2 * self.extent - d, d)
            b = self._bin_of(q)
            lo, hi = self.tcum[self.bstart[b]], self.tcum[self.bend[b]]
            ok = hi > lo
            j = np.searchsorted(self.tcum, lo + rng.random(p.size) * (hi - lo), side="right") - 1
            j = np.clip(j, self.bstart[b], np.maximum(self.bend[b] - 1, self.bstart[b]))
            cand = self.sorted_targets[np.minimum(j, self.sorted_targets.size - 1)]
            ok &= cand != p
            ok &= rng.random(p.size) < self.accept[tc[p], tc[cand]]
            post[todo[ok]] = cand[ok]
            todo = todo[~ok]
        while todo.size:  # isolated somata: fall back to propensity x type pair only
            p = pre[todo]
            cand = self.post_sampler.sample(rng, p.size)
            ok = (cand != p) & (rng.random(p.size) < self.accept[tc[p], tc[cand]])
            post[todo[ok]] = cand[ok]
            todo = todo[~ok]
        return post

    def _sizes(self, rng: np.random.Generator, log_factor: FloatArray) -> IntArray:
        noise = rng.normal(0.0, 0.8, log_factor.size)
        return np.maximum(1, np.rint(SIZE_MEDIAN * np.exp(log_factor + noise))).astype(np.int64)

    def _cell_cell(self, rng: np.random.Generator, need: int) -> tuple[IntArray, ...]:
        pres: list[IntArray] = []
        posts: list[IntArray] = []
        facs: list[FloatArray] = []
        tc = self.cells.type_code
        while need > 0:
            m = need // 2 + 16
            pre = self.pre_sampler.sample(rng, m)
            post = self._posts(rng, pre)
            recip = rng.random(m) < P_RECIPROCAL * self.accept[tc[post], tc[pre]]
            a = np.concatenate([pre, post[recip]])
            b = np.concatenate([post, pre[recip]])
            k = np.minimum(rng.geometric(self.p_geom[a]), 15)
            fac = rng.normal(0.0, 0.45, a.size)
            pres.append(np.repeat(a, k))
            posts.append(np.repeat(b, k))
            facs.append(np.repeat(fac, k))
            need -= int(k.sum())
        if not pres:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        n = sum(x.size for x in pres) + need  # need <= 0: drop the overshoot
        pre_all = np.concatenate(pres)[:n]
        post_all = np.concatenate(posts)[:n]
        return pre_all, post_all, self._sizes(rng, np.concatenate(facs)[:n])

    def chunk(self, i: int) -> tuple[IntArray, IntArray, IntArray]:
        """Synapses of chunk ``i`` as (pre piece, post piece, size), rows shuffled."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 9_001, i]))
        n_aut, n_cc, n_fc, n_cf, n_ff = self.plan.chunk(i)
        c = self.cells.n
        axon0, dend0 = c, c + self.n_axon_frags
        aut = self.pre_sampler.sample(rng, n_aut)
        cc_pre, cc_post, cc_size = self._cell_cell(rng, n_cc)
        fc_pre = axon0 + self.axon_sampler.sample(rng, n_fc)
        fc_post = self.post_sampler.sample(rng, n_fc)
        cf_pre = self.pre_sampler.sample(rng, n_cf)
        cf_post = dend0 + self.dend_sampler.sample(rng, n_cf)
        ff_pre = axon0 + self.axon_sampler.sample(rng, n_ff)
        ff_post = dend0 + self.dend_sampler.sample(rng, n_ff)
        n_frag = n_aut + n_fc + n_cf + n_ff
        frag_size = self._sizes(rng, np.full(n_frag, -0.2))
        pre = np.concatenate([aut, cc_pre, fc_pre, cf_pre, ff_pre])
        post = np.concatenate([aut, cc_post, fc_post, cf_post, ff_post])
        size = np.concatenate([frag_size[:n_aut], cc_size, frag_size[n_aut:]])
        order = rng.permutation(pre.size)
        return pre[order], post[order], size[order]
