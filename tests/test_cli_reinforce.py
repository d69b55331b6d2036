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
from relaxcli.estimators import (
    Baseline,
    ContextControlVariate,
    MovingAverage,
    categorical_policy_gradient,
    critic_policy_gradient,
    make_estimator,
    muprop_policy_gradient,
    variance_gradient,
)
from relaxcli.estimators.conditional import categorical_relaxed_pair
from relaxcli.methods import METHODS, Family, Kind, get_method

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
    assert set(summary) >= SUMMARY_KEYS
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


def run_interrupted(run_cli, monkeypatch, args: list, batch: int):
    """Run ``args`` with a Ctrl-C while the run collects batch number ``batch``."""
    real_collect, calls = R.collect_batch, {"n": 0}

    def interrupting_collect(*a, **k):
        calls["n"] += 1
        if calls["n"] == batch:
            raise KeyboardInterrupt
        return real_collect(*a, **k)

    monkeypatch.setattr(R, "collect_batch", interrupting_collect)
    try:
        return run_cli(args)
    finally:
        monkeypatch.setattr(R, "collect_batch", real_collect)


@pytest.mark.parametrize("estimator,baseline", [("reinforce", "learned"), ("relax", "moving-average"),
                                                ("muprop", None), ("reinmax", None)])
def test_resume_equals_uninterrupted_run(tmp_path, run_cli, monkeypatch, estimator, baseline):
    args = ["reinforce", "--env", "CartPole-v1", "--episodes", "16", "--num-envs", "2",
            "--estimator", estimator, *(["--baseline", baseline] if baseline else []), "--eval-episodes", "3",
            "--seed", "3", "--device", "cpu", "--json"]
    code, stdout, _ = run_cli(args + ["--out", str(tmp_path / "full")])
    assert code == 0
    full = json.loads(stdout)

    # interrupt the second run while it collects its 5th batch (4 updates done)
    code, _, err = run_interrupted(run_cli, monkeypatch, args + ["--out", str(tmp_path / "cut")], 5)
    assert code == 130 and "resume with" in err
    assert (tmp_path / "cut" / "status").read_text().startswith("interrupted")
    assert not (tmp_path / "cut" / "summary.json").exists()

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
                                 "--estimator", "relax", "--baseline", "learned",
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
    (["--estimator", "rebar"], "--estimator rebar: its estimator needs the cost at points other than the action"),
    (["--estimator", "reinforce-rloo"], "it is --estimator reinforce --baseline leave-one-out"),
    (["--estimator", "simple"], "--estimator simple: it serves subset latents"),
    (["--estimator", "invertible-gaussian"], "its samples are not one-hot actions"),
    (["--estimator", "reinmx"], "Did you mean 'reinmax'"),
    (["--estimator", "reinmax", "--baseline", "learned"], "takes no --baseline (got learned)"),
    (["--estimator", "muprop", "--baseline", "moving-average"], "takes no --baseline"),
    (["--tau", "0.5"], "--tau: --estimator reinforce has no temperature"),
    (["--setting", "M=3"], "--setting: --estimator reinforce takes no settings"),
    (["--estimator", "gumbel-rao", "--setting", "M=0"], "gumbel-rao refuses it"),
    (["--estimator", "gumbel-rao", "--setting", "N=3"], "--setting"),
    (["--estimator", "gumbel-rao", "--tau", "-1"], "--tau must be a positive number"),
    (["--baseline", "critic"], "'critic' is not one of 'none', 'moving-average', 'learned', 'leave-one-out'"),
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--baseline", "leave-one-out", "--num-envs", "1"], "needs --num-envs >= 2"),
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


BANDIT_THETA = [0.3, -0.5, 0.9]
BANDIT_REWARD = [1.0, -2.0, 0.5]


def bandit_draws(m: int, relax: bool):
    """m independent pulls of a one-state bandit with K = 3 arms: one copy of the logits theta
    per pull (row i of a gradient is pull i's estimate), the arms drawn as the command draws
    them (Gumbel argmax for RELAX), and the exact gradient d/dtheta sum_a softmax(theta)_a f(a)
    = p * (f - p.f)."""
    theta, f = torch.tensor(BANDIT_THETA), torch.tensor(BANDIT_REWARD)
    logits = theta.expand(m, 3).clone().requires_grad_(True)
    with torch.no_grad():
        b, z, _ = categorical_relaxed_pair(logits)
    a = b.argmax(-1)
    p = torch.softmax(theta, -1)
    return logits, a, f[a], z - torch.log_softmax(logits, -1).detach(), p * (f - (p * f).sum())


