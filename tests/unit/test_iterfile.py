"""api.client_frames.IterFile: an HTTP body (chunks of any size) read as a file by pyarrow."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa

from api.client_frames import IterFile


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 7, 4096, 65_536, 1 << 20])
        out.append(data[i : i + n])
        i += n
    return out


def test_reads_of_any_size_give_back_the_bytes_in_order() -> None:
    rng = random.Random(5)
    data = rng.randbytes(3_000_000)
    f = IterFile(iter(_chunks(data, rng)))
    got = []
    while True:
        piece = f.read(rng.choice([1, 3, 1000, 70_000, 2_000_000]))
        if not piece:
            break
        got.append(piece)
    assert b"".join(got) == data
    assert f.read(10) == b"" and f.read() == b""


def test_readinto_and_read_all_mix() -> None:
    data = bytes(range(256)) * 100
    f = IterFile(iter([data[:10], b"", data[10:5000], data[5000:]]))
    buf = bytearray(6)
    assert f.readinto(buf) == 6 and bytes(buf) == data[:6]
    assert f.read(4) == data[6:10]
    assert f.read() == data[10:]
    assert f.readinto(bytearray(3)) == 0


def test_an_arrow_stream_through_it_equals_the_table_written() -> None:
    rng = np.random.default_rng(3)
    table = pa.table({"id": rng.integers(0, 2**62, 200_000), "x": rng.random(200_000),
                      "t": pa.array(rng.choice(["a", "bb", "ccc"], 200_000)).dictionary_encode()})  # fmt: skip
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        for b in table.to_batches(max_chunksize=30_000):
            w.write_batch(b)
    body = sink.getvalue().to_pybytes()
    reader = pa.ipc.open_stream(IterFile(iter(_chunks(body, random.Random(9)))))
    assert reader.read_all().equals(table)
