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
from snapshot.provenance import software

log = logging.getLogger(__name__)


def release_entry(version: int, info: ReleaseInfo | None, digest: str | None) -> dict[str, Any]:
    """One release as provenance lists it (``digest``: the snapshot actually read, if any)."""
    if info is None:  # read from a snapshot only (no Release node on this server)
        return {"version": version, "dataset": None, "timestamp": None, "loadedAt": None,
                "status": None, "snapshot": digest}  # fmt: skip
    return {
        "version": version,
        "dataset": info.dataset,
        "timestamp": None if info.timestamp is None else info.timestamp.isoformat(),
        "loadedAt": None if info.loaded_at is None else info.loaded_at.isoformat(),
        "status": info.status,
        "snapshot": digest or info.snapshot,
    }


async def provenance_of(ctx: Context) -> dict[str, Any]:
    versions = sorted(ctx.read)
    infos: list[ReleaseInfo | None] = [None] * len(versions)
    if versions:
        try:
            infos = list(await ctx.releases.load_many(versions))
        except Exception as exc:  # noqa: BLE001 - the answer stands; say what is missing
            log.warning("provenance: releases %s could not be looked up: %s", versions, exc)
    return {
        "software": software(),
        "releases": [
            release_entry(v, i, ctx.read[v]) for v, i in zip(versions, infos, strict=True)
        ],
    }


class Provenance(SchemaExtension):
    """Adds ``provenance`` to every response's ``extensions``."""

    async def get_results(self) -> dict[str, Any]:  # type: ignore[override]
        ctx = self.execution_context.context
        if not isinstance(ctx, Context):
            return {}
        return {"provenance": await provenance_of(ctx)}
