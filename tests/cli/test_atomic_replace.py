"""`cgraph load --replace` is atomic (issue 12): real processes against the real Neo4j. A reader
process asks the release over and over while another process replaces it; every answer is the
old release's or the new one's (computed with pandas from the two inputs), never an error and
never a mix, and once the new one is seen the old one never comes back. A replace killed in the
middle leaves the old release served, whole."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from graph import releases
from graph.driver import Database
from tests.cli.test_load_cli import CGRAPH, cgraph
from tests.expected import expected_release
from tests.helpers import drop_releases, kill_once_edges_appear

V = 18701
BASE = 6_300_000

READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from graph import queries
    from graph.driver import Database
    from snapshot.layout import open_snapshot

    version, nucleus, stop, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    deadline = time.monotonic() + 600
    with Database() as db, open(out, "w") as fh:
        while not stop.exists() and time.monotonic() < deadline:
            try:
                cells = db.call(queries.count_cells, version)
                page = db.call(queries.list_partners, nucleus, version, queries.Direction.OUTPUTS)
                row = {"cells": cells, "partners": page.total,
                       "first": [p.cell.nucleus_id for p in page.partners[:3]],
                       # what synapse queries and exports read: the served snapshot
                       "store_edges": open_snapshot(version).counts["edges"]}
            except Exception as exc:
                row = {"error": f"{type(exc).__name__}: {exc}"}
            fh.write(json.dumps(row) + "\\n")
            fh.flush()
            time.sleep(0.01)
    """
)


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    """The release as first loaded, and as replaced (other synapses, some other cells)."""
    from loaders.synth import generate

    out = []
    for seed, cells in ((21, 3000), (22, 2800)):
        d = tmp_path_factory.mktemp(f"replace{seed}")
        generate(d, cells=cells, synapses=300_000, versions=[V], seed=seed, nucleus_id_base=BASE)
        out.append(["--nuclei", str(d / f"nuclei_v{V}.parquet"),
                    "--synapses", str(d / f"synapses_v{V}.parquet"),
                    "--writer", "online", "--no-progress"])  # fmt: skip
    return out


@pytest.fixture
def loaded(db: Database, cli_env: dict[str, str], two_inputs: list[list[str]]) -> Iterator[None]:
    drop_releases(db, V)
    proc = cgraph(cli_env, "load", "--version", str(V), *two_inputs[0])
    assert proc.returncode == 0, proc.stderr
    yield
    drop_releases(db, V)


def _answers(args: list[str]) -> tuple[int, pd.DataFrame]:
    """(cells, edges) of an input, by pandas."""
    want = expected_release(pd.read_parquet(args[1]), pd.read_parquet(args[3]))
    return want.counts["cells"], want.edges


def _view(args: list[str], nucleus: int) -> dict[str, object]:
    cells, edges = _answers(args)
    out = edges[edges.pre == nucleus].sort_values(["synapses", "post"], ascending=[False, True])
    return {"cells": cells, "partners": len(out), "first": [int(x) for x in out.post[:3]]}


def _watched(cli_env: dict[str, str], tmp_path: Path, nucleus: int) -> tuple[
    subprocess.Popen[str], Path, Path]:  # fmt: skip
    stop, out = tmp_path / "stop", tmp_path / "answers.jsonl"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(V), str(nucleus), str(stop),
                               str(out)], env=cli_env, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size == 0):
        assert reader.poll() is None, f"the reader exited with {reader.returncode}"
        time.sleep(0.05)
    return reader, stop, out


def _finish(reader: subprocess.Popen[str], stop: Path, out: Path) -> list[dict[str, object]]:
    time.sleep(0.5)  # a few answers after the switch
    stop.write_text("")
    reader.wait(timeout=60)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _pick_nucleus(two_inputs: list[list[str]]) -> int:
    """A cell with outputs in both releases whose first partners differ between them."""
    (_, old), (_, new) = _answers(two_inputs[0]), _answers(two_inputs[1])
    for n in sorted(set(old.pre) & set(new.pre)):
        if _view(two_inputs[0], n) != _view(two_inputs[1], n):
            return int(n)
    raise AssertionError("the two inputs give every cell the same partners")


