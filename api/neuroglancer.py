"""Neuroglancer links: a URL whose fragment is an encoded Neuroglancer state showing cells of a
release (their root IDs as selected segments), centred on a nucleus or a synapse, optionally
with synapses as annotation points. No network: the state is built and encoded here.

Layer sources come from one settings table per dataset, :data:`SOURCES` (the MICrONS minnie65
public image and segmentation for ``minnie65_public``, and for datasets it does not name), which
a JSON file named by ``CGRAPH_NEUROGLANCER_SOURCES`` extends or overrides::

    {"my_datastack": {"viewer": "https://neuroglancer-demo.appspot.com/",
                      "image": "precomputed://...", "segmentation": "graphene://..."}}

A state's coordinates are in the release's voxels (the snapshot's ``voxel_size_nm``), declared
in ``dimensions``; ``decode`` turns a URL back into the state (the tests use it).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa

from api.context import Context
from core.errors import BadRequest, CGraphError
from graph.queries import CellRecord
from snapshot.query import SynapseQuery, query_synapses

MINNIE65 = {
    "viewer": "https://neuroglancer-demo.appspot.com/",
    "image": "precomputed://https://bossdb-open-data.s3.amazonaws.com/iarpa_microns/minnie/minnie65/em",
    "segmentation": "graphene://https://minnie.microns-daf.com/segmentation/table/minnie65_public",
}
#: dataset -> viewer and layer sources; ``*`` applies to a dataset not listed
SOURCES: dict[str, dict[str, str]] = {"minnie65_public": MINNIE65, "*": MINNIE65}
MAX_ANNOTATIONS = 5000
ENV = "CGRAPH_NEUROGLANCER_SOURCES"


def sources(dataset: str) -> dict[str, str]:
    """The viewer and layer sources of a dataset (the settings table, then the env file)."""
    table = {k: dict(v) for k, v in SOURCES.items()}
    path = os.environ.get(ENV)
    if path:
        try:
            extra = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise BadRequest(f"{ENV}={path}: not a readable JSON file ({exc})") from None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise BadRequest(f"{ENV}={path}: want {{dataset: {{viewer, image, segmentation}}}}")
        for k, v in extra.items():
            table[k] = {**table.get(k, table["*"]), **{a: str(b) for a, b in v.items()}}
    return table.get(dataset, table["*"])


@dataclass(frozen=True)
class Annotation:
    id: str
    point_nm: tuple[float, float, float]
    description: str = ""


def state(
    dataset: str, voxel_nm: Sequence[float], segments: Sequence[int], position_nm: Sequence[float] | None,
    *, annotations: Sequence[Annotation] = (), colors: Mapping[int, str] | None = None,
    annotation_layer: str = "synapses",
) -> dict[str, Any]:  # fmt: skip
    """The Neuroglancer state (a JSON object) of these segments at a position (nm)."""
    src = sources(dataset)
    vox = [float(v) for v in voxel_nm]
    if len(vox) != 3 or min(vox) <= 0:
        raise BadRequest(f"voxel size must be three positive numbers, got {list(voxel_nm)}")
    dims = {axis: [v * 1e-9, "m"] for axis, v in zip("xyz", vox, strict=True)}
    seg: dict[str, Any] = {"type": "segmentation", "source": src["segmentation"],
                           "name": "seg", "segments": [str(s) for s in segments if s]}  # fmt: skip
    if colors:
        seg["segmentColors"] = {str(k): v for k, v in colors.items() if k}
    layers: list[dict[str, Any]] = [{"type": "image", "source": src["image"], "name": "img"}, seg]
    if annotations:
        layers.append({
            "type": "annotation", "name": annotation_layer,
            "source": {"url": "local://annotations", "transform": {"outputDimensions": dims}},
            "annotations": [{"type": "point", "id": a.id, "description": a.description,
                             "point": [c / v for c, v in zip(a.point_nm, vox, strict=True)]}
                            for a in annotations[:MAX_ANNOTATIONS]],
        })  # fmt: skip
    out: dict[str, Any] = {"dimensions": dims, "layers": layers, "layout": "xy-3d",
                           "selectedLayer": {"layer": "seg", "visible": True},
                           "crossSectionScale": 1.0, "projectionScale": 100000}  # fmt: skip
    if position_nm is not None:
        out["position"] = [c / v for c, v in zip(position_nm, vox, strict=True)]
    return out


def url(dataset: str, st: Mapping[str, Any]) -> str:
    viewer = sources(dataset)["viewer"].rstrip("/") + "/"
    return viewer + "#!" + quote(json.dumps(st, separators=(",", ":")), safe="")


def decode(link: str) -> dict[str, Any]:
    """The state of a link made by :func:`url`."""
    _, _, fragment = link.partition("#!")
    if not fragment:
        raise ValueError(f"not a Neuroglancer state link: {link[:80]!r}")
    return dict(json.loads(unquote(fragment)))


# --------------------------------------------------------------------------- from a request

#: distinct colours for the cells of a link (a motif's nodes, an edge's two cells)
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45")  # fmt: skip
DEFAULT_VOXEL_NM = (4.0, 4.0, 40.0)


async def release_voxel_nm(ctx: Context, version: int) -> tuple[float, float, float]:
    """The release's voxel size: its snapshot's, else the MICrONS default (a server without
    the snapshot)."""
    await ctx.require_complete(version)
    try:
        vox = ctx.snapshot(version).manifest.get("voxel_size_nm")
    except CGraphError:
        vox = None
    a, b, c = vox or DEFAULT_VOXEL_NM
    return (float(a), float(b), float(c))


async def cells_url(
    ctx: Context, version: int, records: Sequence[CellRecord | None], *,
    annotations: Sequence[Annotation] = (), center_nm: Sequence[float] | None = None,
) -> str:  # fmt: skip
    """A link to these cells in a release: their root IDs selected, each in its own colour,
    centred on ``center_nm`` or the first cell's nucleus."""
    vox = await release_voxel_nm(ctx, version)
    full = [r if r is None or r.has("root_id", version) else await ctx.cells.load(r.key)
            for r in records]  # fmt: skip
    found = [r for r in full if r is not None]
    if not found:
        raise BadRequest("none of these cells exists")
    dataset = found[0].dataset
    roots = [int(r.get("root_id", version) or 0) for r in found]
    colors = {root: PALETTE[i % len(PALETTE)] for i, root in enumerate(roots) if root}
    center = center_nm if center_nm is not None else found[0].position
    st = state(dataset, vox, roots, center, annotations=annotations, colors=colors)
    return url(dataset, st)


