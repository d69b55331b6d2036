"""``relax reinforce``: policy-gradient training of a softmax policy on a gymnasium environment.

A single-file agent in the CleanRL manner, read top to bottom: setup, training loop, evaluation,
save. It trains ``pi_theta(a | s) = softmax(MLP(s))`` (one hidden layer, obs-``hidden``-actions)
on any gymnasium environment with a ``Discrete`` action space and a vector (1-D ``Box``)
observation, default ``Acrobot-v1``.

Estimators of the policy gradient (one update per batch of ``num_envs`` whole episodes):

* ``reinforce`` (Williams 1992) with reward-to-go ``R_t = sum_{k>=t} gamma^(k-t) r_k``:
  ``g = (1/T) sum_t grad log pi(a_t|s_t) * A_t`` where ``T`` is the number of steps in the batch
  and the advantage ``A_t`` depends on ``--baseline``:

  - ``none``: ``A_t = R_t``;
  - ``mean``: ``A_t = R_t - m``, ``m`` an exponential moving average (decay 0.9, bias-corrected)
    of the mean reward-to-go of *previous* batches, so it is independent of the current batch
    and the estimator stays unbiased;
  - ``value``: ``A_t = R_t - V_psi(s_t)`` with a learned state-value network (obs-hidden-1,
    regressed on ``R_t`` by mean squared error, 5 full-batch Adam steps per update), then
    normalised per batch to zero mean and unit standard deviation (the usual variance/scale
    fix; it makes the step size independent of the reward scale). With this baseline an episode
    cut by the time limit (truncated, not terminated) is bootstrapped: ``R_t`` of its steps
    includes ``gamma^(T-t) V_psi(s_T)`` for the cut state (Pardo et al. 2018, "Time Limits in
    Reinforcement Learning"), since Acrobot's observation has no clock and a -500 episode is
    not a terminal one. ``V_psi`` works in units of the horizon ``1/(1-gamma)`` and starts at the
    first batch's mean return (see :class:`ValueNet`).

  The policy's output layer starts at gain 1 (:func:`mlp`): a near-uniform first policy almost
  never swings Acrobot up within 500 steps, so REINFORCE would see only -500 returns.

* ``relax`` (Grathwohl, Choi, Wu, Roeder, Duvenaud 2018, arXiv 1711.00123, section 3.3 / the RL
  experiments): actions are drawn as ``a_t = argmax z_t`` with ``z_t = log pi(.|s_t) + G`` (Gumbel
  noise on the *normalised* log-probabilities), and ``z~_t ~ p(z | a_t)`` is the conditional Gumbel
  sample (both from :mod:`relaxcli.estimators.conditional`). With a learned control variate
  ``c_phi(s, z)`` on the relaxed action (an MLP of the state and ``softmax(z / tau)``, ``tau``
  learned), the per-step estimate is

      g_t = grad log pi(a_t|s_t) * (A_t - c_phi(s_t, z~_t)) + grad c_phi(s_t, z_t) - grad c_phi(s_t, z~_t)

  where ``A_t`` is the advantage of the chosen ``--baseline`` (so ``c_phi = 0`` gives back the
  REINFORCE update exactly). It is unbiased for every ``phi`` (the last two terms have equal
  expectation given ``a_t``'s score term, see the paper), and ``phi`` is trained to minimise the
  estimator's variance, i.e. the squared norm ``|g|^2`` of the batch policy-gradient estimate
  (its mean does not depend on ``phi``), by differentiating through ``g`` (double backprop).

Entropy bonus: ``--entropy-coef`` times the mean policy entropy is added to the objective.

Gradient-variance metric (per update): each of the ``N`` episodes of a batch gives its own
estimate ``e_i = N * g_i`` (``g_i`` the part of the batch gradient from episode ``i``, so
``mean_i e_i = g``). ``grad_var`` is the estimated variance of the batch gradient
``g``, averaged over the policy's parameters: ``mean_p var_i(e_ip) / N`` (sample variance with
``N - 1``; null when ``N = 1``). It is computed from the same per-episode gradients that make
the update, so it costs no extra backward pass.

Seeding and exact resume: the envs' states cannot be pickled in general, so the only
checkpoints are at batch boundaries, where every env starts a fresh episode. Every batch ``u``
draws all its randomness from ``numpy.random.SeedSequence([seed, 0, u])``: the ``N`` reset
seeds of the envs and the seed of torch's global generator (action sampling, the conditional
Gumbel noise of RELAX). Hence a batch depends only on the master seed, its index and the
networks/optimisers, which ``checkpoint.pt`` stores after every update (with the mean
baseline, the counters, the episode returns and the torch/numpy/python RNG states). Resuming
reloads them and continues with batch ``u + 1``: the numbers equal an uninterrupted run's.
Evaluation batches use ``SeedSequence([seed, 1 or 2, k])`` (greedy / stochastic), the video
``SeedSequence([seed, 3])``.

Budget and solving: ``--episodes`` (rounded up to whole batches) and/or ``--steps``; the run stops
at the first of them (or, with ``--stop-when-solved``, when solved). Only the steps of the
episodes that are used count as ``env_steps`` (an env whose episode ended early keeps stepping
until the batch's last episode ends, and those steps are discarded). "Solved" means that the
average return of the last 100 episodes (at least 100 of them) reaches
``env.spec.reward_threshold`` (Acrobot-v1: -100, CartPole-v1: 475).

Example:
    >>> from relaxcli.console import Reporter                                   # doctest: +SKIP
    >>> s = reinforce(Reporter(quiet=True), env="CartPole-v1", episodes=64)     # doctest: +SKIP
    >>> s["episodes"], s["env"]                                                 # doctest: +SKIP
    (64, 'CartPole-v1')
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from relaxcli import plots
from relaxcli.errors import BadInput
from relaxcli.estimators.conditional import categorical_conditional, categorical_relaxed_pair
from relaxcli.report import Curve, Metric, Report, declare_report
from relaxcli.runs import (
    RunFailed,
    atomic_write_bytes,
    atomic_write_text,
    create_run,
    load_checkpoint,
    open_for_resume,
    preparing,
    resolve_device,
    run_context,
    seed_everything,
    set_threads,
)

ESTIMATORS = ("reinforce", "relax")
BASELINES = ("none", "mean", "value")
SOLVE_WINDOW = 100          # episodes in the moving average that defines "solved"
MEAN_BASELINE_DECAY = 0.9   # EMA decay of the "mean" baseline
VALUE_EPOCHS = 5            # full-batch regression steps of V_psi per update
EVAL_ENVS = 16              # parallel envs for evaluation
VIDEO_MAX_FRAMES = 500
POLICY_OUT_GAIN = 1.0       # init scale of the policy's output layer (see mlp)
DEFAULTS: dict[str, Any] = {
    "env": "Acrobot-v1", "estimator": "reinforce", "baseline": "value", "gamma": 0.99, "num_envs": 4,
    "episodes": None, "steps": None, "lr": 3e-3, "entropy_coef": 0.0, "hidden": 128, "seed": 0, "device": "auto",
    "stop_when_solved": False, "eval_episodes": 100, "video": False, "threads": None,
}
DEFAULT_EPISODES = 1000     # when neither --episodes nor --steps is given

# What `relax compare` reads from these runs (relaxcli.report). The curve is smoothed by this
# module's own moving_average (defined below; the lambda looks it up when a curve is drawn).
REPORT = declare_report(Report(
    command="reinforce",
    metrics=(
        Metric("episodes_to_solve", label="episodes to solve", better="lower", solve=True),
        Metric("steps_to_solve", label="steps to solve", better="lower", solve=True),
        Metric("eval_return_greedy", label="greedy return", better="higher"),
        Metric("eval_return_stochastic", label="stochastic return", better="higher"),
        Metric("wall_seconds", label="wall s", better="lower"),
    ),
    default_metrics=("episodes_to_solve", "steps_to_solve", "eval_return_greedy", "wall_seconds"),
    group_by=("env", "method"),  # the run's method is "<estimator>-<baseline>"
    curve=Curve(x="episode", y=("return", "episode_return"),
                smooth=lambda returns: moving_average(returns, SOLVE_WINDOW),
                xlabel="episode", ylabel=f"return, {SOLVE_WINDOW}-episode moving average",
                title="reinforce: return, mean ± std over runs (higher is better)",
                better="higher", legend_metric="episodes_to_solve",
                legend_title="fewest episodes to solve first",
                reference="reward_threshold", reference_label="solve threshold {:g}"),
))


# ================================================================================== networks
def mlp(n_in: int, hidden: int, n_out: int, out_gain: float = 0.01) -> nn.Sequential:
    """n_in -> hidden (tanh) -> n_out, orthogonal init; ``out_gain`` scales the output layer.

    The policy uses ``out_gain=1`` (POLICY_OUT_GAIN): its first actions then depend on the
    state, and on Acrobot such random state-dependent policies sometimes swing up, whereas a
    near-uniform one (gain 0.01) almost never reaches the goal in 500 steps, so REINFORCE sees
    only -500 returns and has nothing to learn from. Value nets and control variates start near
    zero (gain 0.01)."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))
    nn.init.orthogonal_(net[0].weight, gain=math.sqrt(2))
    nn.init.zeros_(net[0].bias)
    nn.init.orthogonal_(net[2].weight, gain=out_gain)
    nn.init.zeros_(net[2].bias)
    return net


