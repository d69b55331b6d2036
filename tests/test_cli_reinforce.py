"""`relax reinforce`: files, learning, determinism, exact resume, bad input, RELAX unbiasedness.

Short runs only (CartPole-v1 learns within ~100 episodes; Acrobot-v1 episodes of an untrained
policy last 500 steps, so Acrobot runs are a few episodes).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from relaxcli.commands import reinforce as R
from relaxcli.estimators.conditional import categorical_relaxed_pair

SUMMARY_KEYS = {"env", "estimator", "baseline", "episodes", "env_steps", "episodes_to_solve",
                "steps_to_solve", "eval_return_greedy", "eval_return_stochastic", "wall_seconds"}



def returns_of(run_dir: Path) -> list[float]:
    with open(run_dir / "returns.csv", newline="") as f:
        return [float(r["return"]) for r in csv.DictReader(f)]


def comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "run_dir")}


def test_cartpole_writes_files_and_learns(tmp_path, run_cli):
    out = tmp_path / "cp"
    code, stdout, _ = run_cli(["reinforce", "--env", "CartPole-v1", "--episodes", "120",
                               "--num-envs", "4", "--lr", "0.01", "--eval-episodes", "4",
                               "--seed", "1", "--device", "cpu", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(stdout)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["env"] == "CartPole-v1" and summary["episodes"] == 120
    for name in ("returns.csv", "curve.png", "policy.pt", "metrics.jsonl", "summary.json",
                 "config.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert (out / "status").read_text().startswith("completed")
    returns = returns_of(out)
    assert len(returns) == 120
    first, last = sum(returns[:20]) / 20, sum(returns[-20:]) / 20
    # a uniform policy lasts ~22 steps on CartPole; learning more than doubles it here
    assert last > 2 * first, (first, last)
    updates = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in updates if r["kind"] == "update"]
    assert len(updates) == 30
    assert all(math.isfinite(r["grad_var"]) and r["grad_var"] >= 0 for r in updates)
    assert all(0 <= r["entropy"] <= math.log(2) + 1e-6 for r in updates)
    policy = torch.load(out / "policy.pt", weights_only=False)
    assert policy["n_actions"] == 2 and policy["obs_dim"] == 4


def test_same_seed_same_returns_and_other_seed_differs(tmp_path, run_cli):
    base = ["reinforce", "--env", "CartPole-v1", "--episodes", "12", "--num-envs", "3",
            "--eval-episodes", "2", "--device", "cpu", "--quiet"]
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        code, _, err = run_cli(base + ["--seed", seed, "--out", str(tmp_path / name)])
        assert code == 0, err
    assert returns_of(tmp_path / "a") == returns_of(tmp_path / "b")
    assert returns_of(tmp_path / "a") != returns_of(tmp_path / "c")


@pytest.mark.parametrize("estimator,baseline", [("reinforce", "value"), ("relax", "mean")])
def test_resume_equals_uninterrupted_run(tmp_path, run_cli, monkeypatch, estimator, baseline):
    args = ["reinforce", "--env", "CartPole-v1", "--episodes", "16", "--num-envs", "2",
            "--estimator", estimator, "--baseline", baseline, "--eval-episodes", "3",
            "--seed", "3", "--device", "cpu", "--json"]
    code, stdout, _ = run_cli(args + ["--out", str(tmp_path / "full")])
    assert code == 0
    full = json.loads(stdout)

    # interrupt the second run while it collects its 5th batch (4 updates done)
    real_collect = R.collect_batch
    calls = {"n": 0}

    def interrupting_collect(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_collect(*a, **k)

    monkeypatch.setattr(R, "collect_batch", interrupting_collect)
    code, _, err = run_cli(args + ["--out", str(tmp_path / "cut")])
    assert code == 130 and "resume with" in err
    assert (tmp_path / "cut" / "status").read_text().startswith("interrupted")
    assert not (tmp_path / "cut" / "summary.json").exists()
    monkeypatch.setattr(R, "collect_batch", real_collect)

    code, stdout, err = run_cli(["reinforce", "--resume", str(tmp_path / "cut"), "--json"])
    assert code == 0, err
    resumed = json.loads(stdout)
    assert comparable(resumed) == comparable(full)
    assert returns_of(tmp_path / "cut") == returns_of(tmp_path / "full")

    def metric_lines(d):
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items()} for r in rows]

    assert metric_lines(tmp_path / "cut") == metric_lines(tmp_path / "full")
    # a completed run cannot be resumed again
    code, _, err = run_cli(["reinforce", "--resume", str(tmp_path / "cut")])
    assert code == 2 and "already completed" in err


def test_acrobot_relax_short_run(tmp_path, run_cli):
    out = tmp_path / "ac"
    code, stdout, err = run_cli(["reinforce", "--episodes", "2", "--num-envs", "2",
                                 "--estimator", "relax", "--baseline", "value",
                                 "--eval-episodes", "1", "--device", "cpu", "--out", str(out),
                                 "--json"])
    assert code == 0, err
    s = json.loads(stdout)
    assert s["env"] == "Acrobot-v1" and s["estimator"] == "relax" and s["episodes"] == 2
    assert s["reward_threshold"] == -100 and s["episodes_to_solve"] is None
    assert -500 <= s["eval_return_greedy"] <= 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    upd = next(r for r in rows if r["kind"] == "update")
    assert math.isfinite(upd["cv_loss"]) and upd["cv_tau"] > 0
    assert (out / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize("args,needle", [
    (["--env", "CartPol-v1"], "Did you mean 'CartPole-v1'"),
    (["--env", "Pendulum-v1"], "not Discrete"),
    (["--env", "FrozenLake-v1"], "not a vector"),
    (["--gamma", "-0.1"], "--gamma must be in [0, 1]"),
    (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    (["--estimator", "rebar"], "--estimator must be one of reinforce, relax"),
    (["--baseline", "critic"], "--baseline must be one of none, mean, value"),
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--lr", "0"], "--lr must be a positive number"),
])
def test_bad_options_exit_2_before_writing(tmp_path, run_cli, args, needle):
    out = tmp_path / "bad"
    code, _, err = run_cli(["reinforce", *args, "--out", str(out)])
    assert code == 2
    lines = [x for x in err.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert not out.exists()


def test_resume_of_a_missing_directory_exits_2(tmp_path, run_cli):
    code, _, err = run_cli(["reinforce", "--resume", str(tmp_path / "nope")])
    assert code == 2 and "not a run directory" in err


@pytest.mark.skipif(importlib.util.find_spec("pygame") is not None, reason="pygame is installed")
def test_video_without_pygame_exits_2(tmp_path, run_cli):
    code, _, err = run_cli(["reinforce", "--video", "--out", str(tmp_path / "v")])
    assert code == 2 and "pip install 'relaxcli[render]'" in err


def test_relax_policy_gradient_is_unbiased_on_a_bandit():
    """One-state bandit, K = 3 actions, reward f(a): the RELAX estimate's mean over M draws
    equals the exact gradient d/dtheta sum_a softmax(theta)_a f(a) = p * (f - p.f) within
    4 standard errors per coordinate, with a non-trivial (randomly initialised, untrained)
    control variate whose own terms are O(1)."""
    torch.manual_seed(0)
    k, m = 3, 20000
    theta = torch.tensor([0.3, -0.5, 0.9])
    f = torch.tensor([1.0, -2.0, 0.5])
    cv = R.ControlVariate(obs_dim=1, n_actions=k, hidden=16)
    with torch.no_grad():
        for p in cv.net.parameters():
            p.normal_(0.0, 1.0)
    logits = theta.expand(m, k).clone().requires_grad_(True)   # one copy of theta per draw
    s = torch.zeros(m, 1)
    with torch.no_grad():
        b, z, _ = categorical_relaxed_pair(logits)
    a = b.argmax(-1)
    gumbel = z - torch.log_softmax(logits, -1).detach()
    surrogate = R.estimator_surrogate(logits, a, f[a], s, cv, gumbel)
    (per_draw,) = torch.autograd.grad(surrogate.sum(), logits)   # row i: draw i's estimate
    mean, se = per_draw.mean(0), per_draw.std(0) / math.sqrt(m)
    p = torch.softmax(theta, -1)
    exact = p * (f - (p * f).sum())
    assert torch.all((mean - exact).abs() < 4 * se), (mean, exact, se)
    # the control-variate terms are not negligible (else the check would be vacuous)
    cv_part = torch.autograd.grad(
        R.estimator_surrogate(logits, a, torch.zeros(m), s, cv, gumbel).sum(), logits)[0]
    assert cv_part.abs().mean() > 10 * se.max()


def test_rewards_to_go_discounting():
    r = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])   # env 1's episode ended after step 1
    out = R.rewards_to_go(r, 0.5)
    assert torch.allclose(out[:, 0], torch.tensor([1.75, 1.5, 1.0]))
    assert torch.allclose(out[:, 1], torch.tensor([1.0, 0.0, 0.0]))


def test_time_limit_cuts_are_recorded_for_bootstrapping():
    """An untrained Acrobot policy never swings up: every episode is cut at 500 steps, which
    collect_batch records (step 499 and the cut state) so V(s_cut) can be bootstrapped."""
    envs = R.make_envs("Acrobot-v1", 2)
    try:
        torch.manual_seed(0)
        batch = R.collect_batch(envs, R.mlp(6, 8, 3), [11, 12], torch.device("cpu"), "sample")
    finally:
        envs.close()
    assert batch["lengths"].tolist() == [500, 500]
    assert batch["trunc_step"].tolist() == [499, 499]
    assert batch["trunc_obs"].abs().sum() > 0


def test_episode_gif_is_an_animation_of_the_frames():
    import io

    import numpy as np
    from PIL import Image

    from relaxcli import plots

    frames = [np.full((20, 30, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    gif = Image.open(io.BytesIO(plots.episode_gif(frames, fps=10)))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.size == (30, 20)


@pytest.mark.parametrize("argv,dropped", [
    (["reinforce", "--lr", "0.1", "--seed", "3"], "--lr, --seed"),
    (["train-vae", "--tau", "0.3", "--epochs", "4"], "--tau"),
])
def test_resume_refuses_options_it_would_ignore(tmp_path, run_cli, argv, dropped):
    """--resume takes its options from config.json: others beside it are refused, not ignored."""
    code, _, err = run_cli([*argv, "--resume", str(tmp_path / "run")])
    assert code == 2 and f"drop {dropped}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