@pytest.mark.usefixtures("loaded")
def test_readers_see_the_old_release_then_the_new_never_an_error(
    db: Database, cli_env: dict[str, str], two_inputs: list[list[str]], tmp_path: Path
) -> None:
    nucleus = _pick_nucleus(two_inputs)
    old, new = _view(two_inputs[0], nucleus), _view(two_inputs[1], nucleus)
    reader, stop, out = _watched(cli_env, tmp_path, nucleus)
    proc = cgraph({**cli_env, "CGRAPH_REPLACE_GRACE": "3"}, "load", "--version", str(V),
                  "--replace", *two_inputs[1])  # fmt: skip
    answers = _finish(reader, stop, out)
    assert proc.returncode == 0, proc.stderr
    errors = [a for a in answers if "error" in a]
    assert not errors, errors[:5]
    store = [a.pop("store_edges") for a in answers]

    # each read is one query, whole: the cell count and the partner page are each the old
    # release's or the new one's (a partner page never mixes them); the reader asks them one
    # after the other, so the switch may fall between the two of one row
    def kind(got: object, old_part: object, new_part: object) -> str:
        return "old" if got == old_part else "new" if got == new_part else "mix"

    kinds = []
    for a in answers:
        part = {k: a[k] for k in ("partners", "first")}
        kinds += [kind(a["cells"], old["cells"], new["cells"]),
                  kind(part, {k: old[k] for k in part}, {k: new[k] for k in part})]  # fmt: skip
    assert "mix" not in kinds, [a for i, a in enumerate(answers) if "mix" in kinds[2 * i:2 * i + 2]][:3]  # fmt: skip
    switch = kinds.index("new")
    assert switch > 0 and set(kinds[switch:]) == {"new"}, "the old release came back"
    old_edges, new_edges = len(_answers(two_inputs[0])[1]), len(_answers(two_inputs[1])[1])
    assert old_edges != new_edges
    assert set(store) <= {old_edges, new_edges}, set(store)
    flip = store.index(new_edges)  # the snapshot readers follow right after the graph
    assert flip > 0 and set(store[flip:]) == {new_edges}
    info = db.call(releases.get_release, V)
    assert info is not None and info.status == "complete" and info.slot == 1
    assert info.counts["edges"] == len(_answers(two_inputs[1])[1])
    # the replaced slot is gone: one edge type, one set of release properties
    types = db.read("MATCH ()-[r]->() RETURN DISTINCT type(r) AS t")
    assert f"SYNAPSE_V{V}" not in {t["t"] for t in types}
    left = db.read(f"MATCH (c:Cell) WHERE c.root_id_v{V} IS NOT NULL RETURN count(c) AS n")
    assert left[0]["n"] == 0
    # and the replace of the replace goes back to slot 0, again exactly
    again = cgraph(cli_env, "load", "--version", str(V), "--replace", *two_inputs[0])
    assert again.returncode == 0, again.stderr
    info = db.call(releases.get_release, V)
    assert info is not None and info.slot == 0
    assert db.call(releases.get_release, V).counts["edges"] == len(_answers(two_inputs[0])[1])


@pytest.mark.usefixtures("loaded")
def test_a_replace_killed_midway_leaves_the_old_release_served(
    db: Database, cli_env: dict[str, str], two_inputs: list[list[str]], tmp_path: Path
) -> None:
    nucleus = _pick_nucleus(two_inputs)
    old = _view(two_inputs[0], nucleus)
    before = db.call(releases.get_release, V)
    reader, stop, out = _watched(cli_env, tmp_path, nucleus)
    proc = subprocess.Popen([CGRAPH, "load", "--version", str(V), "--replace", *two_inputs[1]],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def not_switched() -> bool:
        info = db.call(releases.get_release, V)
        return info is not None and before is not None and info.slot == before.slot

    killed = kill_once_edges_appear(db, proc, f"SYNAPSE_V{V}_B", midway=not_switched)
    answers = _finish(reader, stop, out)
    assert killed, "the replace finished before it could be killed; make the dataset larger"
    store = {a.pop("store_edges", None) for a in answers}
    assert answers and all(a == old for a in answers), [a for a in answers if a != old][:3]
    assert store == {len(_answers(two_inputs[0])[1])}
    info = db.call(releases.get_release, V)
    assert info is not None and before is not None
    assert (info.status, info.slot, info.counts, info.snapshot) == (
        "complete", before.slot, before.counts, before.snapshot)  # fmt: skip
    # the next replace takes the dead one's claim over and completes
    rerun = cgraph(cli_env, "load", "--version", str(V), "--replace", *two_inputs[1])
    assert rerun.returncode == 0, rerun.stderr
    got = db.call(releases.get_release, V)
    assert got is not None and got.counts["edges"] == len(_answers(two_inputs[1])[1])
