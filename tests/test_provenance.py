"""What every run records about itself (runs.py): provenance in config.json, log.txt with the
traceback of a failure, TensorBoard scalars; and `relax rerun`, which replays config.json."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from relaxcli import runs

SAMPLE = ["sample", "gumbel-softmax", "-n", "200", "--device", "cpu", "--threads", "1"]


def test_config_records_provenance(tmp_path, run_cli, monkeypatch):
    for var in runs.SLURM_VARS.values():  # (the tests may themselves run as a Slurm job)
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    code, _, err = run_cli([*SAMPLE, "--out", tmp_path / "r"])
    assert code == 0, err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["slurm"] == {"job_id": "4242", "array_job_id": "4240", "array_task_id": "2"}
    assert cfg["hostname"] and cfg["cwd"]
    import gymnasium
    import numpy

    assert cfg["numpy_version"] == numpy.__version__
    assert cfg["gymnasium_version"] == gymnasium.__version__
    assert cfg["torch_version"] == torch.__version__
    assert cfg["cuda_device"] is None  # a CPU run
    assert cfg["end_time"] >= cfg["start_time"]
    root = runs._checkout_root()
    if root is not None:  # tests run from a checkout: its commit is recorded
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        assert cfg["git"]["commit"] == head and isinstance(cfg["git"]["dirty"], bool)
    # log.txt holds what the run printed (stderr was not a terminal: plain text)
    log = (tmp_path / "r" / "log.txt").read_text()
    assert "relax sample gumbel-softmax" in log and "\x1b[" not in log


def test_slow_or_missing_git_never_fails_a_run(monkeypatch):
    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], runs.GIT_TIMEOUT_S)

    monkeypatch.setattr(runs, "_GIT_CACHE", {})
    monkeypatch.setattr(runs.subprocess, "run", hang)
    monkeypatch.setattr(runs, "_checkout_root", lambda: Path("."))
    assert runs.git_state() is None


def test_failure_keeps_traceback_in_log_and_one_line_on_terminal(tmp_path, run_cli, monkeypatch):
    def broken_finish(self, summary):
        raise RuntimeError("summary could not be written\nsecond line")

    monkeypatch.setattr(runs.Run, "finish", broken_finish)
    code, _, err = run_cli([*SAMPLE, "--out", tmp_path / "r"])
    assert code == 1
    assert err.strip().splitlines()[-1] == "error: RuntimeError: summary could not be written"
    assert "Traceback" not in err
    log = (tmp_path / "r" / "log.txt").read_text()
    assert "Traceback (most recent call last)" in log and "broken_finish" in log
    assert runs.read_status(tmp_path / "r") == "failed"
    assert json.loads((tmp_path / "r" / "config.json").read_text())["end_time"]


def test_rerun_replays_the_run_with_a_new_seed(tmp_path, run_cli):
    code, _, err = run_cli([*SAMPLE, "--seed", "0", "--out", tmp_path / "a"])
    assert code == 0, err
    code, _, err = run_cli(["rerun", tmp_path / "a", "--seed", "3"])
    assert code == 0, err
    new = tmp_path / "a-seed3"  # beside the original, for relax compare over their folder
    old_cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    new_cfg = json.loads((new / "config.json").read_text())
    assert new_cfg["seed"] == 3
    same = {k: v for k, v in old_cfg["options"].items() if k != "seed"}
    assert {k: new_cfg["options"][k] for k in same} == same
    old = torch.load(tmp_path / "a" / "samples.pt")
    fresh = torch.load(new / "samples.pt")
    assert not torch.equal(old["samples"] if isinstance(old, dict) else old,
                           fresh["samples"] if isinstance(fresh, dict) else fresh)
    # the same seed again gives the same numbers
    code, _, err = run_cli(["rerun", tmp_path / "a", "--out", tmp_path / "b"])
    assert code == 0, err
    again = torch.load(tmp_path / "b" / "samples.pt")
    assert torch.equal(old["samples"] if isinstance(old, dict) else old,
                       again["samples"] if isinstance(again, dict) else again)


def test_rerun_of_a_folder_that_is_not_a_run(tmp_path, run_cli):
    code, _, err = run_cli(["rerun", tmp_path])
    assert code == 2 and "not a run directory" in err


def test_tensorboard_scalars_beside_metrics(tmp_path, run_cli):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "gb"
    code, _, err = run_cli(["grad-bench", "--train", "--steps", "20", "--methods", "relaxed-bernoulli",
                            "--tau", "0.5", "--tune-steps", "0", "--device", "cpu", "--tensorboard",
                            "--out", out, "--quiet"])
    assert code == 0, err
    assert list(out.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out))
    events.Reload()
    loss = events.Scalars("tau=0.5/relaxed-bernoulli/loss")
    lines = [r for r in runs.read_metrics(out) if "loss" in r]
    assert [e.step for e in loss] == [r["step"] for r in lines]  # one point per metrics line
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in lines], rel=1e-6)
    assert runs.is_run_dir(out)  # event files are plain files: still a run directory


def test_tensorboard_needs_train_and_the_package(tmp_path, run_cli, monkeypatch):
    code, _, err = run_cli(["grad-bench", "--tensorboard", "--out", tmp_path / "x"])
    assert code == 2 and "--train" in err
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    code, _, err = run_cli(["grad-bench", "--train", "--tensorboard", "--steps", "2",
                            "--out", tmp_path / "y"])
    assert code == 2 and "pip install tensorboard" in err
    assert not (tmp_path / "y").exists()


def test_tensorboard_scalars_of_a_metrics_line():
    assert runs.tensorboard_scalars({"epoch": 1, "step": 30, "tau": 0.9, "loss": float("nan")}) == \
        (30, {"epoch": 1, "tau": 0.9})
    assert runs.tensorboard_scalars({"method": "arm", "tau": None, "loss": 1.0}) is None


def test_log_of_a_terminal_run_keeps_messages_not_progress_frames():
    """On a terminal rich redraws its bar many times a second; log.txt gets the messages printed
    meanwhile (without colours) and the bar once, at its end."""
    import io
    import time

    from rich.console import Console
    from rich.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen, log = Terminal(), io.StringIO()
    console = Console(file=runs._Tee(screen, log), force_terminal=True, width=80)
    with Progress(console=console, refresh_per_second=50) as progress:
        task = progress.add_task("train", total=4)
        for i in range(4):
            time.sleep(0.03)  # a few redraws between messages
            console.print(f"epoch {i}: [bold]loss[/bold] {i}")
            progress.advance(task)
    lines = log.getvalue().splitlines()
    assert lines[:4] == [f"epoch {i}: loss {i}" for i in range(4)]
    assert len(lines) == 5 and lines[4].startswith("train") and "100%" in lines[4]
    assert "\x1b" not in log.getvalue() and "\x1b[" in screen.getvalue()


def test_cuda_device_name_is_recorded_for_a_cuda_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert runs.provenance("cuda")["cuda_device"] == "NVIDIA H200"
    assert runs.provenance("cpu")["cuda_device"] is None