def within_4_se(per_draw: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    mean, se = per_draw.mean(0), per_draw.std(0) / math.sqrt(len(per_draw))
    assert torch.all((mean - exact).abs() < 4 * se), (mean, exact, se)
    return se


@pytest.mark.parametrize("baseline", ["none", "moving-average", "learned", "leave-one-out"])
def test_policy_gradient_of_each_baseline_is_unbiased_on_a_bandit(baseline):
    """The command's advantages for each baseline, through the library's REINFORCE, average to
    the exact bandit gradient within 4 standard errors (the learned baseline's per-batch
    normalisation rescales the gradient by 1/std: undone here)."""
    torch.manual_seed(0)
    m = 4000
    logits, a, reward, _, exact = bandit_draws(m, relax=False)
    # each pull is a one-step episode of a [T = 1, N = m] batch
    agent = R.Agent(R.mlp(1, 4, 3), Baseline(baseline), value=R.ValueNet(1, 4, horizon=1.0),
                    moving_average=MovingAverage(0.9))
    agent.moving_average.update(0.7)  # a non-zero average from "earlier batches"
    adv, _ = R.advantages(agent, reward[None, :], torch.zeros(m, 1), torch.ones(1, m, dtype=torch.bool))
    if baseline == "learned":
        adv = adv * reward.std(unbiased=False)
    within_4_se(categorical_policy_gradient(logits, a, adv), exact)


def test_policy_gradient_equals_the_library_reinforce_estimator():
    """Same pulls, same numbers: the command's per-step REINFORCE gradient is the library
    ReinforceEstimator's per-row estimate (cost = -reward, so the signs flip)."""
    torch.manual_seed(0)
    m, f = 500, torch.tensor(BANDIT_REWARD)
    raw = torch.tensor(BANDIT_THETA).expand(m, 1, 3).clone().requires_grad_(True)
    est = make_estimator(get_method("reinforce"), family="categorical", baseline="none")
    out = est(raw, lambda b: -(b @ f).squeeze(-1))
    out.loss.backward()
    a = (out.cost[0, :, None] == -f).float().argmax(-1)   # the arm each row drew (distinct f)
    logits = raw.detach()[:, 0].clone().requires_grad_(True)
    g = categorical_policy_gradient(logits, a, f[a])
    assert torch.allclose(g, -m * raw.grad[:, 0], atol=1e-6)
    onehot = torch.nn.functional.one_hot(a, 3).float()   # and the closed form f (onehot(a) - p)
    assert torch.allclose(g, f[a, None] * (onehot - torch.softmax(logits, -1)), atol=1e-6)


def test_relax_policy_gradient_is_unbiased_on_a_bandit():
    """RELAX through the library (the command's estimator), with a non-trivial (randomly
    initialised, untrained) control variate c_phi(z, s) whose own terms are O(1): unbiased
    within 4 standard errors per coordinate; and it is the library's relax_gradient."""
    torch.manual_seed(0)
    m = 20000
    logits, a, reward, gumbel, exact = bandit_draws(m, relax=True)
    cv = ContextControlVariate(n_classes=3, context_size=1, hidden=16)
    with torch.no_grad():
        for p in cv.parameters():
            p.normal_(0.0, 1.0)
    s = torch.zeros(m, 1)
    g = categorical_policy_gradient(logits, a, reward, cv, s, gumbel)
    se = within_4_se(g.detach(), exact)
    # the control-variate terms are not negligible (else the check would be vacuous)
    cv_part = categorical_policy_gradient(logits, a, torch.zeros(m), cv, s, gumbel)
    assert cv_part.abs().mean() > 10 * se.max()
    # RELAX's phi gradient: the variance objective is differentiable in every parameter of c
    variance, grads = variance_gradient(g.mean(0), list(cv.parameters()))
    assert variance > 0 and all(gr is not None and torch.isfinite(gr).all() for gr in grads)


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
    assert batch.lengths.tolist() == [500, 500]
    assert batch.trunc_step.tolist() == [499, 499]
    assert batch.trunc_obs.abs().sum() > 0


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


def test_cli_defaults_are_the_options_dataclass_defaults():
    """The options are written once in ReinforceOptions; Typer's signature must not drift."""
    import dataclasses

    import typer

    from relaxcli.cli import app

    command = typer.main.get_command(app).commands["reinforce"]
    cli_defaults = {p.name: p.default for p in command.params}
    for f in dataclasses.fields(R.ReinforceOptions):
        default = cli_defaults[f.name]
        assert default == f.default or getattr(default, "value", None) == f.default, f.name


@pytest.mark.parametrize("old,new", [("mean", "moving-average"), ("value", "learned")])
def test_deprecated_baseline_names_still_parse_with_a_note(tmp_path, run_cli, old, new):
    out = tmp_path / old
    code, stdout, err = run_cli(["reinforce", "--env", "CartPole-v1", "--episodes", "2",
                                 "--num-envs", "2", "--hidden", "8", "--baseline", old,
                                 "--eval-episodes", "1", "--device", "cpu", "--out", str(out),
                                 "--json"])
    assert code == 0, err
    assert err.strip() == f"note: --baseline {old} is deprecated; use --baseline {new}"
    assert json.loads(stdout)["baseline"] == new
    assert json.loads((out / "config.json").read_text())["options"]["baseline"] == new


OLD_RUNS = Path(__file__).parent / "data" / "reinforce-0.1"


@pytest.mark.parametrize("name", ["relax-mean", "reinforce-value"])
def test_run_directories_of_relaxcli_0_1_still_resume(tmp_path, run_cli, name):
    """Runs written by relaxcli 0.1 (config.json says baseline mean / value; the checkpoint keeps
    the mean baseline as a bias-corrected EMA), cut after 2 of 4 updates, resume to the end."""
    import shutil

    run = tmp_path / name
    shutil.copytree(OLD_RUNS / name, run)
    before = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    code, stdout, err = run_cli(["reinforce", "--resume", str(run), "--json"])
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["baseline"] == {"relax-mean": "moving-average", "reinforce-value": "learned"}[name]
    assert summary["episodes"] == 8 and summary["updates"] == 4
    old_returns = [r["return"] for r in before if r["kind"] == "episode"]
    assert len(old_returns) == 4 and returns_of(run)[:4] == old_returns
    if name == "reinforce-value":
        # the learned baseline's numbers did not change: relaxcli 0.1's uninterrupted run
        assert returns_of(run) == [70, 14, 60, 53, 22, 30, 46, 40]
        assert summary["eval_return_greedy"] == 54.0


def test_resume_existing_skips_resumes_restarts_and_refuses_other_options(tmp_path, run_cli, monkeypatch):
    """--resume-existing (each line of reinforce_seeds.sh): the same line run again on a completed
    run prints its summary and writes nothing; on a run cut after some updates it resumes to the
    uninterrupted run's numbers; cut before its first update, it starts afresh; a run made with
    other options is refused (exit 2, one line naming them) and left as it was; a relaxcli 0.1
    run (baseline "value") matches the line that names its new baseline and resumes."""
    import shutil

    def files(path):
        return {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}

    args = ["reinforce", "--env", "CartPole-v1", "--episodes", "8", "--num-envs", "2", "--hidden", "8",
            "--eval-episodes", "2", "--seed", "3", "--device", "cpu", "--json", "--resume-existing"]
    code, stdout, err = run_cli([*args, "--out", str(tmp_path / "full")])
    assert code == 0, err
    full = json.loads(stdout)
    before = files(tmp_path / "full")
    code, stdout, err = run_cli([*args, "--out", str(tmp_path / "full")])
    assert code == 0 and json.loads(stdout) == full and files(tmp_path / "full") == before, err
    for extra, named in ((["--lr", "0.01"], "--lr 0.003 there, 0.01 asked"),
                         (["--episodes", "10"], "--episodes 8 there, 10 asked"),
                         (["--baseline", "none"], "--baseline learned there, none asked")):
        code, _, err = run_cli([*args, *extra, "--out", str(tmp_path / "full")])
        assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert files(tmp_path / "full") == before
    code, _, err = run_cli([*args, "--out", str(tmp_path / "full"), "--overwrite"])
    assert code == 2 and "cannot go with --overwrite" in err and files(tmp_path / "full") == before

    for batch, name in ((3, "cut-after-2-updates"), (1, "cut-before-any-update")):
        out = tmp_path / name
        code, _, _ = run_interrupted(run_cli, monkeypatch, [*args, "--out", str(out)], batch)
        assert code == 130 and (out / "status").read_text().startswith("interrupted")
        assert (out / "checkpoint.pt").exists() == (batch == 3)
        code, stdout, err = run_cli([*args, "--out", str(out)])
        assert code == 0, err
        assert comparable(json.loads(stdout)) == comparable(full), name
        assert returns_of(out) == returns_of(tmp_path / "full"), name
        assert len(json.loads((out / "config.json").read_text()).get("resumes", [])) == (batch == 3)

    old = tmp_path / "old"
    shutil.copytree(OLD_RUNS / "reinforce-value", old)
    code, stdout, err = run_cli(["reinforce", "--env", "CartPole-v1", "--episodes", "8", "--num-envs",
                                 "2", "--hidden", "8", "--eval-episodes", "2", "--seed", "7", "--device",
                                 "cpu", "--baseline", "learned", "--resume-existing", "--out", str(old)])
    assert code == 0, err
    assert returns_of(old) == [70, 14, 60, 53, 22, 30, 46, 40]


# ------------------------------------------------------------------ MuProp and the critic methods
def test_critic_methods_come_from_the_registry():
    """Every categorical method that is not a score-function estimator, samples one-hot points
    and has a discrete law of logits is a critic estimator; no other method is."""
    names = {m.name for m in R.critic_methods()}
    assert {"gumbel-softmax", "st-gumbel-softmax", "reinmax", "gumbel-rao"} <= names
    for m in METHODS.values():
        fits = (Family.CATEGORICAL in m.families and m.kind is not Kind.SCORE_FUNCTION
                and m.discrete is not None and m.from_logits and m.sample_in_law_space)
        assert (m.name in names) == fits, m.name


def test_muprop_policy_gradient_is_unbiased_with_any_critic():
    """MuProp at the pulls taken, with a random non-linear critic whose control variate is far
    from the reward: unbiased within 4 SE; its control-variate terms are not negligible (the
    check would fail without the analytic term); with the exact linear critic Q(z) = z . f the
    control variate equals the reward and every pull gives the exact gradient."""
    torch.manual_seed(0)
    m = 20000
    logits, a, reward, _, exact = bandit_draws(m, relax=False)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 1.0)
    critic = lambda z: 3.0 * net(z).squeeze(-1)  # noqa: E731
    g = muprop_policy_gradient(logits, a, reward, critic)
    se = within_4_se(g.detach(), exact)
    # the control-variate terms alone (zero reward) are large per pull and cancel on average;
    # the analytic term slope . J(pi) is large too, so dropping it would fail the 4-SE check
    cv_terms = muprop_policy_gradient(logits, a, torch.zeros(m), critic)
    assert cv_terms.abs().mean() > 10 * se.max()
    mu = torch.softmax(torch.tensor(BANDIT_THETA), -1).requires_grad_(True)
    slope, = torch.autograd.grad(critic(mu[None]).sum(), mu)
    analytic = (torch.diag(mu) - torch.outer(mu, mu)).detach() @ slope
    assert analytic.abs().max() > 10 * se.max()
    f = torch.tensor(BANDIT_REWARD)
    exact_critic = muprop_policy_gradient(logits, a, reward, lambda z: z @ f)
    assert torch.allclose(exact_critic, exact.expand(m, 3), atol=1e-5)


