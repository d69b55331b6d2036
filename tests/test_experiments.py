"""experiments/: every sweep's DRY_RUN prints valid `relax` commands, the shared runner counts
failures and still compares, the Slurm template runs line i, and grad_bench.sh's SMOKE mode
goes end to end to a comparison."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from relaxcli.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
# common.sh is the sweeps' library; gpu_session.sh drives other sweeps on a lent GPU machine
SWEEPS = sorted(p.name for p in EXP.glob("*.sh") if p.name not in ("common.sh", "gpu_session.sh"))

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the sweeps are bash scripts")


def run_script(script: Path | str, env: dict, cwd: Path, timeout: float = 60,
               args: tuple = ()) -> subprocess.CompletedProcess:
    """Run a script in its own process group, so that a timeout ends its children too."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.Popen(["bash", str(script), *args], env=full, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def parse_relax_line(line: str) -> None:
    """Parse one printed command with the real CLI's parser (option names and types), no run."""
    import typer.main

    words = shlex.split(line)
    assert words[0] == "relax", line
    group = typer.main.get_command(app)
    assert words[1] in group.commands, f"no command {words[1]!r}: {line}"
    cmd = group.commands[words[1]]
    cmd.make_context(words[1], words[2:])  # raises a click UsageError on a bad option or value


def test_there_are_sweeps():
    assert "grad_bench.sh" in SWEEPS


@pytest.mark.parametrize("script", SWEEPS)
def test_every_sweep_uses_common_sh(script):
    text = (EXP / script).read_text()
    assert "common.sh" in text and "run_sweep" in text, (
        f"{script} must source common.sh and end with run_sweep (DRY_RUN, JOBS, relax compare)")


