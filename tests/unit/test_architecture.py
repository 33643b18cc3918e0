"""The dependency rule of DESIGN.md, checked by the import-linter contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout


def test_canonical_and_domain_import_no_io_at_runtime() -> None:
    """Belt and braces: importing the pure layers loads no database, web or network library."""
    code = (
        "import sys, medbridge.canonical, medbridge.domain.ledger, medbridge.domain.posting;"
        "bad = {'sqlalchemy', 'fastapi', 'httpx', 'psycopg', 'structlog', 'sqlite3', 'asyncio'}"
        " & set(sys.modules); print(sorted(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
