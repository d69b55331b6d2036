"""``relax train-vae``: a discrete-latent VAE on binarised MNIST, with the same model for every method.

Every option is written once, in :class:`TrainVaeOptions` (the CLI is built from it).
:func:`run_train_vae` reads top to bottom like a CleanRL script, from named steps: options (or a
resumed run's) -> checks -> data -> model, estimator, optimiser -> checkpoint restored -> loop
(train one epoch, evaluate, checkpoint) -> model selection -> figures -> summary. The latent comes
only from the registry (:mod:`relaxcli.methods`): the encoder outputs ``method.params.size(K)``
raw numbers per latent variable (the record's parameter packing), and the runner never names a
distribution class.

Model: encoder MLP 784-512-256-raw, decoder latent-256-512-784, ReLU (``--hidden``; Jang et al.'s
released notebook), or with ``--hidden none`` a linear encoder and decoder (784-raw, latent-784:
the model of Jang, Gu, Poole 2017's Table 1); Bernoulli likelihood
p(x|z) = prod_i Bernoulli(x_i; sigmoid(decoder(z)_i)). The prior p(z) is the method's neutral law
(uniform), or with ``--prior learned`` the same law with one set of parameters for all images,
trained with the model (the paper's "learned categorical prior"); every KL, IW bound and prior
sample below uses whichever is chosen. Latents: Bernoulli
family 200 units; categorical 20 variables x 10 classes; subset (topk) 20 groups of 10 with k
chosen per group; simplex methods 20 x 10 (IGR: 9 free Gaussian dims each).

Objective (nats per image): negative ELBO
    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),
with the reconstruction term estimated by the method's estimator
(``est(raw, cost, tau=tau)``, pathwise or score-function, one interface) and the KL exact:

* Bernoulli / categorical latents (``method.discrete`` is Bernoulli / OneHotCategorical): KL of
  the discrete posterior to the (uniform or learned) prior, analytic (torch's registered KL).
* topk: the prior is the uniform law over the C(K,k) subsets (= top-k of uniform logits); the KL
  sum_S q(S) (log q(S) - log p(S)) is enumerated over all C(K,k) subsets with the discrete law's
  exact log-masses of every subset at once (``enumerate_log_prob``, one vectorised dynamic
  programme); the prior's log-masses (= -log C(K,k)) are computed once per run.
* methods without a discrete counterpart (``method.discrete is None``: IGR, logistic-normal):
  the model *is* the relaxed one; its prior is the method's own law with loc 0 and scale 1
  (uniform-ish over the simplex), and the KL is ``torch.distributions.kl_divergence`` when one
  is registered (IGR: closed-form Gaussian KL); otherwise an unbiased one-sample Monte-Carlo
  estimate log q(z) - log p(z) with exact densities.
* correlated-bernoulli (learned correlation R = L L^T, L a learnable lower-triangular factor
  with rows normalised so diag R = 1, shared by all images): at tau -> 0 its discrete law is a
  Gaussian-copula Bernoulli vector whose log-mass is a 200-dimensional orthant probability, with
  no closed form, so its discrete KL/ELBO cannot be computed honestly. It is trained and
  evaluated as the relaxed model it samples: prior = the same copula with R = I and logits 0 at
  the same temperature, KL by the unbiased Monte-Carlo estimate log q(z) - log p(z) with the
  copula's exact density, sampled and evaluated in logit space (LogitCorrelatedRelaxedBernoulli:
  exact in float32 where the gates round to 0 or 1; the Jacobian cancels). eval_model = "relaxed".

Evaluation (honest comparison): for every method with a discrete law (eval_model "discrete"),
test latents are drawn from ``method.discrete`` (never the relaxation), giving
test -ELBO = E_q[-log p(x|b)] + KL (exact) and the importance-weighted bound
-log p(x) <= -log (1/S) sum_s p(x|b_s) p(b_s) / q(b_s|x) with ``--eval-samples`` S draws (final
epoch; earlier epochs use one draw and no IW bound). Relaxed-only methods use the same formulas
with their exact densities (eval_model "relaxed").

Notes on special methods:

* stochastic-times-smooth trains with h = sg(b) sqrt(p) (its definition), whose forward value is
  not a draw of ``method.discrete`` = Bernoulli(p); the training number is therefore only its own
  surrogate, and the discrete test -ELBO (decoder fed b ~ Bernoulli(p)) is the honest number.
* gaussian-bernoulli and hard-concrete feed gates in [0, 1]; their discrete law is
  Bernoulli(sigmoid(raw)) = P(gate > 1/2) (registry convention), and they are evaluated with it.
* generalized-gumbel is refused (exit 2): its sample is one number sum_k values_k w_k per
  variable, a different latent space from its discrete one-hot law, so neither model is the
  other's relaxation.

Training numbers (``train_neg_elbo``) are the training objective's value on the training sample
(relaxed or straight-through sample + exact KL): comparable within a method, not across methods.
The temperature follows Jang et al.'s schedule tau = max(tau_min, tau0 * exp(-r * step)).

Resume: after every epoch a checkpoint (model, optimiser, estimator, RNG state, step, history)
is written atomically; ``--resume RUN_DIR`` continues from it and gives the same numbers as an
uninterrupted run with the same seed. Ctrl-C keeps the checkpoint of the last full epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, kl_divergence
from torch.nn import functional as F

from relaxcli import methods as registry
from relaxcli.console import Reporter
from relaxcli.data import BINARIZATIONS, DATASETS, Binarizer, load_dataset
from relaxcli.distributions.kl import bernoulli_kl
from relaxcli.distributions.subset import sequential_relaxation_warning
from relaxcli.errors import BadInput
from relaxcli.estimators import make_estimator
from relaxcli.options import Choice, RunOptions, option
from relaxcli.report import Curve, Metric, Report, declare_report
from relaxcli.runs import (
    Refused,
    RunFailed,
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
    to_jsonable,
)

COMMAND = "train-vae"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # the model of the best validation -ELBO so far (with --val-size)
# Options added after runs existed: a resumed older run keeps the behaviour it was started with.
RESUME_DEFAULTS = {"input_coding": "centered", "init": "torch", "lr_decay": 1.0,
                   "lr_decay_every": 1000, "anneal_every": 1, "val_size": 0, "prior": "uniform",
                   "optimizer": "adam", "momentum": None}

# Default latent sizes per family: (number of variables, categories per variable).
DEFAULT_LATENT = {"bernoulli": (200, 1), "categorical": (20, 10), "subset": (20, 10), "simplex": (20, 10)}

# What `relax compare` reads from these runs (relaxcli.report): the metrics, the test -ELBO curve.
REPORT = declare_report(Report(
    command=COMMAND,
    metrics=(
        Metric("test_neg_elbo", label="test -ELBO", better="lower"),
        Metric("test_iw_nll", label="IW bound on -log p(x)", better="lower"),
        Metric("test_kl", label="KL (nats)"),
        Metric("test_active_vars", label="active vars"),
        Metric("selected_epoch", label="selected epoch"),
        Metric("seconds_per_epoch", label="s/epoch", better="lower"),
        Metric("train_neg_elbo", label="train -ELBO", better="lower"),
        Metric("val_neg_elbo", label="val -ELBO"),
        Metric("test_recon", label="reconstruction"),
        Metric("test_mean_max_prob", label="mean max q"),
        Metric("train_cpu_seconds_per_epoch", label="train CPU s/epoch"),
        Metric("wall_seconds", label="wall s", better="lower"),
    ),
    default_metrics=("test_neg_elbo", "test_iw_nll", "test_kl", "test_active_vars",
                     "seconds_per_epoch"),
    group_by=("dataset", "method"),
    curve=Curve(x="epoch", y=("test_neg_elbo",), xlabel="epoch", ylabel="test -ELBO (nats)",
                title="train-vae: test -ELBO per epoch, mean ± std over runs (lower is better)",
                better="lower", legend_metric="test_neg_elbo",
                legend_title="final test -ELBO, best first", facet_by_kind=True,
                untrained_x=0.0),  # epoch 0 is the untrained model: kept off the y range
))


# ----------------------------------------------------------------------------- options
# The data module owns the names of its datasets and binarisations: the vocabularies follow them.
Dataset = Choice("Dataset", [(name.upper().replace("-", "_"), name) for name in DATASETS],
                 module=__name__)
Binarize = Choice("Binarize", [(name.upper(), name) for name in BINARIZATIONS], module=__name__)


class InputCoding(Choice):
    """What the encoder sees of the binary image x (see :class:`VAE`): x itself, or 2x - 1."""

    X = "x"
    CENTERED = "centered"


class Init(Choice):
    """The weight initialisation of :class:`VAE`: nn.Linear's default, or Glorot-uniform."""

    TORCH = "torch"
    XAVIER = "xavier"


