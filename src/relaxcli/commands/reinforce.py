"""``relax reinforce``: policy-gradient training of a softmax policy on a gymnasium environment.

A single-file agent in the CleanRL manner, read top to bottom: options, networks, rollouts, one
update, then :func:`reinforce` (setup, training loop, evaluation, save). It trains
``pi_theta(a | s) = softmax(MLP(s))`` (one hidden layer, obs-``hidden``-actions) on any gymnasium
environment with a ``Discrete`` action space and a vector (1-D ``Box``) observation, default
``Acrobot-v1``. One update per batch of ``num_envs`` whole episodes.

The policy gradient comes from :mod:`relaxcli.estimators` (the same closed forms as ``train-vae``
and ``grad-bench``), with reward-to-go ``R_t = sum_{k>=t} gamma^(k-t) r_k`` and advantages
``A_t = R_t - c_t`` for the ``--baseline`` c (one vocabulary with the library,
:class:`~relaxcli.estimators.Baseline`):

* ``none``: c = 0;
* ``moving-average`` (before 0.2: ``mean``): the library's :class:`~relaxcli.estimators.MovingAverage`
  (decay 0.9) of the mean reward-to-go of *previous* batches, so the estimator stays unbiased;
* ``learned`` (before 0.2: ``value``): the library's :class:`~relaxcli.estimators.LearnedBaseline`
  with an input, a state-value network V_psi(s) (:class:`ValueNet`), fitted to R_t by its least
  squares (5 full-batch Adam steps per update); the advantages are then normalised per batch to
  zero mean and unit std (it makes the step size independent of the reward scale). An episode
  cut by the time limit (truncated, not terminated) is bootstrapped: its R_t includes
  ``gamma^(T-t) V_psi(s_T)`` for the cut state (Pardo et al. 2018, "Time Limits in Reinforcement
  Learning"), since Acrobot's observation has no clock and a -500 episode is not a terminal one;
* ``leave-one-out``: c_t of episode i is the mean R_t of the batch's other episodes (independent
  of episode i, so unbiased; needs ``--num-envs >= 2``).

``--estimator``: ``reinforce`` (Williams 1992) or ``relax`` (Grathwohl et al. 2018, arXiv
1711.00123, section 3.3 and the RL experiments): actions are drawn as ``a_t = argmax z_t``,
``z_t = log pi(.|s_t) + G_t``, and the control variate c_phi(z, s) is the library's
:class:`~relaxcli.estimators.ContextControlVariate`; phi minimises the squared norm of the batch
policy gradient (:func:`~relaxcli.estimators.variance_gradient`). Both go through
:func:`~relaxcli.estimators.categorical_policy_gradient`.

``--estimator muprop`` and the critic methods (every categorical, not score-function registry
method with one-hot samples of a discrete law of the logits: Gumbel-Softmax, ST Gumbel-Softmax,
decoupled ST, ReinMax, Gumbel-Rao; :func:`critic_methods`) learn a critic Q_w(s, a) =
H * MLP([s, one-hot a]) (:class:`Critic`, least squares on R_t, :data:`CRITIC_EPOCHS` Adam steps
per batch). MuProp (:func:`~relaxcli.estimators.muprop_policy_gradient`) uses its Taylor
expansion around pi(.|s) as the control variate of the true return (unbiased; the critic is
fitted after the policy step); a critic method applies its own estimator to -Q
(:func:`~relaxcli.estimators.critic_policy_gradient`; biased by the estimator and the critic),
acting with its discrete law (``--setting``, ``--tau``). These runs take no baseline and are
named ``<estimator>-critic``. Entropy bonus: ``--entropy-coef``
times the mean policy entropy is added to the objective. The policy's output layer starts at
gain 1 (:func:`mlp`): a near-uniform first policy almost never swings Acrobot up within 500
steps, so REINFORCE would see only -500 returns.

Gradient-variance metric (per update): each of the ``N`` episodes of a batch gives its own
estimate ``e_i = N * g_i`` (``g_i`` the part of the batch gradient from episode ``i``);
``grad_var = mean_p var_i(e_ip) / N`` (null when ``N = 1``), from the same per-episode gradients
that make the update.

Seeding and exact resume: the envs' states cannot be pickled in general, so the only checkpoints
are at batch boundaries. Batch ``u`` draws all its randomness from
``numpy.random.SeedSequence([seed, 0, u])`` (the envs' reset seeds and torch's seed), so a batch
depends only on the master seed, its index and the networks/optimisers, which ``checkpoint.pt``
stores after every update. Resuming continues with batch ``u + 1``: the numbers equal an
uninterrupted run's. Evaluation uses ``SeedSequence([seed, 1 or 2, k])`` (greedy / stochastic),
the video ``SeedSequence([seed, 3])``. Run directories of relaxcli 0.1 (``baseline: mean|value``)
resume under the new names.

Budget and solving: ``--episodes`` (rounded up to whole batches) and/or ``--steps``; the run
stops at the first of them (or, with ``--stop-when-solved``, when solved: the average return of
the last 100 episodes reaches ``env.spec.reward_threshold``, e.g. Acrobot-v1 -100).

Example:
    >>> from relaxcli.console import Reporter                                          # doctest: +SKIP
    >>> s = reinforce(Reporter(quiet=True), ReinforceOptions("CartPole-v1", episodes=64))  # doctest: +SKIP
    >>> s["episodes"], s["baseline"]                                                   # doctest: +SKIP
    (64, 'learned')
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.util
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from relaxcli import plots
from relaxcli.console import Reporter
from relaxcli.errors import BadInput
from relaxcli.estimators import (
    Baseline,
    ContextControlVariate,
    Estimator,
    LearnedBaseline,
    MovingAverage,
    PolicyEstimator,
    categorical_policy_gradient,
    categorical_relaxed_pair,
    critic_policy_gradient,
    leave_one_out,
    muprop_policy_gradient,
    variance_gradient,
)
from relaxcli.methods import METHODS, Family, Kind, Method, format_setting, parse_settings
from relaxcli.options import RunOptions, option
from relaxcli.report import Curve, Metric, Report, declare_report
from relaxcli.runs import (
    Refused,
    RunDirError,
    RunFailed,
    atomic_write_bytes,
    atomic_write_text,
    create_run,
    load_checkpoint,
    open_for_resume,
    option_differences,
    preparing,
    read_run_config,
    read_status,
    read_summary,
    resolve_device,
    run_context,
    seed_everything,
    set_threads,
)

COMMAND = "reinforce"
# options that say where a run is written and how it is watched, not what it computes
RUN_PLUMBING = ("out", "overwrite", "resume", "resume_existing", "tensorboard")
SOLVE_WINDOW = 100          # episodes in the moving average that defines "solved"
MOVING_AVERAGE_DECAY = 0.9  # decay of the moving-average baseline
VALUE_EPOCHS = 5            # full-batch regression steps of V_psi per update
# ... and of the critic Q_w: a pathwise estimator follows dQ/da, the critic's action-dependence,
# which 5 steps per batch barely learn (CartPole, 200 episodes, seed 1: ReinMax's 100-episode
# average 51 at 5 steps, 193 at 20, 443 at 50; Gumbel-Rao 115, 59, 461)
CRITIC_EPOCHS = 50
EVAL_ENVS = 16              # parallel envs for evaluation
VIDEO_MAX_FRAMES = 500
POLICY_OUT_GAIN = 1.0       # init scale of the policy's output layer (see mlp)
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


# =================================================================================== options
@dataclass(kw_only=True)
class ReinforceOptions(RunOptions):
    """Train a softmax policy with REINFORCE (baselines) or RELAX on a gymnasium environment."""

    env: str = option("Acrobot-v1", "--env", help=(
        "gymnasium environment id with a discrete action space and vector observations (e.g. "
        "Acrobot-v1, CartPole-v1, MountainCar-v0)."))
    estimator: str = option(PolicyEstimator.REINFORCE.value, "--estimator", metavar="NAME", help=(
        "Policy-gradient estimator. At the actions taken, with the true return: reinforce "
        "(score function with reward-to-go), relax (Grathwohl et al. 2018: learned control "
        "variate on the Gumbel-relaxed action) or muprop (Gu et al. 2016: score function with "
        "the Taylor expansion of a learned critic Q(s, a) as control variate; unbiased). Or any "
        "categorical pathwise method of `relax list` (gumbel-softmax, st-gumbel-softmax, reinmax, "
        "gumbel-rao, ...): its estimator differentiates a learned critic Q(s, a) (biased by the "
        "critic's error, as in MADDPG)."))
    baseline: Baseline | None = option(None, "--baseline", show_default=False, help=(
        "For reinforce and relax: none; moving-average (of past batches' returns-to-go); learned "
        "(a state-value network, advantages normalised per batch; the default); leave-one-out "
        "(the batch's other episodes, --num-envs >= 2). Before 0.2: mean = moving-average, value "
        "= learned. The critic estimators take none (the critic is their control variate)."))
    tau: float | None = option(None, "--tau", show_default=False, help=(
        "Temperature of a critic estimator's relaxation (default: the method's, `relax list`)."))
    settings: list[str] | None = option(None, "--setting", show_default=False, metavar="KEY=VALUE", help=(
        "A setting of a critic estimator's method, KEY=VALUE, repeatable (e.g. --estimator "
        "gumbel-rao --setting M=100), typed like its default; it reaches the method's estimator "
        "and its discrete law (the behaviour policy). Recorded in config.json as KEY=VALUE."))
    gamma: float = option(0.99, "--gamma", help="Discount factor in [0, 1].")
    num_envs: int = option(4, "--num-envs", help=(
        "Environments run together in one vectorised batch; one update per batch of that many "
        "whole episodes."))
    episodes: int | None = option(None, "--episodes", show_default=False, help=(
        "Training budget in episodes (rounded up to whole batches). Default 1000 when --steps is "
        "not given either."))
    steps: int | None = option(None, "--steps", show_default=False, help=(
        "Training budget in environment steps (stops after the batch that reaches it)."))
    lr: float = option(3e-3, "--lr", help="Adam learning rate of every network.")
    entropy_coef: float = option(0.0, "--entropy-coef", help=(
        "Weight of the policy-entropy bonus (0 = none)."))
    hidden: int = option(128, "--hidden", help=(
        "Hidden units of the policy MLP (obs-hidden-actions), the value net and RELAX's control "
        "variate."))
    stop_when_solved: bool = option(False, "--stop-when-solved", help=(
        "Stop once the 100-episode average return reaches the environment's reward threshold."))
    eval_episodes: int = option(100, "--eval-episodes", help=(
        "Episodes of the final evaluation, greedy and stochastic (0 skips it)."))
    video: bool = option(False, "--video", help=(
        "Also write episode.gif of one greedy episode (needs the render extra: pip install "
        "'relaxcli[render]')."))
    resume: Path | None = option(None, "--resume", show_default=False, help=(
        "Continue an interrupted run directory after its last completed update (all other "
        "options come from its config.json); results equal an uninterrupted run."))
    resume_existing: bool = option(False, "--resume-existing", help=(
        "For sweeps that are run again: when --out already holds a reinforce run started with "
        "these same options, skip it if completed (its summary is printed), continue it from its "
        "last update if it stopped, start it afresh if it stopped before its first update; a run "
        "there with other options is refused (exit 2, the differences named). --threads may "
        "differ."))
    tensorboard: bool = option(False, "--tensorboard", help=(
        "Also write TensorBoard event files beside metrics.jsonl (which stays the record), for "
        "`tensorboard --logdir runs`; needs pip install tensorboard."))

    @classmethod
    def from_config(cls, saved: dict, threads: int | None) -> ReinforceOptions:
        """The options of a run being resumed; ``threads`` is the one a resume may change.
        Old vocabularies parse (``baseline: mean|value`` of relaxcli 0.1, see Baseline)."""
        known = {f.name for f in dataclasses.fields(cls)}
        options = cls(**{k: v for k, v in saved.items() if k in known})
        return options if threads is None else dataclasses.replace(options, threads=threads)

    def checked(self) -> ReinforceOptions:
        """A copy with the vocabularies parsed, after every check that can fail (BadInput)."""
        for name in ("gamma", "lr", "entropy_coef"):
            value = getattr(self, name)
            if math.isnan(value) or math.isinf(value):
                raise BadInput(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        estimator = policy_estimator(self.estimator)
        try:  # the CLI's choices refuse these first; this is for Python callers
            baseline = None if self.baseline is None else Baseline(self.baseline)
        except ValueError as e:
            raise BadInput(f"{e} (--baseline: {', '.join(Baseline)})") from None
        critic = uses_critic(estimator)
        if baseline is None:
            baseline = Baseline.NONE if critic else Baseline.LEARNED
        elif critic and baseline is not Baseline.NONE:
            raise BadInput(f"--estimator {self.estimator} learns a critic Q(s, a) as its control "
                           f"variate: it takes no --baseline (got {baseline.value})")
        settings = None
        if self.settings:
            if not isinstance(estimator, Method):
                raise BadInput(f"--setting: --estimator {self.estimator} takes no settings")
            given = parse_settings(estimator, self.settings, family=Family.CATEGORICAL.value)
            settings = [f"{key}={format_setting(v)}" for key, v in given.items()] or None
        if self.tau is not None:
            if not isinstance(estimator, Method) or not estimator.has_temperature:
                raise BadInput(f"--tau: --estimator {self.estimator} has no temperature")
            if not (math.isfinite(self.tau) and self.tau > 0):
                raise BadInput(f"--tau must be a positive number, not {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            raise BadInput(f"--gamma must be in [0, 1] (a discount factor), not {self.gamma}")
        for name, low in (("num_envs", 1), ("hidden", 1), ("eval_episodes", 0)):
            if getattr(self, name) < low:
                raise BadInput(f"--{name.replace('_', '-')} must be >= {low}, not {getattr(self, name)}")
        for name in ("episodes", "steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise BadInput(f"--{name} must be >= 1, not {getattr(self, name)}")
        if baseline is Baseline.LEAVE_ONE_OUT and self.num_envs < 2:
            raise BadInput("--baseline leave-one-out needs --num-envs >= 2 (the other episodes of "
                           f"a batch are the baseline), not {self.num_envs}")
        if not self.lr > 0:
            raise BadInput(f"--lr must be a positive number, not {self.lr}")
        if not self.entropy_coef >= 0:
            raise BadInput(f"--entropy-coef must be >= 0, not {self.entropy_coef}")
        if self.video and importlib.util.find_spec("pygame") is None:
            raise BadInput("--video needs pygame-ce to render frames; install the render extra: "
                           "pip install 'relaxcli[render]'")
        try:
            resolve_device(self.device)
        except ValueError as e:
            raise BadInput(str(e)) from None
        episodes = DEFAULT_EPISODES if self.episodes is None and self.steps is None else self.episodes
        name = estimator.value if isinstance(estimator, PolicyEstimator) else estimator.name
        return dataclasses.replace(self, estimator=name, baseline=baseline, episodes=episodes,
                                   settings=settings)

    def method_settings(self) -> dict:
        """The critic method's settings given with --setting, typed (KEY=VALUE parsed back)."""
        estimator = policy_estimator(self.estimator)
        return parse_settings(estimator, self.settings) if isinstance(estimator, Method) else {}

    @property
    def method(self) -> str:
        """The run's method name (run directory and compare groups): ``<estimator>-<baseline>``,
        or ``<estimator>-critic`` for the estimators that learn a critic."""
        if uses_critic(policy_estimator(self.estimator)):
            return f"{self.estimator}-critic"
        return f"{self.estimator}-{Baseline(self.baseline).value}"

    def config(self) -> dict:
        """Plain JSON values for config.json and checkpoint.pt (what defines the run: not where
        it is written, nor how it is watched)."""
        return {k: v.value if isinstance(v, (Baseline, PolicyEstimator)) else v
                for k, v in dataclasses.asdict(self).items() if k not in RUN_PLUMBING}


