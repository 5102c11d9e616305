"""Shared by the motif tests: a GraphQL runner over MotifQuery alone, the pinky100 nuclei
table, and a networkx graph of a synthetic release built with pandas only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import strawberry
from strawberry.types import ExecutionResult

from api.context import Context
from api.errors import ErrorCodes
from api.motif_schema import MotifQuery
from graph.driver import AsyncDatabase
from graph.settings import ConnectionSettings
from tests.expected import expected_release

SCHEMA = strawberry.Schema(query=MotifQuery, extensions=[ErrorCodes])

#: Surrogate nucleus IDs for motif cells whose root is not in soma_valence_v185.csv:
#: SURROGATE_BASE + the row's position in motifs_pyc_soma.csv (far above any real soma id,
#: which are < 1000 in pinky100). None are needed today (all 363 roots join), see the test.
SURROGATE_BASE = 10_000_000


def gql(
    settings: ConnectionSettings, query: str, variables: dict[str, Any] | None = None
) -> ExecutionResult:
    """Run one operation on a fresh event loop with a fresh driver (as one request)."""

    async def run() -> ExecutionResult:
        adb = AsyncDatabase(settings)
        try:
            return await SCHEMA.execute(
                query, variable_values=variables, context_value=Context(adb=adb)
            )
        finally:
            await adb.close()

    return asyncio.run(run())


def data(result: ExecutionResult) -> dict[str, Any]:
    assert result.errors is None, [e.formatted for e in result.errors or ()]
    assert result.data is not None
    return result.data


def error_code(result: ExecutionResult) -> tuple[str, str]:
    assert result.errors, result.data
    err = result.errors[0]
    return (err.extensions or {}).get("code", ""), err.message


def pinky_nuclei(pinky: Path, out: Path) -> tuple[Path, int]:
    """nuclei CSV (id, pt_root_id, pt_position) for the 363 motif cells: soma id and
    position from soma_valence_v185.csv joined on segment_id = pt_root_id; a surrogate id
    (SURROGATE_BASE + row) and the motif table's own `loc` for roots that do not join.
    Returns (path, number of surrogates)."""
    soma = pd.read_csv(pinky / "motifs_pyc_soma.csv")
    valence = pd.read_csv(pinky / "soma_valence_v185.csv")
    valence = valence[~valence.pt_root_id.duplicated(keep=False)]  # merged glia roots: no join
    j = soma.merge(valence, left_on="segment_id", right_on="pt_root_id", how="left")
    assert len(j) == len(soma)
    missing = j.id.isna()
    j.loc[missing, "id"] = SURROGATE_BASE + j.index[missing]
    j.loc[missing, "pt_position"] = j.loc[missing, "loc"]
    nuclei = pd.DataFrame(
        {"id": j.id.astype("int64"), "pt_root_id": j.segment_id, "pt_position": j.pt_position}
    )
    path = out / "pinky_motif_nuclei.csv"
    nuclei.to_csv(path, index=False)
    return path, int(missing.sum())


@dataclass
class SynthRelease:
    graph: nx.DiGraph  # nucleus ids; node attrs cell_type, is_neuron; edge attrs synapses, size
    files: dict[str, Path]


def synthetic_graph(folder: Path, version: int) -> SynthRelease:
    """The release a loader should build from the synthetic files, computed with pandas
    (tests/expected.py: one nucleus per root, root 0 and autapses dropped, (pre, post)
    merged), as a networkx DiGraph with every nucleus as a node."""
    files = {t: folder / f"{t}_v{version}.parquet" for t in ("nuclei", "synapses", "cell_types", "neurons")}  # fmt: skip
    nuclei = pd.read_parquet(files["nuclei"])
    exp = expected_release(nuclei, pd.read_parquet(files["synapses"]))
    types = pd.read_parquet(files["cell_types"]).set_index("target_id")
    neurons = pd.read_parquet(files["neurons"]).set_index("target_id")
    G = nx.DiGraph()
    for nid in nuclei.id:
        nid = int(nid)
        G.add_node(
            nid,
            cell_type=types.cell_type.get(nid),
            classification_system=types.classification_system.get(nid),
            is_neuron=(neurons.cell_type.get(nid) == "neuron") if nid in neurons.index else None,
        )
    e = exp.edges
    for pre, post, syn, size in zip(e.pre, e.post, e.synapses, e["size"], strict=True):
        G.add_edge(int(pre), int(post), synapses=int(syn), size=int(size))
    return SynthRelease(G, files)