class Prior(Choice):
    """The prior p(z) of :class:`VAE`: the method's neutral law (uniform categorical, Bernoulli(1/2),
    ...), or the same law with parameters learned jointly with the model."""

    UNIFORM = "uniform"
    LEARNED = "learned"


class Optimizer(Choice):
    """The optimiser of the model's (and the estimator's) parameters: Adam, or SGD with momentum
    (Jang et al.'s Table 1: "stochastic gradient descent with momentum 0.9")."""

    ADAM = "adam"
    SGD = "sgd"


SGD_MOMENTUM = 0.9  # --optimizer sgd without --momentum: Jang et al.'s


@dataclass(kw_only=True)
class TrainVaeOptions(RunOptions):
    """Train a VAE on binarised MNIST with the method's latent; report test -ELBO and an IW bound."""

    method: str | None = option(None, "--method", help=(
        "Latent method from the registry (relax list); unsuitable ones exit 2 with the list of "
        "suitable ones. Required unless --resume."))
    epochs: int | None = option(None, "--epochs", help=(
        "Training epochs (default 10). With --resume: train up to this many."))
    latent_dim: int | None = option(None, "--latent-dim", help=(
        "Latent variables: Bernoulli units (default 200) or categorical / subset / simplex groups "
        "(default 20)."))
    categories: int | None = option(None, "--categories", help=(
        "Classes per categorical / subset / simplex group (default 10)."))
    k: int | None = option(None, "--k", help="Subset size per group for topk (default 2).")
    settings: list[str] | None = option(None, "--setting", show_default=False, metavar="KEY=VALUE", help=(
        "A setting of the method, KEY=VALUE, repeatable (e.g. --method imle --setting lambda=10), "
        "typed like its default (integer, number, word, true/false); it reaches the training "
        "distribution, the discrete law (KL, evaluation) and the estimator. --setting k=N is "
        "--k N (given both ways they must agree). config.json records them as KEY=VALUE in the "
        "method's order, and a --resume keeps them. Settings (defaults): "
        + registry.settings_overview() + "."))
    hidden: str = option("512,256", "--hidden", help=(
        "Encoder hidden widths, comma-separated; the decoder mirrors them. none: no hidden layer, "
        "a linear encoder and decoder (Jang et al.'s Table 1 model, 784-200-784)."))
    prior: Prior = option(Prior.UNIFORM, "--prior", help=(
        "uniform: the method's neutral prior (uniform categorical, Bernoulli(1/2); Jang et al.'s "
        "released code). learned: the same law with one learned parameter set shared by all "
        "images, trained with the model (Jang et al.'s paper, arXiv v5: a learned categorical "
        "prior); the KL, IW bound and samples.png use it."))
    lr: float = option(1e-3, "--lr", help=(
        "Learning rate (Jang et al. chose theirs per estimator on validation from 3e-5, 1e-5, "
        "3e-4, 1e-4, 3e-3, 1e-3)."))
    optimizer: Optimizer = option(Optimizer.ADAM, "--optimizer", help=(
        "adam (Adam) or sgd (SGD with --momentum; Jang et al.'s Table 1)."))
    momentum: float | None = option(None, "--momentum", help=(
        f"SGD momentum in [0, 1), --optimizer sgd only (default {SGD_MOMENTUM}, Jang et al.'s)."))
    batch_size: int = option(100, "--batch-size", help="Images per training step.")
    tau: float | None = option(None, "--tau", help=(
        "Initial temperature tau0 (default: the method's default, else 1)."))
    anneal_rate: float = option(3e-5, "--anneal-rate", help=(
        "r in tau = max(tau_min, tau0*exp(-r*step)) (Jang et al.; 0 = constant)."))
    tau_min: float | None = option(None, "--tau-min", help=(
        "Lowest temperature of the schedule (default min(0.5, tau0), or the method's min_tau "
        "where its paper bounds the temperature: 1 for ReinMax)."))
    n_samples: int | None = option(None, "--n-samples", help=(
        "Latent samples per image for the gradient estimator (default 1; 2 for reinforce-rloo's "
        "leave-one-out baseline)."))
    dataset: Dataset = option(Dataset("mnist"), "--dataset", help=(
        "mnist, fashion-mnist, or synthetic (a tiny generated test/smoke set)."))
    data_dir: str | None = option(None, "--data-dir", help=(
        "Folder with MNIST/raw or FashionMNIST/raw idx files (read-only is fine; default "
        "RELAX_DATA_DIR, then the user cache, downloading there if missing)."))
    binarize: Binarize = option(Binarize("dynamic"), "--binarize", help=(
        "dynamic (fresh Bernoulli draw each epoch), static (one fixed draw) or threshold "
        "(pixel > 0.5)."))
    eval_samples: int = option(100, "--eval-samples", help=(
        "Latent samples per test image for the final -ELBO and the importance-weighted bound on "
        "-log p(x)."))
    latent_family: registry.Family | None = option(None, "--latent-family", help=(
        "bernoulli or categorical, for estimators that serve both (reinforce, reinforce-rloo, "
        "rebar, relax); default: the method's own family."))
    train_limit: int | None = option(None, "--train-limit", help=(
        "Use only the first N training images (smoke runs)."))
    test_limit: int | None = option(None, "--test-limit", help=(
        "Evaluate on only the first N test images (smoke runs)."))
    val_size: int = option(0, "--val-size", help=(
        "Hold out the last N training images as a validation set (binarised once); the reported "
        "test numbers are then those of the epoch with the best validation -ELBO (Jang et al.'s "
        "protocol uses 5000). 0 = no split, report the last epoch."))
    lr_decay: float = option(1.0, "--lr-decay", help=(
        "Multiply the learning rate by this every --lr-decay-every steps (Jang et al.'s code: 0.9 "
        "every 1000). 1 = constant."))
    lr_decay_every: int = option(1000, "--lr-decay-every", help=(
        "Steps between learning-rate decays."))
    anneal_every: int = option(1, "--anneal-every", help=(
        "Update the temperature every N steps (Jang et al.'s N in {500, 1000}); 1 = every step."))
    input_coding: InputCoding = option(InputCoding.X, "--input-coding", help=(
        "What the encoder sees of the binary image: x (x in {0,1}, as Jang et al.) or centered "
        "(2x-1; relaxcli 0.1's default, which starves the latent with Adam: see "
        "experiments/README.md)."))
    init: Init = option(Init.XAVIER, "--init", help=(
        "Weight initialisation: xavier (Glorot-uniform weights, zero biases: TensorFlow's, Jang et "
        "al.'s; fewer dead encoder units) or torch (nn.Linear's default, relaxcli 0.1's)."))
    resume: Path | None = option(None, "--resume", help=(
        "Continue a run directory after its last completed epoch (options come from its "
        "config.json, except --epochs); results equal an uninterrupted run."))
    resume_existing: bool = option(False, "--resume-existing", help=(
        "For sweeps that are run again: when --out already holds a train-vae run started with "
        "these same options, skip it if completed (its summary is printed), continue it from its "
        "checkpoint if it stopped, start it afresh if it stopped before its first epoch; a run "
        "there with other options is refused (exit 2, the differences named). --epochs and "
        "--threads may differ (a larger --epochs trains the run on)."))
    tensorboard: bool = option(False, "--tensorboard", help=(
        "Also write TensorBoard event files beside metrics.jsonl (which stays the record), for "
        "`tensorboard --logdir runs`; needs pip install tensorboard. A --resume keeps the "
        "original run's choice."))


# Fixed vocabularies by field: values from tests and from resumed runs' config.json are strings.
VOCABULARIES = {"dataset": Dataset, "binarize": Binarize, "input_coding": InputCoding,
                "init": Init, "prior": Prior, "optimizer": Optimizer,
                "latent_family": registry.Family}
# where a run is written and how it is watched, not how it is trained
NOT_RECORDED = ("out", "overwrite", "resume", "resume_existing", "tensorboard")


def recorded(options: TrainVaeOptions) -> dict:
    """The options as config.json's ``options`` (Enums as their values): what ``compare``
    groups by and ``--resume`` rebuilds the run from."""
    return {name: value.value if isinstance(value, Enum) else value
            for name, value in dataclasses.asdict(options).items() if name not in NOT_RECORDED}