def critic_methods() -> list[Method]:
    """Registry methods ``relax reinforce`` trains through a learned critic: not score-function
    estimators (those need the return at other points than the action taken), of the
    categorical family, with a discrete law of logits (the behaviour policy) whose samples live
    in its one-hot space (where the critic is defined)."""
    return [m for m in METHODS.values()
            if Family.CATEGORICAL in m.families and m.kind is not Kind.SCORE_FUNCTION
            and m.discrete is not None and m.from_logits and m.sample_in_law_space]


def policy_estimator(name: str) -> PolicyEstimator | Method:
    """``--estimator NAME``: one of the estimators at given actions, or a critic method; a
    BadInput saying why any other registry method does not fit a softmax policy."""
    with contextlib.suppress(ValueError):
        return PolicyEstimator(name)
    fitting = critic_methods()
    if name in (m.name for m in fitting):
        return METHODS[name]
    choices = ", ".join([*(e.value for e in PolicyEstimator), *(m.name for m in fitting)])
    method = METHODS.get(name)
    if method is None:
        close = difflib.get_close_matches(name, choices.split(", "), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BadInput(f"--estimator: unknown {name!r}.{hint} Choose from: {choices}")
    if Family.CATEGORICAL not in method.families:
        why = (f"it serves {', '.join(f.value for f in method.families)} latents, not the "
               "categorical law of a softmax policy")
    elif method.kind is Kind.SCORE_FUNCTION:
        why = ("its estimator needs the cost at points other than the action taken, and an "
               "environment returns one return per action taken")
        if method.min_samples >= 2:
            why = "it is --estimator reinforce --baseline leave-one-out"
    else:
        why = "its samples are not one-hot actions drawn from a discrete law of the logits"
    raise BadInput(f"--estimator {name}: {why}. Choose from: {choices}")


def uses_critic(estimator: PolicyEstimator | Method) -> bool:
    """It learns a critic Q(s, a): MuProp (its control variate) and the critic methods."""
    return isinstance(estimator, Method) or estimator is PolicyEstimator.MUPROP


# ================================================================================== networks
def mlp(n_in: int, hidden: int, n_out: int, out_gain: float = 0.01) -> nn.Sequential:
    """n_in -> hidden (tanh) -> n_out, orthogonal init; ``out_gain`` scales the output layer.

    The policy uses ``out_gain=1`` (POLICY_OUT_GAIN): its first actions then depend on the
    state, and on Acrobot such random state-dependent policies sometimes swing up, whereas a
    near-uniform one (gain 0.01) almost never reaches the goal in 500 steps, so REINFORCE sees
    only -500 returns and has nothing to learn from. The value net starts near zero (0.01)."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))
    nn.init.orthogonal_(net[0].weight, gain=math.sqrt(2))
    nn.init.zeros_(net[0].bias)
    nn.init.orthogonal_(net[2].weight, gain=out_gain)
    nn.init.zeros_(net[2].bias)
    return net


class ValueNet(LearnedBaseline):
    """The learned baseline V_psi(s) = H * MLP(s): the MLP works in units of the return horizon
    H = 1/(1 - gamma) (capped by the episode limit), so its outputs are O(1) whatever the reward
    scale; the output bias is set to the first batch's mean return / H (data-dependent init),
    because Adam moves a bias by about lr per step and would need hundreds of updates to reach a
    mean return of -100. Fitted with :meth:`LearnedBaseline.loss`, 1/2 mean (V(s) - R)^2."""

    def __init__(self, obs_dim: int, hidden: int, horizon: float):
        super().__init__(mlp(obs_dim, hidden, 1))
        self.horizon = float(horizon)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.horizon * self.net(s).squeeze(-1)

    @torch.no_grad()
    def init_from_returns(self, returns: torch.Tensor) -> None:
        self.net[2].bias.fill_(float(returns.mean()) / self.horizon)
        self.initialised.fill_(True)


class Critic(ValueNet):
    """Q_w(s, z) = H * MLP([s, z]) for one-hot actions z (and, for the relaxed estimators, points
    of the simplex), differentiable in z; fitted like the value net, by least squares of
    Q_w(s_t, onehot(a_t)) on the returns-to-go R_t (:data:`CRITIC_EPOCHS` full-batch Adam steps
    per update). ``s`` broadcasts over the leading sample dimension of ``z``."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, horizon: float):
        super().__init__(obs_dim + n_actions, hidden, horizon)
        self.n_actions = n_actions

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([s.expand(*z.shape[:-1], s.shape[-1]), z], -1))

    def state_value(self, s: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
        """V(s) = sum_a pi(a|s) Q(s, e_a), for bootstrapping episodes cut by the time limit."""
        eye = torch.eye(self.n_actions, device=s.device, dtype=s.dtype)
        q = self(s.unsqueeze(-2), eye.expand(*s.shape[:-1], -1, -1))   # [N, K]
        return (log_pi.exp() * q).sum(-1)


def return_horizon(gamma: float, max_episode_steps: int | None) -> float:
    """H = min(1/(1 - gamma), episode limit): the largest discounted return per unit reward."""
    h = math.inf if gamma >= 1 else 1.0 / (1.0 - gamma)
    if max_episode_steps:
        h = min(h, float(max_episode_steps))
    return 100.0 if math.isinf(h) else h


@dataclass
class Agent:
    """The policy and what its estimator learns beside it, each with its Adam optimiser."""

    policy: nn.Sequential
    baseline: Baseline
    value: ValueNet | None = None                          # learned baseline
    moving_average: MovingAverage | None = None            # moving-average baseline
    control_variate: ContextControlVariate | None = None   # RELAX
    critic: Critic | None = None                           # MuProp and the critic methods
    pathwise: Estimator | None = None                      # a critic method's estimator
    method: Method | None = None                           # ... its registry record
    tau: float | None = None                               # ... its temperature
    settings: dict = field(default_factory=dict)           # ... and its --setting values
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def networks(self) -> dict[str, nn.Module]:
        """Checkpoint names (those of relaxcli 0.1, plus the moving average's buffers)."""
        named = {"policy": self.policy, "value": self.value, "cv": self.control_variate,
                 "moving_average": self.moving_average, "critic": self.critic}
        return {k: net for k, net in named.items() if net is not None}

    def behaviour(self):
        """What collect_batch draws actions with: None for softmax(logits), else log_policy."""
        return None if self.method is None else self.log_policy

    def log_policy(self, logits: torch.Tensor) -> torch.Tensor:
        """log pi(.|s) ``[..., K]``: softmax(logits), or a critic method's discrete law of the
        logits (the law its forward samples follow, e.g. a decoupled forward temperature)."""
        if self.method is None:
            return torch.log_softmax(logits, -1)
        return self.method.discrete_law(logits, Family.CATEGORICAL, **self.settings).logits


def build_agent(o: ReinforceOptions, env: EnvInfo, device: torch.device) -> Agent:
    agent = Agent(mlp(env.obs_dim, o.hidden, env.n_actions, POLICY_OUT_GAIN), o.baseline)
    if o.baseline is Baseline.LEARNED:
        agent.value = ValueNet(env.obs_dim, o.hidden, return_horizon(o.gamma, env.max_episode_steps))
    if o.baseline is Baseline.MOVING_AVERAGE:
        agent.moving_average = MovingAverage(MOVING_AVERAGE_DECAY)
    estimator = policy_estimator(o.estimator)
    if estimator is PolicyEstimator.RELAX:
        agent.control_variate = ContextControlVariate(env.n_actions, env.obs_dim, o.hidden)
    if uses_critic(estimator):
        agent.critic = Critic(env.obs_dim, env.n_actions, o.hidden,
                              return_horizon(o.gamma, env.max_episode_steps))
    if isinstance(estimator, Method):
        agent.method, agent.tau = estimator, estimator.default_tau if o.tau is None else o.tau
        agent.settings = o.method_settings()
        agent.pathwise = estimator.estimator(estimator, n_samples=1, family=Family.CATEGORICAL.value,
                                             **agent.settings)
    for name, net in agent.networks().items():
        net.to(device)
        if any(True for _ in net.parameters()):
            agent.optimizers[name] = torch.optim.Adam(net.parameters(), lr=o.lr)
    return agent


# ================================================================================ validation
@dataclass
class EnvInfo:
    obs_dim: int
    n_actions: int
    reward_threshold: float | None
    max_episode_steps: int | None


def env_info(env_id: str) -> EnvInfo:
    """Make ``env_id`` once and check it is usable: discrete actions, vector observations."""
    import gymnasium as gym
    from gymnasium import spaces

    def first_line(e: Exception) -> str:
        return str(e).splitlines()[0] if str(e) else ""

    try:
        env = gym.make(env_id)
    except (gym.error.DependencyNotInstalled, ModuleNotFoundError, ImportError) as e:
        if env_id in gym.registry:  # a known environment whose optional package is missing
            raise BadInput(f"--env {env_id} needs an optional package that is not installed: "
                           f"{first_line(e) or type(e).__name__}") from None
        raise BadInput(f"--env: cannot make environment {env_id!r} ({type(e).__name__}: "
                       f"{first_line(e)})") from None
    except (gym.error.Error, TypeError, ValueError) as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        what = "unknown environment" if isinstance(e, gym.error.Error) else "cannot make environment"
        why = "" if close else f" ({type(e).__name__}: {first_line(e)})"
        raise BadInput(f"--env: {what} {env_id!r}{why}.{hint} Use a gymnasium id with discrete "
                       "actions, e.g. Acrobot-v1 or CartPole-v1") from None
    try:
        act, obs = env.action_space, env.observation_space
        if not isinstance(act, spaces.Discrete):
            raise BadInput(f"--env {env_id}: the action space is {type(act).__name__}, not Discrete; "
                           "relax reinforce needs discrete actions (e.g. Acrobot-v1, CartPole-v1)")
        if not (isinstance(obs, spaces.Box) and len(obs.shape) == 1):
            raise BadInput(f"--env {env_id}: the observation space is {obs}, not a vector (1-D Box); "
                           "relax reinforce needs vector observations (e.g. Acrobot-v1, CartPole-v1)")
        spec = env.spec
        return EnvInfo(int(obs.shape[0]), int(act.n), None if spec is None else spec.reward_threshold,
                       None if spec is None else spec.max_episode_steps)
    finally:
        env.close()


# ================================================================================== rollouts
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


@dataclass
class Batch:
    """One whole episode per env, time-major (T = the longest episode, N envs)."""

    obs: torch.Tensor          # [T, N, obs_dim]
    actions: torch.Tensor      # [T, N]
    rewards: torch.Tensor      # [T, N], zero after an episode's end
    mask: torch.Tensor         # [T, N], 1 while the episode runs
    returns: np.ndarray        # [N] undiscounted episode returns
    lengths: np.ndarray        # [N]
    trunc_step: np.ndarray     # [N] step at which the time limit cut the episode, -1 if not cut
    trunc_obs: torch.Tensor    # [N, obs_dim] the state it was cut in
    gumbel: torch.Tensor | None = None  # [T, N, K] the noise that chose the actions (RELAX)


def collect_batch(envs, policy: nn.Module, env_seeds: list[int], device: torch.device,
                  mode: str, log_policy=None) -> Batch:
    """Run every env for exactly one episode from ``reset(seed=env_seeds)``.

    ``mode``: "sample" (a ~ pi), "relax" (a = argmax(log pi + G), keeps G for the update),
    "greedy" (a = argmax pi). ``log_policy`` maps logits to log pi (default: pi = softmax(logits),
    computed as softmax itself so that the draws stay those of earlier versions, bit for bit).
    """
    def probs_of(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, -1) if log_policy is None else log_policy(logits).exp()

    n = envs.num_envs
    obs, _ = envs.reset(seed=env_seeds)
    alive = np.ones(n, dtype=bool)
    ep_ret, ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
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
                a = (logits if log_policy is None else log_policy(logits)).argmax(-1)
            else:
                # a ~ Categorical(pi); multinomial directly: building a torch
                # Distribution per step costs more than the policy itself
                a = torch.multinomial(probs_of(logits), 1).squeeze(-1)
        obs, r, term, trunc, step_info = envs.step(a.cpu().numpy())
        cut = alive & np.asarray(trunc) & ~np.asarray(term)
        if cut.any():  # SAME_STEP autoreset: the state the episode was cut in is final_obs
            for i in np.flatnonzero(cut):
                trunc_step[i] = len(obs_l)
                trunc_obs[i] = np.asarray(step_info["final_obs"][i], dtype=np.float32)
        r = np.where(alive, np.asarray(r, dtype=np.float64), 0.0)
        obs_l.append(s)
        act_l.append(a)
        rew_l.append(torch.as_tensor(r, dtype=torch.float32, device=device))
        mask_l.append(torch.as_tensor(alive, dtype=torch.float32, device=device))
        ep_ret += r
        ep_len += alive
        alive &= ~(np.asarray(term) | np.asarray(trunc))
    return Batch(torch.stack(obs_l), torch.stack(act_l), torch.stack(rew_l), torch.stack(mask_l),
                 ep_ret, ep_len, trunc_step, torch.as_tensor(trunc_obs, device=device),
                 torch.stack(gum_l) if gum_l else None)


# ==================================================================================== update
def rewards_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """R_t = r_t + gamma * R_{t+1} along time (dim 0); rewards are zero after an episode ends."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def returns_to_go(batch: Batch, value: ValueNet | None, gamma: float) -> torch.Tensor:
    """R_t ``[T, N]``; with a value net, an episode cut by the time limit gets gamma V(s_cut)
    after its last step. Time-limit truncation is not a terminal state (the observation has no
    clock): without the bootstrap, R_t of a timed-out episode depends on t alone, V cannot fit
    it, and the advantages push the policy towards whatever it did late in episodes."""
    rewards, cut = batch.rewards, np.flatnonzero(batch.trunc_step >= 0)
    if value is not None and cut.size:
        rewards = rewards.clone()
        with torch.no_grad():
            rewards[batch.trunc_step[cut], cut] += gamma * value(batch.trunc_obs[cut])
    return rewards_to_go(rewards, gamma)


def advantages(agent: Agent, returns: torch.Tensor, s: torch.Tensor, valid: torch.Tensor
               ) -> tuple[torch.Tensor, dict]:
    """A_t = R_t - c_t for the agent's baseline (see the module docstring), and its metrics."""
    ret = returns[valid]
    if agent.baseline is Baseline.NONE:
        return ret, {}
    if agent.baseline is Baseline.MOVING_AVERAGE:
        c = float(agent.moving_average())  # past batches only; updated after use
        agent.moving_average.update(float(ret.mean()))
        return ret - c, {"baseline_mean": c}
    if agent.baseline is Baseline.LEAVE_ONE_OUT:  # the other episodes' R_t (envs on dim 1)
        return ret - leave_one_out(returns, dim=1)[valid], {}
    with torch.no_grad():
        adv = ret - agent.value(s)
    return ((adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8) if adv.numel() > 1
            else adv - adv.mean()), {}


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def spread(per_episode: list) -> float | None:
    """grad_var: mean_p var_i(N g_ip) / N over the N per-episode gradients (None when N = 1)."""
    n = len(per_episode)
    if n < 2:
        return None
    e = torch.stack([flat(gs).detach() for gs in per_episode]) * n
    return float(e.var(0, unbiased=True).mean() / n)


def step(optimizer: torch.optim.Optimizer, params: list, grads: list) -> None:
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()


def bootstrap_value(agent: Agent):
    """V(s) of a state an episode was cut in: the value net's, the critic's, or none."""
    if agent.critic is not None:
        return lambda s: agent.critic.state_value(s, agent.log_policy(agent.policy(s)))
    return agent.value


def fit(net: ValueNet, optimizer: torch.optim.Optimizer, targets: torch.Tensor, *inputs,
        epochs: int = VALUE_EPOCHS) -> float:
    """Least squares of a learned baseline (V(s) or Q(s, a)) on the rewards-to-go: ``epochs``
    full-batch Adam steps on 1/2 mean (net(inputs) - R)^2 (:meth:`LearnedBaseline.loss`); the last loss."""
    for _ in range(epochs):
        loss = net.loss(targets, *inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def policy_gradient(agent: Agent, logits: torch.Tensor, batch: Batch, valid: torch.Tensor,
                    returns: torch.Tensor, adv: torch.Tensor, metrics: dict) -> torch.Tensor:
    """Per-step d/dlogits of the objective from the library: REINFORCE/RELAX at the actions taken
    with the advantages, MuProp with the critic's Taylor control variate, or the critic method's
    estimator through Q. A critic method's critic is fitted to this batch first (the freshest Q);
    MuProp's only after the policy step, so that its control variate does not depend on the
    actions it weighs (which keeps it unbiased)."""
    s, a = batch.obs[valid], batch.actions[valid]
    if agent.critic is None:
        noise = batch.gumbel[valid] if agent.control_variate is not None else None
        return categorical_policy_gradient(logits, a, adv, agent.control_variate, s, noise)
    onehot = F.one_hot(a, logits.shape[-1]).to(s.dtype)
    if not bool(agent.critic.initialised):
        agent.critic.init_from_returns(returns[valid])
    if agent.pathwise is None:
        return muprop_policy_gradient(logits, a, returns[valid], lambda z: agent.critic(s, z))
    metrics["critic_loss"] = fit(agent.critic, agent.optimizers["critic"], returns[valid], s, onehot,
                                epochs=CRITIC_EPOCHS)
    return critic_policy_gradient(agent.pathwise, logits, lambda z: agent.critic(s, z), agent.tau)


def update(agent: Agent, batch: Batch, o: ReinforceOptions) -> dict:
    """One gradient step of the policy (and of the value net / control variate / critic): its metrics."""
    valid = batch.mask > 0
    s, a = batch.obs[valid], batch.actions[valid]
    n_steps, n_envs = s.shape[0], batch.mask.shape[1]
    episode_of = torch.arange(n_envs, device=s.device).expand_as(batch.mask)[valid]
    if agent.value is not None and not bool(agent.value.initialised):
        # first batch: V starts at the mean return; the cut-state bootstrap is then redone with it
        agent.value.init_from_returns(returns_to_go(batch, agent.value, o.gamma)[valid])
    returns = returns_to_go(batch, bootstrap_value(agent), o.gamma)
    adv, metrics = advantages(agent, returns, s, valid)

    # per-step estimates of d/dlogits E[A] from the library, then one backward pass per episode
    # for the loss -(1/T) sum_t: the update is their sum, their spread the variance metric
    logits = agent.policy(s)
    cv = agent.control_variate
    g_logits = policy_gradient(agent, logits, batch, valid, returns, adv, metrics)
    params = list(agent.policy.parameters())
    per_episode = [torch.autograd.grad(logits, params, -g_logits * (episode_of == i)[:, None] / n_steps,
                                       retain_graph=True, create_graph=cv is not None)
                   for i in range(n_envs)]
    g_policy = [sum(gs) for gs in zip(*per_episode)]
    log_p = agent.log_policy(logits)
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    g_total = [g.detach() for g in g_policy]
    if o.entropy_coef > 0:
        g_ent = torch.autograd.grad(-o.entropy_coef * entropy, params, retain_graph=cv is not None)
        g_total = [g + ge for g, ge in zip(g_total, g_ent)]
    log_p_a = log_p.detach().gather(-1, a[:, None]).squeeze(-1)
    metrics.update(grad_var=spread(per_episode), policy_loss=float(-(log_p_a * adv).sum() / n_steps),
                   entropy=float(entropy.detach()), grad_norm=float(flat(g_total).norm()))

    if cv is not None:  # RELAX: phi minimises |g|^2, the estimator's second moment
        cv_params = list(cv.parameters())
        cv_loss, cv_grads = variance_gradient(g_policy, cv_params)
        step(agent.optimizers["cv"], cv_params, cv_grads)
        metrics.update(cv_loss=float(cv_loss.detach()), cv_tau=float(cv.log_tau.detach().exp()))
    step(agent.optimizers["policy"], params, g_total)
    if agent.value is not None:  # least squares of the learned baseline on the rewards-to-go
        metrics["value_loss"] = fit(agent.value, agent.optimizers["value"], returns[valid], s)
    if agent.critic is not None and agent.pathwise is None:  # MuProp's critic, after its use
        onehot = F.one_hot(a, logits.shape[-1]).to(s.dtype)
        metrics["critic_loss"] = fit(agent.critic, agent.optimizers["critic"], returns[valid], s, onehot,
                                     epochs=CRITIC_EPOCHS)
    return metrics


def check_finite(metrics: dict, agent: Agent, u: int, episode: int, o: ReinforceOptions,
                 run_path: Path) -> None:
    """Stop before the checkpoint when anything became NaN or inf: the last good one stays."""
    bad = [k.replace("_", " ") for k in ("policy_loss", "grad_norm", "value_loss", "cv_loss", "critic_loss")
           if metrics.get(k) is not None and not math.isfinite(metrics[k])]
    bad += [f"the {k} network's weights" for k, net in agent.networks().items()
            if not all(bool(torch.isfinite(q).all()) for q in net.parameters())]
    if bad:
        kept = (f"the checkpoint of update {u - 1} is kept in {run_path}" if u > 1
                else "no update finished, nothing to resume")
        raise RunFailed(f"{bad[0]} became non-finite (NaN or inf) at update {u} (episode {episode}): "
                        f"the learning rate (--lr {o.lr:g}) is probably too large; {kept}")


# ================================================================================== progress
@dataclass
class Progress:
    """What the training loop has done (saved in checkpoint.pt as ``state``)."""

    updates: int = 0
    episodes: list[dict] = field(default_factory=list)
    env_steps: int = 0
    solved_at: dict | None = None
    wall_seconds: float = 0.0

    @classmethod
    def from_state(cls, state: dict) -> Progress:
        # relaxcli 0.1 called updates "update" and kept the mean baseline here (see load_agent)
        return cls(state.get("updates", state.get("update", 0)), state["episodes"],
                   state["env_steps"], state["solved_at"], state["wall_seconds"])

    def recent(self) -> float:
        return float(np.mean([e["return"] for e in self.episodes[-SOLVE_WINDOW:]]))

    def finished(self, o: ReinforceOptions) -> bool:
        return ((o.episodes is not None and len(self.episodes) >= o.episodes)
                or (o.steps is not None and self.env_steps >= o.steps)
                or (o.stop_when_solved and self.solved_at is not None))

    def add_episodes(self, batch: Batch, u: int, threshold: float | None) -> list[dict]:
        """Record the batch's episodes (and when the task was first solved); their metric lines."""
        lines = []
        for ret, length in zip(batch.returns, batch.lengths):
            self.env_steps += int(length)
            ep = {"kind": "episode", "update": u, "episode": len(self.episodes) + 1,
                  "return": float(ret), "length": int(length), "env_steps": self.env_steps}
            self.episodes.append(ep)
            lines.append(ep)
            if (self.solved_at is None and threshold is not None
                    and len(self.episodes) >= SOLVE_WINDOW and self.recent() >= threshold):
                self.solved_at = {"episode": ep["episode"], "env_steps": ep["env_steps"]}
        return lines


def save_checkpoint(run, agent: Agent, progress: Progress, o: ReinforceOptions) -> None:
    run.save_torch("checkpoint.pt", {
        "nets": {k: net.state_dict() for k, net in agent.networks().items()},
        "opts": {k: opt.state_dict() for k, opt in agent.optimizers.items()},
        "state": dataclasses.asdict(progress), "options": o.config(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                "python": random.getstate()}})


def load_agent(agent: Agent, ckpt: dict) -> Progress:
    """Restore networks, optimisers and RNGs from ``checkpoint.pt``; the saved progress."""
    state = ckpt["state"]
    nets = dict(ckpt["nets"])
    if agent.moving_average is not None and "moving_average" not in nets:
        # relaxcli 0.1 kept a bias-corrected EMA: continue from its current value
        count = int(state.get("mean_count", 0))
        value = state.get("mean_ema", 0.0) / (1 - MOVING_AVERAGE_DECAY ** count) if count else 0.0
        nets["moving_average"] = {"average": torch.tensor(float(value)), "seen": torch.tensor(count)}
    for name, net in agent.networks().items():
        net.load_state_dict(nets[name])
    for name, opt in agent.optimizers.items():
        opt.load_state_dict(ckpt["opts"][name])
    torch.set_rng_state(ckpt["rng"]["torch"])
    np.random.set_state(ckpt["rng"]["numpy"])
    random.setstate(ckpt["rng"]["python"])
    return Progress.from_state(state)


# ================================================================================ evaluation
def moving_average(x: list[float], window: int = SOLVE_WINDOW) -> list[float]:
    """Average of the last ``window`` values at each position (fewer at the start)."""
    c = np.cumsum(np.asarray(x, dtype=np.float64))
    out = []
    for i in range(len(x)):
        lo = max(0, i + 1 - window)
        out.append(float((c[i] - (c[lo - 1] if lo else 0.0)) / (i + 1 - lo)))
    return out


def evaluate(env_id: str, policy: nn.Module, episodes: int, seed: int, greedy: bool,
             device: torch.device, log_policy=None) -> float | None:
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
            returns += collect_batch(envs, policy, env_seeds, device, "greedy" if greedy else "sample",
                                     log_policy).returns.tolist()
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
        lines.append(f"{e['episode']},{e['update']},{e['return']:.6g},{e['length']},"
                     f"{e['env_steps']},{m:.6g}")
    return "\n".join(lines) + "\n"


def write_outputs(run, o: ReinforceOptions, env: EnvInfo, progress: Progress, agent: Agent,
                  device: torch.device) -> dict:
    """Evaluate, write returns.csv, policy.pt, curve.png (episode.gif); the summary."""
    policy, log_policy = agent.policy.eval(), agent.behaviour()
    eval_greedy = evaluate(o.env, policy, o.eval_episodes, o.seed, True, device, log_policy)
    eval_stochastic = evaluate(o.env, policy, o.eval_episodes, o.seed, False, device, log_policy)
    returns = [e["return"] for e in progress.episodes]
    ma = moving_average(returns)
    atomic_write_text(run.file("returns.csv"), returns_csv(progress.episodes))
    run.save_torch("policy.pt", {
        "state_dict": {k: v.cpu() for k, v in policy.state_dict().items()}, "env": o.env,
        "obs_dim": env.obs_dim, "n_actions": env.n_actions, "hidden": o.hidden,
        "architecture": "Linear(obs, hidden) - Tanh - Linear(hidden, actions)"})
    fig = plots.reinforce_curve(returns, ma, env.reward_threshold, window=SOLVE_WINDOW, title=(
        f"{o.env}: {o.method}, seed {o.seed}"))
    run.save_figure(fig, "curve.png", dpi=110)
    plots.close(fig)
    if o.video:
        frames = record_episode_frames(o.env, policy, o.seed, device)
        atomic_write_bytes(run.file("episode.gif"), plots.episode_gif(frames, fps=30))
    solved = progress.solved_at
    return {
        "env": o.env, "estimator": o.estimator, "baseline": o.baseline.value,
        "critic": agent.critic is not None, "tau": agent.tau,
        "settings": dict(agent.settings),
        "episodes": len(progress.episodes), "env_steps": progress.env_steps,
        "episodes_to_solve": None if solved is None else solved["episode"],
        "steps_to_solve": None if solved is None else solved["env_steps"],
        "eval_return_greedy": eval_greedy, "eval_return_stochastic": eval_stochastic,
        "wall_seconds": None, "seed": o.seed, "num_envs": o.num_envs,
        "updates": progress.updates, "reward_threshold": env.reward_threshold,
        "solved": solved is not None, "final_moving_avg_100": ma[-1] if ma else None,
        "best_moving_avg_100": max(ma[SOLVE_WINDOW - 1:]) if len(ma) >= SOLVE_WINDOW else None,
        "eval_episodes": o.eval_episodes, "run_dir": str(run.path),
    }


def print_summary(reporter, o: ReinforceOptions, summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"relax reinforce: {o.env} ({o.method})")
    table.add_column("metric")
    table.add_column("value")
    for k in ("episodes", "env_steps", "episodes_to_solve", "steps_to_solve", "eval_return_greedy",
              "eval_return_stochastic", "final_moving_avg_100", "wall_seconds"):
        v = summary[k]
        table.add_row(k, "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
    reporter.table(table)
    reporter.print(f"run directory: {summary['run_dir']}")


# ======================================================================================= run
def existing_run(options: ReinforceOptions, reporter) -> tuple[ReinforceOptions, dict | None]:
    """--resume-existing: what to do with the run directory --out, so that a sweep's command line
    can be run again as it is. Returns (the options to run with, None), or (options, the
    summary) of a run that completed with these options (nothing to do, nothing written).

    No run there: a new run (create_run refuses a non-empty folder that relax did not make). A
    reinforce run started with the same options (all but --threads, both read as
    :meth:`ReinforceOptions.checked` reads them, so a relaxcli 0.1 baseline name matches its new
    name): completed, its summary; stopped after an update (checkpoint.pt), a --resume, which
    equals an uninterrupted run; stopped before, a fresh start over it (--overwrite, which only
    ever empties a relax run directory). Other options: refused, exit 2, with what differs, since
    continuing it would mix settings in a sweep's table."""
    if options.resume is not None:
        raise BadInput("--resume-existing takes the run's options from the command line; it "
                       "cannot go with --resume (which takes them from config.json)")
    if options.overwrite:
        raise BadInput("--resume-existing keeps what --out holds; it cannot go with --overwrite "
                       "(which replaces it)")
    if options.out is None:
        raise BadInput("--resume-existing needs --out: the run directory to continue")
    path = Path(options.out)
    options = dataclasses.replace(options, resume_existing=False)
    if not (path / "config.json").exists():
        return options, None
    config = read_run_config(path, COMMAND, flag="--resume-existing --out")
    saved = config.get("options")
    if not isinstance(saved, dict):
        raise RunDirError(f"--resume-existing --out {str(path)!r}: config.json has no options")
    there = ReinforceOptions.from_config(saved, None).checked().config()
    differ = option_differences(options.checked().config(), there, ("threads",))
    if differ:
        raise Refused(f"--resume-existing: {path} holds a run with other options ({'; '.join(differ)}); "
                      "give a new --out, or --resume it with its own options")
    status = read_status(path)
    if status == "completed":
        reporter.print(f"{path}: completed with these options; nothing to do")
        return options, read_summary(path)
    if (path / "checkpoint.pt").exists():
        reporter.print(f"{path}: {status}; resuming it (--resume)")
        return ReinforceOptions(resume=path, threads=options.threads), None
    reporter.print(f"{path}: {status or 'no status'} before its first update ended; starting it afresh")
    return dataclasses.replace(options, overwrite=True), None


def reinforce(options: ReinforceOptions | None = None, reporter=None) -> dict:
    """Train, evaluate and save; returns the summary dict (also written to summary.json).

    With ``resume``, every option comes from the run's config.json (``options.threads`` aside)
    and the run continues after its last completed update.
    """
    started = time.perf_counter()
    options, reporter = options or ReinforceOptions(), reporter or Reporter(quiet=True)
    if options.resume_existing:
        options, finished = existing_run(options, reporter)
        if finished is not None:
            return finished
    resume, out, overwrite, tensorboard = (options.resume, options.out, options.overwrite,
                                           options.tensorboard)
    run, ckpt = (open_for_resume(resume, COMMAND), None) if resume is not None else (None, None)
    # a resume that cannot start (corrupted checkpoint, environment gone) marks the run failed
    with preparing(run) if run is not None else contextlib.nullcontext():
        if run is not None:
            options = ReinforceOptions.from_config(run.config["options"], options.threads)
            if run.file("checkpoint.pt").exists():  # none: cut before the first update ended
                ckpt = load_checkpoint(run.file("checkpoint.pt"), map_location="cpu")
        o = options.checked()
        env = env_info(o.env)
        device = resolve_device(o.device)
        o = dataclasses.replace(o, threads=set_threads(o.threads))
    if run is None:
        run = create_run(COMMAND, o.method, o.config(), out=out, overwrite=overwrite, seed=o.seed,
                         device=str(device), tensorboard=tensorboard)
    if o.stop_when_solved and env.reward_threshold is None:
        reporter.print(f"[yellow]{o.env} has no reward threshold: --stop-when-solved does nothing")

    with run_context(run, resume_hint=f"relax reinforce --resume {run.path}"):
        seed_everything(o.seed)
        agent = build_agent(o, env, device)
        progress = load_agent(agent, ckpt) if ckpt is not None else Progress()
        run.truncate_metrics(lambda r, done=progress.updates: r.get("update", 0) <= done)
        started -= progress.wall_seconds  # the wall clock continues from the checkpoint's
        envs = make_envs(o.env, o.num_envs)
        sampling = "relax" if agent.control_variate is not None else "sample"
        total = None if o.episodes is None else math.ceil(o.episodes / o.num_envs) * o.num_envs
        try:
            with reporter.progress(f"reinforce {o.env}", total=total) as bar:
                bar.advance(len(progress.episodes))
                while not progress.finished(o):
                    u = progress.updates + 1
                    env_seeds, torch_seed = batch_seeds(o.seed, 0, u, o.num_envs)
                    torch.manual_seed(torch_seed)
                    batch = collect_batch(envs, agent.policy, env_seeds, device, sampling, agent.behaviour())
                    metrics = update(agent, batch, o)
                    check_finite(metrics, agent, u, len(progress.episodes) + 1, o, run.path)
                    for line in progress.add_episodes(batch, u, env.reward_threshold):
                        run.log_metrics(line)
                    progress.updates, progress.wall_seconds = u, time.perf_counter() - started
                    run.log_metrics({"kind": "update", "update": u, "episodes": len(progress.episodes),
                                     "env_steps": progress.env_steps,
                                     "moving_avg_100": progress.recent(), **metrics})
                    save_checkpoint(run, agent, progress, o)
                    bar.advance(len(batch.returns), info=f"avg100 {progress.recent():.1f}")
        finally:
            envs.close()

        summary = write_outputs(run, o, env, progress, agent, device)
        summary["wall_seconds"] = round(time.perf_counter() - started, 3)  # with evaluation
        summary = run.finish(summary)
    print_summary(reporter, o, summary)
    return summary


__all__ = [
    "Batch",
    "ReinforceOptions",
    "collect_batch",
    "evaluate",
    "reinforce",
    "rewards_to_go",
    "update",
]
