"""``relax train-vae``: a discrete-latent VAE on binarised MNIST, with the same model for every method.

Read top to bottom like a CleanRL script: options -> data -> model -> loop (train, test, checkpoint)
-> final evaluation -> figures -> summary. The latent comes only from the registry
(:mod:`relaxcli.methods`): the encoder outputs ``method.param_size(K)`` raw numbers per latent
variable (the registry's ``raw`` convention), and the runner never names a distribution class.

Model (Jang, Gu, Poole 2017): encoder MLP 784-512-256-raw, decoder latent-256-512-784, ReLU,
Bernoulli likelihood p(x|z) = prod_i Bernoulli(x_i; sigmoid(decoder(z)_i)). Latents: Bernoulli
family 200 units; categorical 20 variables x 10 classes; subset (topk) 20 groups of 10 with k
chosen per group; simplex methods 20 x 10 (IGR: 9 free Gaussian dims each).

Objective (nats per image): negative ELBO
    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),
with the reconstruction term estimated by the method's estimator
(``est(raw, cost, tau=tau)``, pathwise or score-function, one interface) and the KL exact:

* Bernoulli / categorical latents (``method.discrete`` is Bernoulli / OneHotCategorical): KL of
  the discrete posterior to the uniform prior, analytic (torch's registered KL).
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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence
from torch.nn import functional as F

from relaxcli import methods as registry
from relaxcli import plots
from relaxcli.data import BINARIZATIONS, DATASETS, Binarizer, load_dataset
from relaxcli.distributions.subset import sequential_relaxation_warning
from relaxcli.errors import BadInput
from relaxcli.estimators import make_estimator
from relaxcli.report import Curve, Metric, Report, declare_report
from relaxcli.runs import (
    Refused,
    RunFailed,
    create_run,
    load_checkpoint,
    open_for_resume,
    preparing,
    read_status,
    resolve_device,
    run_context,
    seed_everything,
    set_threads,
)

COMMAND = "train-vae"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # the model of the best validation -ELBO so far (with --val-size)
# Options added after runs existed: a resumed older run keeps the behaviour it was started with.
RESUME_DEFAULTS = {"input_coding": "centered", "init": "torch", "lr_decay": 1.0,
                   "lr_decay_every": 1000, "anneal_every": 1, "val_size": 0}

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


INPUT_CODINGS = ("x", "centered")
INITS = ("torch", "xavier")


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
                 input_coding: str = "x", init: str = "xavier"):
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
    kl = kl_divergence(q, p)
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

    def prior(self, batch: int, tau: float, device, discrete: bool):
        raw = prior_raw(self.method, self.latent, batch, device)
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
        p = laws.prior(x.shape[0], tau, device, discrete)
        if not discrete and laws.method.takes_correlation:  # the copula: float32 densities are exact
            qx, px = q.logit_space(), p.logit_space()    # in logit space (the Jacobian cancels)
            w = qx.sample((n_samples,))
            z, log_q_vars, log_p_vars = torch.sigmoid(w), qx.log_prob(w), px.log_prob(w)
        else:
            z = q.sample((n_samples,))
            log_q_vars, log_p_vars = q.log_prob(z), p.log_prob(z)  # (S, B, n_vars), or (S, B) joint
        log_q, log_p = per_image(log_q_vars, 2), per_image(log_p_vars, 2)
        log_px = model.log_px(x, z)  # (S, B)
        if laws.exact_kl:
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
def _parse_hidden(hidden: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(h) for h in hidden.replace(" ", "").split(",") if h)
    except ValueError:
        sizes = ()
    if not sizes or any(h <= 0 for h in sizes):
        raise BadInput(f"--hidden must be comma-separated positive widths like 512,256, got {hidden!r}")
    return sizes


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise BadInput(message)


def run_train_vae(*, method: str | None, reporter, epochs: int | None = None, latent_dim: int | None = None,
                  categories: int | None = None, k: int | None = None, hidden: str = "512,256",
                  lr: float = 1e-3, batch_size: int = 100, tau: float | None = None,
                  anneal_rate: float = 3e-5, tau_min: float | None = None, n_samples: int | None = None,
                  dataset: str = "mnist", data_dir: str | None = None, binarize: str = "dynamic",
                  eval_samples: int = 100, train_limit: int | None = None, test_limit: int | None = None,
                  latent_family: str | None = None, input_coding: str = "x", init: str = "xavier",
                  lr_decay: float = 1.0, lr_decay_every: int = 1000, anneal_every: int = 1,
                  val_size: int = 0, seed: int = 0, device: str = "auto", resume: Path | None = None,
                  out: Path | None = None, overwrite: bool = False, threads: int | None = None,
                  tensorboard: bool = False) -> dict:
    """Train the VAE (see the module docstring) and return the summary dict."""
    # ---------------------------------------------------------------- options (or a resumed run's)
    if resume is not None:
        run = open_for_resume(resume, COMMAND, allow_completed=True)
        opts = {**RESUME_DEFAULTS, **run.config["options"]}
        with preparing(run):
            _check_resume_epochs(run, epochs)
        if epochs is not None:
            opts["epochs"] = epochs  # the only option a resume may change: train for longer
        if threads is not None:
            opts["threads"] = threads  # nor does the thread count change the model
    else:
        _check(method is not None, "--method is required (or --resume RUN_DIR)")
        opts = {"epochs": 10 if epochs is None else epochs, "latent_dim": latent_dim,
                "categories": categories, "k": k, "hidden": hidden, "lr": lr, "batch_size": batch_size,
                "tau": tau, "anneal_rate": anneal_rate, "tau_min": tau_min, "n_samples": n_samples,
                "dataset": dataset, "data_dir": data_dir, "binarize": binarize,
                "eval_samples": eval_samples, "train_limit": train_limit, "test_limit": test_limit,
                "seed": seed, "device": device, "method": method, "latent_family": latent_family,
                "input_coding": input_coding, "init": init, "lr_decay": lr_decay,
                "lr_decay_every": lr_decay_every, "anneal_every": anneal_every, "val_size": val_size,
                "threads": threads}

    # ---------------------------------------------------------------- validate before the run starts
    # (a resume that cannot start, e.g. its data folder is gone, marks the run failed)
    with preparing(run) if resume is not None else contextlib.nullcontext():
        return _train_vae(opts, resume, run if resume is not None else None, reporter, out, overwrite,
                          tensorboard)


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


def _diverged(what: str, value: float, epoch: int, step: int, batch: int, n_batches: int,
              lr: float, path) -> str:
    """The one line a diverging run stops with: where, the likely cause, what is kept."""
    return (f"{what} became {value} at epoch {epoch}, step {step + 1} (batch {batch + 1}/"
            f"{n_batches}): the learning rate (--lr {lr:g}) is probably too large; "
            + (f"the checkpoint of epoch {epoch - 1} is kept in {path}" if epoch > 1
               else f"no epoch finished, so there is nothing to resume in {path}"))


def _train_vae(opts: dict, resume, run, reporter, out, overwrite, tensorboard: bool = False) -> dict:
    m = registry.get_method(opts["method"]) if opts["method"] in registry.METHODS else None
    if m is None or unsuitable_reason(m) is not None:
        why = f"unknown method {opts['method']!r}" if m is None else \
            f"method {opts['method']!r} cannot be a VAE latent: {unsuitable_reason(m)}"
        raise BadInput(f"{why}. Suitable methods: {', '.join(suitable_methods())}")
    family = opts.get("latent_family") or m.family.value
    if not m.supports(family):
        raise BadInput(f"--latent-family {family!r} is not served by {m.name!r} (it serves "
                       f"{', '.join(f.value for f in m.families)})")
    latent = latent_for(m, family, opts["latent_dim"], opts["categories"])
    hidden_sizes = _parse_hidden(opts["hidden"])
    _check(opts["epochs"] >= 1, f"--epochs must be >= 1, got {opts['epochs']}")
    _check(opts["batch_size"] >= 1, f"--batch-size must be >= 1, got {opts['batch_size']}")
    _check(opts["lr"] > 0, f"--lr must be > 0, got {opts['lr']}")
    _check(opts["input_coding"] in INPUT_CODINGS, f"unknown --input-coding {opts['input_coding']!r}; "
           f"choose from: {', '.join(INPUT_CODINGS)}")
    _check(opts["init"] in INITS, f"unknown --init {opts['init']!r}; choose from: {', '.join(INITS)}")
    _check(0 < opts["lr_decay"] <= 1, f"--lr-decay must be in (0, 1], got {opts['lr_decay']}")
    _check(opts["lr_decay_every"] >= 1, f"--lr-decay-every must be >= 1, got {opts['lr_decay_every']}")
    _check(opts["anneal_every"] >= 1, f"--anneal-every must be >= 1, got {opts['anneal_every']}")
    _check(opts["val_size"] >= 0, f"--val-size must be >= 0, got {opts['val_size']}")
    _check(opts["eval_samples"] >= 1, f"--eval-samples must be >= 1, got {opts['eval_samples']}")
    if opts["n_samples"] is None:  # e.g. the leave-one-out baseline needs two samples per image
        opts["n_samples"] = m.min_samples
    _check(opts["n_samples"] >= 1, f"--n-samples must be >= 1, got {opts['n_samples']}")
    _check(opts["anneal_rate"] >= 0, f"--anneal-rate must be >= 0, got {opts['anneal_rate']}")
    _check(latent.n_vars >= 1, f"--latent-dim must be >= 1, got {latent.n_vars}")
    tau0 = opts["tau"] if opts["tau"] is not None else (m.default_tau or 1.0)
    _check(tau0 > 0, f"--tau must be > 0, got {tau0}")
    tau_min = opts["tau_min"] if opts["tau_min"] is not None else min(0.5, tau0)
    _check(tau_min > 0, f"--tau-min must be > 0, got {tau_min}")
    method_options = dict(m.settings)
    if "k" in m.settings:
        kk = m.settings["k"] if opts["k"] is None else opts["k"]
        _check(1 <= kk < latent.categories, f"--k must be in 1..{latent.categories - 1} for {m.name!r}, got {kk}")
        method_options["k"] = kk
    elif opts["k"] is not None:
        takers = [x.name for x in registry.METHODS.values() if "k" in x.settings]
        raise BadInput(f"--k applies only to subset methods ({', '.join(takers)}), not {m.name!r}")
    for name in ("train_limit", "test_limit"):
        _check(opts[name] is None or opts[name] >= 1, f"--{name.replace('_', '-')} must be >= 1")
    _check(opts["binarize"] in BINARIZATIONS, f"unknown --binarize {opts['binarize']!r}; choose from: "
           f"{', '.join(BINARIZATIONS)}")
    _check(opts["dataset"] in DATASETS, f"unknown --dataset {opts['dataset']!r}; choose from: {', '.join(DATASETS)}")
    try:
        dev = resolve_device(opts["device"])
    except ValueError as e:
        raise BadInput(str(e)) from None
    data = load_dataset(opts["dataset"], opts["data_dir"])
    n_images = data.train[: opts["train_limit"]].shape[0]
    _check(opts["val_size"] < n_images, f"--val-size must be below the {n_images} training images, "
           f"got {opts['val_size']}")
    opts["threads"] = set_threads(opts.get("threads"))

    # the copula trains through its own logit-space path below: its estimator gets no matrix
    est_options = {key: v for key, v in method_options.items() if key not in ("correlation", "scale_tril")}
    est_options["family"] = family  # estimators serving several families (REINFORCE, REBAR...)
    if m.needs_latent_size:  # RELAX's surrogate network: its input size, not a lazy layer
        est_options["latent_size"] = latent.numel
    try:  # a trial build, so that bad estimator options exit 2 before the run directory exists
        make_estimator(m, n_samples=opts["n_samples"], **est_options)
    except (TypeError, ValueError) as e:
        raise BadInput(f"method {m.name!r}: {e}") from None
    warnings = []  # topk's sequential relaxation where it over-counts: one line, also in the summary
    if m.family == "subset" and method_options.get("relaxation", "sequential") == "sequential":
        line = sequential_relaxation_warning(tau0, method_options["k"])
        if line:
            warnings.append(line)
            reporter.note(line)
    # Score-function estimators get no relaxation temperature unless --tau is given
    # (REBAR/RELAX then learn theirs, as in their papers).
    pass_tau = m.kind != "score-function" or opts["tau"] is not None

    # ---------------------------------------------------------------- setup
    if resume is None:
        run = create_run(COMMAND, m.name, opts, out=out, overwrite=overwrite, seed=opts["seed"],
                         device=str(dev), tensorboard=tensorboard)
    with run_context(run, resume_hint=f"relax train-vae --resume {run.path}"):
        seed_everything(opts["seed"])
        train_x = data.train[: opts["train_limit"]]
        binarizer = Binarizer(opts["binarize"], data)
        test_x = binarizer.test[: opts["test_limit"]]
        val_x = None
        if opts["val_size"]:  # the last val_size training images, held out, binarised once
            n_fit = train_x.shape[0] - opts["val_size"]
            val_x = binarizer.heldout(train_x[n_fit:], torch.arange(n_fit, train_x.shape[0]))
            train_x = train_x[:n_fit]
        laws = Laws(m, latent, method_options, eval_model_of(m), family)
        model = VAE(latent, hidden_sizes, learn_correlation=m.takes_correlation,
                    input_coding=opts["input_coding"], init=opts["init"]).to(dev)
        est = make_estimator(m, n_samples=opts["n_samples"], **est_options).to(dev)
        optimizer = torch.optim.Adam(list(model.parameters()) + list(est.parameters()), lr=opts["lr"])
        # lr * lr_decay ** (step // lr_decay_every) (Jang et al.'s code: x0.9 every 1000 steps)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, opts["lr_decay_every"], opts["lr_decay"])
        step, start_epoch, history, kl_per_variable = 0, 0, [], None

        ckpt_path = run.file(CHECKPOINT)
        if resume is not None and ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path, map_location=dev)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if "schedule" in ckpt:
                schedule.load_state_dict(ckpt["schedule"])
            est.load_state_dict(ckpt["estimator"])
            torch.set_rng_state(ckpt["rng"])
            if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
            step, start_epoch, history = ckpt["step"], ckpt["epoch"], ckpt["history"]
            kl_per_variable = ckpt.get("kl_per_variable")
            run.truncate_metrics(lambda r: r.get("epoch", 0) <= start_epoch)
            reporter.print(f"resuming {run.path} after epoch {start_epoch}")
        elif resume is not None:
            run.truncate_metrics(lambda r: False)

        def temperature(s: int) -> float:  # updated every anneal_every steps (Jang et al.'s N)
            s = s - s % opts["anneal_every"]
            return max(tau_min, tau0 * math.exp(-opts["anneal_rate"] * s))

        if start_epoch == 0:  # the untrained model, for reference (epoch 0)
            rec = {"epoch": 0, "step": 0, "tau": tau0,
                   **evaluate(model, laws, test_x, tau0, 1, False, dev)}
            rec.pop("test_kl_per_variable")
            run.log_metrics(rec)
            history.append(rec)

        # ---------------------------------------------------------------- training loop
        n_train, bs = train_x.shape[0], opts["batch_size"]
        n_batches = math.ceil(n_train / bs)
        for epoch in range(start_epoch + 1, opts["epochs"] + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            model.train()
            perm = torch.randperm(n_train)
            sum_obj, seen = 0.0, 0
            with reporter.progress(f"epoch {epoch}/{opts['epochs']}", total=n_batches) as bar:
                for b in range(n_batches):
                    idx = perm[b * bs:(b + 1) * bs]
                    x = binarizer.train_batch(train_x[idx], idx).to(dev)
                    tau_now = temperature(step)
                    raw = model.encode(x)
                    if not bool(torch.isfinite(raw).all()):  # the last update blew the weights up
                        raise RunFailed(_diverged("the encoder's output", float("nan"), epoch, step,
                                                  b, n_batches, opts["lr"], run.path))
                    if not laws.exact_kl:
                        # No exact KL: the cost carries the unbiased single-sample estimate
                        # log q(z|x) - log p(z) with the method's exact densities.
                        q = laws.posterior(raw, tau_now, model, False)
                        p = laws.prior(x.shape[0], tau_now, dev, False)

                        def cost(z, x=x, q=q, p=p):
                            return -model.log_px(x, z) + per_image(q.log_prob(z) - p.log_prob(z), 2)

                        kl = torch.zeros((), device=dev)
                    else:
                        def cost(z, x=x):
                            return -model.log_px(x, z)

                        discrete = laws.eval_model == "discrete"
                        kl = latent_kl(laws.posterior(raw, tau_now, model, discrete),
                                       laws.prior(x.shape[0], tau_now, dev, discrete)).sum(-1).mean()
                    if model.corr_factor is not None:  # the copula, with its learned correlation:
                        # pathwise in logit space, where its float32 densities are exact
                        qx, px = q.logit_space(), p.logit_space()
                        w = qx.rsample((opts["n_samples"],))
                        f = -model.log_px(x, torch.sigmoid(w)) + per_image(qx.log_prob(w) - px.log_prob(w), 2)
                        out = SimpleNamespace(loss=f.mean(), cost=f.detach())
                    else:
                        out = est(raw, cost, tau=tau_now if pass_tau else None)
                    loss = out.loss + kl
                    if not torch.isfinite(loss):  # stop before the update: the last checkpoint is good
                        raise RunFailed(_diverged("the loss", float(loss), epoch, step, b, n_batches,
                                                  opts["lr"], run.path))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    step += 1
                    obj = float(out.cost.mean() + kl.detach())
                    sum_obj += obj * x.shape[0]
                    seen += x.shape[0]
                    bar.advance(1, info=f"-ELBO {sum_obj / seen:.2f}  tau {tau_now:.3f}")
            train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0

            # ---------------------------------------------------------------- test
            model.eval()
            last = epoch == opts["epochs"]
            tau_now = temperature(step)
            full = last and val_x is None  # with a validation split the selected model gets it
            with (reporter.progress(f"final evaluation, {opts['eval_samples']} samples per image",
                                    total=test_x.shape[0]) if full else contextlib.nullcontext()) as ebar:
                metrics = evaluate(model, laws, test_x, tau_now, opts["eval_samples"] if full else 1,
                                   full, dev, advance=None if ebar is None else ebar.advance)
            if val_x is not None:
                metrics.update(evaluate(model, laws, val_x, tau_now, 1, False, dev, prefix="val"))
                metrics.pop("val_kl_per_variable")
            kl_per_variable = metrics.pop("test_kl_per_variable")
            bad = [key for key in ("test_neg_elbo", "test_iw_nll")
                   if metrics.get(key) is not None and not math.isfinite(metrics[key])]
            if bad:
                raise RunFailed(f"the {bad[0].replace('_', ' ')} became {metrics[bad[0]]} after "
                                f"epoch {epoch}: the learning rate (--lr {opts['lr']:g}) is "
                                "probably too large" + (f"; the checkpoint of epoch {epoch - 1} is "
                                                        f"kept in {run.path}" if epoch > 1 else ""))
            rec = {"epoch": epoch, "step": step, "tau": tau_now, "lr": optimizer.param_groups[0]["lr"],
                   "train_neg_elbo": sum_obj / seen,
                   **metrics, "eval_samples": opts["eval_samples"] if full else 1,
                   "train_seconds": train_seconds, "seconds": time.perf_counter() - t0,
                   # CPU seconds of this process (all its threads): a speed measure that other
                   # processes sharing the cores inflate much less than wall time
                   "train_cpu_seconds": train_cpu}
            run.log_metrics(rec)
            history.append(rec)
            reporter.print(f"epoch {epoch}: train -ELBO {rec['train_neg_elbo']:.2f}  test -ELBO "
                           f"{rec['test_neg_elbo']:.2f} (KL {rec['test_kl']:.1f}, "
                           + (f"{rec['test_active_vars']}/{latent.n_vars} active)"
                              if rec["test_active_vars"] is not None else "joint latent)")
                           + (f"  val {rec['val_neg_elbo']:.2f}" if val_x is not None else "")
                           + (f"  IW -log p(x) {rec['test_iw_nll']:.2f}"
                              if rec["test_iw_nll"] is not None else "")
                           + f"  ({rec['seconds']:.1f} s)")
            untrained = history[0]["test_neg_elbo"] if history[0]["epoch"] == 0 else None
            if untrained is not None and rec["test_neg_elbo"] > 10 * abs(untrained):
                # finite but absurd (e.g. --lr 1e10): not a NaN stop, but never silent
                reporter.note(f"warning: epoch {epoch}'s test -ELBO {rec['test_neg_elbo']:.3g} is more "
                              f"than 10x the untrained model's {untrained:.3g}: training is "
                              f"diverging; the learning rate (--lr {opts['lr']:g}) is probably too large")
            if val_x is not None and rec["val_neg_elbo"] <= min(r["val_neg_elbo"] for r in history if r["epoch"] >= 1):
                run.save_torch(BEST, {"epoch": epoch, "model": model.state_dict()})
            run.save_torch(CHECKPOINT, {
                "schedule": schedule.state_dict(), "kl_per_variable": kl_per_variable,
                "epoch": epoch, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "estimator": est.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if dev.type == "cuda" else None,
                "history": history,
            })

        # ---------------------------------------------------------------- model selection
        trained = [r for r in history if r["epoch"] >= 1]
        if val_x is not None:  # best validation -ELBO, then the full test evaluation of that model
            selected = min(trained, key=lambda r: r["val_neg_elbo"])
            model.load_state_dict(torch.load(run.file(BEST), map_location=dev, weights_only=True)["model"])
            model.eval()
            with reporter.progress(f"final evaluation of epoch {selected['epoch']}, "
                                   f"{opts['eval_samples']} samples per image", total=test_x.shape[0]) as ebar:
                final = evaluate(model, laws, test_x, selected["tau"], opts["eval_samples"], True, dev,
                                 advance=ebar.advance)
            kl_per_variable = final.pop("test_kl_per_variable")
            tau_now = selected["tau"]
        else:
            selected = final = trained[-1]
            tau_now = temperature(step)

        # ---------------------------------------------------------------- figures and summary
        with torch.no_grad():
            xs = test_x[:10].to(dev)
            z = laws.posterior(model.encode(xs), tau_now, model, laws.eval_model == "discrete").sample()
            recon = torch.sigmoid(model.decode(z))
            zp = laws.prior(64, tau_now, dev, laws.eval_model == "discrete").sample()
            samples = torch.sigmoid(model.decode(zp))
        fig = plots.vae_reconstructions(xs.cpu().view(-1, 28, 28), recon.cpu().view(-1, 28, 28))
        run.save_figure(fig, "reconstructions.png")
        plots.close(fig)
        fig = plots.vae_samples(samples.cpu().view(-1, 28, 28))
        run.save_figure(fig, "samples.png")
        plots.close(fig)
        fig = plots.vae_curves([r["epoch"] for r in trained], [r["train_neg_elbo"] for r in trained],
                               [r["test_neg_elbo"] for r in trained], title=f"train-vae {m.name}",
                               untrained=history[0]["test_neg_elbo"] if history[0]["epoch"] == 0 else None)
        run.save_figure(fig, "curves.png")
        plots.close(fig)
        run.save_torch("model.pt", {"model": model.state_dict(), "options": opts,
                                    "latent": vars(latent), "method": m.name})

        best = selected if val_x is not None else min(trained, key=lambda r: r["test_neg_elbo"])
        summary = {
            "method": m.name, "epochs": trained[-1]["epoch"], "test_neg_elbo": final["test_neg_elbo"],
            "test_iw_nll": final["test_iw_nll"], "eval_model": laws.eval_model,
            # the collapse diagnostics of the reported model (KL in nats; active: KL > ACTIVE_KL)
            "test_kl": final["test_kl"], "test_recon": final["test_recon"],
            "test_active_vars": final["test_active_vars"], "latent_vars": latent.n_vars,
            "test_mean_max_prob": final["test_mean_max_prob"], "kl_per_variable": kl_per_variable,
            "selection": "validation" if val_x is not None else "last epoch",
            "selected_epoch": selected["epoch"],
            "val_neg_elbo": selected.get("val_neg_elbo"),
            # without a validation split, best_epoch is the lowest test -ELBO (for curves only)
            "best_epoch": best["epoch"], "best_test_neg_elbo": best["test_neg_elbo"],
            "seconds_per_epoch": sum(r["seconds"] for r in trained) / len(trained),
            "train_seconds_per_epoch": sum(r["train_seconds"] for r in trained) / len(trained),
            "train_cpu_seconds_per_epoch": sum(r["train_cpu_seconds"] for r in trained) / len(trained),
            "threads": torch.get_num_threads(), "steps": step,
            "train_neg_elbo": trained[-1]["train_neg_elbo"], "untrained_test_neg_elbo": history[0]["test_neg_elbo"],
            "eval_samples": opts["eval_samples"], "tau_final": tau_now, "dataset": opts["dataset"],
            "binarize": opts["binarize"], "latent_shape": list(latent.shape), "seed": opts["seed"],
            "run_dir": str(run.path), "warnings": warnings,
        }
        summary = run.finish(summary)
        reporter.print(f"done: test -ELBO {summary['test_neg_elbo']:.2f}, IW bound "
                       f"{summary['test_iw_nll']:.2f} nats ({laws.eval_model} latents); {run.path}")
        return summary
