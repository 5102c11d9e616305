"""Validated pieces for the only dynamic parts of our Cypher: per-release names.

A release version is a positive int; property stems come from a whitelist. Nothing else is
ever pasted into a query string.
"""

from __future__ import annotations

from core.errors import BadRequest

MAX_VERSION = 10**9

#: release-scoped Cell properties (stem -> meaning)
RELEASE_PROPERTIES = {
    "root_id": "root ID of the cell's segment in this release (int64)",
    "is_neuron": "neuron/not-neuron from the neuron table",
    "cell_type": "cell type from the cell-type table",
    "classification_system": "classification system of the cell type",
    "out_synapses": "all outgoing synapses of the cell, fragments included",
    "in_synapses": "all incoming synapses of the cell, fragments included",
}


def check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadRequest(f"release version must be an integer, got {version!r}")
    if not 0 <= version <= MAX_VERSION:
        raise BadRequest(f"release version must be between 0 and {MAX_VERSION}, got {version}")
    return version


def rel_type(version: int) -> str:
    """`SYNAPSE_V117` for release 117."""
    return f"SYNAPSE_V{check_version(version)}"


def prop(stem: str, version: int) -> str:
    """`root_id_v117` for ('root_id', 117)."""
    if stem not in RELEASE_PROPERTIES:
        raise BadRequest(f"unknown release property {stem!r}")
    return f"{stem}_v{check_version(version)}"