def synapse_annotations(table: pa.Table, voxel_nm: Sequence[float]) -> list[Annotation]:
    """Points of synapse rows (ctr_pt_position, else post_pt_position; store voxels) in nm."""
    out = []
    for r in table.to_pylist():
        stem = "ctr_pt_position" if r.get("ctr_pt_position_x") is not None else "post_pt_position"
        if r.get(f"{stem}_x") is None:
            continue
        point = tuple(float(r[f"{stem}_{a}"]) * v for a, v in zip("xyz", voxel_nm, strict=True))
        out.append(Annotation(id=str(r["id"]), point_nm=point,  # type: ignore[arg-type]
                              description=f"synapse {r['id']} size {r.get('size')}"))  # fmt: skip
    return out


async def edge_url(ctx: Context, version: int, dataset: str, pre: int, post: int) -> str:
    """A link to one edge: both cells selected, its synapses (the store's rows of that edge,
    by ID, at most MAX_ANNOTATIONS) as annotation points, centred on the first synapse."""
    snap = ctx.snapshot(version)
    vox = await release_voxel_nm(ctx, version)
    q = SynapseQuery.of(pre_nucleus_ids=[pre], post_nucleus_ids=[post], include_dropped=False)
    table = await asyncio.to_thread(query_synapses, snap, q, order_by_id=True,
                                    limit=MAX_ANNOTATIONS)  # fmt: skip
    points = synapse_annotations(table, vox)
    records = await ctx.cells.load_many([(dataset, pre), (dataset, post)])
    center = points[0].point_nm if points else None
    return await cells_url(ctx, version, records, annotations=points, center_nm=center)
