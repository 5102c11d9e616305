"""Null models for the triad census: Erdos-Renyi expectations (analytic) and a
degree-preserving randomisation (sampled by a Markov chain of directed edge swaps).

The chain works on plain edge arrays: a sweep (:func:`_swap_round`) proposes a move for
every edge at once, in pairs (double-edge swaps) and triples (three-edge rotations, which
reverse directed 3-cycles), with an acceptance rule that makes every sweep as likely as its
inverse, so the chain samples the uniform ensemble. Every sample's census runs directly on
the swapped arrays (analysis.census.census_counts).

    >>> null = degree_preserving_null(g, samples=100, seed=1)
    >>> null.z_scores(triad_census(g))["030T"]
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from math import comb, prod
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from analysis.census import _PATTERN_CLASS, TRIAD_CODES, IntArray, ReleaseGraph, census_with_pairs
from core.budget import Deadline, check
from core.errors import QueryTimeout


def er_expected(n: int, m: int, model: Literal["gnp", "gnm"] = "gnp") -> dict[str, float]:
    """Expected triad counts in a random directed graph with ``n`` cells and ``m``
    edges (no autapses): ``gnp`` = every ordered pair independently with
    p = m / (n (n - 1)) (the model of Turner et al. 2022, "ER connection
    probability"); ``gnm`` = uniform over graphs with exactly m edges. Each sums
    to C(n, 3); they differ by O(1/m)."""
    pairs = n * (n - 1)
    if n < 3 or not 0 <= m <= pairs:
        return dict.fromkeys(TRIAD_CODES, 0.0)
    p = m / pairs
    prob = np.zeros(16)
    for pattern in range(64):
        k = pattern.bit_count()
        if model == "gnp":
            pr = p**k * (1 - p) ** (6 - k)
        else:
            pr = prod(m - j for j in range(k)) * prod(pairs - m - j for j in range(6 - k))
            pr /= prod(pairs - j for j in range(6))
        prob[_PATTERN_CLASS[pattern]] += pr
    return {c: comb(n, 3) * float(prob[i]) for i, c in enumerate(TRIAD_CODES)}


def er_expected_reciprocal(n: int, m: int) -> float:
    """Expected reciprocal pairs under G(n, p), p = m / (n (n - 1)): C(n, 2) p^2."""
    if n < 2:
        return 0.0
    p = m / (n * (n - 1))
    return comb(n, 2) * p * p


@dataclass(frozen=True)
class NullCensus:
    """Per-class mean and (sample) standard deviation of the triad census over
    ``samples`` degree-preserving randomisations, and the same for reciprocal pairs."""

    mean: dict[str, float]
    std: dict[str, float]
    reciprocal_mean: float
    reciprocal_std: float
    samples: int
    sweeps: int

    def z_scores(self, observed: dict[str, int]) -> dict[str, float]:
        """(observed - mean) / std; 0 where std is 0 and observed equals the mean,
        +-inf where std is 0 and they differ."""
        out = {}
        for c in TRIAD_CODES:
            diff, sd = observed[c] - self.mean[c], self.std[c]
            out[c] = diff / sd if sd > 0 else 0.0 if diff == 0 else float(np.sign(diff)) * np.inf
        return out


def _member(keys: IntArray, q: IntArray) -> npt.NDArray[np.bool_]:
    """Which of ``q`` are in the sorted array ``keys``."""
    if not keys.size:
        return np.zeros(q.shape, dtype=bool)
    pos = np.searchsorted(keys, q)
    pos[pos == keys.size] = 0
    return keys[pos] == q


_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)


def _slots(q: IntArray, bits: int, level: int = 0) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        mult = np.uint64(_MULTIPLIERS[level % len(_MULTIPLIERS)])
        return (q.astype(np.uint64) * mult) >> np.uint64(64 - bits)


class KeyTable:
    """An exact set of non-negative int64 keys, built in O(m) without sorting: a
    direct-mapped table (one slot per hash, the last writer wins); keys that lost their
    slot go to a smaller table with another hash, and so on. A query whose slot is empty
    is absent at once. ``buffer`` (int64, reused across rounds) avoids page faults."""

    def __init__(self, keys: IntArray, *, level: int = 0, buffer: IntArray | None = None) -> None:
        self.bits = max(8, int(np.ceil(np.log2(max(1, keys.size)))) + 2)
        self.level = level
        size = 1 << self.bits
        if buffer is not None and buffer.size >= size:
            self.table = buffer[:size]
            self.table.fill(-1)
        else:
            self.table = np.full(size, -1, dtype=np.int64)
        h = _slots(keys, self.bits, level)
        self.table[h] = keys
        lost = keys[self.table[h] != keys]
        self.next = KeyTable(lost, level=level + 1) if lost.size else None

    def contains(self, q: IntArray) -> npt.NDArray[np.bool_]:
        slot = self.table[_slots(q, self.bits, self.level)]
        out = (slot == q) & (q >= 0)
        if self.next is not None:
            other = np.flatnonzero((slot >= 0) & ~out)
            if other.size:
                out[other] = self.next.contains(q[other])
        return out


def repeated(keys: IntArray) -> IntArray:
    """Sorted distinct values that occur more than once in ``keys``, in O(m) plus a
    sort of the few keys that share a hash slot."""
    bits = max(8, int(np.ceil(np.log2(max(1, keys.size)))) + 1)
    h = _slots(keys, bits)
    winner = np.empty(1 << bits, dtype=np.int32)  # only written slots are read
    pos = np.arange(keys.size, dtype=np.int32)
    winner[h] = pos
    lost = np.flatnonzero(winner[h] != pos)
    lk = keys[lost]
    same = lk[keys[winner[h[lost]]] == lk]
    lk.sort()
    return np.unique(np.concatenate([same, lk[1:][lk[1:] == lk[:-1]]]))


#: Share of the edges that a round groups in threes (the rest go in pairs). Double-edge
#: swaps alone do not connect the directed ensemble (a directed 3-cycle cannot be reversed by
#: them); three-edge rotations do, with them.
TRIPLE_SHARE = 0.25
#: Chance that a group takes part in a sweep (so that any single move can happen alone,
#: which keeps the chain irreducible even on tiny graphs where whole sweeps collide).
ACTIVE = 0.9
#: Sweeps between two samples of a chain, and before its first one.
SWEEPS = 3
BURN_IN = 10
#: Independent chains of a null (each from the observed graph, its own burn-in).
NULL_CHAINS = 2


def _swap_round(
    src: IntArray,
    dst: IntArray,
    n: int,
    rng: np.random.Generator,
    buffer: IntArray | None = None,
    *,
    triple_share: float = TRIPLE_SHARE,
) -> int:
    """One sweep of edge swaps, in place; returns the number of moves accepted.

    A random permutation groups the edges (their positions in ``dst``) into triples (about
    ``triple_share`` of the edges) and pairs; every group proposes to rotate its targets one
    step (pair: (a->b, c->d) => (a->d, c->b), a double-edge swap; triple: (a->b, c->d, e->f)
    => (a->d, c->f, e->b), which reverses a directed 3-cycle). A group is accepted if its
    new edges are no autapse, not present, and none of its new or old edges is proposed by
    another group of the sweep. With that rule the sweep applied with the groups' order
    reversed undoes it exactly, so a sweep is as likely as its inverse: the chain keeps the
    uniform distribution over simple directed graphs with these in/out degrees (with pairs
    alone it would also be stuck in a part of it). In/out degrees are kept."""
    m = src.size
    perm = rng.permutation(m)
    t = max(1, int(m * triple_share) // 3) if m >= 3 and triple_share > 0 else 0
    p = (m - 3 * t) // 2
    # each group takes part with probability ACTIVE (so that any single move can happen)
    t, p = int(rng.binomial(t, ACTIVE)), int(rng.binomial(p, ACTIVE))
    # a group's rows are its members; member r takes member r + 1's target
    groups = [perm[: 3 * t].reshape(3, t), perm[3 * t : 3 * t + 2 * p].reshape(2, p)]
    del perm
    present = KeyTable(src * n + dst, buffer=buffer)
    new, ok, seen = [], [], []
    for g in groups:
        s, d = src[g], dst[np.roll(g, -1, axis=0)]
        nk = s * n + d
        hit = present.contains(nk.ravel()).reshape(nk.shape)
        new.append(nk)
        ok.append(~(hit | (s == d)).any(axis=0))
        seen.append(nk[hit])  # present edges some group proposes: their groups must stay
    proposed = np.concatenate([nk.ravel() for nk in new])
    busy = np.concatenate([repeated(proposed), *seen])
    del proposed, seen
    table = KeyTable(busy) if busy.size else None
    accepted = 0
    for g, nk, ok_g in zip(groups, new, ok, strict=True):
        idx = np.flatnonzero(ok_g)
        if table is not None and idx.size:
            members = g[:, idx]
            keys = np.concatenate([nk[:, idx], src[members] * n + dst[members]])
            idx = idx[~table.contains(keys.ravel()).reshape(keys.shape).any(axis=0)]
        members = g[:, idx]
        dst[members] = dst[np.roll(members, -1, axis=0)]
        accepted += idx.size
    return accepted


Job = tuple[IntArray, IntArray, int, int, int, int, Any, Deadline | None]


def _chain(job: Job, on_sample: Callable[[], None] | None = None) -> list[list[int]] | None:
    """One Markov chain: ``burn_in`` sweeps, then ``samples`` censuses ``sweeps`` sweeps
    apart. Rows are the 16 triad counts plus the reciprocal pairs; None when out of time.
    ``on_sample`` (in-process runs only) hears every finished sample."""
    src, dst, n, samples, burn_in, sweeps, seed, deadline = job
    rng = np.random.default_rng(seed)
    src, dst = src.copy(), dst.copy()
    out = []
    buffer = np.empty(1 << (int(np.ceil(np.log2(max(1, src.size)))) + 2), dtype=np.int64)
    try:
        for k in range(samples):
            for _ in range(max(1, burn_in if k == 0 else sweeps)):
                check(deadline)
                _swap_round(src, dst, n, rng, buffer)
            counts, mutual = census_with_pairs(n, src, dst, deadline)
            out.append([counts[c] for c in TRIAD_CODES] + [mutual])
            if on_sample is not None:
                on_sample()
    except QueryTimeout:
        return None
    return out


def degree_preserving_null(
    g: ReleaseGraph,
    samples: int = 100,
    seed: int = 0,
    *,
    sweeps: int = SWEEPS,
    burn_in: int = BURN_IN,
    chains: int = NULL_CHAINS,
    workers: int | None = None,
    deadline: Deadline | None = None,
    executor: Executor | None = None,
    progress: Callable[[float], None] | None = None,
) -> NullCensus:
    """Triad-census (and reciprocal-pair) mean/std over random graphs with every
    cell's in- and out-degree kept (directed edge swaps, no autapses, no multi-edges).

    ``chains`` independent Markov chains start from ``g`` (seeds from ``seed``), so the
    result depends on the seed, not on ``workers``; each chain runs ``burn_in`` sweeps
    (:func:`_swap_round`: every edge proposed for one move) before its first sample and
    ``sweeps`` between samples. The chain's stationary distribution is uniform over the
    simple digraphs with these degrees. On pinky100 (363 cells, 1,750 edges) the triad
    counts of consecutive sweeps are correlated at about 0.24 (at most 0.27), three sweeps
    apart at 0.04 (at most 0.06), and the observed excess of reciprocal pairs is gone after
    two sweeps (tests/unit/test_nullmodel.py checks it all against independent draws).
    Chains run in ``workers`` processes (default: CPUs, at most ``chains``), or as tasks of
    ``executor`` when given (a long-lived pool shared by the caller: threads, so ``progress``
    hears the share of samples done; the calling thread only waits, so it must not be one of
    the executor's workers). Raises QueryTimeout once ``deadline`` passes."""
    if samples < 2:
        raise ValueError("need at least 2 samples for a standard deviation")
    chains = max(1, min(chains, samples))
    workers = max(1, min(chains, workers or os.cpu_count() or 1))
    seeds = np.random.SeedSequence(seed).spawn(chains)
    share = [samples // chains + (k < samples % chains) for k in range(chains)]
    jobs: list[Job] = [
        (g.src, g.dst, g.n, share[k], burn_in, sweeps, seeds[k], deadline) for k in range(chains)
    ]
    done = [0]

    def on_sample() -> None:
        done[0] += 1  # one increment per sample: races only delay a report
        if progress is not None:
            progress(min(1.0, done[0] / samples))

    if executor is not None:
        report = None if isinstance(executor, ProcessPoolExecutor) else on_sample
        futures = [executor.submit(_chain, job, report) for job in jobs]
        results = [f.result() for f in futures]
    elif workers == 1 or g.m < 10_000:
        results = [_chain(job, on_sample) for job in jobs]
    else:
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = list(pool.map(_chain, jobs))
    if any(r is None for r in results):
        raise QueryTimeout(deadline.seconds if deadline else 0.0)
    arr = np.array([row for r in results if r is not None for row in r], dtype=np.float64)
    mean, std = arr.mean(axis=0), arr.std(axis=0, ddof=1)
    return NullCensus(
        mean={c: float(v) for c, v in zip(TRIAD_CODES, mean, strict=False)},
        std={c: float(v) for c, v in zip(TRIAD_CODES, std, strict=False)},
        reciprocal_mean=float(mean[-1]),
        reciprocal_std=float(std[-1]),
        samples=samples,
        sweeps=sweeps,
    )