class ValueNet(nn.Module):
    """V_psi(s) = H * MLP(s): the MLP works in units of the return horizon H = 1/(1 - gamma)
    (capped by the episode limit), so its outputs are O(1) whatever the reward scale; the output
    bias is set to the first batch's mean return / H (data-dependent init), because Adam moves a
    bias by about lr per step and would need hundreds of updates to reach a mean return of -100."""

    def __init__(self, obs_dim: int, hidden: int, horizon: float):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1)
        self.horizon = float(horizon)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.horizon * self.net(s)

    @torch.no_grad()
    def init_from_returns(self, returns: torch.Tensor) -> None:
        if not bool(self.initialised):
            self.net[2].bias.fill_(float(returns.mean()) / self.horizon)
            self.initialised.fill_(True)


def return_horizon(gamma: float, max_episode_steps: int | None) -> float:
    """H = min(1/(1 - gamma), episode limit): the largest discounted return per unit reward."""
    h = math.inf if gamma >= 1 else 1.0 / (1.0 - gamma)
    if max_episode_steps:
        h = min(h, float(max_episode_steps))
    return 100.0 if math.isinf(h) else h


class ControlVariate(nn.Module):
    """RELAX's c_phi(s, z) = MLP([s, softmax(z / tau)]), tau = exp(log_tau) learned."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int):
        super().__init__()
        self.net = mlp(obs_dim + n_actions, hidden, 1)
        self.log_tau = nn.Parameter(torch.zeros(()))

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        relaxed = torch.softmax(z / self.log_tau.exp(), dim=-1)
        return self.net(torch.cat([s, relaxed], dim=-1)).squeeze(-1)


# ================================================================================ validation
def env_info(env_id: str) -> dict:
    """Make ``env_id`` once and check it is usable: discrete actions, vector observations."""
    import gymnasium as gym
    from gymnasium import spaces

    try:
        env = gym.make(env_id)
    except (gym.error.DependencyNotInstalled, ModuleNotFoundError, ImportError) as e:
        if env_id in gym.registry:  # a known environment whose optional package is missing
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BadInput(f"--env {env_id} needs an optional package that is not installed: "
                           f"{why}") from None
        raise BadInput(f"--env: cannot make environment {env_id!r} ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from None
    except (gym.error.Error, TypeError, ValueError) as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        what = "unknown environment" if isinstance(e, gym.error.Error) else "cannot make environment"
        why = "" if close else f" ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        raise BadInput(f"--env: {what} {env_id!r}{why}.{hint} "
                       "Use a gymnasium id with discrete actions, e.g. Acrobot-v1 or CartPole-v1") from None
    try:
        act, obs = env.action_space, env.observation_space
        if not isinstance(act, spaces.Discrete):
            raise BadInput(f"--env {env_id}: the action space is {type(act).__name__}, not Discrete; "
                           "relax reinforce needs discrete actions (e.g. Acrobot-v1, CartPole-v1)")
        if not (isinstance(obs, spaces.Box) and len(obs.shape) == 1):
            raise BadInput(f"--env {env_id}: the observation space is {obs}, not a vector (1-D Box); "
                           "relax reinforce needs vector observations (e.g. Acrobot-v1, CartPole-v1)")
        spec = env.spec
        return {"obs_dim": int(obs.shape[0]), "n_actions": int(act.n),
                "reward_threshold": None if spec is None else spec.reward_threshold,
                "max_episode_steps": None if spec is None else spec.max_episode_steps}
    finally:
        env.close()


def validate(o: dict) -> None:
    """Every check on the options that can fail, before anything is written."""
    if o["estimator"] not in ESTIMATORS:
        raise BadInput(f"--estimator must be one of {', '.join(ESTIMATORS)}, not {o['estimator']!r}")
    if o["baseline"] not in BASELINES:
        raise BadInput(f"--baseline must be one of {', '.join(BASELINES)}, not {o['baseline']!r}")
    if not (0.0 <= o["gamma"] <= 1.0) or math.isnan(o["gamma"]):
        raise BadInput(f"--gamma must be in [0, 1] (a discount factor), not {o['gamma']}")
    for name, low in (("num_envs", 1), ("hidden", 1), ("eval_episodes", 0)):
        if o[name] < low:
            raise BadInput(f"--{name.replace('_', '-')} must be >= {low}, not {o[name]}")
    for name in ("episodes", "steps"):
        if o[name] is not None and o[name] < 1:
            raise BadInput(f"--{name} must be >= 1, not {o[name]}")
    if not (o["lr"] > 0 and math.isfinite(o["lr"])):
        raise BadInput(f"--lr must be a positive number, not {o['lr']}")
    if not (o["entropy_coef"] >= 0 and math.isfinite(o["entropy_coef"])):
        raise BadInput(f"--entropy-coef must be >= 0, not {o['entropy_coef']}")
    if o["video"] and importlib.util.find_spec("pygame") is None:
        raise BadInput("--video needs pygame-ce to render frames; install the render extra: "
                       "pip install 'relaxcli[render]'")
    try:
        resolve_device(o["device"])
    except ValueError as e:
        raise BadInput(str(e)) from None


# ======================================================================== rollouts and maths
def make_envs(env_id: str, n: int):
    """N copies of ``env_id`` in gymnasium's synchronous vector env (one policy call per step)."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    # SAME_STEP: a finished env resets inside step(); its later steps are masked out anyway.
    return SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)],
                         autoreset_mode=AutoresetMode.SAME_STEP)


