"""Provenance of an answer read from release snapshots: the software and each snapshot's
release (version, dataset, materialization time stamp, when the snapshot was written, the
manifest's sha256). Export files carry it as the JSON schema metadata ``cgraph.provenance``;
GraphQL answers carry the same shape in ``extensions.provenance`` (api/provenance.py, which adds
when the release was loaded into Neo4j)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from snapshot.layout import Snapshot, snapshot_dataset
from snapshot.write import software_version

SOFTWARE = "connectome-graph"
METADATA_KEY = b"cgraph.provenance"


def software() -> dict[str, str]:
    return {"name": SOFTWARE, "version": software_version()}


def snapshot_entry(snap: Snapshot) -> dict[str, Any]:
    m = snap.manifest
    return {
        "version": snap.version,
        "dataset": snapshot_dataset(snap),
        "timestamp": m.get("timestamp"),
        "snapshotCreatedAt": m.get("created_at"),
        "snapshot": snap.digest,
    }


def provenance(snaps: Sequence[Snapshot]) -> dict[str, Any]:
    return {"software": software(), "releases": [snapshot_entry(s) for s in snaps]}


def with_provenance(schema: pa.Schema, *snaps: Snapshot) -> pa.Schema:
    """``schema`` with ``cgraph.provenance`` added to its metadata."""
    meta = dict(schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(provenance(snaps), sort_keys=True).encode()
    return schema.with_metadata(meta)
