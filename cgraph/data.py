"""`cgraph synth | load | releases | drop-release`: data commands of the CLI."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import click

from cgraph.load import LoadSummary, load_release, parse_memory
from core.errors import BadRequest
from core.model import check_dataset, default_dataset
from graph import releases
from graph.driver import Database
from loaders.readers import check_destinations
from loaders.versions import default_timestamp, parse_timestamp


def parse_map(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        dest, sep, src = pair.partition("=")
        if not sep or not dest.strip() or not src.strip():
            raise BadRequest(
                f"--map takes DEST=SRC (e.g. pre_pt_root_id=pre_root_id), got {pair!r}"
            )
        mapping[dest.strip()] = src.strip()
    check_destinations(mapping, what="--map")
    return mapping


def parse_timestamp_option(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError:
        raise BadRequest(
            "--timestamp takes an ISO 8601 time such as 2021-06-11T08:10:00.215114 (UTC unless "
            f"it has a zone, e.g. +00:00 or Z), got {text!r}"
        ) from None


def parse_versions(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadRequest(f"--versions takes integers separated by commas, got {text!r}") from None


def parse_voxel(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(math.isfinite(p) and p > 0 for p in parts):
        raise BadRequest(f"--voxel-size takes three positive numbers like 4,4,40, got {text!r}")
    return parts  # type: ignore[return-value]


def summary_lines(s: LoadSummary) -> list[str]:
    c = s.counts
    stages = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in s.seconds.items())
    head = (
        f"release {s.version}: complete; its synapse store was missing (an earlier load stopped "
        f"after serving it) and is now written (snapshot {s.snapshot})"
        if s.writer == "store"
        else f"release {s.version}: complete ({s.writer} writer; snapshot {s.snapshot})"
    )
    lines = [
        head,
        f"  cells {c['cells']:,}  edges {c['edges']:,}  synapses used {c['synapses']:,} "
        f"of {c['synapses_total']:,}",
        f"  dropped: autapse {c['dropped_autapse']:,}, root 0 {c['dropped_root0']:,}, "
        f"multi-nucleus root {c['dropped_multi_nucleus_root']:,}, "
        f"partner without nucleus {c['dropped_partner_without_nucleus']:,}",
    ]
    if stages:
        lines.append(f"  time: {stages}")
    if s.multi_nucleus_roots:
        shown = list(s.multi_nucleus_roots.items())[:5]
        text = "; ".join(f"{root}: {ids}" for root, ids in shown)
        more = (
            f" (+{len(s.multi_nucleus_roots) - 5} more)" if len(s.multi_nucleus_roots) > 5 else ""
        )
        lines.append(f"  roots shared by several nuclei (no synapse attributed): {text}{more}")
    for key in ("neuron_rows_unmatched", "cell_type_rows_unmatched"):
        if c.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {c[key]:,}")
    return lines


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--cells", type=click.IntRange(min=3), required=True, help="Number of nuclei.")
@click.option("--synapses", type=click.IntRange(min=1), required=True, help="Synapses per release.")
@click.option(
    "--versions", default="117,343", show_default=True, help="Release versions, comma separated."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--positions/--no-positions", default=True, show_default=True,
              help="Write synapse positions (pre/ctr/post, voxels) and supervoxel IDs.")  # fmt: skip
def synth(out_dir: Path, cells: int, synapses: int, versions: str, seed: int,
          positions: bool) -> None:  # fmt: skip
    """Write a synthetic MICrONS-like dataset: per version V, nuclei_vV.parquet,
    synapses_vV.parquet, cell_types_vV.parquet and neurons_vV.parquet."""
    from loaders.synth import generate

    summary = generate(out_dir, cells=cells, synapses=synapses, versions=parse_versions(versions),
                       seed=seed, progress=True, positions=positions)  # fmt: skip
    for vs in summary.versions:
        click.echo(f"v{vs.version}: " + ", ".join(str(p) for p in vs.files))


def _dataset_option(name: str | None) -> str:
    try:
        return check_dataset(name) if name is not None else default_dataset()
    except BadRequest as exc:
        raise BadRequest(
            f"--dataset: {exc}" if name is not None else f"CGRAPH_DATASET: {exc}"
        ) from None


@click.command()
@click.option(
    "--version", "version", type=click.IntRange(min=0), required=True, help="Release version."
)
@click.option(
    "--timestamp",
    help="Materialization time (ISO 8601, UTC if no zone). Default: the published one for known minnie65 versions.",
)
@click.option("--nuclei", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--synapses", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--neurons", type=click.Path(exists=True, dir_okay=False))
@click.option("--cell-types", type=click.Path(exists=True, dir_okay=False))
@click.option("--map", "maps", multiple=True, metavar="DEST=SRC",
              help="Column mapping, e.g. pre_pt_root_id=pre_root_id or synapses.size=cleft_vx.")  # fmt: skip
@click.option(
    "--voxel-size", default="4,4,40", show_default=True, help="nm per voxel of positions."
)
@click.option("--replace", is_flag=True, help="Replace a complete release of this version whole.")
@click.option(
    "--skip-existing", is_flag=True, help="Do nothing when this version is already complete."
)
@click.option(
    "--memory",
    help="Peak memory of aggregation, e.g. 4GB (default: CGRAPH_LOAD_MEMORY or 4GB); above it, work spills to disk.",
)
@click.option("--writer", type=click.Choice(["auto", "bulk", "online"]), default="auto", show_default=True,
              help="bulk: neo4j-admin import into the project's own empty local database; online: transactional writes (any Neo4j); auto: bulk when it applies.")  # fmt: skip
@click.option("--dataset", metavar="NAME",
              help="The dataset (datastack) the release belongs to, e.g. minnie65_public; its cells are its own. Default: CGRAPH_DATASET or 'default'.")  # fmt: skip
@click.option("--progress/--no-progress", default=True, show_default=True)
def load(version: int, timestamp: str | None, nuclei: str, synapses: str, neurons: str | None,
         cell_types: str | None, maps: tuple[str, ...], voxel_size: str, replace: bool,
         skip_existing: bool, memory: str | None, writer: str, dataset: str | None,
         progress: bool) -> None:  # fmt: skip
    """Load one release from files (Parquet, Feather, CSV, CSV.gz, CAVE dumps)."""
    ds = _dataset_option(dataset)
    ts = parse_timestamp_option(timestamp) if timestamp else default_timestamp(version)
    mapping = parse_map(maps)
    voxel = parse_voxel(voxel_size)
    mem = parse_memory(memory) if memory else None
    with Database() as db:
        db.verify()
        summary = load_release(
            db, version, nuclei=nuclei, synapses=synapses, neurons=neurons, cell_types=cell_types,
            mapping=mapping, voxel_size=voxel, timestamp=ts, replace=replace, progress=progress,
            memory=mem, writer=writer, skip_existing=skip_existing,  # type: ignore[arg-type]
            dataset=ds,
        )  # fmt: skip
    if summary is None:
        click.echo(f"release {version}: already complete, skipped")
        return
    for line in summary_lines(summary):
        click.echo(line)


@click.command("releases")
def list_releases_cmd() -> None:
    """Table of loaded releases with status and counts."""
    with Database() as db:
        rows = db.call(releases.list_releases)
    if not rows:
        click.echo("no releases loaded")
        return
    head = f"{'version':>8} {'dataset':<16} {'status':<9} {'timestamp':<26} {'cells':>9} {'edges':>11} {'synapses':>12} {'dropped':>10}"
    click.echo(head)
    for r in rows:
        c = r.counts
        dropped = sum(v for k, v in c.items() if k.startswith("dropped_"))
        ts = r.timestamp.isoformat() if r.timestamp else "-"
        click.echo(
            f"{r.version:>8} {r.dataset:<16} {r.status:<9} {ts:<26} {c.get('cells', 0):>9,} "
            f"{c.get('edges', 0):>11,} {c.get('synapses', 0):>12,} {dropped:>10,}"
        )


@click.command("drop-release")
@click.argument("version", type=click.IntRange(min=0))
def drop_release_cmd(version: int) -> None:
    """Remove one release (its edges, its properties, cells only it had)."""
    with Database() as db:
        db.call(releases.drop_release, version)
    click.echo(f"release {version} dropped")


@click.command("load-cave")
@click.option("--datastack", default="minnie65_public", show_default=True)
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=0),
    required=True,
    help="Materialization version.",
)
@click.option(
    "--neuron-table", help="e.g. nucleus_neuron_svm (v117-343) or nucleus_ref_neuron_svm (v661+)."
)
@click.option("--cell-type-table", help="e.g. aibs_metamodel_celltypes_v661 (v795+).")
@click.option("--row-limit", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Rows per query; at most the server's cap. Answers that hit it are split and retried.")  # fmt: skip
@click.option("--replace", is_flag=True, help="Replace a complete release of this version whole.")
@click.option(
    "--dataset",
    metavar="NAME",
    help="The dataset the release belongs to (default: the datastack name).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def load_cave(datastack: str, version: int, neuron_table: str | None, cell_type_table: str | None,
              row_limit: int, replace: bool, dataset: str | None, progress: bool) -> None:  # fmt: skip
    """Load one materialization version straight from a live CAVE service (needs the `cave` extra)."""
    ds = _dataset_option(dataset or datastack)
    try:
        from caveclient import CAVEclient
    except ImportError:
        raise BadRequest(
            "caveclient is not installed: pip install 'connectome-graph[cave]'"
        ) from None
    from tqdm import tqdm

    from cgraph.load import write_release
    from loaders.cave import read_cave_release

    client = CAVEclient(datastack)
    with tqdm(desc=f"v{version} synapses fetched", unit=" rows", disable=not progress) as bar:
        cave = read_cave_release(client, version, neuron_table=neuron_table,
                                 cell_type_table=cell_type_table, row_limit=row_limit,
                                 on_rows=bar.update)  # fmt: skip
    data = cave.build()
    ts = cave.timestamp
    if isinstance(ts, str):
        ts = parse_timestamp(ts)
    with Database() as db:
        summary = write_release(db, version, data, timestamp=ts, replace=replace, progress=progress,
                                dataset=ds)  # fmt: skip
    for line in summary_lines(summary):
        click.echo(line)


@click.command("rebuild")
@click.option("--progress/--no-progress", default=True, show_default=True)
def rebuild_cmd(progress: bool) -> None:
    """Re-import every complete release snapshot (CGRAPH_DATA) into a fresh store of the
    project's local server with neo4j-admin: stops it, imports, starts it, creates indexes;
    the old store is kept until the new one answers."""
    from graph import bulk
    from graph.settings import ConnectionSettings, ServerSettings
    from snapshot.layout import list_snapshots, snapshots_dir

    snaps = list_snapshots()
    if not snaps:
        raise BadRequest(f"no release snapshots in {snapshots_dir()} (set CGRAPH_DATA)")
    report = bulk.bulk_import(snaps, ServerSettings.from_env(), ConnectionSettings.from_env(),
                              progress=progress)  # fmt: skip
    click.echo(report.describe())