@pytest.mark.parametrize("script", SWEEPS)
@pytest.mark.parametrize("smoke", ["0", "1"])
def test_dry_run_prints_one_valid_command_per_line(script, smoke, tmp_path):
    if "run_sweep" not in (EXP / script).read_text():
        pytest.fail(f"{script} does not use common.sh's run_sweep; DRY_RUN would run it for real")
    out = tmp_path / "sweep out"  # a space: the printed commands must quote it
    env = {"DRY_RUN": "1", "SMOKE": smoke, "OUT": str(out)}
    if smoke == "1":  # an explicit method list also exercises METHODS (and skips a slow lookup)
        env["METHODS"] = "gumbel-softmax"
    r = run_script(EXP / script, env, tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(ln.strip() for ln in lines)
    for line in lines:
        parse_relax_line(line)
        words = shlex.split(line)
        assert words[words.index("--out") + 1].startswith(str(out) + "/"), line
        if words[1] in ("train-vae", "reinforce"):  # a sweep started again continues its runs
            assert "--resume-existing" in words and "--overwrite" not in words, line
    outs = [shlex.split(ln)[shlex.split(ln).index("--out") + 1] for ln in lines]
    assert len(set(outs)) == len(outs), "two runs would share one --out"
    assert not out.exists(), "DRY_RUN must not create anything"
    assert "relax compare" in r.stderr


def test_sweep_env_vars(tmp_path):
    r = run_script(EXP / "grad_bench.sh", {"DRY_RUN": "1", "SEEDS": "3 4 5", "OUT": "o",
                                           "PROBLEMS": "bernoulli-multi",
                                           "METHODS": "reinforce arm", "DRAWS": "7"}, tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [shlex.split(ln)[shlex.split(ln).index("--seed") + 1] for ln in lines] == ["3", "4", "5"]
    assert all("--methods reinforce,arm" in ln and "--draws 7" in ln and "--problem bernoulli-multi"
               in ln for ln in lines)
    bad = run_script(EXP / "grad_bench.sh", {"DRY_RUN": "1", "JOBS": "zero"}, tmp_path)
    assert bad.returncode == 2 and "JOBS" in bad.stderr


def test_run_sweep_parallel_counts_failures_and_still_compares(tmp_path):
    """common.sh with a stand-in CLI: JOBS at a time, logs per run, failures counted, compare last."""
    fake = tmp_path / "fake-relax"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$CALLS"\n'
                    'case "$1" in fail) exit 3;; esac\nexit 0\n')
    fake.chmod(0o755)
    sweep = tmp_path / "sweep.sh"
    sweep.write_text(f'source {shlex.quote(str(EXP / "common.sh"))}\nsweep_init test\n'
                     'for i in 1 2 3; do emit ok --n "$i" --out "$OUT/r$i"; done | '
                     '{ cat; emit fail --out "$OUT/bad"; } | run_sweep --group-by method\n')
    calls = tmp_path / "calls.txt"
    out = tmp_path / "o"
    r = run_script(sweep, {"RELAX": str(fake), "CALLS": str(calls), "JOBS": "3",
                           "OUT": str(out)}, tmp_path)
    assert r.returncode == 1, r.stderr  # one run failed
    assert "1 of 4 runs failed" in r.stderr
    made = calls.read_text().splitlines()
    # JOBS > 1: one torch thread per run, so the parallel runs do not fight over the cores
    assert sorted(made[:4]) == sorted([f"ok --n {i} --out {out}/r{i} --threads 1" for i in (1, 2, 3)]
                                      + [f"fail --out {out}/bad --threads 1"])
    assert made[4] == f"compare {out} --out {out}/compare --overwrite --group-by method"
    (start,) = (out / "logs").iterdir()  # one folder per start of the sweep
    assert (start / "commands.txt").read_text().count("\n") == 4
    assert sorted(p.name for p in start.glob("*.failed")) == ["4.failed"]
    assert sorted(p.name for p in start.glob("*.log")) == [f"{i}.log" for i in (1, 2, 3, 4)]
    (start / "1.log").write_text("the first start's log\n")
    # started again on the same OUT (as the reproduction scripts are, to resume): a new folder,
    # the first start's logs and failure marks kept, failures counted for this start only
    r = run_script(sweep, {"RELAX": str(fake), "CALLS": str(calls), "JOBS": "1",
                           "OUT": str(out)}, tmp_path)
    assert r.returncode == 1 and "1 of 4 runs failed" in r.stderr, r.stderr
    starts = sorted((out / "logs").iterdir())
    assert len(starts) == 2 and start in starts
    assert (start / "1.log").read_text() == "the first start's log\n"
    assert (start / "4.failed").exists()
    (second,) = [s for s in starts if s != start]
    assert sorted(p.name for p in second.glob("*.failed")) == ["4.failed"]
    assert str(second) in r.stderr  # the sweep says where this start's logs are


def test_submit_hands_the_commands_to_relax_submit(tmp_path):
    """SUBMIT=slurm: common.sh pipes the commands into `relax submit -` with the sweep's OUT,
    SUBMIT_ARGS and the compare's --group-by (a stand-in CLI records what it got)."""
    fake = tmp_path / "fake-relax"
    fake.write_text('#!/usr/bin/env bash\necho "$*" > "$CALLS"\ncat > "$CALLS.stdin"\n')
    fake.chmod(0o755)
    sweep = tmp_path / "sweep.sh"
    sweep.write_text(f'source {shlex.quote(str(EXP / "common.sh"))}\nsweep_init test\n'
                     'for i in 1 2; do emit ok --n "$i" --out "$OUT/r$i"; done | '
                     'run_sweep --group-by method --metric x\n')
    calls, out = tmp_path / "calls.txt", tmp_path / "o"
    r = run_script(sweep, {"RELAX": str(fake), "CALLS": str(calls), "OUT": str(out),
                           "SUBMIT": "slurm", "SUBMIT_ARGS": "--partition cpu --time 1:00:00"},
                   tmp_path)
    assert r.returncode == 0, r.stderr
    assert calls.read_text().split() == ["submit", "-", "--executor", "slurm", "--out", str(out),
                                         "--partition", "cpu", "--time", "1:00:00",
                                         "--group-by", "method"]
    assert (tmp_path / "calls.txt.stdin").read_text() == "".join(
        f"{fake} ok --n {i} --out {out}/r{i}\n" for i in (1, 2))
    bad = run_script(EXP / "grad_bench.sh", {"SUBMIT": "pbs"}, tmp_path)
    assert bad.returncode == 2 and "SUBMIT must be slurm or local" in bad.stderr


def test_grad_bench_smoke_end_to_end(tmp_path):
    """SMOKE=1 grad_bench.sh: real runs, then relax compare over them (about 30 s on one core)."""
    relax_bin = Path(sys.executable).with_name("relax")
    env = {"SMOKE": "1", "OUT": str(tmp_path / "gb"), "JOBS": "1",
           "PATH": f"{relax_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = run_script(EXP / "grad_bench.sh", env, tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    cmp_dir = tmp_path / "gb" / "compare"
    summary = json.loads((cmp_dir / "summary.json").read_text())
    assert summary["command"] == "grad-bench" and summary["runs_used"] == 2
    assert summary["skipped"] == []
    rows = {(g["key"]["method"], g["key"]["tau"]): g for g in summary["groups"]}
    assert rows[("reinforce", None)]["n"] == 2  # both seeds in one row
    assert rows[("relaxed-bernoulli", 0.5)]["metrics"]["variance_trace"]["n"] == 2
    md = (cmp_dir / "comparison.md").read_text()
    assert md.startswith("| method | tau | n | ‖bias‖ | tr variance |")
    assert (cmp_dir / "curves.png").stat().st_size > 0


def test_gpu_session_refuses_a_non_empty_out_and_reports_the_environment(tmp_path):
    """gpu_session.sh (run on a lent GPU machine, so tested here on what a CPU can check): it
    refuses an OUT that holds anything, and its first step writes env.txt and session.log."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    r = run_script(EXP / "gpu_session.sh", {"OUT": str(out), "DEVICE": "cpu", "STEPS": "env"}, tmp_path)
    assert r.returncode == 2 and "not empty" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    fresh = tmp_path / "fresh"
    r = run_script(EXP / "gpu_session.sh", {"OUT": str(fresh), "DEVICE": "cpu", "STEPS": "env"}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torch" in (fresh / "env.txt").read_text() and "done" in (fresh / "session.log").read_text()


def test_jang_sweep_picks_latents_from_the_registry_and_continues_an_earlier_sweep(tmp_path):
    """reproduce_jang2017.sh: each method gets the latent its registry record serves (200 Bernoulli
    units for muprop, 200 two-class categoricals for gumbel-softmax, none on 20x10 for a
    Bernoulli-only method), Table 1's model by default, and each line continues what an earlier
    start left in its folder (--resume-existing)."""
    out = tmp_path / "o"
    env = {"DRY_RUN": "1", "OUT": str(out), "SCHEDULES": "1e-4:1000", "RELAX": "relax",
           "METHODS": "gumbel-softmax muprop straight-through-bernoulli", "LRS": "1e-3"}
    r = run_script(EXP / "reproduce_jang2017.sh", env, tmp_path)
    assert r.returncode == 0, r.stderr
    runs = {shlex.split(ln)[shlex.split(ln).index("--out") + 1]: ln for ln in r.stdout.splitlines()}
    rel = {str(Path(k).relative_to(out)): v for k, v in runs.items()}
    assert sorted(rel) == ["gumbel-softmax/200x2/r1e-4-N1000/seed-0", "gumbel-softmax/20x10/r1e-4-N1000/seed-0",
                           "muprop/200x2/no-temperature/seed-0", "muprop/20x10/no-temperature/seed-0",
                           "straight-through-bernoulli/200x2/no-temperature/seed-0"]
    assert "--latent-family bernoulli --latent-dim 200 " in rel["muprop/200x2/no-temperature/seed-0"]
    assert "--latent-dim 200 --categories 2" in rel["gumbel-softmax/200x2/r1e-4-N1000/seed-0"]
    assert "--anneal-rate" not in rel["muprop/20x10/no-temperature/seed-0"]
    assert all("--hidden none --prior learned" in ln for ln in rel.values())
    assert "skip straight-through-bernoulli on 20x10" in r.stderr
    # every line continues its folder itself (train-vae --resume-existing: tests/test_cli_vae.py),
    # so the same line is right whatever an earlier start left there
    assert all(ln.endswith(f"--out {d} --resume-existing --json --quiet") for d, ln in runs.items())
    notebook = run_script(EXP / "reproduce_jang2017.sh", {**env, "MODEL": "notebook"}, tmp_path)
    assert all("--hidden 512,256 --prior uniform" in ln for ln in notebook.stdout.splitlines())
    bad = run_script(EXP / "reproduce_jang2017.sh", {**env, "MODEL": "deep"}, tmp_path)
    assert bad.returncode == 2 and "MODEL" in bad.stderr


def test_jang_sweep_searches_the_papers_optimiser_and_learning_rates(tmp_path):
    """OPTIMIZER=sgd LRS=...: one run per learning rate, each in its own folder named by optimiser
    and rate, with --optimizer and --lr given; Adam at 1e-3 keeps the first sweeps' folder names
    (so their finished runs are still found); the compare groups by optimiser and rate."""
    out = tmp_path / "o"
    env = {"DRY_RUN": "1", "OUT": str(out), "SCHEDULES": "1e-4:1000", "RELAX": "relax",
           "METHODS": "gumbel-softmax", "LATENTS": "20x10", "OPTIMIZER": "sgd", "LRS": "1e-3,3e-3"}
    r = run_script(EXP / "reproduce_jang2017.sh", env, tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    outs = [str(Path(shlex.split(ln)[shlex.split(ln).index("--out") + 1]).relative_to(out)) for ln in lines]
    assert outs == ["gumbel-softmax/20x10/r1e-4-N1000-sgd-lr1e-3/seed-0",
                    "gumbel-softmax/20x10/r1e-4-N1000-sgd-lr3e-3/seed-0"]
    assert "--optimizer sgd --lr 1e-3 " in lines[0] and "--optimizer sgd --lr 3e-3 " in lines[1]
    assert "optimizer,lr" in r.stderr and "val_neg_elbo" in r.stderr
    # the default: Adam at the grid's two largest rates
    adam = run_script(EXP / "reproduce_jang2017.sh", {**env, "OPTIMIZER": "", "LRS": ""},
                      tmp_path).stdout.splitlines()
    assert [shlex.split(ln)[shlex.split(ln).index("--out") + 1] for ln in adam] == [
        f"{out}/gumbel-softmax/20x10/r1e-4-N1000/seed-0", f"{out}/gumbel-softmax/20x10/r1e-4-N1000-adam-lr3e-3/seed-0"]
    assert [ln.split("--optimizer ")[1].split()[:3] for ln in adam] == [
        ["adam", "--lr", "1e-3"], ["adam", "--lr", "3e-3"]]
    bad = run_script(EXP / "reproduce_jang2017.sh", {**env, "OPTIMIZER": "rmsprop"}, tmp_path)
    assert bad.returncode == 2 and "OPTIMIZER" in bad.stderr
    for lrs in ("fast", "-1e-3", "1e-3,x"):
        bad = run_script(EXP / "reproduce_jang2017.sh", {**env, "LRS": lrs}, tmp_path)
        assert bad.returncode == 2 and "LRS" in bad.stderr and not bad.stdout, lrs


def test_methods_sweep_paper_protocol_lists_seed_by_seed_and_continues(tmp_path):
    """vae_methods.sh: PROTOCOL=paper gives every method Table 1's model and protocol (a linear VAE,
    learned prior, validation selection, 1000-sample bound, 91 epochs, r = 1e-4 every 1000 steps);
    the runs come seed by seed, each line continuing what an earlier start left in its folder
    (--resume-existing)."""
    out = tmp_path / "o"
    env = {"DRY_RUN": "1", "OUT": str(out), "RELAX": "relax", "PROTOCOL": "paper",
           "SEEDS": "0 1", "METHODS": "gumbel-softmax,arm"}
    r = run_script(EXP / "vae_methods.sh", env, tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    order = [str(Path(shlex.split(ln)[shlex.split(ln).index("--out") + 1]).relative_to(out))
             for ln in lines]
    assert order == ["gumbel-softmax/seed-0", "arm/seed-0", "gumbel-softmax/seed-1", "arm/seed-1"]
    paper = ("--hidden none --prior learned --binarize static --anneal-rate 1e-4 --anneal-every 1000 "
             "--val-size 5000 --eval-samples 1000 --epochs 91 ")
    assert all(paper in ln for ln in lines), lines
    assert "--metric test_iw_nll," in r.stderr  # the compare shows the bound, KL and active units
    notebook = run_script(EXP / "vae_methods.sh", {**env, "PROTOCOL": "notebook"}, tmp_path)
    assert notebook.returncode == 0 and all(
        "--hidden" not in ln and "--epochs 50 " in ln for ln in notebook.stdout.splitlines())
    assert all(ln.endswith(" --resume-existing --json --quiet") for ln in lines)
    smoke = run_script(EXP / "vae_methods.sh", {**env, "SMOKE": "1"}, tmp_path).stdout.splitlines()
    assert smoke and all("--val-size 32 --eval-samples 5 " in ln for ln in smoke)
    bad = run_script(EXP / "vae_methods.sh", {**env, "PROTOCOL": "deep"}, tmp_path)
    assert bad.returncode == 2 and "PROTOCOL" in bad.stderr


def test_jang2017_table_chooses_each_row_on_validation_not_test(tmp_path):
    """jang2017_table.py: per (model, latent, method) the setting with the lowest mean validation
    -ELBO is the row (here the one with the worse test bound), seeds averaged, an unfinished run
    and a run without a validation split left out, a 200 x 2 categorical named 200 Bernoulli."""
    def run(name, lr, seed, val, iw, status="completed", val_size=5000):
        d = tmp_path / "sweep" / name / f"seed-{seed}"
        d.mkdir(parents=True)
        options = {"method": "gumbel-softmax", "hidden": "none", "prior": "learned", "latent_dim": 200,
                   "categories": 2, "latent_family": "categorical", "lr": lr, "optimizer": "adam",
                   "anneal_rate": 1e-4, "anneal_every": 1000, "tau": 1.0, "tau_min": 0.5,
                   "val_size": val_size, "seed": seed}
        (d / "config.json").write_text(json.dumps({"command": "train-vae", "options": options}))
        (d / "status").write_text(status + "\n")
        (d / "summary.json").write_text(json.dumps({
            "val_neg_elbo": val, "test_iw_nll": iw, "test_neg_elbo": iw + 10, "test_kl": 30.0,
            "test_active_vars": 200, "latent_vars": 200, "test_mean_max_prob": 0.9,
            "selected_epoch": 91, "train_cpu_seconds_per_epoch": 5.0, "eval_samples": 1000}))

    run("a", 1e-3, 0, val=120.0, iw=104.0)
    run("a", 1e-3, 1, val=121.0, iw=106.0)   # setting a: mean val 120.5, mean IW 105.0
    run("b", 3e-3, 0, val=122.0, iw=100.0)   # better test bound, worse validation: not chosen
    run("c", 1e-2, 0, val=90.0, iw=90.0, status="interrupted")
    run("d", 3e-2, 0, val=80.0, iw=80.0, val_size=0)
    r = subprocess.run([sys.executable, str(EXP / "jang2017_table.py"), str(tmp_path / "sweep")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (row,) = [ln for ln in r.stdout.splitlines() if "gumbel-softmax" in ln]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "200 Bernoulli" and cells[3] == "105.0"
    assert cells[4] == "adam 0.001, r = 0.0001, N = 1000 (2)" and cells[5] == "2"
    assert cells[6] == "105.00 +- 1.41 (m = 1000)" and cells[7] == "+0.00"
    gone = subprocess.run([sys.executable, str(EXP / "jang2017_table.py"), str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1 and "no such folder" in gone.stderr


def _kl_decomposition_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kl_decomposition", EXP / "kl_decomposition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kl_decomposition_matches_enumeration_and_its_limits():
    """kl_decomposition.py: on 6 images with 3 categorical variables of 3 classes (27 codes), the
    mutual information estimate lies within 4 standard errors of the exact one (q(z) enumerated),
    the KL and per-variable KL are exact, the total correlation is what is left; a posterior that
    ignores the image has no mutual information, distinct one-hot posteriors have log N."""
    import itertools
    import math

    import torch

    kd = _kl_decomposition_module()
    g = torch.Generator().manual_seed(0)
    log_q = torch.log_softmax(3 * torch.randn(6, 3, 3, generator=g, dtype=torch.float64), -1)
    log_p = torch.log_softmax(torch.randn(3, 3, generator=g, dtype=torch.float64), -1)
    codes = torch.tensor(list(itertools.product(range(3), repeat=3)))  # (27, 3)
    log_qz = log_q[:, torch.arange(3), codes].sum(-1)  # log q(z | x_n), (6, 27)
    log_agg = torch.logsumexp(log_qz, 0) - math.log(6)
    log_pz = log_p[torch.arange(3), codes].sum(-1)
    exact_kl = (log_qz.exp() * (log_qz - log_pz)).sum(1).mean().item()
    exact_mi = (log_qz.exp() * (log_qz - log_agg)).sum(1).mean().item()
    marg = torch.logsumexp(log_q, 0) - math.log(6)  # (3, 3)
    log_prod = marg[torch.arange(3), codes].sum(-1)
    exact_tc = (log_agg.exp() * (log_agg - log_prod)).sum().item()
    r = kd.decompose(log_q, log_p, samples=2000, generator=torch.Generator().manual_seed(1), chunk=4)
    assert r["kl"] == pytest.approx(exact_kl, rel=1e-9)
    assert abs(r["mutual_info"] - exact_mi) < 4 * r["mutual_info_se"], (r, exact_mi)
    assert r["dimwise_kl"] == pytest.approx((marg.exp() * (marg - log_p)).sum().item(), rel=1e-9)
    assert abs(r["total_correlation"] - exact_tc) < 4 * r["mutual_info_se"]
    assert r["mutual_info"] <= r["log_n"] and r["log_n"] == pytest.approx(math.log(6))
    same = kd.decompose(log_q[:1].expand(6, 3, 3), log_p, samples=10)
    assert abs(same["mutual_info"]) < 1e-9 and abs(same["total_correlation"]) < 1e-9
    onehot = torch.full((6, 3, 3), -1e4, dtype=torch.float64)
    for n, code in enumerate(codes[[0, 5, 9, 13, 20, 26]]):
        onehot[n, torch.arange(3), code] = 0.0
    assert kd.decompose(onehot, log_p)["mutual_info"] == pytest.approx(math.log(6))


def test_kl_decomposition_of_a_run(tmp_path):
    """The script on a tiny synthetic train-vae run: its KL is the run's test KL; a run of a
    relaxed-only method is refused (exit 2, one line)."""
    from relaxcli.commands import vae
    from relaxcli.console import Reporter

    small = {"dataset": "synthetic", "hidden": "16", "eval_samples": 2, "device": "cpu", "epochs": 1}
    s = vae.run_train_vae(vae.TrainVaeOptions(method="gumbel-softmax", out=tmp_path / "gs", latent_dim=4,
                                              categories=3, prior="learned", **small), Reporter(quiet=True))
    vae.run_train_vae(vae.TrainVaeOptions(method="logistic-normal", out=tmp_path / "ln", latent_dim=2,
                                          categories=3, **small), Reporter(quiet=True))
    script = [sys.executable, str(EXP / "kl_decomposition.py")]
    r = subprocess.run([*script, str(tmp_path / "gs"), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["kl"] == pytest.approx(s["test_kl"], rel=1e-4) and row["latent"] == "4 x 3"
    bad = subprocess.run([*script, str(tmp_path / "ln")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no discrete posterior" in bad.stderr


def test_reinforce_seeds_lines_continue_their_runs_and_never_overwrite(tmp_path):
    """reinforce_seeds.sh started again on the same OUT must not replace an earlier run: each
    line is `relax reinforce --resume-existing` (skip a completed run, resume an interrupted one,
    refuse one made with other options: tests/test_cli_reinforce.py), never --overwrite."""
    r = run_script(EXP / "reinforce_seeds.sh", {"DRY_RUN": "1", "SEEDS": "0 1", "OUT": "o",
                                                "CONFIGS": "reinforce:learned muprop"}, tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and not any("--overwrite" in ln for ln in lines)
    assert all(ln.startswith("relax reinforce ") and " --resume-existing " in f"{ln} " for ln in lines)
    assert {shlex.split(ln)[shlex.split(ln).index("--out") + 1] for ln in lines} == {
        "o/reinforce-learned/seed0", "o/reinforce-learned/seed1", "o/muprop-critic/seed0",
        "o/muprop-critic/seed1"}
