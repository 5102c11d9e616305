"""`cgraph load` as users run it: real files, a column mapping, bad input, a killed load."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from graph import releases
from graph.driver import Database
from snapshot.layout import open_snapshot
from tests.expected import expected_release
from tests.helpers import drop_releases, kill_once_edges_appear

CGRAPH = str(Path(sys.executable).parent / "cgraph")
PINKY = "microns_pinky100_v185"
PINKY_MAP = ["--map", "pre_pt_root_id=pre_root_id", "--map", "post_pt_root_id=post_root_id",
             "--map", "size=cleft_vx"]  # fmt: skip


def cgraph(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CGRAPH, *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)  # fmt: skip


def snapshot(db: Database) -> tuple[object, ...]:
    """Everything in the database, summarised exactly enough to notice any change."""
    nodes = db.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
    rels = db.read("MATCH ()-[r]->() RETURN type(r) AS t, count(r) AS n ORDER BY t")
    props = db.read("MATCH (n) UNWIND keys(n) AS k RETURN k, count(*) AS n ORDER BY k")
    rel = db.read("MATCH (r:Release) RETURN properties(r) AS p ORDER BY r.version")
    return (nodes, tuple(map(str, rels)), tuple(map(str, props)), tuple(map(str, rel)))


@pytest.fixture
def drop_after(db: Database) -> Iterator[list[int]]:
    versions: list[int] = []
    yield versions
    drop_releases(db, *versions)


def test_pinky100_loads_with_a_mapping_and_reports_quirks(
    db: Database, cli_env: dict[str, str], shared_data: Path, drop_after: list[int]
) -> None:
    d = shared_data / PINKY
    v = 18501
    drop_after.append(v)
    proc = cgraph(cli_env, "load", "--version", str(v), "--nuclei", str(d / "soma_valence_v185.csv"),
                  "--synapses", str(d / "soma_subgraph_synapses_spines_v185.csv"),
                  "--cell-types", str(d / "soma_valence_v185.csv"), "--no-progress", *PINKY_MAP)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    nuclei = pd.read_csv(d / "soma_valence_v185.csv")
    syn = pd.read_csv(d / "soma_subgraph_synapses_spines_v185.csv")
    exp = expected_release(
        nuclei, syn, pre_col="pre_root_id", post_col="post_root_id", size_col="cleft_vx"
    )
    # SOURCE.txt: 3 roots with 2 somas each, 2 autaptic synapses
    assert exp.counts["multi_nucleus_roots"] == 3 and exp.counts["dropped_autapse"] == 2
    info = db.call(releases.get_release, v)
    assert info is not None and info.status == "complete"
    assert {k: info.counts[k] for k in exp.counts} == exp.counts
    assert f"autapse {exp.counts['dropped_autapse']:,}" in proc.stdout
    multi = nuclei[nuclei.duplicated("pt_root_id", keep=False)]
    for root in multi.pt_root_id.unique():
        assert str(root) in proc.stdout  # each shared root is reported
    # position strings "[x y z]" in voxels of 4x4x40 nm -> nm points
    row = nuclei.iloc[0]
    x, y, z = (float(t) for t in row.pt_position.strip("[]").split())
    got = db.read("MATCH (c:Cell {nucleus_id: $n}) RETURN c.position AS p", {"n": int(row.id)})[0][
        "p"
    ]
    assert (got.x, got.y, got.z) == (x * 4, y * 4, z * 40)
    edges = db.read(
        f"MATCH (a)-[r:SYNAPSE_V{v}]->(b) RETURN sum(r.synapses) AS s, sum(r.size) AS size"
    )
    assert edges == [{"s": exp.counts["synapses"], "size": int(exp.edges["size"].sum())}]


def test_connectivity_only_export_has_null_size(
    db: Database, cli_env: dict[str, str], shared_data: Path, tmp_path: Path, drop_after: list[int]
) -> None:
    d = shared_data / PINKY
    v = 18502
    drop_after.append(v)
    syn = pd.read_csv(d / "soma_subgraph_synapses_spines_v185.csv")[
        ["id", "pre_root_id", "post_root_id"]
    ]
    path = tmp_path / "synapses.csv.gz"
    with gzip.open(path, "wt") as fh:
        syn.to_csv(fh, index=False)
    proc = cgraph(cli_env, "load", "--version", str(v), "--nuclei", str(d / "soma_valence_v185.csv"),
                  "--synapses", str(path), "--no-progress", "--map", "pre_pt_root_id=pre_root_id",
                  "--map", "post_pt_root_id=post_root_id")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = db.read(f"MATCH ()-[r:SYNAPSE_V{v}]->() RETURN r.size AS size LIMIT 5")
    assert rows and all(r["size"] is None for r in rows)
    synapses = pd.read_parquet(open_snapshot(v).file("synapses.parquet"))
    assert len(synapses) and synapses["size"].isna().all()


def _bad_inputs(tmp_path: Path) -> list[tuple[str, Path, Path, str]]:
    """(case, nuclei file, synapses file, text the error must contain)."""
    good_n = pd.DataFrame({"id": [101, 102, 103], "pt_root_id": [864691135000000001, 864691135000000002, 864691135000000003],
                           "pt_position": ["[1 2 3]", "[4 5 6]", "[7 8 9]"], "volume": [30.0, 40.0, 50.0]})  # fmt: skip
    good_s = pd.DataFrame({"id": [1, 2], "pre_pt_root_id": [864691135000000001, 864691135000000002],
                           "post_pt_root_id": [864691135000000002, 864691135000000003], "size": [10, 20]})  # fmt: skip
    cases = []

    def write(name: str, df: pd.DataFrame) -> Path:
        p = tmp_path / f"{name}.csv"
        df.to_csv(p, index=False)
        return p

    gn, gs = write("good_nuclei", good_n), write("good_synapses", good_s)
    cases.append(
        (
            "missing column",
            gn,
            write("s_missing", good_s.drop(columns="post_pt_root_id")),
            "post_pt_root_id",
        )
    )
    bad = good_s.astype({"size": object})
    bad.loc[1, "size"] = "big"
    cases.append(("wrong type", gn, write("s_type", bad), "size"))
    nan = good_s.astype({"pre_pt_root_id": object})
    nan.loc[1, "pre_pt_root_id"] = None
    cases.append(("NaN id", gn, write("s_nan", nan), "pre_pt_root_id"))
    neg = good_n.copy()
    neg.loc[2, "id"] = -5
    cases.append(("negative id", write("n_neg", neg), gs, "row 3"))
    dup = good_n.copy()
    dup.loc[2, "id"] = 101
    cases.append(("duplicate nucleus", write("n_dup", dup), gs, "row 3"))
    pos = good_n.copy()
    pos.loc[1, "pt_position"] = "[1 2 potato]"
    cases.append(("unparseable position", write("n_pos", pos), gs, "row 2"))
    empty = tmp_path / "s_empty.csv"
    empty.write_text("id,pre_pt_root_id,post_pt_root_id,size\n")
    cases.append(("empty file", gn, empty, "s_empty.csv"))
    return cases


def test_bad_input_is_one_clear_line_and_changes_nothing(
    db: Database, cli_env: dict[str, str], tmp_path: Path, drop_after: list[int]
) -> None:
    v = 18503
    drop_after.append(v)
    before = snapshot(db)
    for case, nuclei, syn, needle in _bad_inputs(tmp_path):
        proc = cgraph(cli_env, "load", "--version", str(v), "--nuclei", str(nuclei),
                      "--synapses", str(syn), "--no-progress")  # fmt: skip
        assert proc.returncode == 2, (case, proc.stdout, proc.stderr)
        lines = [
            ln
            for ln in proc.stderr.splitlines()
            if ln.strip() and "%|" not in ln and "rows/s" not in ln
        ]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (case, proc.stderr)
        assert needle in lines[0], (case, lines[0])
        assert snapshot(db) == before, case


def test_killed_load_reruns_to_the_exact_clean_graph(
    db: Database, cli_env: dict[str, str], tmp_path: Path, drop_after: list[int]
) -> None:
    from loaders.synth import generate

    v, clean_v = 18504, 18505
    drop_after += [v, clean_v]
    generate(  # edges written for seconds, so the kill lands midway
        tmp_path, cells=3000, synapses=1_000_000, versions=[v], seed=3, nucleus_id_base=6_000_000
    )
    args = ["--nuclei", str(tmp_path / f"nuclei_v{v}.parquet"),
            "--synapses", str(tmp_path / f"synapses_v{v}.parquet"), "--no-progress"]  # fmt: skip
    # the online writer even when this test runs first on an empty database (auto: bulk)
    proc = subprocess.Popen([CGRAPH, "load", "--version", str(v), "--writer", "online", *args],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def loading() -> bool:
        info = db.call(releases.get_release, v)
        return info is not None and info.status == "loading"

    killed = kill_once_edges_appear(db, proc, f"SYNAPSE_V{v}", midway=loading)
    assert killed, (
        "the load's graph write finished before it could be killed; make the dataset larger"
    )
    info = db.call(releases.get_release, v)
    assert info is not None and info.status == "loading"
    rerun = cgraph(cli_env, "load", "--version", str(v), *args)
    assert rerun.returncode == 0, rerun.stderr
    clean = cgraph(cli_env, "load", "--version", str(clean_v), *args)
    assert clean.returncode == 0, clean.stderr

    def edges(version: int) -> list[dict[str, object]]:
        return db.read(
            f"MATCH (a)-[r:SYNAPSE_V{version}]->(b) RETURN a.nucleus_id AS a, b.nucleus_id AS b, "
            "properties(r) AS p ORDER BY a, b"
        )

    assert edges(v) == edges(clean_v)
    got, want = db.call(releases.get_release, v), db.call(releases.get_release, clean_v)
    assert got is not None and want is not None and got.counts == want.counts
    assert got.status == "complete"