def test_reinmax_through_a_linear_critic_is_unbiased():
    """ReinMax's expected backward is J(pi) f for a cost linear in the one-hot sample (its
    second-order correction: E[2 J((D + pi)/2) - J(pi)/2] = J(pi)), so through the critic
    Q(z) = z . f the command's estimate averages to the exact bandit gradient; ST Gumbel-Softmax's
    does not (its bias is what ReinMax removes), which keeps this test from passing vacuously."""
    torch.manual_seed(0)
    m = 20000
    logits, _, _, _, exact = bandit_draws(m, relax=False)
    f = torch.tensor(BANDIT_REWARD)
    for name, unbiased in (("reinmax", True), ("st-gumbel-softmax", False)):
        method = get_method(name)
        g = critic_policy_gradient(method.estimator(method, family="categorical"), logits.detach(),
                                   lambda z: z @ f, tau=1.0)
        mean, se = g.mean(0), g.std(0) / math.sqrt(m)
        assert bool(((mean - exact).abs() < 4 * se).all()) == unbiased, (name, mean, exact, se)


@pytest.mark.parametrize("method", [m.name for m in R.critic_methods()])
def test_every_critic_method_trains_a_policy(tmp_path, run_cli, method):
    """Every registry method that fits a softmax policy runs two updates of relax reinforce."""
    out = tmp_path / method
    code, stdout, err = run_cli(["reinforce", "--env", "CartPole-v1", "--episodes", "4", "--num-envs", "2",
                                 "--estimator", method, "--eval-episodes", "2", "--out", str(out), "--json"])
    assert code == 0, err
    s = json.loads(stdout)
    assert s["estimator"] == method and s["critic"] and s["baseline"] == "none"
    assert s["tau"] == get_method(method).default_tau
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == f"{method}-critic"
    updates = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(u["critic_loss"]) for u in updates if u.get("kind") == "update")