def batch_seeds(seed: int, stream: int, index: int, n_envs: int) -> tuple[list[int], int]:
    """(reset seeds of the N envs, torch seed) for batch ``index`` of ``stream`` (0 = training)."""
    state = np.random.SeedSequence([seed, stream, index]).generate_state(n_envs + 1, dtype=np.uint32)
    return [int(s) for s in state[:n_envs]], int(state[-1])


def collect_batch(envs, policy: nn.Module, env_seeds: list[int], device: torch.device,
                  mode: str) -> dict:
    """Run every env for exactly one episode from ``reset(seed=env_seeds)``.

    ``mode``: "sample" (a ~ pi), "relax" (a = argmax(log pi + G), keeps G for the update),
    "greedy" (a = argmax pi). Returns time-major tensors ``obs [T,N,d]``, ``actions [T,N]``,
    ``rewards [T,N]`` (zero after an episode's end), ``mask [T,N]`` (1 while the episode runs),
    ``gumbel [T,N,K]`` (relax only), and per-env ``returns``/``lengths`` arrays.
    """
    n = envs.num_envs
    obs, _ = envs.reset(seed=env_seeds)
    alive = np.ones(n, dtype=bool)
    ep_ret, ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    # episodes cut by the time limit (truncated, not terminated): where and in which state
    trunc_step = np.full(n, -1, dtype=np.int64)
    trunc_obs = np.zeros((n,) + tuple(np.asarray(obs).shape[1:]), dtype=np.float32)
    obs_l, act_l, rew_l, mask_l, gum_l = [], [], [], [], []
    while alive.any():
        s = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device)
        with torch.no_grad():
            logits = policy(s)
            if mode == "relax":
                b, z, _ = categorical_relaxed_pair(logits)
                a = b.argmax(-1)
                gum_l.append(z - torch.log_softmax(logits, -1))
            elif mode == "greedy":
                a = logits.argmax(-1)
            else:
                # a ~ Categorical(softmax(logits)); multinomial directly: building a torch
                # Distribution per step costs more than the policy itself
                a = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
        obs, r, term, trunc, step_info = envs.step(a.cpu().numpy())
        cut = alive & np.asarray(trunc) & ~np.asarray(term)
        if cut.any():  # SAME_STEP autoreset: the state the episode was cut in is final_obs
            final = step_info["final_obs"]
            for i in np.flatnonzero(cut):
                trunc_step[i], trunc_obs[i] = len(obs_l), np.asarray(final[i], dtype=np.float32)
        r = np.where(alive, np.asarray(r, dtype=np.float64), 0.0)
        obs_l.append(s)
        act_l.append(a)
        rew_l.append(torch.as_tensor(r, dtype=torch.float32, device=device))
        mask_l.append(torch.as_tensor(alive, dtype=torch.float32, device=device))
        ep_ret += r
        ep_len += alive
        alive &= ~(np.asarray(term) | np.asarray(trunc))
    out = {"obs": torch.stack(obs_l), "actions": torch.stack(act_l), "rewards": torch.stack(rew_l),
           "mask": torch.stack(mask_l), "returns": ep_ret, "lengths": ep_len,
           "trunc_step": trunc_step, "trunc_obs": torch.as_tensor(trunc_obs, device=device)}
    if gum_l:
        out["gumbel"] = torch.stack(gum_l)
    return out


