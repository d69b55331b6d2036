"""Hostile and hurried users (issue 10): nothing lost, nothing silent.

One parametrised table: the command line, the exit code it must end with, a fragment of the one
line it must print, and the files that must be left exactly as they were. The setups build what
the command meets (a project with .git, a sweep of runs, a locked or corrupted run directory, a
truncated download...). Cases that need a second process or timing (SIGTERM, a crashed lock
holder) follow the table.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from relaxcli import runs
from relaxcli.cli import main
from relaxcli.runs import read_status

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY_VAE = ["--dataset", "synthetic", "--hidden", "16", "--latent-dim", "4", "--categories", "3",
            "--eval-samples", "2", "--device", "cpu", "--threads", "1", "--quiet"]


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder below ``root`` with a hash of its bytes (folders: "dir"); the run
    lock's own file (who held it last) is relaxcli's bookkeeping, not the user's data."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name == runs.LOCK_FILE:
            continue
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------------------------- setups
def _ok(argv: list[str]) -> None:
    """Run a command that must succeed (building a setup)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 0, argv


def sample_run(path: Path) -> Path:
    _ok(["sample", "hard-concrete", "-n", "20", "--out", path, "--quiet", "--device", "cpu",
         "--threads", "1"])
    return path


def vae_run(path: Path, epochs: int = 1, extra: tuple = ()) -> Path:
    _ok(["train-vae", "--method", "gumbel-softmax", "--epochs", str(epochs), "--out", path,
         *TINY_VAE, *extra])
    return path


