"""Position encodings -> nm (loaders.positions). Expected values written out by hand."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import InputError
from loaders.positions import parse_positions

VOX = np.array([4.0, 4.0, 40.0])


@pytest.mark.parametrize(
    ("text", "voxels"),
    [
        ("[103860  44385    891]", (103860, 44385, 891)),
        ("[1.5e3 2 3]", (1500, 2, 3)),
        ("(1, 2, 3)", (1, 2, 3)),
        ("[1, 2, 3]", (1, 2, 3)),
        (" [ 7.25 ,8,  9 ] ", (7.25, 8, 9)),
        ("[ 84054  50604   1424]", (84054, 50604, 1424)),
        ("(-1.5E+2, .5, 3.)", (-150, 0.5, 3)),
    ],
)
def test_string_encodings(text: str, voxels: tuple[float, float, float]) -> None:
    got = parse_positions(pd.DataFrame({"pt_position": [text]}))
    assert got.tolist() == [[voxels[0] * 4, voxels[1] * 4, voxels[2] * 40]]


def test_array_column_of_ndarrays_lists_and_tuples() -> None:
    values = [np.array([1, 2, 3]), [4, 5, 6], (7.5, 8, 9)]
    frame = pd.DataFrame({"pt_position": pd.Series(values, dtype=object)})
    got = parse_positions(frame)
    assert got.tolist() == [[4, 8, 120], [16, 20, 240], [30, 32, 360]]


def test_mixed_strings_and_arrays() -> None:
    frame = pd.DataFrame({"pt_position": pd.Series(["[1 2 3]", np.array([4, 5, 6])], dtype=object)})
    assert parse_positions(frame).tolist() == [[4, 8, 120], [16, 20, 240]]


def test_split_columns_win_and_custom_voxel_size() -> None:
    frame = pd.DataFrame(
        {"pt_position_x": [1, 2], "pt_position_y": [3, 4], "pt_position_z": [5, 6]}
    )
    got = parse_positions(frame, voxel_size=(1, 2, 3))
    assert got.tolist() == [[1, 6, 15], [2, 8, 18]]


def test_parquet_list_column(tmp_path) -> None:
    path = tmp_path / "pos.parquet"
    pq.write_table(pa.table({"pt_position": pa.array([[1, 2, 3], [10, 20, 30]])}), path)
    frame = pq.read_table(path).to_pandas()
    assert parse_positions(frame).tolist() == [[4, 8, 120], [40, 80, 1200]]


def test_other_column_name() -> None:
    frame = pd.DataFrame({"ctr_pt_position": ["[1 1 1]"]})
    assert parse_positions(frame, "ctr_pt_position").tolist() == [[4, 4, 40]]


@pytest.mark.parametrize(
    "bad",
    ["[1 2]", "abc", "[1 2 3 4]", "", "[1 x 3]", None, np.array([1, 2]), [1, "a", 3], 5.0],
)
def test_unparseable_position_names_file_column_row(bad: object) -> None:
    frame = pd.DataFrame({"pt_position": pd.Series(["[1 2 3]", "[4 5 6]", bad], dtype=object)})
    with pytest.raises(InputError) as err:
        parse_positions(frame, file="somas.csv", row_offset=10)
    assert (err.value.file, err.value.column, err.value.row) == ("somas.csv", "pt_position", 13)
    assert "somas.csv" in str(err.value) and "row 13" in str(err.value)


def test_bad_split_column_value() -> None:
    frame = pd.DataFrame(
        {"pt_position_x": [1, 2], "pt_position_y": [3, None], "pt_position_z": [5, 6]}
    )
    with pytest.raises(InputError) as err:
        parse_positions(frame, file="f")
    assert (err.value.column, err.value.row) == ("pt_position_y", 2)


def test_missing_position_column_lists_columns() -> None:
    with pytest.raises(InputError, match="columns found: id, pt_root_id"):
        parse_positions(pd.DataFrame({"id": [1], "pt_root_id": [2]}), file="f")


def test_150k_strings_parse_fast() -> None:
    rng = np.random.default_rng(1)
    xyz = rng.integers(0, 300_000, size=(150_000, 3))
    text = [f"[{x:6d} {y:6d} {z:5d}]" for x, y, z in xyz]
    start = time.perf_counter()
    got = parse_positions(pd.DataFrame({"pt_position": text}))
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(got, xyz * VOX)
    assert elapsed < 5, f"150k positions took {elapsed:.2f} s"
