"""Copy the benchmark results the README quotes into it (between its marker comments).

.venv/bin/python bench/update_readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
#: results files the README quotes whole, between <!-- name --> and <!-- /name -->
BLOCKS = (
    "load_full.md",
    "synapses.md",
    "synapses_full.md",
    "paths.md",
    "wiring.md",
    "space_diff.md",
    "bench_motif.md",
    "bench_api.md",
    "concurrency.md",
)


def main() -> None:
    text = README.read_text()
    for name in BLOCKS:
        block = f"<!-- {name} -->\n" + (HERE / "results" / name).read_text() + f"<!-- /{name} -->"
        pattern = rf"<!-- {re.escape(name)} -->\n.*?<!-- /{re.escape(name)} -->"
        text = re.sub(pattern, block.replace("\\", "\\\\"), text, flags=re.S)
    README.write_text(text)


if __name__ == "__main__":
    main()