@pytest.mark.parametrize("estimator", ["muprop", "gumbel-rao"])
def test_critic_estimators_learn_cartpole(tmp_path, run_cli, estimator):
    """MuProp (unbiased, the critic's Taylor expansion as control variate) and Gumbel-Rao
    (pathwise through the critic) learn CartPole: the last 50 of 200 episodes last over four
    times as long as a uniform policy's (~22 steps; measured: 100-episode averages 464 and 461)."""
    out = tmp_path / estimator
    code, _, err = run_cli(["reinforce", "--env", "CartPole-v1", "--episodes", "200", "--lr", "0.01",
                            "--estimator", estimator, "--eval-episodes", "0", "--seed", "1",
                            "--out", str(out)])
    assert code == 0, err
    returns = returns_of(out)
    assert sum(returns[-50:]) / 50 > 4 * 22, returns[-50:]


def test_settings_reach_a_critic_method_and_survive_resume(tmp_path, run_cli, monkeypatch):
    """--setting reaches the critic method's estimator (Gumbel-Rao's M) and its discrete law, the
    behaviour policy (a decoupled forward temperature of 2 halves the logits); config.json
    records it and a resume keeps it; an estimator without settings refuses one."""
    o = R.ReinforceOptions(env="CartPole-v1", estimator="decoupled-st-gumbel-softmax",
                           settings=["tau_forward=2"]).checked()
    agent = R.build_agent(o, R.env_info("CartPole-v1"), torch.device("cpu"))
    logits = torch.tensor([[1.0, -1.0]])
    assert torch.allclose(agent.log_policy(logits), torch.log_softmax(logits / 2, -1))
    o = R.ReinforceOptions(env="CartPole-v1", estimator="gumbel-rao", settings=["M=7"]).checked()
    assert R.build_agent(o, R.env_info("CartPole-v1"), torch.device("cpu")).pathwise.options == {"M": 7}

    args = ["reinforce", "--env", "CartPole-v1", "--episodes", "8", "--num-envs", "2", "--estimator",
            "gumbel-rao", "--setting", "M=3", "--eval-episodes", "2", "--json"]
    code, stdout, err = run_cli(args + ["--out", str(tmp_path / "full")])
    assert code == 0, err
    assert json.loads(stdout)["settings"] == {"M": 3}
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["options"]["settings"] == ["M=3"]
    assert run_interrupted(run_cli, monkeypatch, args + ["--out", str(tmp_path / "cut")], 3)[0] == 130
    code, stdout, err = run_cli(["reinforce", "--resume", str(tmp_path / "cut"), "--json"])
    assert code == 0, err
    assert json.loads(stdout)["settings"] == {"M": 3}
    assert returns_of(tmp_path / "cut") == returns_of(tmp_path / "full")
