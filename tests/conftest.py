"""Shared test fixtures: tests are deterministic and small."""

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# One torch thread per test process (and per `relax` the tests start): the suite runs on
# pytest-xdist workers, one per core, and on a busy 2-core machine two threads per process were
# 10-20x slower than one (OpenMP threads spin while the other core is taken).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


@pytest.fixture
def spy_plots(monkeypatch):
    """``spy_plots(name) -> dict``: record the keyword arguments a command hands to
    ``relaxcli.plots.<name>`` (the figure is still drawn)."""
    from relaxcli import plots

    def spy_on(name: str) -> dict:
        seen: dict = {}
        original = getattr(plots, name)

        def spy(**kwargs):
            seen.update(kwargs)
            return original(**kwargs)

        monkeypatch.setattr(plots, name, spy)
        return seen

    return spy_on
