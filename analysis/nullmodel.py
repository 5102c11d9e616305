"""Null models for the triad census: Erdos-Renyi expectations (analytic) and a
degree-preserving randomisation (directed edge swaps, sampled).

The swap chain works on plain edge arrays and a sorted key set that is updated, not
rebuilt, after each round; every sample's census runs directly on the swapped arrays
(analysis.census.census_counts), so a sample costs two sorts plus the triangle pass.

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
    swaps_per_edge: float

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


def _swap_round(
    src: IntArray,
    dst: IntArray,
    n: int,
    rng: np.random.Generator,
    buffer: IntArray | None = None,
) -> int:
    """One batch of directed double-edge swaps (a->b, c->d) => (a->d, c->b) over a
    random pairing of all edges, in place; returns the number accepted. A proposal is
    rejected if it would create an autapse, an edge already present, or the same new
    edge as another proposal, so in/out degrees are kept and the graph stays simple."""
    present = KeyTable(src * n + dst, buffer=buffer)
    perm = rng.permutation(src.size)
    half = src.size // 2
    i, j = perm[:half], perm[half : 2 * half]
    a, b, c, d = src[i], dst[i], src[j], dst[j]
    new1, new2 = a * n + d, c * n + b
    ok = (a != d) & (c != b)
    ok &= ~present.contains(new1)
    ok &= ~present.contains(new2)
    added = np.concatenate([new1[ok], new2[ok]])
    dup = repeated(added)
    if dup.size:
        ok_idx = np.flatnonzero(ok)
        dups = KeyTable(dup)
        clash = dups.contains(new1[ok_idx]) | dups.contains(new2[ok_idx])
        ok[ok_idx[clash]] = False
    dst[i[ok]] = d[ok]
    dst[j[ok]] = b[ok]
    return int(ok.sum())


Job = tuple[IntArray, IntArray, int, int, float, float, Any, Deadline | None]


def _chain(job: Job, on_sample: Callable[[], None] | None = None) -> list[list[int]] | None:
    """One Markov chain: burn in, then ``samples`` censuses ``swaps_per_edge`` apart.
    Rows are the 16 triad counts plus the reciprocal pairs; None when out of time.
    ``on_sample`` (in-process runs only) hears every finished sample."""
    src, dst, n, samples, burn_in, swaps_per_edge, seed, deadline = job
    rng = np.random.default_rng(seed)
    src, dst = src.copy(), dst.copy()
    out = []
    buffer = np.empty(1 << (int(np.ceil(np.log2(max(1, src.size)))) + 2), dtype=np.int64)
    try:
        for k in range(samples):
            rounds = max(1, int(np.ceil(2 * (burn_in if k == 0 else swaps_per_edge))))
            for _ in range(rounds):
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
    swaps_per_edge: float = 1.0,
    burn_in: float = 2.0,
    chains: int = 2,
    workers: int | None = None,
    deadline: Deadline | None = None,
    executor: Executor | None = None,
    progress: Callable[[float], None] | None = None,
) -> NullCensus:
    """Triad-census (and reciprocal-pair) mean/std over random graphs with every
    cell's in- and out-degree kept (directed edge swaps, no autapses, no multi-edges).

    ``chains`` independent Markov chains start from ``g`` (seeds from ``seed``), so the
    result depends on the seed, not on ``workers``; each chain attempts ``burn_in``
    swaps per edge before its first sample and ``swaps_per_edge`` between samples.
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
        (g.src, g.dst, g.n, share[k], burn_in, swaps_per_edge, seeds[k], deadline)
        for k in range(chains)
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
        swaps_per_edge=swaps_per_edge,
    )