# ----------------------------------------------------------------------------- method checks
def unsuitable_reason(method: registry.Method) -> str | None:
    """Why ``method`` cannot be the VAE's latent, or None when it can."""
    if not method.sample_in_law_space:
        return ("its sample is not a point of its discrete law's space (e.g. one number per "
                "variable), so it has no honest discrete evaluation")
    return None


def suitable_methods() -> list[str]:
    """Registry methods that ``relax train-vae`` accepts (read at call time: new methods appear)."""
    return [name for name, m in registry.METHODS.items() if unsuitable_reason(m) is None]


def eval_model_of(method: registry.Method) -> str:
    """"discrete" (test latents drawn from the exact discrete law) or "relaxed" (no discrete law,
    or a learned correlation, whose thresholded law has no tractable mass)."""
    if method.discrete is None or method.takes_correlation:
        return "relaxed"
    return "discrete"


# ----------------------------------------------------------------------------- the model
@dataclass
class Latent:
    """Shapes of the latent: ``raw_shape`` per image (encoder output), ``shape`` of a sample."""

    n_vars: int
    categories: int
    raw_shape: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def label(self) -> str:
        """'200 Bernoulli' or '20 x 10' (variables x categories), as the README's tables write it."""
        return f"{self.n_vars} Bernoulli" if self.categories == 1 else f"{self.n_vars} x {self.categories}"


def latent_for(method: registry.Method, family: str, latent_dim: int | None, categories: int | None) -> Latent:
    n, k = DEFAULT_LATENT[family]
    n = n if latent_dim is None else latent_dim
    if n < 1:
        raise BadInput(f"--latent-dim must be >= 1, got {n}")
    if family == "bernoulli":
        if categories not in (None, 1):
            raise BadInput(f"--categories does not apply to the Bernoulli method {method.name!r} (one unit = 2 states)")
        p = method.params.size(1)
        return Latent(n, 1, (n,) if p == 1 else (n, p), (n,))
    k = k if categories is None else categories
    if k < 2:
        raise BadInput(f"--categories must be >= 2 for {method.name!r}, got {k}")
    return Latent(n, k, (n, method.params.size(k)), (n, k))


