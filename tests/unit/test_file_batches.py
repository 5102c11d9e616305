"""A whole snapshot file streams in bounded memory (the release export reads it this way)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from snapshot.tables import file_batches


def test_streaming_a_file_holds_about_one_row_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n, group = 2_000_000, 50_000
    table = pa.table({"id": np.arange(n, dtype=np.int64), "x": rng.random(n),
                      "root": rng.integers(0, 2**60, n)})  # fmt: skip
    path = tmp_path / "synapses.parquet"
    pq.write_table(table, path, row_group_size=group, compression="zstd")
    raw = table.nbytes  # 48 MB decoded; 40 row groups
    del table
    base = pa.total_allocated_bytes()
    schema, batches = file_batches(path, 10_000)
    peak, rows, ids = 0, 0, 0
    for b in batches:
        peak = max(peak, pa.total_allocated_bytes() - base)
        rows += b.num_rows
        ids += int(np.asarray(b.column("id")).sum())
        del b
    assert schema.names == ["id", "x", "root"]
    assert rows == n and ids == n * (n - 1) // 2  # every row, once
    assert peak < raw / 8, f"{peak:,} bytes of Arrow memory while streaming {raw:,}"
