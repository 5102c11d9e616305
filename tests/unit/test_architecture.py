"""The rooms and their arrows (README "Architecture"), as pyproject.toml's import-linter
contracts declare them: this test fails when a module imports across a forbidden line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "4 kept" in proc.stdout, proc.stdout


def test_the_client_imports_with_pandas_and_httpx_only() -> None:
    code = (
        "import sys; from api.client import ConnectomeClient; "
        "bad = {m.split('.')[0] for m in sys.modules} & "
        "{'neo4j', 'strawberry', 'starlette', 'duckdb', 'graph', 'loaders', 'analysis', "
        "'core', 'snapshot', 'cgraph'}; print(sorted(bad)); assert not bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