class VAE(nn.Module):
    """MLP encoder x -> raw latent parameters, MLP decoder z -> Bernoulli logits of the pixels.

    ``input_coding``: what the encoder sees of the binary image x: ``"x"`` (x itself, in {0, 1},
    as Jang et al.'s code) or ``"centered"`` (2x - 1, relaxcli <= 0.1's default). Centring is
    harmful with Adam: most of MNIST's pixels are background (-1 under 2x - 1) in most images, so
    hundreds of first-layer weights per unit receive the same-signed gradient at every step and
    Adam (which moves each weight by ~lr whatever its gradient's size) drifts each unit's
    image-independent offset far more than its image-dependent part; after training 98.6% of the
    first-layer units are negative on every image (dead) and the latent carries ~11 nats. With x,
    background weights get no gradient. See experiments/README.md for the
    ablation (``relax train-vae --input-coding centered``).

    ``init``: ``"xavier"`` (Glorot-uniform weights, zero biases: TensorFlow-slim's default, Jang
    et al.'s; the default) or ``"torch"`` (nn.Linear's default, U(+-1/sqrt(fan_in)) weights and
    biases). With x and torch's init, 2/3 of the first-layer units still die on MNIST; with
    Xavier about 1/4 (experiments/README.md).
    """

    def __init__(self, latent: Latent, hidden: tuple[int, ...], learn_correlation: bool = False,
                 input_coding: str = "x", init: str = "xavier", learned_prior: Tensor | None = None):
        super().__init__()
        self.latent = latent
        self.input_coding = input_coding
        enc, width = [], 784
        for h in hidden:
            enc += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.encoder = nn.Sequential(*enc, nn.Linear(width, math.prod(latent.raw_shape)))
        dec, width = [], latent.numel
        for h in reversed(hidden):
            dec += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.decoder = nn.Sequential(*dec, nn.Linear(width, 784))
        # Learned correlation of correlated-bernoulli: R = L L^T with L lower triangular, unit
        # diagonal before row normalisation (R = I at initialisation, always positive definite).
        self.corr_factor = nn.Parameter(torch.zeros(latent.n_vars, latent.n_vars)) if learn_correlation else None
        # --prior learned: the prior's raw parameters (one set for all images), started at the
        # neutral law so that step 0 is the uniform-prior model
        self.prior_raw = None if learned_prior is None else nn.Parameter(learned_prior.clone())
        if init == "xavier":
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def encode(self, x: Tensor) -> Tensor:
        x_in = 2.0 * x - 1.0 if self.input_coding == "centered" else x
        return self.encoder(x_in).view(x.shape[0], *self.latent.raw_shape)

    def decode(self, z: Tensor) -> Tensor:
        """Pixel logits for latents ``z`` of shape (..., *latent.shape) -> (..., 784)."""
        lead = z.shape[: z.dim() - len(self.latent.shape)]
        return self.decoder(z.reshape(*lead, self.latent.numel))

    def log_px(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) for z (n, B, *latent) and x (B, 784) -> (n, B)."""
        logits = self.decode(z)
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def correlation_factor(self) -> Tensor | None:
        """The learned R's Cholesky factor: lower triangular, positive diagonal, unit-norm rows.

        Handed to the copula as ``scale_tril`` (R = L L^T has a unit diagonal by construction), so
        no Cholesky of R is ever taken: in float32 that failed on MNIST once R grew ill-conditioned.
        """
        if self.corr_factor is None:
            return None
        eye = torch.eye(self.latent.n_vars, dtype=self.corr_factor.dtype, device=self.corr_factor.device)
        lower = torch.tril(self.corr_factor, -1) + eye
        return lower / lower.norm(dim=1, keepdim=True)


# ----------------------------------------------------------------------------- laws and KL
def prior_raw(method: registry.Method, latent: Latent, batch: int, device) -> Tensor:
    """Raw parameters of the prior: the record's neutral parameters (logits 0, the uniform law;
    loc 0 and scale 1 for (loc, scale) methods)."""
    return method.params.neutral((batch, *latent.raw_shape), device=device)


def per_image(t: Tensor, lead: int) -> Tensor:
    """Sum every dimension after the first ``lead`` ones (latent variables of one image)."""
    return t.reshape(*t.shape[:lead], -1).sum(-1)


def latent_kl(q, p) -> Tensor:
    """KL(q || p) of each latent variable, (B, n_vars) (one column for a joint law): torch's
    ``kl_divergence``, registered for every discrete law of the registry and for the relaxed laws
    whose record says ``exact_relaxed_kl``."""
    # torch's Bernoulli KL is inf once a (learned) prior logit passes ~16.6: see bernoulli_kl
    plain_bernoulli = type(q) is Bernoulli and type(p) is Bernoulli
    kl = bernoulli_kl(q.logits, p.logits) if plain_bernoulli else kl_divergence(q, p)
    return kl.reshape(kl.shape[0], -1)


def mode_probability(q) -> Tensor | None:
    """The largest probability of each latent variable's discrete law, (B, n_vars): 1/K for a
    uniform posterior, 1 for a deterministic one (a collapse diagnostic). None for laws that do
    not enumerate their support (relaxed-only models)."""
    if hasattr(q, "enumerate_log_prob") and getattr(q, "has_enumerate_support", False):
        log_mass = q.enumerate_log_prob()
    elif getattr(q, "has_enumerate_support", False):
        log_mass = q.log_prob(q.enumerate_support(expand=False))
    else:
        return None
    top = log_mass.max(0).values.exp()
    return top.reshape(top.shape[0], -1)


ACTIVE_KL = 0.01  # nats: a latent variable whose mean KL to the prior is below this is unused


@dataclass
class Laws:
    """Everything the objective needs about the latent, resolved once from the registry."""

    method: registry.Method
    latent: Latent
    settings: dict
    eval_model: str
    family: str | None = None  # the latent family (score-function estimators serve several)

    @property
    def exact_kl(self) -> bool:
        """KL(q || p) is exact (registered): always for the discrete eval model, and for relaxed
        laws whose record says so; otherwise the cost carries a Monte-Carlo estimate."""
        return self.eval_model == "discrete" or self.method.exact_relaxed_kl

    def opts(self, model: VAE) -> dict:
        factor = model.correlation_factor()
        return {**self.settings, **({"scale_tril": factor} if factor is not None else {})}

    def posterior(self, raw: Tensor, tau: float, model: VAE, discrete: bool):
        if discrete:
            return self.method.discrete_law(raw, self.family, **self.settings)
        return self.method.build(raw, tau, **self.opts(model))

    def prior(self, model: VAE, batch: int, tau: float, discrete: bool):
        """p(z) for ``batch`` images: the neutral law, or the model's learned one (--prior learned)."""
        device = next(model.parameters()).device
        if model.prior_raw is None:
            raw = prior_raw(self.method, self.latent, batch, device)
        else:
            raw = model.prior_raw.expand(batch, *model.prior_raw.shape)
        if discrete:
            return self.method.discrete_law(raw, self.family, **self.settings)
        settings = dict(self.settings)
        if self.method.takes_correlation:  # the prior's gates are independent
            settings["correlation"] = torch.eye(self.latent.n_vars, device=device)
        return self.method.build(raw, tau, **settings)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: VAE, laws: Laws, x_all: Tensor, tau: float, n_samples: int, iw: bool,
             device, rows: int = 20000, prefix: str = "test", advance=None) -> dict:
    """-ELBO (and the IW bound when ``iw``) in nats per image of ``x_all``, latents from the eval
    model, with the collapse diagnostics: the KL and reconstruction terms, the mean KL of each
    latent variable, how many are active (mean KL > ``ACTIVE_KL``) and the mean largest posterior
    probability. Keys are prefixed with ``prefix`` ("test", "val"). ``advance(n)`` is called
    after each batch of n images (progress of a long final evaluation)."""
    discrete = laws.eval_model == "discrete"
    batch = max(1, min(1000, rows // n_samples))
    tot_elbo, tot_iw, tot_kl, n = 0.0, 0.0, 0.0, 0
    kl_vars, top_prob = 0.0, 0.0
    for start in range(0, x_all.shape[0], batch):
        x = x_all[start:start + batch].to(device)
        raw = model.encode(x)
        q = laws.posterior(raw, tau, model, discrete)
        p = laws.prior(model, x.shape[0], tau, discrete)
        if not discrete and laws.method.takes_correlation:  # the copula: float32 densities are exact
            qx, px = q.logit_space(), p.logit_space()    # in logit space (the Jacobian cancels)
            w = qx.sample((n_samples,))
            z, log_q_vars, log_p_vars = torch.sigmoid(w), qx.log_prob(w), px.log_prob(w)
        else:
            z = q.sample((n_samples,))
            log_q_vars, log_p_vars = q.log_prob(z), p.log_prob(z)  # (S, B, n_vars), or (S, B) joint
        log_q, log_p = per_image(log_q_vars, 2), per_image(log_p_vars, 2)
        log_px = model.log_px(x, z)  # (S, B)
        if laws.exact_kl:  # noqa: SIM108 - two estimators, the else branch's comment says which
            kl_v = latent_kl(q, p)
        else:  # Monte-Carlo estimate with the exact densities (relaxed models)
            kl_v = (log_q_vars - log_p_vars).mean(0).reshape(x.shape[0], -1)
        kl = kl_v.sum(-1)
        tot_elbo += float((-log_px.mean(0) + kl).sum())
        tot_kl += float(kl.sum())
        kl_vars = kl_vars + kl_v.sum(0).double().cpu()
        top = mode_probability(q)
        top_prob = None if top is None or top_prob is None else top_prob + float(top.mean(-1).sum())
        if iw:
            log_w = log_px + log_p - log_q
            tot_iw += float(-(torch.logsumexp(log_w, 0) - math.log(n_samples)).sum())
        n += x.shape[0]
        if advance is not None:  # progress of a long (final) evaluation, in images
            advance(x.shape[0])
    kl_vars = kl_vars / n
    # a joint law (the copula) has one KL for all its variables: no per-variable numbers
    per_variable = kl_vars.numel() == laws.latent.n_vars
    return {f"{prefix}_neg_elbo": tot_elbo / n, f"{prefix}_iw_nll": tot_iw / n if iw else None,
            f"{prefix}_kl": tot_kl / n, f"{prefix}_recon": (tot_elbo - tot_kl) / n,
            f"{prefix}_active_vars": int((kl_vars > ACTIVE_KL).sum()) if per_variable else None,
            f"{prefix}_mean_max_prob": None if top_prob is None else top_prob / n,
            f"{prefix}_kl_per_variable": kl_vars.tolist() if per_variable else None}


# ----------------------------------------------------------------------------- the runner
@contextlib.contextmanager
def unchecked_distributions():
    """torch.distributions' argument checks off inside, restored after (a library caller's
    setting is kept). Each constructor checks its parameters against their constraints: 13% of a
    linear VAE's training step, 6 distributions per step; the values checked come from the
    encoder, whose output train_step checks for non-finite numbers itself."""
    before = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(before)


def run_train_vae(options: TrainVaeOptions, reporter: Reporter | None = None) -> dict:
    """Train the VAE (see the module docstring) and return the summary dict."""
    reporter = reporter or Reporter(quiet=True)
    if options.resume_existing:
        options, finished = existing_run(options, reporter)
        if finished is not None:
            return finished
    with contextlib.ExitStack() as preparation:
        run = None
        if options.resume is not None:  # a resume that cannot start (data gone...) marks it failed
            run = open_for_resume(options.resume, COMMAND, allow_completed=True)
            preparation.enter_context(preparing(run))
            options = options_of_resumed_run(run, options)

        # ------------------------------------------------------------ checked before a run starts
        plan = plan_run(options)
        method, latent, settings, temperature = plan.method, plan.latent, plan.settings, plan.temperature
        device = resolve_device_or_refuse(plan.options.device)
        data = load_data(plan.options)
        options = dataclasses.replace(plan.options, threads=set_threads(plan.options.threads))
        warnings = relaxation_warnings(method, settings, temperature.tau0, reporter)
        if options.settings:  # what --setting changed, among the method's settings in effect
            reporter.print(f"{method.name} with {settings_line(method, settings)}")
        if run is None:
            run = create_run(COMMAND, method.name, recorded(options), out=options.out,
                             overwrite=options.overwrite, seed=options.seed, device=str(device),
                             tensorboard=options.tensorboard)

        with run_context(run, resume_hint=f"relax train-vae --resume {run.path}"), \
                unchecked_distributions():
            # ------------------------------------------------------------ data, model, optimiser
            seed_everything(options.seed)
            split = split_data(data, options)
            laws = plan.laws()
            learner = make_learner(laws, plan.hidden, plan.estimator_options, options, device)
            progress = restore(run, learner, reporter) if options.resume is not None else Progress()
            if progress.epoch == 0:  # the untrained model, for reference (epoch 0)
                progress.log(run, untrained_record(learner, split.test_x, temperature.tau0))

            # ------------------------------------------------------------ train, test, checkpoint
            for epoch in range(progress.epoch + 1, options.epochs + 1):
                started = time.perf_counter()
                training = train_epoch(learner, split, temperature, progress, epoch, options,
                                       reporter, run.path)
                tau = temperature(progress.step)
                full = epoch == options.epochs and split.val_x is None  # else the selected model's
                metrics = evaluate_epoch(learner, split, tau, full, epoch, options, reporter,
                                         run.path)
                progress.kl_per_variable = metrics.pop("test_kl_per_variable")
                progress.log(run, epoch_record(epoch, progress.step, tau, learner, training, metrics,
                                               seconds=time.perf_counter() - started))
                report_epoch(reporter, progress, latent.n_vars, options.lr)
                save_checkpoints(run, learner, progress, keep_best=split.val_x is not None)

            # ------------------------------------------------------------ select, draw, summarise
            selection = select_model(run, learner, split, progress, temperature,
                                     options.eval_samples, reporter)
            save_figures(run, learner, split.test_x, selection.tau, progress)
            run.save_torch("model.pt", {"model": learner.model.state_dict(), "latent": vars(latent),
                                        "options": recorded(options), "method": method.name})
            summary = run.finish(summary_of(run, laws, progress, selection, options, warnings))
            reporter.print(f"done: test -ELBO {summary['test_neg_elbo']:.2f}, IW bound "
                           f"{summary['test_iw_nll']:.2f} nats ({laws.eval_model} latents); "
                           f"{run.path}")
            return summary


# ----------------------------------------------------------------------------- options and checks
@dataclass(frozen=True)
class Plan:
    """What a run will be, from its options alone (nothing read or written): the checked options
    (with the samples per image and the settings filled in), the method and latent, the encoder
    widths, the temperature schedule, the method's settings and the estimator's options."""

    options: TrainVaeOptions
    method: registry.Method
    family: str
    latent: Latent
    hidden: tuple[int, ...]
    temperature: Temperature
    settings: dict
    estimator_options: dict

    def laws(self) -> Laws:
        return Laws(self.method, self.latent, self.settings, eval_model_of(self.method), self.family)


def plan_run(options: TrainVaeOptions) -> Plan:
    """Check every option against the method and latent (bad input exits 2 before anything is
    written) and resolve them into a :class:`Plan`."""
    options = checked(options)
    method, family = latent_method(options)
    latent = latent_for(method, family, options.latent_dim, options.categories)
    hidden = _parse_hidden(options.hidden)
    options = dataclasses.replace(options, n_samples=samples_per_image(options, method))
    temperature = temperature_schedule(options, method)
    # the floor and the momentum in effect go into config.json: a resume keeps them whatever
    # the defaults become
    options = dataclasses.replace(options, tau_min=temperature.tau_min)
    if options.optimizer is Optimizer.SGD and options.momentum is None:
        options = dataclasses.replace(options, momentum=SGD_MOMENTUM)
    options, given = given_settings(options, method, family, latent)
    settings = {**method_settings(method, latent, options.k), **given}
    estimator_options = checked_estimator_options(method, family, latent, settings, options)
    return Plan(options, method, family, latent, hidden, temperature, settings, estimator_options)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise BadInput(message)


def saved_options(config: dict) -> TrainVaeOptions:
    """The options a run was started with, from its config.json (RESUME_DEFAULTS for the keys an
    older run lacks)."""
    fields = {f.name for f in dataclasses.fields(TrainVaeOptions)}
    saved = {key: value for key, value in {**RESUME_DEFAULTS, **config.get("options", {})}.items()
             if key in fields and key not in NOT_RECORDED}
    if saved.get("tau_min") is None and saved.get("method") in registry.METHODS:
        # runs made before config.json recorded the floor: min(0.5, tau0) was the only rule then
        method = registry.get_method(saved["method"])
        tau0 = saved.get("tau") or method.default_tau or 1.0
        saved["tau_min"] = min(0.5, tau0)
    return TrainVaeOptions(**saved)


def options_of_resumed_run(run, given: TrainVaeOptions) -> TrainVaeOptions:
    """The options a resumed run was started with (:func:`saved_options`), changed only where a
    resume may: --epochs (train for longer) and --threads."""
    _check_resume_epochs(run, given.epochs)
    options = dataclasses.replace(saved_options(run.config), resume=given.resume)
    if given.epochs is not None:
        options = dataclasses.replace(options, epochs=given.epochs)
    if given.threads is not None:  # the thread count does not change the model either
        options = dataclasses.replace(options, threads=given.threads)
    return options


# a resume may change these (options_of_resumed_run); every other recorded option must match
MAY_DIFFER_ON_RESUME = ("epochs", "threads")


def existing_run(options: TrainVaeOptions, reporter: Reporter) -> tuple[TrainVaeOptions, dict | None]:
    """--resume-existing: what to do with the run directory --out, so that a sweep's command line
    can be run again as it is. Returns (the options to run with, None), or (options, the
    summary) of a run that completed with these options (nothing to do, nothing written).

    No run there: a new run (create_run refuses a non-empty folder that relax did not make).
    A train-vae run started with the same recorded options (all but --epochs and --threads, both
    after the defaults are resolved as the run resolved them): completed with as many epochs,
    its summary; stopped with a checkpoint, or completed with fewer epochs than asked, a resume
    (--resume's own checks apply); stopped before its first checkpoint, a fresh start over it
    (--overwrite, which only ever empties a relax run directory). Other options: refused, exit 2,
    with what differs, since continuing it would mix settings in a sweep's table."""
    _check(options.resume is None, "--resume-existing takes the run's options from the command "
           "line; it cannot go with --resume (which takes them from config.json)")
    _check(not options.overwrite, "--resume-existing keeps what --out holds; it cannot go with "
           "--overwrite (which replaces it)")
    _check(options.out is not None, "--resume-existing needs --out: the run directory to continue")
    path = Path(options.out)
    options = dataclasses.replace(options, resume_existing=False)
    if not (path / "config.json").exists():
        return options, None
    config = read_run_config(path, COMMAND, flag="--resume-existing --out")
    asked, there = (to_jsonable(recorded(plan_run(o).options)) for o in (options, saved_options(config)))
    differ = option_differences(asked, there, MAY_DIFFER_ON_RESUME)
    if differ:
        raise Refused(f"--resume-existing: {path} holds a run with other options ({'; '.join(differ)}); "
                      "give a new --out, or --resume it with its own options")
    status = read_status(path)
    if status == "completed":
        summary = read_summary(path)
        if summary.get("epochs") == asked["epochs"]:
            reporter.print(f"{path}: completed with these options; nothing to do")
            return options, summary
        if not isinstance(summary.get("epochs"), int) or summary["epochs"] > asked["epochs"]:
            raise Refused(f"--resume-existing: {path} completed {summary.get('epochs')} epochs with "
                          f"these options, --epochs {asked['epochs']} asks for another length; give "
                          "a new --out")
    if status == "completed" or (path / CHECKPOINT).exists():
        reporter.print(f"{path}: {status}; resuming it (--resume) up to epoch {asked['epochs']}")
        return TrainVaeOptions(resume=path, epochs=asked["epochs"], threads=options.threads), None
    reporter.print(f"{path}: {status or 'no status'} before its first epoch ended; starting it afresh")
    return dataclasses.replace(options, overwrite=True), None


def _check_resume_epochs(run, epochs: int | None) -> None:
    """--resume --epochs N: more epochs than saved continue; fewer or as many are refused (exit 2),
    except a run whose last epoch (final evaluation included) is saved and only needs finishing."""
    ckpt_path = run.file(CHECKPOINT)
    ckpt = load_checkpoint(ckpt_path, map_location="cpu") if ckpt_path.exists() else None
    saved = int(ckpt["epoch"]) if ckpt is not None else 0
    last = (ckpt.get("history") or [{}])[-1] if ckpt is not None else {}
    status = read_status(run.path)
    if epochs is None:
        if status == "completed":
            raise Refused(f"--resume {run.path} is already completed ({saved} epochs); pass "
                          f"--epochs N with N > {saved} to train it for longer")
        return
    # a validation run's final evaluation comes after its last epoch (of the selected model)
    selects = bool(run.config.get("options", {}).get("val_size"))
    if epochs < saved or (epochs == saved and (status == "completed"
                                               or (last.get("test_iw_nll") is None and not selects))):
        raise Refused(f"--epochs {epochs}: {run.path} has already trained {saved} epochs "
                      f"(status {status}); give --epochs greater than {saved} to train it for "
                      "longer, or a new --out for a shorter run")


def checked(options: TrainVaeOptions) -> TrainVaeOptions:
    """The options with each fixed vocabulary as its Enum and --epochs' default filled in; a
    value out of its vocabulary or range is bad input (exit 2) before anything is written."""
    choices = {}
    for name, vocabulary in VOCABULARIES.items():
        value = getattr(options, name)
        try:
            choices[name] = None if value is None else vocabulary(value)
        except ValueError:
            raise BadInput(f"unknown --{name.replace('_', '-')} {value!r}; choose from: "
                           f"{', '.join(v.value for v in vocabulary)}") from None
    epochs = 10 if options.epochs is None else options.epochs
    o = dataclasses.replace(options, **choices, epochs=epochs)
    _check(o.method is not None, "--method is required (or --resume RUN_DIR)")
    _check(o.epochs >= 1, f"--epochs must be >= 1, got {o.epochs}")
    _check(o.batch_size >= 1, f"--batch-size must be >= 1, got {o.batch_size}")
    _check(o.lr > 0, f"--lr must be > 0, got {o.lr}")
    _check(o.momentum is None or o.optimizer is Optimizer.SGD,
           f"--momentum is SGD's: it needs --optimizer sgd (got --optimizer {o.optimizer.value})")
    _check(o.momentum is None or 0 <= o.momentum < 1, f"--momentum must be in [0, 1), got {o.momentum}")
    _check(0 < o.lr_decay <= 1, f"--lr-decay must be in (0, 1], got {o.lr_decay}")
    _check(o.lr_decay_every >= 1, f"--lr-decay-every must be >= 1, got {o.lr_decay_every}")
    _check(o.anneal_every >= 1, f"--anneal-every must be >= 1, got {o.anneal_every}")
    _check(o.anneal_rate >= 0, f"--anneal-rate must be >= 0, got {o.anneal_rate}")
    _check(o.val_size >= 0, f"--val-size must be >= 0, got {o.val_size}")
    _check(o.eval_samples >= 1, f"--eval-samples must be >= 1, got {o.eval_samples}")
    for flag, limit in (("--train-limit", o.train_limit), ("--test-limit", o.test_limit)):
        _check(limit is None or limit >= 1, f"{flag} must be >= 1")
    return o


def latent_method(options: TrainVaeOptions) -> tuple[registry.Method, str]:
    """The registry record of --method and the latent family it serves here (--latent-family,
    else its own); an unknown or unsuitable method exits 2 naming the suitable ones."""
    m = registry.get_method(options.method) if options.method in registry.METHODS else None
    if m is None or unsuitable_reason(m) is not None:
        why = f"unknown method {options.method!r}" if m is None else \
            f"method {options.method!r} cannot be a VAE latent: {unsuitable_reason(m)}"
        raise BadInput(f"{why}. Suitable methods: {', '.join(suitable_methods())}")
    family = (options.latent_family or m.family).value
    if not m.supports(family):
        raise BadInput(f"--latent-family {family!r} is not served by {m.name!r} (it serves "
                       f"{', '.join(f.value for f in m.families)})")
    return m, family


def _parse_hidden(hidden: str) -> tuple[int, ...]:
    """--hidden "512,256" -> (512, 256); "none" -> () (a linear encoder and decoder)."""
    if hidden.strip().lower() == "none":
        return ()
    try:
        sizes = tuple(int(h) for h in hidden.replace(" ", "").split(",") if h)
    except ValueError:
        sizes = ()
    if not sizes or any(h <= 0 for h in sizes):
        raise BadInput(f"--hidden must be comma-separated positive widths like 512,256 (or none), got {hidden!r}")
    return sizes


def samples_per_image(options: TrainVaeOptions, method: registry.Method) -> int:
    """--n-samples, by default the method's minimum (the leave-one-out baseline needs two)."""
    n = method.min_samples if options.n_samples is None else options.n_samples
    _check(n >= 1, f"--n-samples must be >= 1, got {n}")
    return n


@dataclass(frozen=True)
class Temperature:
    """Jang et al.'s schedule tau = max(tau_min, tau0 exp(-rate s)), with s the step rounded down
    to a multiple of ``every`` (their N: the temperature changes every N steps).

    >>> Temperature(1.0, 0.01, 0.1, 8)(12) == math.exp(-0.8)
    True
    """

    tau0: float
    tau_min: float
    rate: float
    every: int

    def __call__(self, step: int) -> float:
        s = step - step % self.every
        return max(self.tau_min, self.tau0 * math.exp(-self.rate * s))


def temperature_schedule(options: TrainVaeOptions, method: registry.Method) -> Temperature:
    tau0 = options.tau if options.tau is not None else (method.default_tau or 1.0)
    _check(tau0 > 0, f"--tau must be > 0, got {tau0}")
    if options.tau_min is not None:
        tau_min = options.tau_min
    elif method.min_tau is not None:  # e.g. ReinMax, whose paper keeps tau >= 1
        tau_min = min(method.min_tau, tau0)
    else:
        tau_min = min(0.5, tau0)
    _check(tau_min > 0, f"--tau-min must be > 0, got {tau_min}")
    return Temperature(tau0, tau_min, options.anneal_rate, options.anneal_every)


def given_settings(options: TrainVaeOptions, method: registry.Method, family: str,
                   latent: Latent) -> tuple[TrainVaeOptions, dict]:
    """--setting parsed for the method and tried on it (anything wrong exits 2), with a
    --setting k=N moved onto --k (given both ways, the two values must agree); the options then
    hold the settings as KEY=VALUE in the record's order, which config.json records and a
    --resume parses back to the same values. Returns (options, the settings other than k)."""
    given = registry.parse_settings(method, options.settings, dedicated={"k": "--k"},
                                    categories=max(2, latent.categories), family=family)
    k = options.k
    if "k" in given:
        k = given.pop("k")
        if options.k is not None and options.k != k:
            raise BadInput(f"--k {options.k} and --setting k={k} disagree; give one of them")
    canonical = [f"{key}={registry.format_setting(v)}" for key, v in given.items()] or None
    return dataclasses.replace(options, k=k, settings=canonical), given


def settings_line(method: registry.Method, settings: dict) -> str:
    """``"k=2, noise=sog, lambda=10.0, terms=10"``: the typed settings a run uses."""
    return ", ".join(f"{key}={registry.format_setting(v)}" for key, v in settings.items()
                     if key in registry.settable(method))


def method_settings(method: registry.Method, latent: Latent, k: int | None) -> dict:
    """The record's settings, with --k for subset methods (checked against the categories)."""
    settings = dict(method.settings)
    if "k" in method.settings:
        k = method.settings["k"] if k is None else k
        _check(1 <= k < latent.categories,
               f"--k must be in 1..{latent.categories - 1} for {method.name!r}, got {k}")
        settings["k"] = k
    elif k is not None:
        takers = [x.name for x in registry.METHODS.values() if "k" in x.settings]
        raise BadInput(f"--k applies only to subset methods ({', '.join(takers)}), not {method.name!r}")
    return settings


def resolve_device_or_refuse(device: str) -> torch.device:
    try:
        return resolve_device(device)
    except ValueError as e:
        raise BadInput(str(e)) from None


def load_data(options: TrainVaeOptions):
    """The dataset (bad input when it cannot be read), with --val-size checked against it."""
    data = load_dataset(options.dataset.value, options.data_dir)
    n_images = data.train[: options.train_limit].shape[0]
    _check(options.val_size < n_images, f"--val-size must be below the {n_images} training "
           f"images, got {options.val_size}")
    return data


def checked_estimator_options(method: registry.Method, family: str, latent: Latent,
                              settings: dict, options: TrainVaeOptions) -> dict:
    """The estimator's keyword options, tried once so that bad ones exit 2 before the run exists."""
    # the copula trains through its own logit-space path: its estimator gets no matrix
    est_options = {key: v for key, v in settings.items()
                   if key not in ("correlation", "scale_tril")}
    est_options["family"] = family  # estimators serving several families (REINFORCE, REBAR...)
    if method.needs_latent_size:  # RELAX's surrogate network: its input size, not a lazy layer
        est_options["latent_size"] = latent.numel
    try:
        make_estimator(method, n_samples=options.n_samples, **est_options)
    except (TypeError, ValueError) as e:
        raise BadInput(f"method {method.name!r}: {e}") from None
    return est_options


def relaxation_warnings(method: registry.Method, settings: dict, tau0: float,
                        reporter) -> list[str]:
    """topk's sequential relaxation where it over-counts: one line now, also in the summary."""
    warnings = []
    if settings.get("relaxation") == "sequential":  # top-k's sequential relaxation setting
        line = sequential_relaxation_warning(tau0, settings["k"])
        if line:
            warnings.append(line)
            reporter.note(line)
    return warnings


# ----------------------------------------------------------------------------- training
@dataclass
class Split:
    """The images of a run: training (binarised per batch), validation (or None) and test."""

    train_x: Tensor
    val_x: Tensor | None
    test_x: Tensor
    binarizer: Binarizer


def split_data(data, options: TrainVaeOptions) -> Split:
    train_x = data.train[: options.train_limit]
    binarizer = Binarizer(options.binarize.value, data)
    test_x = binarizer.test[: options.test_limit]
    val_x = None
    if options.val_size:  # the last val_size training images, held out, binarised once
        n_fit = train_x.shape[0] - options.val_size
        val_x = binarizer.heldout(train_x[n_fit:], torch.arange(n_fit, train_x.shape[0]))
        train_x = train_x[:n_fit]
    return Split(train_x, val_x, test_x, binarizer)


@dataclass
class Learner:
    """What a training step needs: the model, the latent's laws, the estimator (``n_samples``
    latent draws per image; a temperature only when ``estimator_takes_tau``), the optimiser of
    model and estimator parameters and its learning-rate schedule."""

    model: VAE
    laws: Laws
    estimator: nn.Module
    n_samples: int
    estimator_takes_tau: bool
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.StepLR
    device: torch.device


def make_learner(laws: Laws, hidden: tuple[int, ...], estimator_options: dict,
                 options: TrainVaeOptions, device: torch.device) -> Learner:
    """The VAE (``hidden`` encoder widths), the method's estimator and their optimiser."""
    method = laws.method
    learned_prior = (prior_raw(method, laws.latent, 1, "cpu")[0]
                     if options.prior is Prior.LEARNED else None)
    model = VAE(laws.latent, hidden, learn_correlation=method.takes_correlation,
                input_coding=options.input_coding.value, init=options.init.value,
                learned_prior=learned_prior).to(device)
    estimator = make_estimator(method, n_samples=options.n_samples, **estimator_options).to(device)
    parameters = list(model.parameters()) + list(estimator.parameters())
    if options.optimizer is Optimizer.SGD:  # plan_run filled in the default momentum
        optimizer = torch.optim.SGD(parameters, lr=options.lr, momentum=options.momentum)
    else:
        optimizer = torch.optim.Adam(parameters, lr=options.lr)
    # lr * lr_decay ** (step // lr_decay_every) (Jang et al.'s code: x0.9 every 1000 steps)
    lr_schedule = torch.optim.lr_scheduler.StepLR(optimizer, options.lr_decay_every,
                                                  options.lr_decay)
    # Score-function estimators get no relaxation temperature unless --tau is given
    # (REBAR/RELAX then learn theirs, as in their papers).
    takes_tau = method.kind != "score-function" or options.tau is not None
    return Learner(model, laws, estimator, options.n_samples, takes_tau, optimizer, lr_schedule,
                   device)


@dataclass
class Progress:
    """Where training stands: steps taken, the last finished epoch, its records (metrics.jsonl's
    lines, epoch 0 the untrained model) and the last per-variable KL."""

    step: int = 0
    epoch: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    kl_per_variable: list[float] | None = None

    def log(self, run, record: dict) -> None:
        run.log_metrics(record)
        self.history.append(record)
        self.epoch = record["epoch"]

    def trained(self) -> list[dict]:
        return [r for r in self.history if r["epoch"] >= 1]

    def untrained_neg_elbo(self) -> float | None:
        return self.history[0]["test_neg_elbo"] if self.history[0]["epoch"] == 0 else None


def restore(run, learner: Learner, reporter) -> Progress:
    """A resumed run's progress from its checkpoint (model, optimiser, schedule, estimator, RNG),
    its metrics.jsonl cut back to the checkpoint's epoch; without a checkpoint it starts over."""
    path = run.file(CHECKPOINT)
    if not path.exists():
        run.truncate_metrics(lambda r: False)
        return Progress()
    ckpt = load_checkpoint(path, map_location=learner.device)
    learner.model.load_state_dict(ckpt["model"])
    learner.optimizer.load_state_dict(ckpt["optimizer"])
    if "schedule" in ckpt:
        learner.lr_schedule.load_state_dict(ckpt["schedule"])
    learner.estimator.load_state_dict(ckpt["estimator"])
    torch.set_rng_state(ckpt["rng"])
    if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    progress = Progress(ckpt["step"], ckpt["epoch"], ckpt["history"], ckpt.get("kl_per_variable"))
    run.truncate_metrics(lambda r: r.get("epoch", 0) <= progress.epoch)
    reporter.print(f"resuming {run.path} after epoch {progress.epoch}")
    return progress


def untrained_record(learner: Learner, test_x: Tensor, tau0: float) -> dict:
    record = {"epoch": 0, "step": 0, "tau": tau0,
              **evaluate(learner.model, learner.laws, test_x, tau0, 1, False, learner.device)}
    record.pop("test_kl_per_variable")
    return record


class _Diverged(ArithmeticError):
    """A training step met a non-finite number (``what`` became ``value``)."""

    def __init__(self, what: str, value: float):
        super().__init__(what)
        self.what, self.value = what, value


def train_step(learner: Learner, x: Tensor, tau: float) -> float:
    """One optimiser step on the batch's -ELBO estimate; returns the training objective's value."""
    model, laws, device = learner.model, learner.laws, learner.device
    raw = model.encode(x)
    if not bool(torch.isfinite(raw).all()):  # the last update blew the weights up
        raise _Diverged("the encoder's output", float("nan"))
    if not laws.exact_kl:
        # No exact KL: the cost carries the unbiased single-sample estimate
        # log q(z|x) - log p(z) with the method's exact densities.
        q = laws.posterior(raw, tau, model, False)
        p = laws.prior(model, x.shape[0], tau, False)

        def cost(z):
            return -model.log_px(x, z) + per_image(q.log_prob(z) - p.log_prob(z), 2)

        kl = torch.zeros((), device=device)
    else:
        def cost(z):
            return -model.log_px(x, z)

        discrete = laws.eval_model == "discrete"
        kl = latent_kl(laws.posterior(raw, tau, model, discrete),
                       laws.prior(model, x.shape[0], tau, discrete)).sum(-1).mean()
    if model.corr_factor is not None:  # the copula, with its learned correlation:
        # pathwise in logit space, where its float32 densities are exact
        qx, px = q.logit_space(), p.logit_space()
        w = qx.rsample((learner.n_samples,))
        f = -model.log_px(x, torch.sigmoid(w)) + per_image(qx.log_prob(w) - px.log_prob(w), 2)
        out = SimpleNamespace(loss=f.mean(), cost=f.detach())
    else:
        out = learner.estimator(raw, cost, tau=tau if learner.estimator_takes_tau else None)
    loss = out.loss + kl
    if not torch.isfinite(loss):  # stop before the update: the last checkpoint is good
        raise _Diverged("the loss", float(loss))
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.optimizer.step()
    learner.lr_schedule.step()
    return float(out.cost.mean() + kl.detach())


def train_epoch(learner: Learner, split: Split, temperature: Temperature, progress: Progress,
                epoch: int, options: TrainVaeOptions, reporter, run_path) -> dict:
    """One pass over the shuffled training images; the mean objective, wall and CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    learner.model.train()
    n_train, bs = split.train_x.shape[0], options.batch_size
    n_batches = math.ceil(n_train / bs)
    perm = torch.randperm(n_train)
    sum_obj, seen = 0.0, 0
    with reporter.progress(f"epoch {epoch}/{options.epochs}", total=n_batches) as bar:
        for b in range(n_batches):
            idx = perm[b * bs:(b + 1) * bs]
            x = split.binarizer.train_batch(split.train_x[idx], idx).to(learner.device)
            tau = temperature(progress.step)
            try:
                obj = train_step(learner, x, tau)
            except _Diverged as e:
                raise RunFailed(_diverged(e.what, e.value, epoch, progress.step, b, n_batches,
                                          options.lr, run_path)) from None
            progress.step += 1
            sum_obj += obj * x.shape[0]
            seen += x.shape[0]
            bar.advance(1, info=f"-ELBO {sum_obj / seen:.2f}  tau {tau:.3f}")
    # CPU seconds of this process (all its threads): a speed measure that other processes
    # sharing the cores inflate much less than wall time
    return {"train_neg_elbo": sum_obj / seen, "train_seconds": time.perf_counter() - t0,
            "train_cpu_seconds": time.process_time() - c0}


def _diverged(what: str, value: float, epoch: int, step: int, batch: int, n_batches: int,
              lr: float, path) -> str:
    """The one line a diverging run stops with: where, the likely cause, what is kept."""
    return (f"{what} became {value} at epoch {epoch}, step {step + 1} (batch {batch + 1}/"
            f"{n_batches}): the learning rate (--lr {lr:g}) is probably too large; "
            + (f"the checkpoint of epoch {epoch - 1} is kept in {path}" if epoch > 1
               else f"no epoch finished, so there is nothing to resume in {path}"))


# ----------------------------------------------------------------------------- after each epoch
def evaluate_epoch(learner: Learner, split: Split, tau: float, full: bool, epoch: int,
                   options: TrainVaeOptions, reporter, run_path) -> dict:
    """The test metrics after an epoch (with ``full``, the final evaluation: --eval-samples
    draws and the IW bound) and the validation ones; a non-finite -ELBO stops the run."""
    model, laws, device = learner.model, learner.laws, learner.device
    model.eval()
    bar = (reporter.progress(f"final evaluation, {options.eval_samples} samples per image",
                             total=split.test_x.shape[0]) if full else contextlib.nullcontext())
    with bar as ebar:
        metrics = evaluate(model, laws, split.test_x, tau, options.eval_samples if full else 1,
                           full, device, advance=None if ebar is None else ebar.advance)
    if split.val_x is not None:
        metrics.update(evaluate(model, laws, split.val_x, tau, 1, False, device, prefix="val"))
        metrics.pop("val_kl_per_variable")
    metrics["eval_samples"] = options.eval_samples if full else 1
    bad = [key for key in ("test_neg_elbo", "test_iw_nll")
           if metrics.get(key) is not None and not math.isfinite(metrics[key])]
    if bad:
        raise RunFailed(f"the {bad[0].replace('_', ' ')} became {metrics[bad[0]]} after "
                        f"epoch {epoch}: the learning rate (--lr {options.lr:g}) is "
                        "probably too large" + (f"; the checkpoint of epoch {epoch - 1} is "
                                                f"kept in {run_path}" if epoch > 1 else ""))
    return metrics


def epoch_record(epoch: int, step: int, tau: float, learner: Learner, training: dict,
                 metrics: dict, seconds: float) -> dict:
    """One line of metrics.jsonl (``metrics`` from :func:`evaluate_epoch`)."""
    return {"epoch": epoch, "step": step, "tau": tau,
            "lr": learner.optimizer.param_groups[0]["lr"],
            "train_neg_elbo": training["train_neg_elbo"], **metrics,
            "train_seconds": training["train_seconds"], "seconds": seconds,
            "train_cpu_seconds": training["train_cpu_seconds"]}


def report_epoch(reporter, progress: Progress, n_vars: int, lr: float) -> None:
    """The epoch's one line, and a warning when a finite -ELBO is absurd (diverging)."""
    rec = progress.history[-1]
    reporter.print(f"epoch {rec['epoch']}: train -ELBO {rec['train_neg_elbo']:.2f}  test -ELBO "
                   f"{rec['test_neg_elbo']:.2f} (KL {rec['test_kl']:.1f}, "
                   + (f"{rec['test_active_vars']}/{n_vars} active)"
                      if rec["test_active_vars"] is not None else "joint latent)")
                   + (f"  val {rec['val_neg_elbo']:.2f}" if "val_neg_elbo" in rec else "")
                   + (f"  IW -log p(x) {rec['test_iw_nll']:.2f}"
                      if rec["test_iw_nll"] is not None else "")
                   + f"  ({rec['seconds']:.1f} s)")
    untrained = progress.untrained_neg_elbo()
    if untrained is not None and rec["test_neg_elbo"] > 10 * abs(untrained):
        # finite but absurd (e.g. --lr 1e10): not a NaN stop, but never silent
        reporter.note(f"warning: epoch {rec['epoch']}'s test -ELBO {rec['test_neg_elbo']:.3g} is "
                      f"more than 10x the untrained model's {untrained:.3g}: training is "
                      f"diverging; the learning rate (--lr {lr:g}) is probably too large")


def save_checkpoints(run, learner: Learner, progress: Progress, keep_best: bool) -> None:
    """checkpoint.pt (everything a resume needs) and, with a validation split, best.pt when this
    epoch's validation -ELBO is the best so far."""
    rec = progress.history[-1]
    if keep_best and rec["val_neg_elbo"] <= min(r["val_neg_elbo"] for r in progress.trained()):
        run.save_torch(BEST, {"epoch": rec["epoch"], "model": learner.model.state_dict()})
    run.save_torch(CHECKPOINT, {
        "schedule": learner.lr_schedule.state_dict(), "kl_per_variable": progress.kl_per_variable,
        "epoch": rec["epoch"], "step": progress.step, "model": learner.model.state_dict(),
        "optimizer": learner.optimizer.state_dict(), "estimator": learner.estimator.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if learner.device.type == "cuda" else None,
        "history": progress.history,
    })


# ----------------------------------------------------------------------------- after training
@dataclass
class Selection:
    """The reported model: its epoch's record, its final metrics, per-variable KL and tau."""

    record: dict
    final: dict
    kl_per_variable: list[float] | None
    tau: float
    by_validation: bool


def select_model(run, learner: Learner, split: Split, progress: Progress,
                 temperature: Temperature, eval_samples: int, reporter) -> Selection:
    """With a validation split, the epoch of the best validation -ELBO (reloaded from best.pt)
    and its full test evaluation; otherwise the last epoch, evaluated in full already."""
    trained = progress.trained()
    if split.val_x is None:
        return Selection(trained[-1], trained[-1], progress.kl_per_variable,
                         temperature(progress.step), False)
    selected = min(trained, key=lambda r: r["val_neg_elbo"])
    model = learner.model
    model.load_state_dict(torch.load(run.file(BEST), map_location=learner.device,
                                     weights_only=True)["model"])
    model.eval()
    with reporter.progress(f"final evaluation of epoch {selected['epoch']}, "
                           f"{eval_samples} samples per image",
                           total=split.test_x.shape[0]) as ebar:
        final = evaluate(model, learner.laws, split.test_x, selected["tau"], eval_samples,
                         True, learner.device, advance=ebar.advance)
    kl_per_variable = final.pop("test_kl_per_variable")
    return Selection(selected, final, kl_per_variable, selected["tau"], True)


def save_figures(run, learner: Learner, test_x: Tensor, tau: float, progress: Progress) -> None:
    """reconstructions.png (10 test images), samples.png (64 prior draws), curves.png."""
    from relaxcli import plots  # matplotlib only when a run draws (not on `relax --help`)

    model, laws, device = learner.model, learner.laws, learner.device
    discrete = laws.eval_model == "discrete"
    with torch.no_grad():
        xs = test_x[:10].to(device)
        z = laws.posterior(model.encode(xs), tau, model, discrete).sample()
        recon = torch.sigmoid(model.decode(z))
        zp = laws.prior(model, 64, tau, discrete).sample()
        samples = torch.sigmoid(model.decode(zp))
    trained = progress.trained()
    for name, fig in (
            ("reconstructions.png", plots.vae_reconstructions(xs.cpu().view(-1, 28, 28),
                                                              recon.cpu().view(-1, 28, 28))),
            ("samples.png", plots.vae_samples(samples.cpu().view(-1, 28, 28))),
            ("curves.png", plots.vae_curves([r["epoch"] for r in trained],
                                            [r["train_neg_elbo"] for r in trained],
                                            [r["test_neg_elbo"] for r in trained],
                                            title=f"train-vae {laws.method.name}",
                                            untrained=progress.untrained_neg_elbo()))):
        run.save_figure(fig, name)
        plots.close(fig)


def summary_of(run, laws: Laws, progress: Progress, selection: Selection,
               options: TrainVaeOptions, warnings: list[str]) -> dict:
    """summary.json: the reported model's numbers, its collapse diagnostics, speed, settings."""
    trained, history, final = progress.trained(), progress.history, selection.final
    best = (selection.record if selection.by_validation
            else min(trained, key=lambda r: r["test_neg_elbo"]))
    return {
        "method": laws.method.name, "epochs": trained[-1]["epoch"],
        "test_neg_elbo": final["test_neg_elbo"], "test_iw_nll": final["test_iw_nll"],
        "eval_model": laws.eval_model,
        # the collapse diagnostics of the reported model (KL in nats; active: KL > ACTIVE_KL)
        "test_kl": final["test_kl"], "test_recon": final["test_recon"],
        "test_active_vars": final["test_active_vars"], "latent_vars": laws.latent.n_vars,
        "test_mean_max_prob": final["test_mean_max_prob"],
        "kl_per_variable": selection.kl_per_variable,
        "selection": "validation" if selection.by_validation else "last epoch",
        "selected_epoch": selection.record["epoch"],
        "val_neg_elbo": selection.record.get("val_neg_elbo"),
        # without a validation split, best_epoch is the lowest test -ELBO (for curves only)
        "best_epoch": best["epoch"], "best_test_neg_elbo": best["test_neg_elbo"],
        "seconds_per_epoch": sum(r["seconds"] for r in trained) / len(trained),
        "train_seconds_per_epoch": sum(r["train_seconds"] for r in trained) / len(trained),
        "train_cpu_seconds_per_epoch": sum(r["train_cpu_seconds"] for r in trained) / len(trained),
        "threads": torch.get_num_threads(), "steps": progress.step,
        "train_neg_elbo": trained[-1]["train_neg_elbo"],
        "untrained_test_neg_elbo": history[0]["test_neg_elbo"],
        "eval_samples": options.eval_samples, "tau_final": selection.tau,
        "dataset": options.dataset.value, "binarize": options.binarize.value,
        "latent_shape": list(laws.latent.shape), "seed": options.seed,
        "run_dir": str(run.path), "warnings": warnings,
        # the method's typed settings in effect (defaults, --k and --setting)
        "settings": {key: v for key, v in laws.settings.items()
                     if key in registry.settable(laws.method)},
    }
