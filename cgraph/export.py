"""`cgraph export release | synapses | partners | wiring`: the bulk export of the API (api/export.py) to a
file, from the release snapshots in CGRAPH_DATA (no server, no Neo4j), one batch at a time."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from api.export import Batches, encode, partner_export, release_export, synapse_export
from api.export import release_snapshot as release_export_snapshot
from core.errors import BadRequest
from snapshot.diff import diff_totals, stream_changes
from snapshot.provenance import provenance, with_provenance
from snapshot.query import export_timeout
from snapshot.wiring import CLASSIFICATIONS, type_connectivity

_FORMAT = click.option("--format", "fmt", type=click.Choice(["parquet", "arrow"]),
                       default=None, help="Default: from the file extension (.arrow/.feather: "
                       "Arrow IPC stream), else parquet.")  # fmt: skip
_OUT = click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))


def _write(made: Batches, out: Path, fmt: str | None) -> None:
    fmt = fmt or ("arrow" if out.suffix in (".arrow", ".arrows", ".feather") else "parquet")
    schema, batches = made
    rows = 0

    def counted() -> Any:
        nonlocal rows
        for b in batches:
            rows += len(b)
            yield b

    t0 = time.perf_counter()
    part = out.with_name(out.name + ".part")
    try:
        with open(part, "wb") as f:
            for chunk in encode(schema, counted(), fmt):
                f.write(chunk)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    dt = time.perf_counter() - t0
    click.echo(f"{rows:,} rows -> {out} ({fmt}, {dt:.1f} s, {rows / max(dt, 1e-9):,.0f} rows/s)")


@click.group("export")
def export_cmd() -> None:
    """Export a whole release file, any synapse query or a partner table (Parquet or Arrow)."""


@export_cmd.command("release")
@click.argument("version", type=click.IntRange(min=0))
@click.argument("what", type=click.Choice(["cells", "edges", "synapses"]))
@_OUT
@_FORMAT
def export_release(version: int, what: str, out: Path, fmt: str | None) -> None:
    """A whole release file: every cell, edge or synapse row."""
    _write(release_export(version, what), out, fmt)


def _bbox(text: str | None, unit: str = "voxels") -> list[list[float]] | None:
    if text is None:
        return None
    try:
        v = [float(t) for t in text.split(",")]
    except ValueError:
        v = []
    if len(v) != 6:
        option = "--bbox-nm" if unit == "nm" else "--bbox"
        raise BadRequest(f"{option} takes six numbers x0,y0,z0,x1,y1,z1 ({unit}), got {text!r}")
    return [v[:3], v[3:]]


@export_cmd.command("synapses")
@click.argument("version", type=click.IntRange(min=0))
@click.option("--pre-root", "pre_roots", multiple=True, type=int, help="Presynaptic root ID.")
@click.option("--post-root", "post_roots", multiple=True, type=int, help="Postsynaptic root ID.")
@click.option("--pre-nucleus", "pre_nuclei", multiple=True, type=int)
@click.option("--post-nucleus", "post_nuclei", multiple=True, type=int)
@click.option("--bbox", help="x0,y0,z0,x1,y1,z1 in voxels (inclusive).")
@click.option("--bbox-column", default="post_pt_position", show_default=True,
              type=click.Choice(["pre_pt_position", "post_pt_position", "ctr_pt_position"]))  # fmt: skip
@click.option("--used-only", is_flag=True, help="Only synapses on cell-to-cell edges.")
@click.option("--keep-autapses", is_flag=True, help="caveclient removes them by default.")
@_OUT
@_FORMAT
def export_synapses(version: int, pre_roots: tuple[int, ...], post_roots: tuple[int, ...],
                    pre_nuclei: tuple[int, ...], post_nuclei: tuple[int, ...], bbox: str | None,
                    bbox_column: str, used_only: bool, keep_autapses: bool, out: Path,
                    fmt: str | None) -> None:  # fmt: skip
    """The synapses matching a query (filters AND together), every stored column."""
    body: dict[str, Any] = {
        "version": version, "pre_root_ids": list(pre_roots) or None,
        "post_root_ids": list(post_roots) or None, "pre_nucleus_ids": list(pre_nuclei) or None,
        "post_nucleus_ids": list(post_nuclei) or None, "bounding_box": _bbox(bbox),
        "bounding_box_column": bbox_column, "include_dropped": not used_only,
        "remove_autapses": not keep_autapses,
    }  # fmt: skip
    _write(synapse_export(body), out, fmt)


@export_cmd.command("partners")
@click.argument("version", type=click.IntRange(min=0))
@click.argument("nucleus_id", type=int)
@click.option("--direction", type=click.Choice(["outputs", "inputs"]), default="outputs",
              show_default=True)  # fmt: skip
@click.option("--min-synapses", type=click.IntRange(min=1), default=1, show_default=True)
@_OUT
@_FORMAT
def export_partners(version: int, nucleus_id: int, direction: str, min_synapses: int,
                    out: Path, fmt: str | None) -> None:  # fmt: skip
    """A cell's whole partner table, most synapses first."""
    body = {"version": version, "nucleus_id": nucleus_id, "direction": direction,
            "min_synapses": min_synapses}  # fmt: skip
    _write(partner_export(body), out, fmt)


