"""Sources, formats, mapping and bad input (loaders.readers via loaders.aggregate.build_release)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from core.errors import BadRequest, InputError
from loaders.aggregate import build_release
from tests.helpers import edge_rows

BIG = 864691135987654321  # > 2**53
ROOTS = [BIG, BIG + 1, BIG + 2, 0]


def nuclei_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.array([7, 8, 9, 10], dtype=np.int64),
            "pt_root_id": np.array(ROOTS, dtype=np.int64),
            "pt_position": ["[1 2 3]", "[4 5 6]", "[7 8 9]", "[1 1 1]"],
            "volume": [1.5, np.nan, 3.0, 4.0],
        }
    )


def synapse_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.array([3, 1, 2, 4], dtype=np.int64),
            "pre_pt_root_id": np.array([BIG, BIG, BIG + 1, BIG + 2], dtype=np.int64),
            "post_pt_root_id": np.array([BIG + 1, BIG + 1, BIG + 2, BIG + 77], dtype=np.int64),
            "size": np.array([10, 20, 30, 40], dtype=np.int64),
        }
    )


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def write_csv_gz(frame: pd.DataFrame, path: Path) -> Path:
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh, index=False)
    return path


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def write_feather(frame: pd.DataFrame, path: Path) -> Path:
    feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


WRITERS: dict[str, Callable[[pd.DataFrame, Path], Path]] = {
    ".csv": write_csv,
    ".csv.gz": write_csv_gz,
    ".parquet": write_parquet,
    ".feather": write_feather,
    ".arrow": write_feather,
}


def check_release(data) -> None:  # noqa: ANN001
    """Expected values written out from the two little tables above."""
    assert data.cells.nucleus_id.tolist() == [7, 8, 9, 10]
    assert data.cells.root_id.tolist() == ROOTS  # exact 64-bit values
    assert data.cells.x.tolist() == [4.0, 16.0, 28.0, 4.0]
    assert data.cells.z.tolist() == [120.0, 240.0, 360.0, 40.0]
    assert np.isnan(data.cells.volume[1]) and data.cells.volume[0] == 1.5
    rows = [r for b in edge_rows(data.edges) for r in b]
    assert rows == [
        {"pre": 7, "post": 8, "synapses": 2, "size": 30, "sizes": [20, 10], "synapse_ids": [1, 3]},
        {"pre": 8, "post": 9, "synapses": 1, "size": 30, "sizes": [30], "synapse_ids": [2]},
    ]
    assert data.counts["dropped_partner_without_nucleus"] == 1
    assert data.out_synapses.tolist() == [2, 1, 1, 0]
    assert data.in_synapses.tolist() == [0, 2, 1, 0]


@pytest.mark.parametrize("ext", list(WRITERS))
def test_each_file_format(tmp_path: Path, ext: str) -> None:
    write = WRITERS[ext]
    nuclei = write(nuclei_frame(), tmp_path / f"nuclei{ext}")
    syn = write(synapse_frame(), tmp_path / f"syn{ext}")
    check_release(build_release(nuclei, syn))
    check_release(build_release(nuclei, syn, batch_rows=1))


def test_dataframes_with_array_positions() -> None:
    nuclei = nuclei_frame()
    nuclei["pt_position"] = [np.array(v) for v in ([1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 1, 1])]
    check_release(build_release(nuclei, synapse_frame()))


@pytest.mark.parametrize("layout", ["one_line", "one_per_line"])
def test_headerless_cave_dump_with_header_file(tmp_path: Path, layout: str) -> None:
    for table, frame in (
        ("nucleus_detection_v0", nuclei_frame()),
        ("synapses_pni_2", synapse_frame()),
    ):
        with gzip.open(tmp_path / f"{table}_merged.csv.gz", "wt") as fh:
            frame.to_csv(fh, index=False, header=False)
        sep = "," if layout == "one_line" else "\n"
        (tmp_path / f"{table}_header.csv").write_text(sep.join(frame.columns) + "\n")
    data = build_release(
        tmp_path / "nucleus_detection_v0_merged.csv.gz",
        tmp_path / "synapses_pni_2_merged.csv.gz",
        batch_rows=3,
    )
    check_release(data)


def test_headerless_dump_error_rows_count_data_rows(tmp_path: Path) -> None:
    syn = synapse_frame().astype({"pre_pt_root_id": object})
    syn.loc[2, "pre_pt_root_id"] = "oops"
    with gzip.open(tmp_path / "synapses_pni_2_merged.csv.gz", "wt") as fh:
        syn.to_csv(fh, index=False, header=False)
    (tmp_path / "synapses_pni_2_header.csv").write_text(",".join(syn.columns))
    with pytest.raises(InputError) as err:
        build_release(nuclei_frame(), tmp_path / "synapses_pni_2_merged.csv.gz")
    assert (err.value.column, err.value.row) == ("pre_pt_root_id", 3)
    assert "synapses_pni_2_merged.csv.gz" in str(err.value)


def test_mapping_plain_and_table_qualified(tmp_path: Path) -> None:
    syn = synapse_frame().rename(
        columns={
            "pre_pt_root_id": "pre_root_id",
            "post_pt_root_id": "post_root_id",
            "size": "cleft_vx",
        }
    )
    nuclei = nuclei_frame().assign(cleft_vx=[9.0, 9.0, 9.0, 9.0])  # must not become a column
    mapping = {
        "pre_pt_root_id": "pre_root_id",
        "post_pt_root_id": "post_root_id",
        "synapses.size": "cleft_vx",
    }
    check_release(
        build_release(
            write_csv(nuclei, tmp_path / "n.csv"),
            write_parquet(syn, tmp_path / "s.parquet"),
            mapping=mapping,
        )
    )


def test_mapping_with_unknown_source_column() -> None:
    with pytest.raises(InputError, match="'pre_root'") as err:
        build_release(nuclei_frame(), synapse_frame(), mapping={"pre_pt_root_id": "pre_root"})
    assert err.value.column == "pre_root"


def test_pinky_style_string_positions_and_mapping_from_real_file(shared_data: Path) -> None:
    root = shared_data
    somas = root / "microns_pinky100_v185" / "soma_valence_v185.csv"
    syn = root / "microns_pinky100_v185" / "soma_subgraph_synapses_spines_v185.csv"
    data = build_release(
        somas,
        syn,
        mapping={
            "pre_pt_root_id": "pre_root_id",
            "post_pt_root_id": "post_root_id",
            "size": "cleft_vx",
        },
    )
    first = pd.read_csv(somas, nrows=1, dtype={"pt_root_id": str})
    assert first.pt_position[0] == "[103860  44385    891]"
    i = data.cells.nucleus_id.tolist().index(int(first.id[0]))
    assert int(data.cells.root_id[i]) == int(first.pt_root_id[0])  # parsed from text, exactly
    assert (data.cells.x[i], data.cells.y[i], data.cells.z[i]) == (415440.0, 177540.0, 35640.0)


# ----------------------------------------------------------------------------- bad input


def raises(where: tuple[str | None, str | None, int | None], nuclei, syn, **kw) -> InputError:  # noqa: ANN001
    with pytest.raises(InputError) as err:
        build_release(nuclei, syn, **kw)
    e = err.value
    file, column, row = where
    if file is not None:
        assert e.file is not None and e.file.endswith(file) and file in str(e)
    assert (e.column, e.row) == (column, row), str(e)
    return e


def test_missing_column_lists_columns_found(tmp_path: Path) -> None:
    syn = write_csv(synapse_frame().drop(columns="post_pt_root_id"), tmp_path / "s.csv")
    e = raises(("s.csv", "post_pt_root_id", None), nuclei_frame(), syn)
    assert "columns found: id, pre_pt_root_id, size" in str(e)


def test_float_root_column_in_parquet_is_wrong_type(tmp_path: Path) -> None:
    syn = synapse_frame().astype({"pre_pt_root_id": "float64"})
    e = raises(
        ("s.parquet", "pre_pt_root_id", None),
        nuclei_frame(),
        write_parquet(syn, tmp_path / "s.parquet"),
    )
    assert "wrong type" in str(e)


@pytest.mark.parametrize("ext", [".csv", ".parquet", "frame"])
def test_nan_id_names_row(tmp_path: Path, ext: str) -> None:
    syn = synapse_frame().astype({"post_pt_root_id": "Int64"})
    syn.loc[2, "post_pt_root_id"] = pd.NA
    source = syn if ext == "frame" else WRITERS[ext](syn, tmp_path / f"s{ext}")
    e = raises(
        (None if ext == "frame" else f"s{ext}", "post_pt_root_id", 3),
        nuclei_frame(),
        source,
        batch_rows=2,
    )
    assert "missing" in str(e)


def test_nan_in_float_frame_column_names_row() -> None:
    syn = synapse_frame().astype({"pre_pt_root_id": "float64"})
    syn.loc[3, "pre_pt_root_id"] = np.nan
    raises((None, "pre_pt_root_id", 4), nuclei_frame(), syn)


def test_negative_id_names_row(tmp_path: Path) -> None:
    nuclei = nuclei_frame()
    nuclei.loc[1, "pt_root_id"] = -5
    raises(("n.csv", "pt_root_id", 2), write_csv(nuclei, tmp_path / "n.csv"), synapse_frame())


def test_non_integer_text_in_csv_id_column(tmp_path: Path) -> None:
    syn = synapse_frame().astype({"pre_pt_root_id": object})
    syn.loc[3, "pre_pt_root_id"] = "8.6e17"
    e = raises(
        ("s.csv", "pre_pt_root_id", 4),
        nuclei_frame(),
        write_csv(syn, tmp_path / "s.csv"),
        batch_rows=2,
    )
    assert "8.6e17" in str(e)


def test_duplicate_nucleus_names_second_row(tmp_path: Path) -> None:
    nuclei = nuclei_frame()
    nuclei.loc[3, "id"] = 8
    e = raises(
        ("n.parquet", "id", 4), write_parquet(nuclei, tmp_path / "n.parquet"), synapse_frame()
    )
    assert "duplicate" in str(e)


def test_unparseable_position_names_row(tmp_path: Path) -> None:
    nuclei = nuclei_frame()
    nuclei.loc[2, "pt_position"] = "[7 8]"
    raises(("n.csv", "pt_position", 3), write_csv(nuclei, tmp_path / "n.csv"), synapse_frame())


def test_bad_size_names_row(tmp_path: Path) -> None:
    syn = synapse_frame().astype({"size": "float64"})
    syn.loc[1, "size"] = np.nan
    raises(("s.parquet", "size", 2), nuclei_frame(), write_parquet(syn, tmp_path / "s.parquet"))
    syn.loc[1, "size"] = -1
    raises((None, "size", 2), nuclei_frame(), syn)


@pytest.mark.parametrize("kind", ["header_only", "zero_bytes", "parquet", "frame"])
def test_empty_file(tmp_path: Path, kind: str) -> None:
    empty = synapse_frame().iloc[:0]
    if kind == "header_only":
        source = write_csv(empty, tmp_path / "s.csv")
    elif kind == "zero_bytes":
        source = tmp_path / "s.csv"
        source.write_bytes(b"")
    elif kind == "parquet":
        source = write_parquet(empty, tmp_path / "s.parquet")
    else:
        source = empty
    with pytest.raises(InputError, match="no data rows|empty file") as err:
        build_release(nuclei_frame(), source)
    if kind != "frame":
        assert err.value.file == str(source)
    with pytest.raises(InputError, match="no data rows|empty file"):
        build_release(nuclei_frame().iloc[:0], synapse_frame())


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "n.txt").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        build_release(tmp_path / "n.txt", synapse_frame())
    with pytest.raises(InputError, match="not found"):
        build_release(tmp_path / "nope.csv", synapse_frame())


def test_big_roots_exact_through_parquet_streaming(tmp_path: Path) -> None:
    syn = synapse_frame()
    path = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pandas(syn, preserve_index=False), path, row_group_size=1)
    seen: list[int] = []
    check_release(build_release(nuclei_frame(), path, batch_rows=3, on_rows=seen.append))
    assert seen == [3, 1]


# ----------------------------------------------------------------------------- unreadable files
# issue 12: each of these printed "Internal error: ..." without the file, or named no row


def _broken_parquet_page(tmp_path: Path) -> Path:
    path = write_parquet(synapse_frame(), tmp_path / "s.parquet")
    col = pq.ParquetFile(path).metadata.row_group(0).column(1)  # pre_pt_root_id
    first_page = col.dictionary_page_offset or col.data_page_offset
    raw = bytearray(path.read_bytes())
    raw[first_page : first_page + 24] = b"\xff" * 24  # the page header: no valid thrift
    path.write_bytes(bytes(raw))
    return path


def _gzip_garbage(tmp_path: Path) -> Path:
    path = tmp_path / "s.csv.gz"
    path.write_bytes(np.random.default_rng(1).bytes(4000))
    return path


def _truncated_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "s.csv.gz"
    data = gzip.compress(synapse_frame().to_csv(index=False).encode() * 2000)
    path.write_bytes(data[: len(data) // 2])
    return path


def _header_not_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "s.csv"
    path.write_bytes(b"id,pre_pt_root_id,post_\xff\xfe_root_id,size\n1,2,3,4\n")
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_broken_parquet_page, "cannot read the file"),
        (_gzip_garbage, "cannot read the file"),
        (_truncated_gzip, "cannot read the file"),
        (_header_not_utf8, "header line is not UTF-8"),
    ],
)
def test_unreadable_file_is_an_input_error_naming_it(
    tmp_path: Path, make: Callable[[Path], Path], needle: str
) -> None:
    path = make(tmp_path)
    e = raises((path.name, None, None), nuclei_frame(), path)
    assert str(e).startswith(f"{path}: ") and needle in str(e)
    assert "\n" not in str(e)


def test_binary_line_in_csv_names_its_row(tmp_path: Path) -> None:
    lines = synapse_frame().to_csv(index=False).encode().splitlines(keepends=True)
    # header, data rows 1 and 2, then the binary line: data row 3
    path = tmp_path / "s.csv"
    path.write_bytes(b"".join(lines[:3]) + b"\xff\x00\x81junk,\xc3\x28\n" + b"".join(lines[3:]))
    e = raises(("s.csv", None, 3), nuclei_frame(), path)
    assert "Expected 4 columns, got 2" in str(e) and "\n" not in str(e)


def test_text_that_is_not_utf8_names_column_and_row(tmp_path: Path) -> None:
    types = pd.DataFrame({"target_id": [7, 8, 9], "cell_type": ["BC", "MC", "23P"]})
    raw = types.to_csv(index=False).encode().replace(b"MC", b"M\xff")  # data row 2
    path = tmp_path / "types.csv"
    path.write_bytes(raw)
    raises(("types.csv", "cell_type", 2), nuclei_frame(), synapse_frame(), cell_types=path)


def test_unknown_mapping_destination_lists_the_valid_ones() -> None:
    syn = synapse_frame()
    # `sise`: a typo of `size`; it used to be accepted and every size silently dropped
    with pytest.raises(BadRequest) as err:
        build_release(nuclei_frame(), syn, mapping={"sise": "size"})
    msg = str(err.value)
    assert "'sise'" in msg and "size" in msg.split("valid destinations:")[1]
    with pytest.raises(BadRequest, match="unknown destination 'cleft'"):
        build_release(nuclei_frame(), syn, mapping={"synapses.cleft": "size"})
    with pytest.raises(BadRequest, match="unknown table 'synapse'"):
        build_release(nuclei_frame(), syn, mapping={"synapse.size": "size"})


def test_a_huge_value_is_cut_in_the_message() -> None:
    syn = synapse_frame().astype({"size": object})
    syn.loc[2, "size"] = "9" * 100 + "x" * 1_000_000
    e = raises((None, "size", 3), nuclei_frame(), syn)
    assert len(str(e)) < 300 and "1,000,102 characters" in str(e)
