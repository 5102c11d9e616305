"""`cgraph load` on garbage (issue 12): every case is one line naming the file, column and row
(or the option), exit 2 for bad data and 1 for a bad option, no traceback, no "Internal error",
the database unchanged and no snapshot left behind, valid or half-written."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from graph.driver import Database
from snapshot.layout import snapshots_dir
from tests.helpers import drop_releases

CGRAPH = str(Path(sys.executable).parent / "cgraph")
V = 18601
ROOT = 864691135000000000
CELLS = 40


def cgraph(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CGRAPH, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # fmt: skip


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "Internal error" not in lines[0], lines[0]
    return lines[0]


def nuclei() -> pd.DataFrame:
    ids = np.arange(CELLS, dtype=np.int64) + 500
    return pd.DataFrame({"id": ids, "pt_root_id": ids + ROOT, "pt_position": ["[1 2 3]"] * CELLS,
                         "volume": np.linspace(30.0, 70.0, CELLS)})  # fmt: skip


def synapses(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(12)
    pre = rng.integers(0, CELLS, n)
    post = (pre + rng.integers(1, CELLS, n)) % CELLS
    return pd.DataFrame({"id": np.arange(n, dtype=np.int64) + 1, "pre_pt_root_id": pre + 500 + ROOT,
                         "post_pt_root_id": post + 500 + ROOT, "size": rng.integers(1, 900, n)})  # fmt: skip


def cell_types() -> pd.DataFrame:
    return pd.DataFrame({"target_id": nuclei().id, "cell_type": ["23P", "BC"] * (CELLS // 2)})


# --------------------------------------------------------------------------- bad options


def test_bad_options_are_named_before_any_connection(tmp_path: Path) -> None:
    n, s = tmp_path / "n.parquet", tmp_path / "s.parquet"
    nuclei().to_parquet(n)
    synapses().to_parquet(s)
    env = dict(os.environ, NEO4J_URI="bolt://127.0.0.1:9")  # nothing listens: not reached
    base = ["load", "--version", str(V), "--nuclei", str(n), "--synapses", str(s), "--no-progress"]
    proc = cgraph(env, *base, "--timestamp", "yesterday")
    line = error_line(proc)
    assert proc.returncode == 1
    assert "--timestamp" in line and "ISO 8601" in line and "'yesterday'" in line
    proc = cgraph(env, *base, "--map", "sise=size")
    line = error_line(proc)
    assert proc.returncode == 1
    assert "--map sise=size" in line and "unknown destination 'sise'" in line
    assert "size" in line.split("valid destinations:")[1]
    # a NaN/infinite voxel size passed validation and, with --replace, wiped a complete release:
    # it is refused before anything connects, let alone clears
    for bad in ("nan,4,40", "4,inf,40", "4,4,-inf", "4,4"):
        proc = cgraph(env, *base, "--replace", "--voxel-size", bad)
        line = error_line(proc)
        assert proc.returncode == 1 and "--voxel-size" in line and repr(bad) in line, line


# --------------------------------------------------------------------------- bad files


def _files(tmp_path: Path, syn: pd.DataFrame | None = None, nuc: pd.DataFrame | None = None,
           types: pd.DataFrame | None = None) -> dict[str, Path]:  # fmt: skip
    out = {"nuclei": tmp_path / "n.parquet", "synapses": tmp_path / "s.parquet"}
    (nuclei() if nuc is None else nuc).to_parquet(out["nuclei"])
    (synapses() if syn is None else syn).to_parquet(out["synapses"])
    if types is not None:
        out["cell-types"] = tmp_path / "t.parquet"
        types.to_parquet(out["cell-types"])
    return out


def duplicate_id(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    syn = synapses()
    syn.loc[2500, "id"] = syn.loc[99, "id"]  # data row 2501 repeats data row 100
    return _files(tmp_path, syn), ["s.parquet", "column 'id'", "row 2501", "repeats row 100"]


def duplicated_rows(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    syn = synapses()
    syn = pd.concat([syn, syn.iloc[1000:1500]], ignore_index=True)  # 500 rows copied at the end
    return _files(tmp_path, syn), ["s.parquet", "column 'id'", "row 3001", "repeats row 1001"]


def size_overflow(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    syn = synapses()
    pair = syn.loc[0, ["pre_pt_root_id", "post_pt_root_id"]].to_numpy()
    syn.loc[1, ["pre_pt_root_id", "post_pt_root_id"]] = pair
    syn.loc[[0, 1], "size"] = [2**62, 2**62 + 5]
    pre, post = (int(r) - ROOT for r in pair)  # nucleus id = root - ROOT
    return _files(tmp_path, syn), ["s.parquet", "column 'size'",
                                   f"from nucleus {pre} to nucleus {post}"]  # fmt: skip


def infinite_volume(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    nuc = nuclei()
    nuc.loc[16, "volume"] = np.inf
    return _files(tmp_path, nuc=nuc), ["n.parquet", "column 'volume'", "row 17", "infinite"]


def negative_volume(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    nuc = nuclei()
    nuc.loc[3, "volume"] = -2.0
    return _files(tmp_path, nuc=nuc), ["n.parquet", "column 'volume'", "row 4", "negative"]


def integer_cell_type(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    types = cell_types().assign(cell_type=np.arange(CELLS))
    return _files(tmp_path, types=types), ["t.parquet", "column 'cell_type'", "int64"]


def huge_cell_type(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    types = cell_types()
    types.loc[9, "cell_type"] = "x" * (8 << 20)
    return _files(tmp_path, types=types), ["t.parquet", "column 'cell_type'", "row 10",
                                           "8,388,608 characters"]  # fmt: skip


def corrupt_parquet_page(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    files = _files(tmp_path)
    col = pq.ParquetFile(files["synapses"]).metadata.row_group(0).column(1)
    first_page = col.dictionary_page_offset or col.data_page_offset
    raw = bytearray(files["synapses"].read_bytes())
    raw[first_page : first_page + 24] = b"\xff" * 24
    files["synapses"].write_bytes(bytes(raw))
    return files, ["s.parquet", "cannot read the file"]


def gzip_garbage(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    files = _files(tmp_path)
    files["synapses"] = tmp_path / "s.csv.gz"
    files["synapses"].write_bytes(np.random.default_rng(2).bytes(5000))
    return files, ["s.csv.gz", "cannot read the file"]


def truncated_gzip(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    files = _files(tmp_path)
    data = gzip.compress(synapses(200_000).to_csv(index=False).encode())
    files["synapses"] = tmp_path / "s.csv.gz"
    files["synapses"].write_bytes(data[: len(data) // 2])
    return files, ["s.csv.gz", "cannot read the file"]


def binary_csv(tmp_path: Path) -> tuple[dict[str, Path], list[str]]:
    files = _files(tmp_path)
    lines = synapses().to_csv(index=False).encode().splitlines(keepends=True)
    files["synapses"] = tmp_path / "s.csv"
    # the header and 1,234 data rows, then binary bytes: data row 1,235
    files["synapses"].write_bytes(
        b"".join(lines[:1235]) + b"\x00\xff\xfe\x81\n" + b"".join(lines[1235:])
    )
    return files, ["s.csv", "row 1235"]


CASES = [duplicate_id, duplicated_rows, size_overflow, infinite_volume, negative_volume,
         integer_cell_type, huge_cell_type, corrupt_parquet_page, gzip_garbage, truncated_gzip,
         binary_csv]  # fmt: skip


def graph_content(db: Database) -> tuple[int, int]:
    """Nodes (Release nodes included: a load's claim leaves none behind) and relationships."""
    nodes = db.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
    return nodes, db.read("MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"]


def test_bad_files_are_one_line_and_leave_nothing(
    db: Database, cli_env: dict[str, str], tmp_path: Path
) -> None:
    before = graph_content(db)
    try:
        _load_each_case(db, cli_env, tmp_path, before)
    finally:
        drop_releases(db, V)


def _load_each_case(
    db: Database, cli_env: dict[str, str], tmp_path: Path, before: tuple[int, int]
) -> None:
    for case in CASES:
        d = tmp_path / case.__name__
        d.mkdir()
        files, needles = case(d)
        args = [a for k, p in files.items() for a in (f"--{k}", str(p))]
        proc = cgraph(cli_env, "load", "--version", str(V), "--no-progress", *args)
        line = error_line(proc)
        assert proc.returncode == 2, (case.__name__, line)
        for needle in needles:
            assert needle in line, (case.__name__, needle, line)
        assert len(line) < 600, (case.__name__, line[:600])
        assert not db.read("MATCH (r:Release {version: $v}) RETURN r", {"v": V}), case.__name__
        assert graph_content(db) == before, case.__name__
        leftovers = list(snapshots_dir().glob(f"v{V}")) + list(snapshots_dir().glob(f".v{V}.*"))
        assert leftovers == [], (case.__name__, leftovers)