@export_cmd.command("wiring")
@click.argument("version", type=click.IntRange(min=0))
@click.option("--classification", type=click.Choice(list(CLASSIFICATIONS)), default="cell_type",
              show_default=True, help="The cell property that names a cell's type.")  # fmt: skip
@click.option("--min-synapses", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--bbox-nm", help="x0,y0,z0,x1,y1,z1 in nm (inclusive): only cells inside.")
@_OUT
def export_wiring(version: int, classification: str, min_synapses: int, bbox_nm: str | None,
                  out: Path) -> None:  # fmt: skip
    """The release's cell-type x cell-type wiring (edges, synapses, size, connection
    probability per type pair) as CSV (.csv) or Parquet."""
    box = _bbox(bbox_nm, unit="nm")
    snap = release_export_snapshot(version)
    table = type_connectivity(snap, classification, min_synapses, box)
    table = table.replace_schema_metadata(with_provenance(table.schema, snap).metadata)
    part = out.with_name(out.name + ".part")
    try:
        if out.suffix.lower() == ".csv":  # CSV has no metadata: provenance goes beside it
            pacsv.write_csv(table, part)
            side = out.with_name(out.name + ".provenance.json")
            side.write_text(json.dumps(provenance([snap]), indent=2, sort_keys=True) + "\n")
        else:
            pq.write_table(table, part)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    click.echo(f"{table.num_rows:,} type pairs -> {out}")


@export_cmd.command("diff")
@click.argument("from_version", type=click.IntRange(min=0))
@click.argument("to_version", type=click.IntRange(min=0))
@click.option("--change", "changes", multiple=True,
              type=click.Choice(["added", "removed", "changed", "unchanged"]),
              help="Kinds of change to write (repeatable). Default: added, removed, changed.")  # fmt: skip
@click.option("--min-synapses", type=click.IntRange(min=1), default=1, show_default=True)
@_OUT
@_FORMAT
def export_diff(from_version: int, to_version: int, changes: tuple[str, ...], min_synapses: int,
                out: Path, fmt: str | None) -> None:  # fmt: skip
    """The edges that changed between two releases (pre, post, before, after, change), from
    their snapshots, in (pre, post) order; prints the totals first."""
    if from_version == to_version:
        raise BadRequest(f"FROM_VERSION and TO_VERSION are both {from_version}")
    a, b = release_export_snapshot(from_version), release_export_snapshot(to_version)
    totals = diff_totals(a, b, min_synapses, seconds=export_timeout())
    click.echo(", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in totals.items()))
    schema, batches = stream_changes(a, b, min_synapses=min_synapses,
                                     changes=changes or ("added", "removed", "changed"))  # fmt: skip
    _write((with_provenance(schema, a, b), batches), out, fmt)
