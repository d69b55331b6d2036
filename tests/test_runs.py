"""Run directories (relaxcli.runs): lifecycle, atomic writes, refusal/overwrite, status, resume."""

import json
import os
import stat

import pytest
import torch
import typer

from relaxcli import runs
from relaxcli.cli import invoke
from relaxcli.errors import BadInput
from relaxcli.runs import (
    RunDirError,
    create_run,
    open_for_resume,
    read_metrics,
    read_status,
    resolve_device,
    run_context,
    seed_everything,
)


def _make(tmp_path, name="run", **kw):
    return create_run("sample", "hard-concrete", {"tau": 0.5, "n": 3}, out=tmp_path / name,
                      seed=7, device="cpu", argv=["relax", "sample", "hard-concrete"], **kw)


def test_lifecycle_config_metrics_summary_status(tmp_path):
    run = _make(tmp_path)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["options"] == {"tau": 0.5, "n": 3}
    assert cfg["seed"] == 7 and cfg["device"] == "cpu"
    assert cfg["argv"] == ["relax", "sample", "hard-concrete"]
    for key in ("relaxcli_version", "torch_version", "python_version", "start_time", "command"):
        assert cfg[key]
    assert read_status(run.path) == "running"
    run.log_metrics({"step": 1, "loss": 0.5})
    # flushed at once: another reader sees the line before the run ends
    assert read_metrics(run.path) == [{"step": 1, "loss": 0.5}]
    run.log_metrics({"step": 2, "loss": float("nan"), "x": torch.tensor(2.0)})
    assert read_metrics(run.path)[1] == {"step": 2, "loss": None, "x": 2.0}
    summary = run.finish({"loss": torch.tensor([1.0, 2.0])})
    assert summary == {"loss": [1.0, 2.0]}
    assert json.loads((run.path / "summary.json").read_text()) == summary
    assert read_status(run.path) == "completed"
    # no temporary files are left behind by the atomic writes
    assert not [p for p in os.listdir(run.path) if p.endswith(".tmp")]


def test_files_get_umask_permissions(tmp_path):
    run = _make(tmp_path)
    mode = stat.S_IMODE(os.stat(run.path / "config.json").st_mode)
    assert mode == 0o666 & ~runs._UMASK


def test_atomic_write_keeps_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    runs.atomic_write_json(target, {"a": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(runs.os, "replace", boom)
    with pytest.raises(OSError):
        runs.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_truncated_metrics_line_is_dropped(tmp_path):
    run = _make(tmp_path)
    run.log_metrics({"step": 1})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # a crash mid-append
    assert read_metrics(run.path) == [{"step": 1}]


def test_non_empty_out_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.png").write_text("stale")
    with pytest.raises(RunDirError, match="--overwrite"):
        _make(tmp_path)
    assert (out / "old.png").exists()  # nothing touched
    # a folder that is not a relax run directory is never emptied, even with --overwrite
    with pytest.raises(RunDirError, match="not a relax run directory"):
        _make(tmp_path, overwrite=True)
    assert (out / "old.png").read_text() == "stale"
    # a run directory is replaced, its stale files removed
    (out / "old.png").unlink()
    first = _make(tmp_path)
    first.release()
    (out / "old.png").write_text("stale")
    run = _make(tmp_path, overwrite=True)
    assert not (out / "old.png").exists()  # stale files of the old run are gone
    assert read_status(run.path) == "running"


def test_empty_existing_out_is_accepted(tmp_path):
    (tmp_path / "run").mkdir()
    assert read_status(_make(tmp_path).path) == "running"


def test_out_that_is_a_file_or_unwritable_is_bad_input(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BadInput, match="not a directory"):
        _make(tmp_path, name="afile")
    with pytest.raises(BadInput, match="cannot write"):
        _make(tmp_path, name="afile/sub")


def test_interrupt_marks_interrupted_and_keeps_files(tmp_path, capsys):
    run = _make(tmp_path)
    with pytest.raises(KeyboardInterrupt), run_context(run):
        run.log_metrics({"step": 1})
        run.write_json("partial.json", {"ok": True})
        raise KeyboardInterrupt
    assert read_status(run.path) == "interrupted"
    assert read_metrics(run.path) == [{"step": 1}]
    assert (run.path / "partial.json").exists()
    assert "interrupted" in capsys.readouterr().err


def test_error_marks_failed_with_message(tmp_path):
    run = _make(tmp_path)
    with pytest.raises(RuntimeError), run_context(run):
        raise RuntimeError("exploded")
    lines = (run.path / "status").read_text().splitlines()
    assert lines[0] == "failed" and "exploded" in lines[1]


def test_invoke_maps_ctrl_c_to_130_and_bad_input_to_2(tmp_path, capsys):
    def interrupted_runner(reporter, out):
        run = create_run("sample", "x", {}, out=out)
        with run_context(run):
            run.log_metrics({"step": 1})
            raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as e:
        invoke(interrupted_runner, json_out=False, quiet=True, out=tmp_path / "r")
    assert e.value.exit_code == 130
    assert read_status(tmp_path / "r") == "interrupted"
    assert read_metrics(tmp_path / "r") == [{"step": 1}]

    def bad_runner(reporter):
        raise BadInput("--tau must be positive")

    with pytest.raises(typer.Exit) as e:
        invoke(bad_runner, json_out=False, quiet=True)
    assert e.value.exit_code == 2
    err = capsys.readouterr().err
    assert "error: --tau must be positive" in err and "Traceback" not in err


def test_resume_opening(tmp_path):
    run = _make(tmp_path)
    run.log_metrics({"epoch": 1})
    with pytest.raises(KeyboardInterrupt), run_context(run):
        raise KeyboardInterrupt
    again = open_for_resume(run.path, "sample")
    # the status changes only when the continuation starts (run_context)
    assert read_status(again.path) == "interrupted"
    assert again.config["options"] == {"tau": 0.5, "n": 3}
    assert again.read_metrics() == [{"epoch": 1}]
    again.truncate_metrics(lambda r: r["epoch"] < 1)
    assert again.read_metrics() == []
    with pytest.raises(RunDirError, match="not 'train-vae'"):
        open_for_resume(run.path, "train-vae")
    with pytest.raises(RunDirError, match="not a run directory"):
        open_for_resume(tmp_path / "nothing", "sample")
    again.finish({})
    again.release()
    with pytest.raises(RunDirError, match="already completed"):
        open_for_resume(run.path, "sample")


def test_resolve_device_and_seed():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(BadInput, match="auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="no CUDA"):
            resolve_device("cuda")
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))
