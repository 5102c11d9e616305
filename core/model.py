"""The graph model, declared once: labels, the per-release relationship type, release-scoped cell
properties, edge properties and the counts a release carries. Names, schema, write rows, reads,
the motif property whitelist, the snapshot columns and the GraphQL field docs derive from here.

The only dynamic parts of our Cypher are per-release names built here from validated pieces: a
release version is an int in range, a property stem comes from :data:`RELEASE_PROPERTIES`.
Nothing else is ever pasted into a query string.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from core.errors import BadRequest

MAX_VERSION = 10**9

CELL_LABEL = "Cell"
RELEASE_LABEL = "Release"


@dataclass(frozen=True)
class ReleaseProperty:
    """A cell property that holds one value per release (``{stem}_v{version}``)."""

    stem: str
    type: type  # the Python type of its values (int, bool, str)
    indexed: bool
    description: str
    annotation: bool = False  # comes from an annotation table (may be absent)


#: release-scoped Cell properties, in the order they are written
RELEASE_PROPERTIES: tuple[ReleaseProperty, ...] = (
    ReleaseProperty("root_id", int, True, "root ID of the cell's segment in this release (int64)"),
    ReleaseProperty("is_neuron", bool, False, "neuron/not-neuron from the neuron table", True),
    ReleaseProperty("cell_type", str, True, "cell type from the cell-type table", True),
    ReleaseProperty(
        "classification_system", str, False, "classification system of the cell type", True
    ),
    ReleaseProperty(
        "out_synapses", int, False, "all outgoing synapses of the cell, fragments included"
    ),
    ReleaseProperty(
        "in_synapses", int, False, "all incoming synapses of the cell, fragments included"
    ),
)
RELEASE_PROPERTY = {p.stem: p for p in RELEASE_PROPERTIES}
INDEXED_STEMS = tuple(p.stem for p in RELEASE_PROPERTIES if p.indexed)
ANNOTATION_STEMS = tuple(p.stem for p in RELEASE_PROPERTIES if p.annotation)

#: release-independent Cell properties
CELL_PROPERTIES = {
    "dataset": "the dataset (datastack) the cell belongs to; with nucleus_id, the key",
    "nucleus_id": "nucleus ID (int64), stable across releases, unique within its dataset",
    "position": "cartesian-3d point, nm",
    "volume": "nucleus volume, um^3 (null when unknown)",
    "releases": "the versions the cell is in",
}

#: properties of a SYNAPSE_V{v} relationship
EDGE_PROPERTIES = {
    "synapses": "number of synapses from the pre- to the postsynaptic cell",
    "size": "summed synaptic cleft size, voxels (null when the source had no sizes)",
}

#: counts stored on the (:Release) node, as the loader reports them
RELEASE_COUNT_KEYS = (
    "cells",
    "edges",
    "synapses",
    "synapses_total",
    "dropped_autapse",
    "dropped_root0",
    "dropped_multi_nucleus_root",
    "dropped_partner_without_nucleus",
    "multi_nucleus_roots",
    "neuron_rows_unmatched",
    "cell_type_rows_unmatched",
)
#: the attribution outcomes of synapse rows (README "Attribution rules")
DROP_KEYS = (
    "dropped_autapse",
    "dropped_root0",
    "dropped_multi_nucleus_root",
    "dropped_partner_without_nucleus",
)

#: release status values
LOADING, COMPLETE, FAILED, DROPPING = "loading", "complete", "failed", "dropping"

#: display labels for Neo4j Browser colours (graph/browser-style.grass), from cell types
DISPLAY_LABELS = ("Excitatory", "Inhibitory", "NonNeuron")
CLASS_OF_TYPE = {
    "Excitatory": [
        "23P", "4P", "5P-IT", "5P-ET", "5P-NP", "5P-PT", "6P-IT", "6P-CT", "6IT", "6CT", "e",
    ],
    "Inhibitory": ["BC", "MC", "BPC", "NGC", "i"],
    "NonNeuron": ["OPC", "astrocyte", "microglia", "pericyte", "oligo", "g", "glia"],
}  # fmt: skip
CLASS_OF_SYSTEM = {
    "excitatory_neuron": "Excitatory",
    "inhibitory_neuron": "Inhibitory",
    "nonneuron": "NonNeuron",
}


def display_label(cell_type: str | None, classification_system: str | None) -> str | None:
    """The display label of a cell (classification system first, then the cell type)."""
    if classification_system is not None and classification_system in CLASS_OF_SYSTEM:
        return CLASS_OF_SYSTEM[classification_system]
    for label, types in CLASS_OF_TYPE.items():
        if cell_type in types:
            return label
    return None


#: A release belongs to one *dataset* (a CAVE datastack name such as ``minnie65_public`` or
#: ``pinky100``); a cell is keyed by (dataset, nucleus_id), so two datasets never share a cell.
#: Loads and queries that name none use DEFAULT_DATASET (``CGRAPH_DATASET`` changes it).
DEFAULT_DATASET = "default"
_DATASET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_dataset(name: object) -> str:
    """A dataset name: 1-64 letters, digits, ``_``, ``.`` or ``-``."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not set(name) <= _DATASET_CHARS:
        raise BadRequest(
            f"dataset must be 1-64 letters, digits, '_', '.' or '-' (a datastack name such as "
            f"minnie65_public), got {name!r}"
        )
    return name


def default_dataset() -> str:
    """The dataset of loads and queries that name none: ``CGRAPH_DATASET``, else
    :data:`DEFAULT_DATASET`."""
    return check_dataset(os.environ.get("CGRAPH_DATASET") or DEFAULT_DATASET)


def check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadRequest(f"release version must be an integer, got {version!r}")
    if not 0 <= version <= MAX_VERSION:
        raise BadRequest(f"release version must be between 0 and {MAX_VERSION}, got {version}")
    return version


#: A release's graph lives in one of two *slots*: 0 (the names below) or 1 (suffix ``_B`` /
#: ``_b``). A replace writes the other slot beside the served one and switches the Release
#: node's ``slot`` in one transaction (graph.releases); readers build names from that slot.
SLOTS = (0, 1)


def check_slot(slot: object) -> int:
    if slot not in SLOTS or isinstance(slot, bool):
        raise BadRequest(f"release slot must be 0 or 1, got {slot!r}")
    return int(slot)  # type: ignore[call-overload]


def rel_type(version: int, slot: int = 0) -> str:
    """`SYNAPSE_V117` for release 117 (`SYNAPSE_V117_B` in slot 1)."""
    return f"SYNAPSE_V{check_version(version)}{'_B' if check_slot(slot) else ''}"


@functools.lru_cache(maxsize=4096, typed=True)  # typed: prop(s, True) still raises
def prop(stem: str, version: int, slot: int = 0) -> str:
    """`root_id_v117` for ('root_id', 117) (`root_id_v117_b` in slot 1)."""
    if stem not in RELEASE_PROPERTY:
        raise BadRequest(f"unknown release property {stem!r}")
    return f"{stem}_v{check_version(version)}{'_b' if check_slot(slot) else ''}"


def index_name(stem: str, version: int, slot: int = 0) -> str:
    """`cell_root_id_v117`: the name of the index on a release property."""
    return f"cell_{prop(stem, version, slot)}"
