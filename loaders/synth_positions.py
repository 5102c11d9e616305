"""Synapse positions and supervoxel IDs for :mod:`loaders.synth` (version independent).

A synapse of (pre piece, post piece) lies at a point ``L`` on the postsynaptic arbor:

- onto a cell: around the post soma (dendrites: Gaussian, ~45 um across, 70 um in depth),
  pulled a third of the way toward the presynaptic soma when the pre piece is a cell;
- from a cell onto a dendrite fragment: on the presynaptic cell's axon (~90 um around its soma);
- fragment to fragment: near the dendrite fragment's home, a point fixed per fragment (hashed).

``ctr_pt_position = L``; ``pre_pt_position`` and ``post_pt_position`` are 150-400 nm apart on
either side of it, in a random direction. All three are int32 voxels of 4x4x40 nm inside
:data:`X_BOUNDS` x :data:`Y_BOUNDS` x :data:`Z_BOUNDS`.

Supervoxel IDs follow the PyChunkedGraph layout: layer 1 in the top 8 bits, then the chunk's
x, y, z (10 bits each; chunks of 512x512x64 voxels) and a 26-bit segment number within the
chunk, hashed from the piece and a 64x64x8-voxel block: the same piece in the same place has the
same supervoxel, neighbours share the high bits (so they compress like real ones).
"""

from __future__ import annotations

import numpy as np

from loaders.synth_cells import VOXEL_NM, X_BOUNDS, Y_BOUNDS, Z_BOUNDS, FloatArray, IntArray

LO = np.asarray([X_BOUNDS[0], Y_BOUNDS[0], Z_BOUNDS[0]], dtype=np.float64)
HI = np.asarray([X_BOUNDS[1], Y_BOUNDS[1], Z_BOUNDS[1]], dtype=np.float64) - 1
_UM = 1000.0 / np.asarray(VOXEL_NM)  # voxels per um
DENDRITE_UM = np.asarray([45.0, 70.0, 45.0])
AXON_UM = np.asarray([90.0, 90.0, 90.0])
FRAGMENT_UM = np.asarray([8.0, 8.0, 8.0])
TOWARD_PRE = 0.33
GAP_NM = (150.0, 400.0)
CHUNK_VX = np.asarray([512, 512, 64], dtype=np.int64)
BLOCK_VX = np.asarray([64, 64, 8], dtype=np.int64)
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 -> uint64), vectorised."""
    z = x.astype(np.uint64) * _M1
    z ^= z >> np.uint64(31)
    z *= _M2
    z ^= z >> np.uint64(29)
    return z


def fragment_home(piece: IntArray, seed: int) -> FloatArray:
    """A fixed point (voxels, float) inside the volume for each fragment piece."""
    out = np.empty((piece.size, 3))
    base = piece.astype(np.uint64) * np.uint64(3) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(7919)
    for k in range(3):
        u = (_mix(base + np.uint64(k)) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        out[:, k] = LO[k] + u * (HI[k] - LO[k])
    return out


def supervoxels(piece: IntArray, pos: np.ndarray, seed: int) -> IntArray:
    """Layer-1 supervoxel IDs (int64) of ``piece`` at ``pos`` (voxels, int)."""
    p = pos.astype(np.int64)
    chunk = p // CHUNK_VX
    block = p // BLOCK_VX
    key = (
        piece.astype(np.uint64) * np.uint64(1_000_003)
        ^ block[:, 0].astype(np.uint64) * np.uint64(73_856_093)
        ^ block[:, 1].astype(np.uint64) * np.uint64(19_349_663)
        ^ block[:, 2].astype(np.uint64) * np.uint64(83_492_791)
        ^ np.uint64(seed & 0xFFFFFFFF)
    )
    seg = (_mix(key) >> np.uint64(46)).astype(np.int64)  # 18 bits: ~250k per chunk
    return (
        (np.int64(1) << 56) | (chunk[:, 0] << 46) | (chunk[:, 1] << 36) | (chunk[:, 2] << 26) | seg
    )


def synapse_points(
    rng: np.random.Generator,
    pre: IntArray,
    post: IntArray,
    soma: IntArray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, IntArray, IntArray]:
    """(pre, ctr, post) positions as (n, 3) int32 voxels, and (pre, post) supervoxel IDs, of
    synapses between pieces ``pre`` and ``post`` (pieces < len(soma) are cells)."""
    n = pre.size
    c = soma.shape[0]
    pre_cell, post_cell = pre < c, post < c
    home_post = np.empty((n, 3))
    home_post[post_cell] = soma[post[post_cell]]
    home_post[~post_cell] = fragment_home(post[~post_cell], seed)
    spread = np.where(post_cell[:, None], DENDRITE_UM, FRAGMENT_UM)
    both = pre_cell & post_cell
    home_post[both] += TOWARD_PRE * (soma[pre[both]] - home_post[both])
    axon = pre_cell & ~post_cell  # onto a dendrite fragment: on the presynaptic axon
    home_post[axon] = soma[pre[axon]]
    spread[axon] = AXON_UM
    ctr = home_post + rng.standard_normal((n, 3)) * spread * _UM
    ctr = np.clip(np.rint(ctr), LO, HI)
    direction = rng.standard_normal((n, 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
    gap = rng.uniform(GAP_NM[0], GAP_NM[1], n)[:, None] / 2 / np.asarray(VOXEL_NM)
    half = direction * gap
    pre_pt = np.clip(np.rint(ctr - half), LO, HI).astype(np.int32)
    post_pt = np.clip(np.rint(ctr + half), LO, HI).astype(np.int32)
    ctr32 = ctr.astype(np.int32)
    return pre_pt, ctr32, post_pt, supervoxels(pre, pre_pt, seed), supervoxels(post, post_pt, seed)
