"""The lint rules in pyproject.toml ([tool.ruff], [tool.ruff.lint]) hold over the whole tree."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "benchmarks", "experiments"]


def _ruff() -> list[str] | None:
    """The ruff command: the installed Python package if there is one, else ``ruff`` on PATH."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    exe = shutil.which("ruff")
    return [exe] if exe else None


def test_ruff_check_is_clean():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff not found (neither `python -m ruff` nor `ruff` on PATH); pip install ruff")
    # --no-cache: no .ruff_cache written into the checkout
    proc = subprocess.run([*ruff, "check", "--no-cache", *PATHS], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"ruff check {' '.join(PATHS)} failed:\n{proc.stdout}{proc.stderr}"