def project(tmp: Path) -> dict:
    d = tmp / "project"
    (d / ".git" / "objects").mkdir(parents=True)
    (d / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (d / "main.py").write_text("print('my work')\n")
    return {"dir": d, "keep": d}


def project_cwd(tmp: Path) -> dict:
    info = project(tmp)
    os.chdir(info["dir"])  # `relax ... --out . --overwrite` inside a project
    return {"dir": Path("."), "keep": info["dir"]}


def sweep(tmp: Path) -> dict:
    s = tmp / "sweep"
    sample_run(s / "a")
    sample_run(s / "b")
    return {"dir": s, "a": s / "a", "keep": s}


def run_with_subfolder(tmp: Path) -> dict:
    r = sample_run(tmp / "run")
    (r / "notes").mkdir()
    (r / "notes" / "mine.txt").write_text("keep me")
    return {"dir": r, "keep": r}


def run_holding_input(tmp: Path) -> dict:
    r = sample_run(tmp / "run")
    np.save(r / "R.npy", np.array([[1.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 1.0]]))
    return {"dir": r, "input": r / "R.npy", "keep": r}


_HELD: list = []


def locked_vae_run(tmp: Path) -> dict:
    r = vae_run(tmp / "run")
    (r / "status").write_text("interrupted\n")
    _HELD.append(runs.RunLock.acquire(r))  # another writer (a second open file: flock conflicts)
    return {"dir": r, "keep": r}


def completed_vae_run(tmp: Path) -> dict:
    r = vae_run(tmp / "run", epochs=1)
    return {"dir": r, "keep": r}


def corrupted_vae_checkpoint(tmp: Path) -> dict:
    r = vae_run(tmp / "run", epochs=1)
    (r / "status").write_text("interrupted\n")
    (r / "checkpoint.pt").write_bytes(b"\x00garbage, not a zip file" * 10)
    return {"dir": r, "keep": None, "status_after": "failed"}


def corrupted_reinforce_checkpoint(tmp: Path) -> dict:
    r = tmp / "run"
    _ok(["reinforce", "--env", "CartPole-v1", "--episodes", "4", "--num-envs", "2",
         "--eval-episodes", "0", "--hidden", "8", "--out", r, "--quiet", "--device", "cpu",
         "--threads", "1"])
    (r / "status").write_text("interrupted\n")
    (r / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated zip")
    return {"dir": r, "keep": None, "status_after": "failed"}


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    return head + arr.astype(np.uint8).tobytes()


def fake_mnist(root: Path, truncate: bool = False) -> Path:
    """A tiny MNIST in torchvision's layout (gz idx files); ``truncate`` cuts the train images."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28)),
             "train-labels-idx1-ubyte": rng.integers(0, 10, 40),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10)}
    for name, arr in files.items():
        data = gzip.compress(_idx(arr))
        if truncate and name.startswith("train-images"):
            data = data[: len(data) // 2]
        (raw / f"{name}.gz").write_bytes(data)
    return root


def truncated_download(tmp: Path) -> dict:
    d = fake_mnist(tmp / "data", truncate=True)
    return {"dir": d, "keep": d}


def resume_without_data(tmp: Path) -> dict:
    d = fake_mnist(tmp / "data")
    r = tmp / "run"
    _ok(["train-vae", "--method", "gumbel-softmax", "--epochs", "1", "--dataset", "mnist",
         "--data-dir", d, "--out", r, "--hidden", "16", "--latent-dim", "4", "--categories", "3",
         "--eval-samples", "2", "--device", "cpu", "--threads", "1", "--quiet"])
    import shutil

    shutil.rmtree(d)  # the data folder of the original run is gone
    return {"dir": r, "keep": None, "status_after": "failed"}


def nothing(tmp: Path) -> dict:
    return {"dir": tmp / "new", "keep": None}


# ---------------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    setup: Callable[[Path], dict]
    argv: list[str]             # "{dir}", "{a}", "{input}" are filled from the setup
    code: int
    message: str                # must appear in stderr (or stdout for help)
    keep_untouched: bool = True  # the setup's "keep" folder is byte-for-byte unchanged
    skip_if: Callable[[], str | None] = field(default=lambda: None)


def _box2d_installed() -> str | None:
    import importlib.util

    return "Box2D is installed" if importlib.util.find_spec("Box2D") else None


CASES = [
    # ---- 1. data loss
    Case("overwrite-project-with-git", project,
         ["sample", "hard-concrete", "-n", "10", "--out", "{dir}", "--overwrite"], 2,
         "not a relax run directory"),
    Case("overwrite-dot-in-project", project_cwd,
         ["sample", "hard-concrete", "-n", "10", "--out", ".", "--overwrite"], 2,
         "not a relax run directory"),
    Case("compare-out-is-the-sweep", sweep,
         ["compare", "{dir}", "--out", "{dir}", "--overwrite", "--quiet"], 2, "contains the compared"),
    Case("compare-out-is-a-compared-run", sweep,
         ["compare", "{dir}", "--out", "{a}", "--overwrite", "--quiet"], 2, "is the compared run"),
    Case("compare-out-inside-a-compared-run", sweep,
         ["compare", "{dir}", "--out", "{a}/cmp", "--quiet"], 2, "lies inside the compared run"),
    Case("overwrite-run-with-a-subfolder", run_with_subfolder,
         ["sample", "hard-concrete", "-n", "10", "--out", "{dir}", "--overwrite"], 2,
         "not a relax run directory"),
    Case("overwrite-deletes-own-input", run_holding_input,
         ["sample", "correlated-bernoulli", "--probs", "0.2,0.5,0.7", "--correlation", "{input}",
          "-n", "10", "--out", "{dir}", "--overwrite"], 2, "own input"),
    Case("second-writer-overwrite", locked_vae_run,
         ["sample", "hard-concrete", "-n", "10", "--out", "{dir}", "--overwrite"], 2,
         "in use by another relax process (pid"),
    Case("second-writer-resume", locked_vae_run,
         ["train-vae", "--resume", "{dir}"], 2, "in use by another relax process (pid"),
    # ---- 2. crashes and states that lie
    Case("resume-epochs-not-beyond-saved", completed_vae_run,
         ["train-vae", "--resume", "{dir}", "--epochs", "1"], 2, "already trained 1 epochs"),
    Case("resume-completed-without-epochs", completed_vae_run,
         ["train-vae", "--resume", "{dir}"], 2, "--epochs N with N > 1"),
    Case("diverging-lr", nothing,
         ["train-vae", "--method", "gumbel-softmax", "--epochs", "2", "--lr", "1e30", "--out",
          "{dir}", "--dataset", "synthetic", "--hidden", "32", "--eval-samples", "2", "--device",
          "cpu", "--threads", "1", "--quiet"], 1, "learning rate (--lr 1e+30) is probably too large",
         keep_untouched=False),
    Case("corrupted-vae-checkpoint", corrupted_vae_checkpoint,
         ["train-vae", "--resume", "{dir}"], 2, "checkpoint.pt' is corrupted"),
    Case("corrupted-reinforce-checkpoint", corrupted_reinforce_checkpoint,
         ["reinforce", "--resume", "{dir}", "--quiet"], 2, "checkpoint.pt' is corrupted"),
    Case("resume-without-original-data", resume_without_data,
         ["train-vae", "--resume", "{dir}", "--epochs", "2", "--quiet"], 2, "is not a directory"),
    Case("truncated-gz", truncated_download,
         ["train-vae", "--method", "gumbel-softmax", "--dataset", "mnist", "--data-dir", "{dir}",
          "--out", "{dir}/../run", "--quiet"], 2, "train-images-idx3-ubyte.gz is truncated"),
    Case("seed-too-large", nothing,
         ["sample", "hard-concrete", "--seed", str(2**70), "--out", "{dir}"], 2, "--seed"),
    Case("negative-seed", nothing,
         ["bridge", "--seed", "-1", "--out", "{dir}"], 2, "--seed"),
    Case("missing-box2d", nothing,
         ["reinforce", "--env", "LunarLander-v3", "--out", "{dir}"], 2, "gymnasium[box2d]",
         skip_if=_box2d_installed),
    # ---- 3. silent wrong results
    Case("latent-dim-0", nothing,
         ["train-vae", "--method", "gumbel-softmax", *TINY_VAE, "--latent-dim", "0", "--out", "{dir}"],
         2, "--latent-dim must be >= 1"),
    Case("k-0", nothing,
         ["train-vae", "--method", "topk", *TINY_VAE, "--categories", "5", "--k", "0", "--out",
          "{dir}"], 2, "--k must be in 1..4"),
    Case("categories-0", nothing,
         ["train-vae", "--method", "gumbel-softmax", *TINY_VAE, "--categories", "0", "--out",
          "{dir}"], 2, "--categories must be >= 2"),
    Case("tau-inf", nothing,
         ["train-vae", "--method", "gumbel-softmax", *TINY_VAE, "--tau", "inf", "--out", "{dir}"],
         2, "--tau must be a finite number"),
    Case("lr-nan", nothing,
         ["reinforce", "--lr", "nan", "--out", "{dir}"], 2, "--lr must be a finite number"),
    Case("sample-tau-inf", nothing,
         ["sample", "gumbel-softmax", "--tau", "inf", "--out", "{dir}"], 2, "--tau must be a finite"),
    Case("bridge-dim-without-random", nothing,
         ["bridge", "--dim", "4", "--out", "{dir}"], 2, "--dim sets the number of categories of --random"),
    Case("empty-data-dir", nothing,
         ["train-vae", "--method", "gumbel-softmax", "--dataset", "mnist", "--data-dir", "",
          "--out", "{dir}"], 2, "--data-dir is empty"),
    Case("threads-0", nothing,
         ["sample", "hard-concrete", "--threads", "0", "--out", "{dir}"], 2, "--threads"),
    # ---- 4. first hour
    Case("bare-relax", nothing, [], 2, "Usage: relax"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(case: Case, tmp_path, capsys, monkeypatch):
    reason = case.skip_if()
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    try:
        info = case.setup(tmp_path)
        capsys.readouterr()
        keep = info.get("keep")
        before = snapshot(keep) if keep is not None else None
        status_before = read_status(info["dir"]) if (Path(info["dir"]) / "status").exists() else None
        argv = [a.format(**{k: str(v) for k, v in info.items()}) for a in case.argv]
        code, out, err = cli(argv, capsys)
    finally:
        while _HELD:
            _HELD.pop().release()
    assert code == case.code, (code, err)
    assert case.message in (err + out), err
    assert "Traceback" not in err
    if case.code != 0:  # one line, not a dump
        assert len([line for line in err.splitlines() if line.startswith("error:")]) <= 1, err
    if keep is not None and case.keep_untouched:
        assert snapshot(keep) == before, "files were changed or deleted"
    if "status_after" in info:
        assert read_status(info["dir"]) == info["status_after"]
    elif status_before is not None:
        assert read_status(info["dir"]) == status_before, "the run's status changed"


# ------------------------------------------------------------------------- beyond the table
def test_overwrite_replaces_a_run_directory(tmp_path, capsys):
    r = sample_run(tmp_path / "run")
    (r / "stale.png").write_text("old picture")
    code, _, err = cli(["sample", "hard-concrete", "-n", "10", "--out", r, "--overwrite",
                        "--quiet"], capsys)
    assert code == 0, err
    assert not (r / "stale.png").exists() and read_status(r) == "completed"


def test_empty_folder_and_lock_only_folder_are_usable(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(["bridge", "-n", "100", "--out", tmp_path / "empty", "--quiet"], capsys)[0] == 0
    # a folder left with only the lock file (a run killed before config.json) counts as empty
    (tmp_path / "lockonly").mkdir()
    (tmp_path / "lockonly" / runs.LOCK_FILE).write_text("pid 1 on elsewhere\n")
    assert cli(["bridge", "-n", "100", "--out", tmp_path / "lockonly", "--quiet"], capsys)[0] == 0


def test_compare_beside_its_runs_is_allowed(tmp_path, capsys):
    info = sweep(tmp_path)
    code, _, err = cli(["compare", info["dir"], "--out", info["dir"] / "compare", "--quiet"], capsys)
    assert code == 0, err
    # and again with --overwrite (what the sweep scripts do): the earlier comparison is replaced
    code, _, err = cli(["compare", info["dir"], "--out", info["dir"] / "compare", "--overwrite",
                        "--quiet"], capsys)
    assert code == 0, err
    assert (info["a"] / "summary.json").exists()


def test_lock_dies_with_its_process(tmp_path):
    """A writer killed with SIGKILL leaves no stale lock: the OS drops it."""
    r = tmp_path / "run"
    r.mkdir()
    code = ("import sys, time; from relaxcli.runs import RunLock; "
            f"lock = RunLock.acquire({str(r)!r}); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert proc.stdout.readline().strip() == b"locked"
        holder = runs.is_locked(r)
        assert holder is not None and f"pid {proc.pid}" in holder
        with pytest.raises(runs.RunLocked, match=f"pid {proc.pid}"):
            runs.RunLock.acquire(r)
    finally:
        proc.kill()
        proc.wait()
    assert runs.is_locked(r) is None
    runs.RunLock.acquire(r).release()


def test_sigterm_marks_interrupted_exit_143_and_resumes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaxcli.cli", "train-vae", "--method", "gumbel-softmax",
         "--epochs", "400", "--out", str(out), *TINY_VAE],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait for the first saved epoch
            if (out / "checkpoint.pt").exists():
                break
            time.sleep(0.2)
        assert (out / "checkpoint.pt").exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert read_status(out) == "interrupted"
    assert "resume with: relax train-vae --resume" in err and "Traceback" not in err
    assert runs.is_locked(out) is None
    # the interrupted run continues (a few more epochs are enough to show it)
    done = json.loads((out / "config.json").read_text())["options"]["epochs"]
    assert done == 400
    res = subprocess.run([sys.executable, "-m", "relaxcli.cli", "train-vae", "--resume", str(out),
                          "--epochs", str(_saved_epoch(out) + 1), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert read_status(out) == "completed"


def _saved_epoch(path: Path) -> int:
    import torch

    return int(torch.load(path / "checkpoint.pt", weights_only=False)["epoch"])


def test_finite_but_diverging_training_is_not_silent(tmp_path, capsys):
    """--lr 1e10 now stays finite (input coding x, issue 12) with an absurd -ELBO: a warning line."""
    code, _, err = cli(["train-vae", "--method", "gumbel-softmax", "--epochs", "1", "--lr", "1e10",
                        "--out", tmp_path / "run", "--dataset", "synthetic", "--hidden", "32",
                        "--eval-samples", "2", "--device", "cpu", "--threads", "1"], capsys)
    assert code in (0, 1), err
    assert "probably too large" in err


def test_completed_run_asked_for_more_epochs_continues(tmp_path, capsys):
    r = vae_run(tmp_path / "run", epochs=1)
    code, _, err = cli(["train-vae", "--resume", r, "--epochs", "2", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((r / "summary.json").read_text())["epochs"] == 2
    assert read_status(r) == "completed"


def test_diverged_run_keeps_its_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    """A loss that turns NaN in epoch 2 stops the run; epoch 1's checkpoint is what remains."""
    import torch

    from relaxcli.commands import vae

    r = tmp_path / "run"
    calls = {"n": 0}
    real = vae.VAE.encode

    def encode(self, x):  # training-mode calls: epoch 0's evaluation, 2 per epoch after it
        z = real(self, x)
        if self.training:
            calls["n"] += 1
            if calls["n"] >= 4:  # the first batch of epoch 2
                return z * float("nan")
        return z

    monkeypatch.setattr(vae.VAE, "encode", encode)
    code, _, err = cli(["train-vae", "--method", "gumbel-softmax", "--epochs", "3", "--out", r,
                        "--batch-size", "128", *TINY_VAE], capsys)
    assert code == 1 and "epoch 2" in err and "checkpoint of epoch 1 is kept" in err, err
    assert read_status(r) == "failed"
    assert torch.load(r / "checkpoint.pt", weights_only=False)["epoch"] == 1


# ------------------------------------------------------------------------- large inputs (sample)
def _png_width(path: Path) -> int:
    import struct

    return struct.unpack(">I", path.read_bytes()[16:20])[0]


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".csv"])
def test_sample_parameters_from_a_file(tmp_path, capsys, suffix):
    import torch

    logits = np.array([0.1, -0.3, 0.7, 0.0, 1.2])
    f = tmp_path / f"logits{suffix}"
    if suffix == ".npy":
        np.save(f, logits)
    elif suffix == ".pt":
        torch.save(torch.tensor(logits), f)
    else:
        f.write_text("\n".join(f"{v}" for v in logits) + "\n")  # one value per line
    code, _, err = cli(["sample", "gumbel-softmax", "--logits", f, "-n", "200", "--out",
                          tmp_path / "run", "--json"], capsys)
    assert code == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert np.allclose(cfg["options"]["logits"], logits)


