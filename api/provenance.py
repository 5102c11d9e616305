"""Provenance on every GraphQL answer: ``extensions.provenance`` names the software and every
release the answer read, so a number in a notebook can be traced to the data behind it.

    "extensions": {"provenance": {
        "software": {"name": "connectome-graph", "version": "0.1.0"},
        "releases": [{"version": 117, "dataset": "minnie65_public",
                      "timestamp": "2024-...",      # CAVE materialization time stamp
                      "loadedAt": "2026-...",       # when the load finished (Release.finished_at)
                      "status": "complete",
                      "snapshot": "3f2a..."}]}}     # sha256 of the snapshot manifest

Resolvers record what they read on the request context (``Context.seen_complete``,
``require_complete``, ``snapshot``); the extension looks the releases up once, after the
operation (one Neo4j read through the request's release DataLoader, usually already filled).
A reload from different files writes a new snapshot, so its ``snapshot`` digest and
``loadedAt`` change. The same object is put into the notebook client's DataFrames' ``.attrs``
and into export files' metadata (api.export).
"""

from __future__ import annotations

import logging
from typing import Any

from strawberry.extensions import SchemaExtension

from api.context import Context
from graph.releases import ReleaseInfo
from snapshot.layout import Snapshot
from snapshot.provenance import snapshot_entry, software

log = logging.getLogger(__name__)


def release_entry(version: int, info: ReleaseInfo, digest: str | None) -> dict[str, Any]:
    """One release as provenance lists it, from its Release node (``digest``: the snapshot
    actually read, if any)."""
    return {
        "version": version,
        "dataset": info.dataset,
        "timestamp": None if info.timestamp is None else info.timestamp.isoformat(),
        "loadedAt": None if info.loaded_at is None else info.loaded_at.isoformat(),
        "status": info.status,
        "snapshot": digest or info.snapshot,
    }


def snapshot_only_entry(snap: Snapshot) -> dict[str, Any]:
    """A release read from its snapshot alone: what the manifest says (no Neo4j asked)."""
    e = snapshot_entry(snap)
    return {"version": e["version"], "dataset": e["dataset"], "timestamp": e["timestamp"],
            "loadedAt": None, "status": None, "snapshot": e["snapshot"],
            "snapshotCreatedAt": e["snapshotCreatedAt"]}  # fmt: skip


async def provenance_of(ctx: Context) -> dict[str, Any]:
    """Releases read through Neo4j come from their Release nodes (one batched read, usually
    cached by the request already); releases read from their snapshot alone are described by
    the snapshot's manifest, so an answer that never needed Neo4j never waits for it."""
    entries: dict[int, dict[str, Any]] = {}
    ask = []
    for v in ctx.read:
        snap = ctx.snapshots.get(v)
        if snap is not None and v not in ctx.complete and not ctx.releases_known(v):
            entries[v] = snapshot_only_entry(snap)
        else:
            ask.append(v)
    if ask:
        try:
            infos = await ctx.releases.load_many(ask)
        except Exception as exc:  # noqa: BLE001 - the answer stands; say what is missing
            log.warning("provenance: releases %s could not be looked up: %s", ask, exc)
            infos = [None] * len(ask)
        for v, info in zip(ask, infos, strict=True):
            snap = ctx.snapshots.get(v)
            if info is not None:
                entries[v] = release_entry(v, info, ctx.read[v])
            elif snap is not None:
                entries[v] = snapshot_only_entry(snap)
            else:
                entries[v] = {"version": v, "dataset": None, "timestamp": None,
                              "loadedAt": None, "status": None, "snapshot": None}  # fmt: skip
    return {"software": software(), "releases": [entries[v] for v in sorted(entries)]}


class Provenance(SchemaExtension):
    """Adds ``provenance`` to every response's ``extensions``."""

    async def get_results(self) -> dict[str, Any]:  # type: ignore[override]
        ctx = self.execution_context.context
        if not isinstance(ctx, Context):
            return {}
        return {"provenance": await provenance_of(ctx)}
