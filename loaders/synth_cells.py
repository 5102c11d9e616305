"""Synthetic cell population for :mod:`loaders.synth`: nuclei, positions, layers, cell types.

Everything here is version independent: the nucleus IDs, positions, volumes and cell types are
the same in every materialization version (only root IDs change, see :mod:`loaders.synth_roots`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Bounds of nucleus positions, in voxels of 4x4x40 nm (minnie65-like), half open [MIN, MAX).
X_BOUNDS: tuple[int, int] = (60_000, 430_000)
Y_BOUNDS: tuple[int, int] = (50_000, 330_000)  # y = cortical depth (pia at the low end)
Z_BOUNDS: tuple[int, int] = (14_000, 27_000)
VOXEL_NM: tuple[float, float, float] = (4.0, 4.0, 40.0)

NUCLEUS_ID_MIN = 100_000  # 6-digit nucleus IDs
NUCLEUS_ID_MAX = 999_999

# The AIBS metamodel vocabulary, in a fixed order (index = type code).
CELL_TYPES: tuple[str, ...] = (
    "23P",
    "4P",
    "5P-IT",
    "5P-ET",
    "5P-NP",
    "6P-IT",
    "6P-CT",
    "BC",
    "BPC",
    "MC",
    "NGC",
    "OPC",
    "astrocyte",
    "microglia",
    "pericyte",
    "oligo",
)
EXC = "excitatory_neuron"
INH = "inhibitory_neuron"
NON = "nonneuron"
CLASS_OF_TYPE: tuple[str, ...] = (EXC,) * 7 + (INH,) * 4 + (NON,) * 5
T = {name: i for i, name in enumerate(CELL_TYPES)}

# Layers as fractions of the depth range: (name, top, bottom, neuron fraction, inhibitory
# fraction of neurons, excitatory type mix, inhibitory type mix).
_Mix = dict[str, float]
LAYERS: tuple[tuple[str, float, float, float, float, _Mix, _Mix], ...] = (
    ("L1", 0.00, 0.09, 0.15, 0.90, {"23P": 1.0}, {"NGC": 0.7, "BPC": 0.2, "BC": 0.1}),
    (
        "L23",
        0.09,
        0.32,
        0.68,
        0.14,
        {"23P": 1.0},
        {"BC": 0.40, "MC": 0.25, "BPC": 0.25, "NGC": 0.10},
    ),
    (
        "L4",
        0.32,
        0.45,
        0.70,
        0.14,
        {"4P": 0.9, "23P": 0.1},
        {"BC": 0.50, "MC": 0.30, "BPC": 0.15, "NGC": 0.05},
    ),
    (
        "L5",
        0.45,
        0.66,
        0.62,
        0.14,
        {"5P-IT": 0.55, "5P-ET": 0.30, "5P-NP": 0.15},
        {"BC": 0.45, "MC": 0.40, "BPC": 0.10, "NGC": 0.05},
    ),
    (
        "L6",
        0.66,
        0.93,
        0.62,
        0.14,
        {"6P-IT": 0.45, "6P-CT": 0.55},
        {"BC": 0.45, "MC": 0.40, "BPC": 0.10, "NGC": 0.05},
    ),
    (
        "WM",
        0.93,
        1.00,
        0.10,
        0.30,
        {"6P-CT": 0.6, "6P-IT": 0.4},
        {"BC": 0.45, "MC": 0.40, "BPC": 0.10, "NGC": 0.05},
    ),
)
GLIA_MIX: _Mix = {
    "astrocyte": 0.33,
    "oligo": 0.32,
    "microglia": 0.15,
    "OPC": 0.12,
    "pericyte": 0.08,
}
WM_GLIA_MIX: _Mix = {
    "oligo": 0.70,
    "astrocyte": 0.15,
    "microglia": 0.08,
    "OPC": 0.05,
    "pericyte": 0.02,
}

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Cells:
    """One row per nucleus, index = cell index used by the synapse and root generators."""

    nucleus_id: IntArray  # sorted, unique, 6 digits
    volume: FloatArray  # um^3, > 25
    pos: IntArray  # (n, 3) voxels
    layer: IntArray  # index into LAYERS
    type_code: IntArray  # index into CELL_TYPES

    @property
    def n(self) -> int:
        return int(self.nucleus_id.size)

    @property
    def is_neuron(self) -> BoolArray:
        return np.asarray(self.type_code <= T["NGC"])

    @property
    def is_inhibitory(self) -> BoolArray:
        return np.asarray((self.type_code >= T["BC"]) & (self.type_code <= T["NGC"]))

    def pos_um(self) -> FloatArray:
        """Positions in micrometres (for distances)."""
        return self.pos.astype(np.float64) * (np.asarray(VOXEL_NM) / 1000.0)


def _pick(rng: np.random.Generator, mix: _Mix, n: int) -> IntArray:
    names = list(mix)
    p = np.asarray([mix[k] for k in names], dtype=np.float64)
    codes = np.asarray([T[k] for k in names], dtype=np.int64)
    return codes[rng.choice(len(names), size=n, p=p / p.sum())]


def make_cells(n: int, rng: np.random.Generator, *, id_base: int = 0) -> Cells:
    """Draw ``n`` nuclei with depth-dependent layers and realistic type proportions; nucleus
    IDs in [100000 + id_base, 999999 + id_base] (an ``id_base`` keeps datasets apart)."""
    if not 3 <= n <= NUCLEUS_ID_MAX - NUCLEUS_ID_MIN + 1:
        raise ValueError(f"cells must be in [3, 900000], got {n}")
    ids = np.sort(rng.choice(NUCLEUS_ID_MAX - NUCLEUS_ID_MIN + 1, size=n, replace=False))
    nucleus_id = (ids + NUCLEUS_ID_MIN + id_base).astype(np.int64)

    thickness = np.asarray([lay[2] - lay[1] for lay in LAYERS])
    layer = rng.choice(len(LAYERS), size=n, p=thickness / thickness.sum()).astype(np.int64)
    tops = np.asarray([lay[1] for lay in LAYERS])[layer]
    frac = tops + rng.random(n) * thickness[layer]
    y0, y1 = Y_BOUNDS
    y = np.clip(y0 + np.floor(frac * (y1 - y0)), y0, y1 - 1)
    x = rng.integers(X_BOUNDS[0], X_BOUNDS[1], size=n)
    z = rng.integers(Z_BOUNDS[0], Z_BOUNDS[1], size=n)
    pos = np.stack([x, y, z], axis=1).astype(np.int64)

    type_code = np.empty(n, dtype=np.int64)
    u_neuron = rng.random(n)
    u_inh = rng.random(n)
    for li, (_, _, _, p_neuron, p_inh, exc_mix, inh_mix) in enumerate(LAYERS):
        in_layer = layer == li
        neuron = in_layer & (u_neuron < p_neuron)
        inh = neuron & (u_inh < p_inh)
        exc = neuron & ~inh
        glia = in_layer & ~neuron
        type_code[exc] = _pick(rng, exc_mix, int(exc.sum()))
        type_code[inh] = _pick(rng, inh_mix, int(inh.sum()))
        glia_mix = WM_GLIA_MIX if LAYERS[li][0] == "WM" else GLIA_MIX
        type_code[glia] = _pick(rng, glia_mix, int(glia.sum()))
    # Guarantee a connectable population even for tiny n: at least 3 neurons.
    missing = 3 - int((type_code <= T["NGC"]).sum())
    if missing > 0:
        type_code[np.flatnonzero(type_code > T["NGC"])[:missing]] = T["23P"]

    neuron = type_code <= T["NGC"]
    volume = np.where(
        neuron,
        25.0 + rng.lognormal(np.log(225.0), 0.35, size=n),
        25.0 + rng.lognormal(np.log(60.0), 0.55, size=n),
    )
    return Cells(nucleus_id, volume.astype(np.float64), pos, layer, type_code)