def test_sample_bad_parameter_file(tmp_path, capsys):
    (tmp_path / "p.csv").write_text("0.2,zero,0.3\n")
    code, _, err = cli(["sample", "gumbel-softmax", "--probs", tmp_path / "p.csv", "--out",
                        tmp_path / "run"], capsys)
    assert code == 2 and "cannot read" in err and "p.csv" in err
    code, _, err = cli(["sample", "gumbel-softmax", "--probs", tmp_path / "missing.npy"], capsys)
    assert code == 2 and "not an existing file" in err


def test_sample_topk_large_k_is_an_estimate_with_errors_and_small_pictures(tmp_path, capsys):
    f = tmp_path / "logits.npy"
    np.save(f, np.random.default_rng(0).normal(size=1000))
    code, out, err = cli(["sample", "topk", "--logits", f, "-n", "300", "--out", tmp_path / "run",
                          "--json"], capsys)
    assert code == 0, err
    s = json.loads(out)
    assert s["inclusion_probs"] == "monte-carlo" and "memory bound" in s["inclusion_probs_note"]
    rec = s["coordinates"][0]
    assert "p_included_exact" not in rec and rec["p_included_se"] >= 0
    # pictures keep a fixed size whatever K is (the most likely categories only)
    for name in ("inclusion.png", "category_means.png"):
        assert _png_width(tmp_path / "run" / name) <= 3000
    # a small K stays exact
    code, out, err = cli(["sample", "topk", "-n", "300", "--out", tmp_path / "small", "--json"],
                         capsys)
    assert json.loads(out)["inclusion_probs"] == "exact"