def rewards_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """R_t = r_t + gamma * R_{t+1} along time (dim 0); rewards are zero after an episode ends."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def estimator_surrogate(logits: torch.Tensor, a: torch.Tensor, adv: torch.Tensor,
                        s: torch.Tensor | None = None, cv: nn.Module | None = None,
                        gumbel: torch.Tensor | None = None) -> torch.Tensor:
    """Per-step surrogate whose gradient in the policy's parameters is the estimator.

    REINFORCE (``cv`` None): ``log pi(a|s) * A``.
    RELAX: ``log pi(a|s) * (A - c(s, sg(z~))) + c(s, z) - c(s, z~)`` with ``z = log pi + G``
    rebuilt from the sampling noise ``gumbel`` (same ``G`` that chose ``a = argmax z``) and
    ``z~ ~ p(z | a)`` drawn here with fresh noise (independent of ``z`` given ``a``, so drawing
    it after the rollout is exact). Only the first factor's ``c`` carries no theta-gradient; all
    three ``c`` terms carry phi-gradients, which the variance objective needs.
    """
    log_p = torch.log_softmax(logits, -1)
    logp_a = log_p.gather(-1, a.unsqueeze(-1)).squeeze(-1)
    if cv is None:
        return logp_a * adv
    b = F.one_hot(a, log_p.shape[-1]).to(log_p.dtype)
    z = log_p + gumbel                                # z(theta) with the sampling noise kept
    z_tilde = categorical_conditional(logits, b)      # fresh v: independent of z given b
    c_coef = cv(s, z_tilde.detach())                  # phi-dependent, no theta-gradient
    return logp_a * (adv - c_coef) + cv(s, z) - cv(s, z_tilde)


def flat_grad(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def policy_update(batch: dict, nets: dict, opts: dict, state: dict, o: dict) -> dict:
    """One gradient step of the policy (and the value net / control variate). Returns metrics."""
    policy, value, cv = nets["policy"], nets.get("value"), nets.get("cv")
    params = [p for p in policy.parameters()]
    valid = batch["mask"] > 0
    n_envs = batch["mask"].shape[1]
    s = batch["obs"][valid]
    a = batch["actions"][valid]
    rewards = batch["rewards"]
    if value is not None and (batch["trunc_step"] >= 0).any():
        # Time-limit truncation is not a terminal state (the observation has no clock): the
        # return after the cut is estimated by V(s_cut) (partial-episode bootstrapping, Pardo et
        # al. 2018). Without it, R_t of a timed-out episode depends on t alone, V cannot fit
        # it, and the advantages push the policy towards whatever it did late in episodes.
        rewards = rewards.clone()
        cut = np.flatnonzero(batch["trunc_step"] >= 0)
        with torch.no_grad():
            v_cut = value(batch["trunc_obs"][cut]).squeeze(-1)
        rewards[batch["trunc_step"][cut], cut] += o["gamma"] * v_cut
    ret = rewards_to_go(rewards, o["gamma"])[valid]
    if value is not None and not bool(value.initialised):
        # first batch: start V at the mean return, then redo the cut-state bootstrap with it
        value.init_from_returns(ret)
        return policy_update(batch, nets, opts, state, o)
    episode_of = torch.arange(n_envs, device=s.device).expand_as(batch["mask"])[valid]
    n_steps = s.shape[0]

    # ---- advantages from the baseline
    metrics: dict[str, Any] = {}
    if o["baseline"] == "none":
        adv = ret
    elif o["baseline"] == "mean":
        m = state["mean_ema"] / (1 - MEAN_BASELINE_DECAY ** state["mean_count"]) if state["mean_count"] else 0.0
        adv = ret - m
        state["mean_ema"] = MEAN_BASELINE_DECAY * state["mean_ema"] + (1 - MEAN_BASELINE_DECAY) * float(ret.mean())
        state["mean_count"] += 1
        metrics["baseline_mean"] = m
    else:
        with torch.no_grad():
            adv = ret - value(s).squeeze(-1)
        adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8) if n_steps > 1 else adv - adv.mean()

    # ---- surrogate whose gradient is the estimator
    logits = policy(s)
    log_p = torch.log_softmax(logits, -1)
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    relax = o["estimator"] == "relax"
    surrogate = estimator_surrogate(logits, a, adv, s, cv if relax else None,
                                    batch["gumbel"][valid] if relax else None)

    # ---- per-episode gradients: the update is their sum, their spread is the variance metric
    per_episode = []
    for i in range(n_envs):
        loss_i = -(surrogate[episode_of == i]).sum() / n_steps
        per_episode.append(torch.autograd.grad(loss_i, params, retain_graph=True, create_graph=relax))
    g_pg = [sum(gs) for gs in zip(*per_episode)]
    if n_envs > 1:
        e = torch.stack([flat_grad(gs).detach() for gs in per_episode]) * n_envs
        metrics["grad_var"] = float(e.var(0, unbiased=True).mean() / n_envs)
    else:
        metrics["grad_var"] = None
    g_total = [g.detach() for g in g_pg]
    if o["entropy_coef"] > 0:
        g_ent = torch.autograd.grad(-o["entropy_coef"] * entropy, params, retain_graph=relax)
        g_total = [g + ge for g, ge in zip(g_total, g_ent)]
    metrics["policy_loss"] = float(-(surrogate.detach().sum() / n_steps))
    metrics["entropy"] = float(entropy.detach())
    metrics["grad_norm"] = float(flat_grad(g_total).norm())

    # ---- RELAX: phi minimises |g|^2, the estimator's second moment (its mean is phi-free)
    if relax:
        cv_loss = sum((g * g).sum() for g in g_pg)
        cv_params = list(cv.parameters())
        cv_grads = torch.autograd.grad(cv_loss, cv_params)
        opts["cv"].zero_grad(set_to_none=True)
        for p, g in zip(cv_params, cv_grads):
            p.grad = g
        opts["cv"].step()
        metrics["cv_loss"] = float(cv_loss.detach())
        metrics["cv_tau"] = float(cv.log_tau.detach().exp())

    opts["policy"].zero_grad(set_to_none=True)
    for p, g in zip(params, g_total):
        p.grad = g
    opts["policy"].step()

    # ---- value regression on the rewards-to-go
    if value is not None:
        for _ in range(VALUE_EPOCHS):
            v_loss = 0.5 * ((value(s).squeeze(-1) - ret) ** 2).mean()
            opts["value"].zero_grad(set_to_none=True)
            v_loss.backward()
            opts["value"].step()
        metrics["value_loss"] = float(v_loss.detach())
    return metrics


def moving_average(x: list[float], window: int = SOLVE_WINDOW) -> list[float]:
    """Average of the last ``window`` values at each position (fewer at the start)."""
    c = np.cumsum(np.asarray(x, dtype=np.float64))
    out = []
    for i in range(len(x)):
        lo = max(0, i + 1 - window)
        out.append(float((c[i] - (c[lo - 1] if lo else 0.0)) / (i + 1 - lo)))
    return out


def evaluate(env_id: str, policy: nn.Module, episodes: int, seed: int, greedy: bool,
             device: torch.device) -> float | None:
    """Mean return over ``episodes`` episodes of the greedy or the sampling policy."""
    if episodes == 0:
        return None
    n = min(episodes, EVAL_ENVS)
    envs = make_envs(env_id, n)
    returns: list[float] = []
    k = 0
    try:
        while len(returns) < episodes:
            env_seeds, torch_seed = batch_seeds(seed, 1 if greedy else 2, k, n)
            torch.manual_seed(torch_seed)
            returns += collect_batch(envs, policy, env_seeds, device,
                                     "greedy" if greedy else "sample")["returns"].tolist()
            k += 1
    finally:
        envs.close()
    return float(np.mean(returns[:episodes]))


def record_episode_frames(env_id: str, policy: nn.Module, seed: int, device: torch.device) -> list:
    """RGB frames of one greedy episode (rendered by gymnasium with pygame)."""
    import gymnasium as gym

    env = gym.make(env_id, render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=int(np.random.SeedSequence([seed, 3]).generate_state(1)[0]))
        frames = [env.render()]
        done = False
        while not done and len(frames) < VIDEO_MAX_FRAMES:
            with torch.no_grad():
                a = int(policy(torch.as_tensor(obs, dtype=torch.float32, device=device)).argmax())
            obs, _, term, trunc, _ = env.step(a)
            frames.append(env.render())
            done = term or trunc
        return frames
    finally:
        env.close()


def returns_csv(episodes: list[dict], window: int = SOLVE_WINDOW) -> str:
    ma = moving_average([e["return"] for e in episodes], window)
    lines = ["episode,update,return,length,env_steps,moving_avg_100"]
    for e, m in zip(episodes, ma):
        lines.append(f"{e['episode']},{e['update']},{e['return']:.6g},{e['length']},{e['env_steps']},{m:.6g}")
    return "\n".join(lines) + "\n"


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


# ==================================================================================== runner
def reinforce(reporter, resume: Path | None = None, out: Path | None = None, overwrite: bool = False,
              tensorboard: bool = False, **options) -> dict:
    """Train, evaluate and save; returns the summary dict (also written to summary.json).

    ``options`` are the keys of :data:`DEFAULTS`. With ``resume``, every option comes from the
    run's config.json and the run continues after its last completed update.
    """
    t_start = time.perf_counter()
    # ------------------------------------------------------------------------------ setup
    run = None
    if resume is not None:
        run = open_for_resume(resume, "reinforce")
        o = {**DEFAULTS, **run.config["options"]}
        if options.get("threads") is not None:  # the one option a resume may change
            o["threads"] = options["threads"]
    else:
        o = {**DEFAULTS, **{k: v for k, v in options.items() if k in DEFAULTS}}
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}")
    # a resume that cannot start (corrupted checkpoint, environment gone) marks the run failed
    with preparing(run) if run is not None else contextlib.nullcontext():
        ckpt = None
        if run is not None and run.file("checkpoint.pt").exists():
            ckpt = load_checkpoint(run.file("checkpoint.pt"), map_location="cpu")
        # (no checkpoint: interrupted before the first update finished; start the batches over)
        validate(o)
        info = env_info(o["env"])
        device = resolve_device(o["device"])
        o["threads"] = set_threads(o["threads"])
    if o["episodes"] is None and o["steps"] is None:
        o["episodes"] = DEFAULT_EPISODES
    if resume is None:
        run = create_run("reinforce", f"{o['estimator']}-{o['baseline']}", o, out=out,
                         overwrite=overwrite, seed=o["seed"], device=str(device),
                         tensorboard=tensorboard)
    threshold = info["reward_threshold"]
    if o["stop_when_solved"] and threshold is None:
        reporter.print(f"[yellow]{o['env']} has no reward threshold: --stop-when-solved does nothing")

    with run_context(run, resume_hint=f"relax reinforce --resume {run.path}"):
        seed_everything(o["seed"])
        nets: dict[str, nn.Module] = {
            "policy": mlp(info["obs_dim"], o["hidden"], info["n_actions"], POLICY_OUT_GAIN)}
        if o["baseline"] == "value":
            nets["value"] = ValueNet(info["obs_dim"], o["hidden"],
                                     return_horizon(o["gamma"], info["max_episode_steps"]))
        if o["estimator"] == "relax":
            nets["cv"] = ControlVariate(info["obs_dim"], info["n_actions"], o["hidden"])
        for net in nets.values():
            net.to(device)
        opts = {k: torch.optim.Adam(net.parameters(), lr=o["lr"]) for k, net in nets.items()}
        state = {"update": 0, "episodes": [], "env_steps": 0, "mean_ema": 0.0, "mean_count": 0,
                 "solved_at": None, "wall_seconds": 0.0}
        if ckpt is not None:
            for k, net in nets.items():
                net.load_state_dict(ckpt["nets"][k])
                opts[k].load_state_dict(ckpt["opts"][k])
            state = ckpt["state"]
            set_rng_states(ckpt["rng"])
        # metrics of a batch that did not finish are dropped: that batch is run again
        done_updates = state["update"]
        run.truncate_metrics(lambda r: r.get("update", 0) <= done_updates)
        wall_before = state["wall_seconds"]

        envs = make_envs(o["env"], o["num_envs"])
        mode = "relax" if o["estimator"] == "relax" else "sample"
        episode_budget = o["episodes"] if o["episodes"] is not None else math.inf
        step_budget = o["steps"] if o["steps"] is not None else math.inf

        def finished() -> bool:
            return (len(state["episodes"]) >= episode_budget or state["env_steps"] >= step_budget
                    or (o["stop_when_solved"] and state["solved_at"] is not None))

        # ------------------------------------------------------------------ training loop
        total = None if o["episodes"] is None else int(math.ceil(o["episodes"] / o["num_envs"]) * o["num_envs"])
        try:
            with reporter.progress(f"reinforce {o['env']}", total=total) as bar:
                bar.advance(len(state["episodes"]))
                while not finished():
                    u = state["update"] + 1
                    env_seeds, torch_seed = batch_seeds(o["seed"], 0, u, o["num_envs"])
                    torch.manual_seed(torch_seed)
                    batch = collect_batch(envs, nets["policy"], env_seeds, device, mode)
                    m = policy_update(batch, nets, opts, state, o)
                    bad = [k.replace("_", " ") for k in ("policy_loss", "grad_norm", "value_loss",
                                                          "cv_loss")
                           if m.get(k) is not None and not math.isfinite(m[k])]
                    bad += [f"the {k} network's weights" for k, net in nets.items()
                            if not all(bool(torch.isfinite(q).all()) for q in net.parameters())]
                    if bad:  # stop before the checkpoint: the last good one stays
                        raise RunFailed(
                            f"{bad[0]} became non-finite (NaN or inf) at update {u} (episode "
                            f"{len(state['episodes']) + 1}): the learning rate (--lr {o['lr']:g}) is "
                            "probably too large; " + (f"the checkpoint of update {u - 1} is kept in "
                                                      f"{run.path}" if u > 1 else
                                                      "no update finished, nothing to resume"))
                    for ret, length in zip(batch["returns"], batch["lengths"]):
                        state["env_steps"] += int(length)
                        ep = {"kind": "episode", "update": u, "episode": len(state["episodes"]) + 1,
                              "return": float(ret), "length": int(length), "env_steps": state["env_steps"]}
                        state["episodes"].append(ep)
                        run.log_metrics(ep)
                        recent = [e["return"] for e in state["episodes"][-SOLVE_WINDOW:]]
                        if (state["solved_at"] is None and threshold is not None
                                and len(recent) >= SOLVE_WINDOW and np.mean(recent) >= threshold):
                            state["solved_at"] = {"episode": ep["episode"], "env_steps": ep["env_steps"]}
                    recent = [e["return"] for e in state["episodes"][-SOLVE_WINDOW:]]
                    state["update"] = u
                    state["wall_seconds"] = wall_before + time.perf_counter() - t_start
                    run.log_metrics({"kind": "update", "update": u, "episodes": len(state["episodes"]),
                                     "env_steps": state["env_steps"], "moving_avg_100": float(np.mean(recent)),
                                     **m})
                    run.save_torch("checkpoint.pt", {
                        "nets": {k: net.state_dict() for k, net in nets.items()},
                        "opts": {k: opt.state_dict() for k, opt in opts.items()},
                        "state": state, "rng": rng_states(), "options": o})
                    bar.advance(len(batch["returns"]), info=f"avg100 {np.mean(recent):.1f}")
        finally:
            envs.close()

        # ---------------------------------------------------------------------- evaluate
        policy = nets["policy"].eval()
        eval_greedy = evaluate(o["env"], policy, o["eval_episodes"], o["seed"], True, device)
        eval_stoch = evaluate(o["env"], policy, o["eval_episodes"], o["seed"], False, device)

        # -------------------------------------------------------------------------- save
        episodes = state["episodes"]
        returns = [e["return"] for e in episodes]
        ma = moving_average(returns)
        atomic_write_text(run.file("returns.csv"), returns_csv(episodes))
        run.save_torch("policy.pt", {"state_dict": {k: v.cpu() for k, v in policy.state_dict().items()},
                                     "env": o["env"], "obs_dim": info["obs_dim"],
                                     "n_actions": info["n_actions"], "hidden": o["hidden"],
                                     "architecture": "Linear(obs, hidden) - Tanh - Linear(hidden, actions)"})
        fig = plots.reinforce_curve(returns, ma, threshold,
                                    title=f"{o['env']}: {o['estimator']}, baseline {o['baseline']}, seed {o['seed']}",
                                    window=SOLVE_WINDOW)
        run.save_figure(fig, "curve.png", dpi=110)
        plots.close(fig)
        if o["video"]:
            frames = record_episode_frames(o["env"], policy, o["seed"], device)
            atomic_write_bytes(run.file("episode.gif"), plots.episode_gif(frames, fps=30))

        solved = state["solved_at"]
        summary = {
            "env": o["env"], "estimator": o["estimator"], "baseline": o["baseline"],
            "episodes": len(episodes), "env_steps": state["env_steps"],
            "episodes_to_solve": None if solved is None else solved["episode"],
            "steps_to_solve": None if solved is None else solved["env_steps"],
            "eval_return_greedy": eval_greedy, "eval_return_stochastic": eval_stoch,
            "wall_seconds": round(wall_before + time.perf_counter() - t_start, 3),
            "seed": o["seed"], "num_envs": o["num_envs"], "updates": state["update"],
            "reward_threshold": threshold, "solved": solved is not None,
            "final_moving_avg_100": ma[-1] if ma else None,
            "best_moving_avg_100": max(ma[SOLVE_WINDOW - 1:]) if len(ma) >= SOLVE_WINDOW else None,
            "eval_episodes": o["eval_episodes"], "run_dir": str(run.path),
        }
        summary = run.finish(summary)

    from rich.table import Table

    table = Table(title=f"relax reinforce: {o['env']} ({o['estimator']}, baseline {o['baseline']})")
    table.add_column("metric")
    table.add_column("value")
    for k in ("episodes", "env_steps", "episodes_to_solve", "steps_to_solve", "eval_return_greedy",
              "eval_return_stochastic", "final_moving_avg_100", "wall_seconds"):
        v = summary[k]
        table.add_row(k, "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
    reporter.table(table)
    reporter.print(f"run directory: {run.path}")
    return summary


__all__ = [
    "BASELINES",
    "DEFAULTS",
    "ESTIMATORS",
    "ControlVariate",
    "collect_batch",
    "estimator_surrogate",
    "evaluate",
    "policy_update",
    "reinforce",
    "rewards_to_go",
]
