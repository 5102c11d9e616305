"""`cgraph motif | census`: CLI twins of the GraphQL motifCount/motifSearch and motifCensus.

Register in api/cli.py: ``from cgraph.motif import census_cmd, motif_cmd`` and
``cli.add_command(...)``. Named errors (syntax, unknown release, timeout) become one line.
"""

from __future__ import annotations

import click

from analysis.census_run import NullKind, run_census, select
from analysis.motif import count_motif, find_motif, parse_motif
from core.budget import Deadline
from graph.driver import Database
from graph.whole_release import get_release_graph

NULLS: dict[str, NullKind] = {"none": "none", "er": "er", "degree-preserving": "degree_preserving"}


@click.command("motif")
@click.option(
    "--version", "version", type=click.IntRange(min=0), required=True, help="Release version."
)
@click.argument("motif")
@click.option("--induced", is_flag=True, help="Forbid every edge the motif does not list.")
@click.option(
    "--distinct-subgraphs", is_flag=True, help="Divide the count by the motif's automorphisms."
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=10, show_default=True, help="Matches to print."
)
@click.option(
    "--timeout", type=click.FloatRange(min=0.001), help="Seconds (default: CGRAPH_QUERY_TIMEOUT)."
)
def motif_cmd(version: int, motif: str, induced: bool, distinct_subgraphs: bool, limit: int,
              timeout: float | None) -> None:  # fmt: skip
    """Count a motif in a release and print the first matches (nucleus IDs), e.g.

    cgraph motif --version 117 'A -> B; B -> A'
    """
    parsed = parse_motif(motif)
    with Database() as db:
        deadline = Deadline.after(timeout or db.settings.query_timeout)
        g = db.call(get_release_graph, version, deadline=deadline)
    n = count_motif(g, parsed, induced=induced, distinct_subgraphs=distinct_subgraphs,
                    deadline=deadline)  # fmt: skip
    kind = "distinct subgraphs" if distinct_subgraphs else "ordered matches"
    click.echo(f"release {version}: {n:,} {kind}{' (induced)' if induced else ''}")
    if limit:
        matches = find_motif(g, parsed, induced=induced, limit=limit, deadline=deadline)
        click.echo("\t".join(parsed.nodes))
        for m in matches:
            click.echo("\t".join(str(m[v]) for v in parsed.nodes))


@click.command("census")
@click.option(
    "--version", "version", type=click.IntRange(min=0), required=True, help="Release version."
)
@click.option("--null", "null", type=click.Choice(list(NULLS)), default="none", show_default=True)
@click.option("--samples", type=click.IntRange(min=2), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-synapses", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--cell-type", "cell_types", multiple=True, help="Keep only these cell types (repeatable)."
)
@click.option(
    "--timeout", type=click.FloatRange(min=0.001), help="Seconds (default: CGRAPH_QUERY_TIMEOUT)."
)
def census_cmd(version: int, null: str, samples: int, seed: int, min_synapses: int,
               cell_types: tuple[str, ...], timeout: float | None) -> None:  # fmt: skip
    """Triad census (16 MAN classes) and reciprocal pairs of a release, e.g.

    cgraph census --version 117 --null degree-preserving --samples 100
    """
    with Database() as db:
        deadline = Deadline.after(timeout or db.settings.query_timeout)
        g = db.call(get_release_graph, version, deadline=deadline)
    sub = select(g, min_synapses=min_synapses, cell_types=list(cell_types) or None)
    r = run_census(sub, null=NULLS[null], samples=samples, seed=seed, deadline=deadline)
    exp = r.expected_reciprocal_pairs
    click.echo(f"release {version}: cells {r.cells:,}  edges {r.edges:,}  "
               f"reciprocal pairs {r.reciprocal_pairs:,}"
               + (f" (expected {exp:,.1f})" if exp is not None else ""))  # fmt: skip
    click.echo(f"{'triad':<6} {'count':>16} {'expected':>18} {'z':>9}")
    for t in r.triads:
        e = "" if t.expected is None else f"{t.expected:,.1f}"
        z = "" if t.z_score is None else f"{t.z_score:.2f}"
        click.echo(f"{t.code:<6} {t.count:>16,} {e:>18} {z:>9}")