def test_sample_memory_bound(tmp_path, capsys):
    from relaxcli.commands import sample

    f = tmp_path / "logits.npy"
    np.save(f, np.zeros(5000))
    code, _, err = cli(["sample", "gumbel-softmax", "--logits", f, "-n", "10000", "--out",
                        tmp_path / "run"], capsys)
    assert code == 2 and "memory bound" in err and "-n 4000" in err
    assert sample._fit_memory(None, 5000) == (4000, sample._fit_memory(None, 5000)[1])
    assert "lowered from 10000 to 4000" in sample._fit_memory(None, 5000)[1]
    assert sample._fit_memory(None, 3) == (10000, None)


# ------------------------------------------------------------------------- silent wrong results
def _hand_run(path: Path, options: dict, value: float, seed: int) -> None:
    run = runs.create_run("train-vae", "gumbel-softmax", options, out=path, seed=seed)
    run.finish({"method": "gumbel-softmax", "test_neg_elbo": value, "test_iw_nll": value - 1,
                "seconds_per_epoch": 1.0})
    run.release()


def test_compare_never_averages_runs_with_different_settings(tmp_path, capsys):
    """A 1-epoch and a 5-epoch run are two groups, and a note says why; seeds still average."""
    for seed in (0, 1):
        _hand_run(tmp_path / "s" / f"e1-{seed}", {"epochs": 1, "lr": 1e-3, "seed": seed,
                                                  "threads": 1 + seed}, 150.0 + seed, seed)
    _hand_run(tmp_path / "s" / "e5", {"epochs": 5, "lr": 1e-3, "seed": 0, "threads": 2}, 110.0, 0)
    code, out, err = cli(["compare", tmp_path / "s", "--out", tmp_path / "cmp", "--json"], capsys)
    assert code == 0, err
    s = json.loads(out)
    assert "epochs" in s["group_by"]
    groups = {g["key"]["epochs"]: g["n"] for g in s["groups"]}
    assert groups == {1: 2, 5: 1}  # seed and threads differ inside a group: averaged over
    assert any("also grouped by epochs" in n for n in s["notes"])
    assert "also grouped by epochs" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_compare_huge_values_do_not_overflow(tmp_path, capsys):
    _hand_run(tmp_path / "s" / "a", {"seed": 0}, 1e200, 0)
    _hand_run(tmp_path / "s" / "b", {"seed": 1}, -1e200, 1)
    code, _, err = cli(["compare", tmp_path / "s", "--out", tmp_path / "cmp", "--quiet"], capsys)
    assert code == 0, err


