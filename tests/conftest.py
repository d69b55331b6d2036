"""Shared test fixtures: tests are deterministic and small."""

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global seed (tests that need more use their own)."""
    torch.manual_seed(0)
    yield


def data_dir() -> str | None:
    """RELAX_DATA_DIR when it holds MNIST raw files (CI points it at the shared data)."""
    d = os.environ.get("RELAX_DATA_DIR")
    return d if d and os.path.isdir(os.path.join(d, "MNIST", "raw")) else None


@pytest.fixture
def run_cli(capsys):
    """``run_cli(argv) -> (exit code, stdout, stderr)``: the ``relax`` CLI in-process."""
    from relaxcli.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in argv])
        captured = capsys.readouterr()
        return e.value.code, captured.out, captured.err

    return run