def test_bridge_negative_kl_is_labelled_noise(monkeypatch):
    import torch

    from relaxcli.commands import bridge

    monkeypatch.setattr(bridge.lb, "kl_monte_carlo",
                        lambda p, q, num_samples: (torch.tensor(-0.002), torch.tensor(0.003)))
    rec = bridge._kl(None, None, 1000)
    assert "noise" in rec["note"]
    text = bridge.kl_text("KL(Dir || LN)", rec)
    assert "indistinguishable from 0" in text and "never negative" in text
    assert "= -" not in text
    rec = {"estimate": -1.0, "se": 0.01, "num_samples": 10}
    assert "unreliable" in bridge.kl_text("KL", rec)
    rec = {"estimate": float("nan"), "se": float("nan"), "num_samples": 10}
    assert "not estimable" in bridge.kl_text("KL", rec)
    assert bridge.kl_text("KL", {"estimate": 0.5, "se": 0.01}).startswith("KL = 0.5000 +/- 0.0100")


# ------------------------------------------------------------------------- a user's first hour
def test_without_a_terminal_progress_and_result_lines_reach_the_log(tmp_path):
    """stderr to a file (a cluster job): the per-epoch results and the run directory are there;
    --quiet leaves only errors."""
    env = {**os.environ, "PYTHONPATH": SRC}
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "relaxcli.cli", "train-vae", "--method",
                            "gumbel-softmax", "--epochs", "2", "--out", str(tmp_path / "run"),
                            *[a for a in TINY_VAE if a != "--quiet"]],
                           env=env, stderr=f, stdout=subprocess.PIPE, timeout=300, check=False)
    assert r.returncode == 0
    text = log.read_text()
    assert "epoch 1: train -ELBO" in text and "epoch 2: train -ELBO" in text
    assert f"{tmp_path / 'run'}" in text and "\x1b[" not in text  # the run folder, no colour codes
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["threads"] == 1 and cfg["options"]["threads"] == 1
    r = subprocess.run([sys.executable, "-m", "relaxcli.cli", "sample", "hard-concrete", "-n", "50",
                        "--out", str(tmp_path / "s"), "--quiet"], env=env, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0 and r.stderr == ""


def test_plain_progress_lines(monkeypatch, capsys):
    from relaxcli import console

    clock = {"t": 0.0}
    monkeypatch.setattr(console.time, "monotonic", lambda: clock["t"])
    bar = console.PlainProgress("epoch 1/3", total=100)
    for _ in range(100):
        clock["t"] += 1.0
        bar.advance(1, info="-ELBO 120.5")
    lines = capsys.readouterr().err.splitlines()
    # one line per further tenth of the work, at most every 10 s: 100 s -> about 10 lines
    assert 5 <= len(lines) <= 11
    assert lines[0].startswith("epoch 1/3: ") and "(-ELBO 120.5)" in lines[0] and "left]" in lines[0]


def test_threads_default_and_validation(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runs.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= runs.default_threads() <= 4
    import torch

    before = torch.get_num_threads()
    try:
        assert runs.set_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(runs.BadInput):
            runs.set_threads(0)
    finally:
        torch.set_num_threads(before)
