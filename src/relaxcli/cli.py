"""The ``relax`` command line: parses options, validates, calls a runner, maps errors to exit codes.

Exit codes (stable, for shell sweeps): 0 success; 1 the run failed; 2 bad input (one line on
stderr saying what was wrong and what is allowed; also a bare ``relax``, which prints the help);
130 interrupted with Ctrl-C and 143 stopped by SIGTERM (the run directory keeps everything
written so far and is marked ``interrupted``; ``train-vae`` and ``reinforce`` runs can be
continued with ``--resume``).

This module holds no science: every command is one function that hands its options to a runner
in :mod:`relaxcli.commands`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

import relaxcli
from relaxcli import methods as registry
from relaxcli.console import Reporter
from relaxcli.errors import BadInput
from relaxcli.estimators import Baseline, PolicyEstimator
from relaxcli.estimators.score import RENAMED_BASELINES
from relaxcli.runs import RunFailed, Terminated

app = typer.Typer(
    name="relax",
    help="Relaxed distributions and gradient estimators for discrete random variables: "
    "sample them, benchmark their gradients, train models with them, compare runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# ---------------------------------------------------------------- options every run command shares
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Run directory to write (default runs/<command>/<method>-<UTC time>). "
    "Must be new or empty unless --overwrite.")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace the contents of an existing, non-empty --out directory.")]
SeedOpt = Annotated[int, typer.Option(
    "--seed", min=0, max=2**63 - 1,
    help="Random seed (0 to 2^63 - 1): the same seed gives the same numbers on the same machine.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print summary.json to stdout and nothing else.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Nothing on stderr but errors (no tables, progress or result lines).")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads torch may use (>= 1). Default: OMP_NUM_THREADS when set, else "
    "min(4, cores). Give 1 per run when several runs share a machine (the sweeps in "
    "experiments/ do). Recorded in config.json.", show_default=False)]


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def invoke(runner: Callable[..., dict], *, json_out: bool, quiet: bool, **kwargs: Any) -> None:
    """Call ``runner(reporter=..., **kwargs)``; print its summary as JSON when ``--json``.

    BadInput -> exit 2, KeyboardInterrupt -> exit 130, SIGTERM -> exit 143, any other error ->
    exit 1, each with one line on stderr (the run directory's ``status`` file records the same).
    """
    for name, value in kwargs.items():  # --tau inf, --lr nan...: never a silent nonsense run
        if isinstance(value, float) and not math.isfinite(value):
            fail(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    reporter = Reporter(quiet=quiet or json_out and not sys.stderr.isatty(), json_mode=json_out)
    try:
        summary = runner(reporter=reporter, **kwargs)
    except BadInput as e:
        fail(str(e), 2)
    except Terminated:
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except RunFailed as e:
        fail(str(e), 1)
    except Exception as e:  # noqa: BLE001 - one clear line, never a traceback
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        fail(f"{type(e).__name__}: {text}".rstrip(": "), 1)
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()


def fill(options_class: type, values: dict[str, Any]) -> Any:
    """The command's options dataclass from its parameters (pass ``locals()``): Typer parses each
    option once, the dataclass names it once."""
    return options_class(**{f.name: values[f.name] for f in dataclasses.fields(options_class)})


def refuse_options_beside_resume(ctx: typer.Context, resume: Path | None, may_change: tuple[str, ...] = ()) -> None:
    """--resume takes every option from the run's config.json, so an option typed beside it
    would be silently ignored: refuse it instead (exit 2), naming what may be given."""
    if resume is None:
        return
    free = {"resume", "json_out", "quiet", *may_change}
    given = [p.opts[0] for p in ctx.command.params if p.name not in free
             and getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"]
    if given:
        allowed = ", ".join(["--json", "--quiet", *(f"--{m.replace('_', '-')}" for m in may_change)])
        fail(f"--resume continues {resume} with the options in its config.json; drop "
             f"{', '.join(given)} (allowed beside --resume: {allowed})")


def _version_callback(value: bool) -> None:
    if value:
        import torch

        typer.echo(f"relax {relaxcli.__version__} (torch {torch.__version__})")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the relaxcli and torch versions and exit.")] = False,
) -> None:
    """relax: relaxed distributions and gradient estimators for discrete random variables."""


@app.command("list")
def list_methods(
    json_out: JsonOpt = False,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the method table as Markdown (the README's table) and exit.")] = False,
) -> None:
    """List every registered method: family, kind, unbiasedness, exact log_prob, paper, default tau."""
    if markdown:
        sys.stdout.write(registry.markdown_table())
        return
    rows = [
        {
            "name": m.name, "family": m.family, "families": list(registry.method_families(m)),
            "kind": m.kind, "unbiased": m.unbiased,
            "exact_log_prob": m.exact_log_prob, "paper": m.paper.cite(),
            "default_tau": m.default_tau, "summary": m.summary, "paper_short": m.paper.short(),
        }
        for m in registry.METHODS.values()
    ]
    if json_out:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    # The table is what `relax list` is asked for, so it goes to stdout (`relax list | grep ...`);
    # off a terminal a wide fixed width keeps every method on one line instead of wrapping.
    console = Console(width=None if sys.stdout.isatty() else 200)
    from rich import box

    # No vertical rules and two-line headers. Narrower than 110 columns, the family becomes a
    # section heading and the paper a second line under the name, so that 80 columns suffice.
    wide = console.width >= 110
    table = Table(title=f"relaxcli methods ({len(rows)})", title_justify="left",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("name" if wide else "name\n  paper", no_wrap=True)
    if wide:
        table.add_column("family", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("unbiased", justify="center", no_wrap=True)
    table.add_column("exact\nlog_prob", justify="center", no_wrap=True)
    if wide:
        table.add_column("paper", no_wrap=True)
    table.add_column("default\ntau", justify="right", no_wrap=True)
    family = None
    for r in rows:
        flags = ["yes" if r["unbiased"] else "no", "yes" if r["exact_log_prob"] else "no"]
        tau = "-" if r["default_tau"] is None else f"{r['default_tau']:.3g}"
        if wide:
            table.add_row(f"[bold]{r['name']}[/bold]", ", ".join(r["families"]), r["kind"], *flags,
                          r["paper_short"], tau)
            continue
        if r["family"] != family:
            family = r["family"]
            table.add_row(f"[italic cyan]{family}[/italic cyan]", "", "", "", "")
        table.add_row(f"[bold]{r['name']}[/bold]\n  [dim]{r['paper_short']}[/dim]", r["kind"],
                      *flags, tau)
    console.print(table)


@app.command("sample")
def sample(
    method: Annotated[str, typer.Argument(help="Registry method name (see `relax list`).",
                                          show_default=False)],
    tau: Annotated[float | None, typer.Option(
        "--tau", help="Temperature (> 0). Default: the method's default_tau from `relax list` "
        "(0.1 for the correlated-bernoulli example). Refused for methods without a temperature.",
        show_default=False)] = None,
    probs: Annotated[str | None, typer.Option(
        "--probs", help="Comma list of probabilities strictly inside (0, 1), or a .npy/.pt/.csv "
        "file of them (for long vectors); ';' separates rows of a batch. Bernoulli family: one Bernoulli(p) unit per value (gaussian-bernoulli: "
        "P(z > 1/2) = p), default 0.2,0.5,0.8; correlated-bernoulli default: METHODS.md's "
        "example 0.2,0.4,0.4;0.3,0.5,0.2. Categorical family: one probability vector summing "
        "to 1, default 0.2,0.3,0.5; topk default 0.05,0.1,0.15,0.3,0.4.", show_default=False)] = None,
    logits: Annotated[str | None, typer.Option(
        "--logits", help="Comma list of logits instead of --probs (Bernoulli: p = sigmoid(l); "
        "categorical: p = softmax(l)), or a .npy/.pt/.csv file of them.", show_default=False)] = None,
    k: Annotated[int | None, typer.Option(
        "--k", help="topk: subset size, 1 <= k <= number of categories (default 2).",
        show_default=False)] = None,
    correlation: Annotated[str | None, typer.Option(
        "--correlation", help="correlated-bernoulli: a number rho (equal off-diagonal "
        "correlation, -1/(D-1) < rho < 1) or a path to a D x D .npy/.csv correlation matrix "
        "(symmetric, unit diagonal, positive definite). Default: METHODS.md's R with the "
        "default --probs, else the identity.", show_default=False)] = None,
    scale: Annotated[str | None, typer.Option(
        "--scale", help="gaussian-bernoulli: the gate's noise scale (> 0, default 0.5). "
        "invertible-gaussian / logistic-normal: the Gaussian's scale, one number or one per "
        "--loc entry (default 1).", show_default=False)] = None,
    loc: Annotated[str | None, typer.Option(
        "--loc", help="invertible-gaussian / logistic-normal: the Gaussian's location, K-1 "
        "numbers for invertible-gaussian and K for logistic-normal (default zeros, K = 3).",
        show_default=False)] = None,
    num_samples: Annotated[int | None, typer.Option(
        "--num-samples", "-n", help="Number of samples to draw (>= 2; default 10000, lowered to "
        "fit the memory bound of 20 million sample values when one sample is large).",
        show_default=False)] = None,
    hard: Annotated[bool, typer.Option(
        "--hard", help="Hard (discrete) forward values for methods with a soft/hard switch "
        "(relaxed-bernoulli, gumbel-softmax, topk, generalized-gumbel).")] = False,
    tau_forward: Annotated[float | None, typer.Option(
        "--tau-forward", help="decoupled-st-gumbel-softmax's forward temperature (> 0; default 1): "
        "the forward one-hot is drawn from Categorical(softmax(logits / tau_forward)); --tau is "
        "the backward one.")] = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw samples from one method; show per-coordinate statistics next to their closed forms.

    Writes samples.pt, stats.json, summary.json and plots (histogram.png for Bernoulli-family
    methods; category_means.png, plus simplex.png for 3 categories or inclusion.png for topk).
    Score-function estimators (reinforce, arm, ...) have no relaxed distribution: their discrete
    law is sampled.
    """
    from relaxcli.commands.sample import run_sample

    invoke(run_sample, json_out=json_out, quiet=quiet, method=method, tau=tau, probs=probs,
           logits=logits, k=k, correlation=correlation, scale=scale, loc=loc,
           num_samples=num_samples, hard=hard, tau_forward=tau_forward, seed=seed, out=out,
           overwrite=overwrite, device=device, threads=threads)


@app.command("bridge")
def bridge(
    alpha: Annotated[str | None, typer.Option(
        "--alpha", help="Dirichlet concentration, a comma list of K >= 2 positive numbers "
        "(default 2,5,9).", show_default=False)] = None,
    random: Annotated[bool, typer.Option(
        "--random", help="Draw alpha at random from --seed instead (log-uniform in [0.5, 20]), "
        "with --dim categories.")] = False,
    dim: Annotated[int | None, typer.Option(
        "--dim", help="Number of categories K for --random (default 3); refused without --random "
        "(--alpha fixes K then).", show_default=False)] = None,
    num_samples: Annotated[int, typer.Option(
        "--num-samples", "-n", help="Monte Carlo samples for the moments and KL estimates.")] = 100_000,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Laplace bridge: Dir(alpha) -> logistic normal (mu, Sigma) -> Dirichlet (alpha').

    Writes summary.json (mu, Sigma, alpha', moments of each, Monte Carlo KL estimates with
    standard errors) and, for K = 3, simplex heatmaps on one colour scale: dirichlet.png,
    logistic_normal.png, dirichlet_back.png and bridge.png (all three).
    """
    from relaxcli.commands.bridge import run_bridge

    invoke(run_bridge, json_out=json_out, quiet=quiet, alpha=alpha, random=random, dim=dim,
           num_samples=num_samples, seed=seed, out=out, overwrite=overwrite, device=device,
           threads=threads)


@app.command("grad-bench")
def grad_bench(
    problem: Annotated[str, typer.Option(
        "--problem", help="bernoulli-quadratic (E[(b - t)^2], RELAX's toy), categorical-quadratic "
        "(K categories, random cost vector from --seed) or bernoulli-multi "
        "(sum_i (b_i - p_i)^2, p = 0.6, 0.51, 0.48). Exact gradients by enumeration.")] = "bernoulli-quadratic",
    methods: Annotated[str | None, typer.Option(
        "--methods", help="Comma list of registry methods (see 'relax list'); default: every "
        "method that applies to the problem's family.", show_default=False)] = None,
    tau: Annotated[str, typer.Option(
        "--tau", help="Comma list of temperatures (> 0) swept for relaxed and straight-through "
        "methods; REBAR/RELAX learn their own.")] = "0.05,0.1,0.2,0.5,1,2",
    draws: Annotated[int, typer.Option(
        "--draws", help="Independent gradient estimates per method and temperature (>= 2).")] = 10_000,
    target: Annotated[float, typer.Option(
        "--target", help="t in bernoulli-quadratic's (b - t)^2 (0.45 and 0.499 are RELAX's).")] = 0.45,
    categories: Annotated[int, typer.Option(
        "--categories", help="K for categorical-quadratic (>= 2).")] = 5,
    tune_steps: Annotated[int, typer.Option(
        "--tune-steps", help="Adam steps that fit estimators' own parameters (baselines, REBAR's "
        "eta and temperature, RELAX's network) at the fixed theta before they are frozen.")] = 2000,
    tune_lr: Annotated[float, typer.Option(
        "--tune-lr", help="Adam learning rate of that tuning (REBAR's best eta and temperature on "
        "the toy problem are in the hundreds, so a slow rate never reaches them).")] = 0.1,
    train: Annotated[bool, typer.Option(
        "--train", help="Instead of measuring at fixed theta, optimise theta with each method for "
        "--steps steps and plot the loss and gradient variance (RELAX's toy figure).")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Optimisation steps in --train mode.")] = 1000,
    lr: Annotated[float, typer.Option(
        "--lr", help="Adam learning rate of theta and the estimators' parameters in --train mode.")] = 0.01,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Bias, variance, MSE, SNR and speed of every gradient estimator against the exact gradient.

    Writes summary.json, results.csv and bias_variance_vs_tau.png (training.png with --train).
    """
    from relaxcli.commands.gradbench import run_grad_bench

    invoke(run_grad_bench, json_out=json_out, quiet=quiet, problem=problem, methods=methods,
           tau=tau, draws=draws, target=target, categories=categories, tune_steps=tune_steps,
           tune_lr=tune_lr, train=train, steps=steps, lr=lr, seed=seed, out=out, overwrite=overwrite, device=device,
           threads=threads)


@app.command("train-vae")
def train_vae(
    ctx: typer.Context,
    method: Annotated[str | None, typer.Option(
        "--method", help="Latent method from the registry (relax list); unsuitable ones exit 2 "
        "with the list of suitable ones. Required unless --resume.")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Training epochs (default 10). With --resume: train up to this many.")] = None,
    latent_dim: Annotated[int | None, typer.Option(
        "--latent-dim", help="Latent variables: Bernoulli units (default 200) or categorical / "
        "subset / simplex groups (default 20).")] = None,
    categories: Annotated[int | None, typer.Option(
        "--categories", help="Classes per categorical / subset / simplex group (default 10).")] = None,
    k: Annotated[int | None, typer.Option(
        "--k", help="Subset size per group for topk (default 2).")] = None,
    hidden: Annotated[str, typer.Option(
        "--hidden", help="Encoder hidden widths, comma-separated; the decoder mirrors them.")] = "512,256",
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per training step.")] = 100,
    tau: Annotated[float | None, typer.Option(
        "--tau", help="Initial temperature tau0 (default: the method's default, else 1).")] = None,
    anneal_rate: Annotated[float, typer.Option(
        "--anneal-rate", help="r in tau = max(tau_min, tau0*exp(-r*step)) (Jang et al.; 0 = "
        "constant).")] = 3e-5,
    tau_min: Annotated[float | None, typer.Option(
        "--tau-min", help="Lowest temperature of the schedule (default min(0.5, tau0)).")] = None,
    n_samples: Annotated[int | None, typer.Option(
        "--n-samples", help="Latent samples per image for the gradient estimator (default 1; "
        "2 for reinforce-rloo's leave-one-out baseline).")] = None,
    dataset: Annotated[str, typer.Option(
        "--dataset", help="mnist, fashion-mnist, or synthetic (a tiny generated test/smoke set).")] = "mnist",
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="Folder with MNIST/raw or FashionMNIST/raw idx files (read-only is "
        "fine; default RELAX_DATA_DIR, then the user cache, downloading there if missing).")] = None,
    binarize: Annotated[str, typer.Option(
        "--binarize", help="dynamic (fresh Bernoulli draw each epoch), static (one fixed draw) "
        "or threshold (pixel > 0.5).")] = "dynamic",
    eval_samples: Annotated[int, typer.Option(
        "--eval-samples", help="Latent samples per test image for the final -ELBO and the "
        "importance-weighted bound on -log p(x).")] = 100,
    latent_family: Annotated[str | None, typer.Option(
        "--latent-family", help="bernoulli or categorical, for estimators that serve both "
        "(reinforce, reinforce-rloo, rebar, relax); default: the method's own family.")] = None,
    train_limit: Annotated[int | None, typer.Option(
        "--train-limit", help="Use only the first N training images (smoke runs).")] = None,
    test_limit: Annotated[int | None, typer.Option(
        "--test-limit", help="Evaluate on only the first N test images (smoke runs).")] = None,
    val_size: Annotated[int, typer.Option(
        "--val-size", help="Hold out the last N training images as a validation set (binarised "
        "once); the reported test numbers are then those of the epoch with the best validation "
        "-ELBO (Jang et al.'s protocol uses 5000). 0 = no split, report the last epoch.")] = 0,
    lr_decay: Annotated[float, typer.Option(
        "--lr-decay", help="Multiply the learning rate by this every --lr-decay-every steps "
        "(Jang et al.'s code: 0.9 every 1000). 1 = constant.")] = 1.0,
    lr_decay_every: Annotated[int, typer.Option(
        "--lr-decay-every", help="Steps between learning-rate decays.")] = 1000,
    anneal_every: Annotated[int, typer.Option(
        "--anneal-every", help="Update the temperature every N steps (Jang et al.'s N in {500, "
        "1000}); 1 = every step.")] = 1,
    input_coding: Annotated[str, typer.Option(
        "--input-coding", help="What the encoder sees of the binary image: x (x in {0,1}, as "
        "Jang et al.) or centered (2x-1; relaxcli 0.1's default, which starves the latent with "
        "Adam: see experiments/README.md).")] = "x",
    init: Annotated[str, typer.Option(
        "--init", help="Weight initialisation: xavier (Glorot-uniform weights, zero biases: "
        "TensorFlow's, Jang et al.'s; fewer dead encoder units) or torch (nn.Linear's "
        "default, relaxcli 0.1's).")] = "xavier",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue a run directory after its last completed epoch (options come "
        "from its config.json, except --epochs); results equal an uninterrupted run.")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a VAE on binarised MNIST with the method's latent; report test -ELBO and an IW bound."""
    from relaxcli.commands.vae import run_train_vae

    refuse_options_beside_resume(ctx, resume, may_change=("epochs", "threads"))

    invoke(run_train_vae, json_out=json_out, quiet=quiet, method=method, epochs=epochs,
           latent_dim=latent_dim, categories=categories, k=k, hidden=hidden, lr=lr,
           batch_size=batch_size, tau=tau, anneal_rate=anneal_rate, tau_min=tau_min,
           n_samples=n_samples, dataset=dataset, data_dir=data_dir, binarize=binarize,
           eval_samples=eval_samples, latent_family=latent_family, train_limit=train_limit,
           test_limit=test_limit, val_size=val_size, lr_decay=lr_decay, lr_decay_every=lr_decay_every,
           anneal_every=anneal_every, input_coding=input_coding, init=init, seed=seed,
           device=device, threads=threads, resume=resume, out=out, overwrite=overwrite)


def _renamed_baseline(token: str) -> str:
    """relax reinforce's --baseline names before 0.2 still parse, with a one-line note."""
    if token in RENAMED_BASELINES:
        print(f"note: --baseline {token} is deprecated; use --baseline {RENAMED_BASELINES[token]}",
              file=sys.stderr)
        return RENAMED_BASELINES[token]
    return token


@app.command("reinforce", context_settings={"token_normalize_func": _renamed_baseline})
def reinforce(
    ctx: typer.Context,
    env: Annotated[str, typer.Option(
        "--env", help="gymnasium environment id with a discrete action space and vector "
        "observations (e.g. Acrobot-v1, CartPole-v1, MountainCar-v0).")] = "Acrobot-v1",
    estimator: Annotated[PolicyEstimator, typer.Option(
        "--estimator", help="Policy-gradient estimator: reinforce (score function with "
        "reward-to-go) or relax (Grathwohl et al. 2018: learned control variate on the "
        "Gumbel-relaxed action, conditional Gumbel sample).")] = PolicyEstimator.REINFORCE,
    baseline: Annotated[Baseline, typer.Option(
        "--baseline", help="none; moving-average (of past batches' returns-to-go); learned "
        "(a state-value network, advantages normalised per batch); leave-one-out (the batch's "
        "other episodes, --num-envs >= 2). Before 0.2: mean = moving-average, value = "
        "learned.")] = Baseline.LEARNED,
    gamma: Annotated[float, typer.Option("--gamma", help="Discount factor in [0, 1].")] = 0.99,
    num_envs: Annotated[int, typer.Option(
        "--num-envs", help="Environments run together in one vectorised batch; one update per "
        "batch of that many whole episodes.")] = 4,
    episodes: Annotated[int | None, typer.Option(
        "--episodes", help="Training budget in episodes (rounded up to whole batches). Default "
        "1000 when --steps is not given either.")] = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", help="Training budget in environment steps (stops after the batch that "
        "reaches it).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate of every network.")] = 3e-3,
    entropy_coef: Annotated[float, typer.Option(
        "--entropy-coef", help="Weight of the policy-entropy bonus (0 = none).")] = 0.0,
    hidden: Annotated[int, typer.Option(
        "--hidden", help="Hidden units of the policy MLP (obs-hidden-actions), the value net "
        "and RELAX's control variate.")] = 128,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    stop_when_solved: Annotated[bool, typer.Option(
        "--stop-when-solved", help="Stop once the 100-episode average return reaches the "
        "environment's reward threshold.")] = False,
    eval_episodes: Annotated[int, typer.Option(
        "--eval-episodes", help="Episodes of the final evaluation, greedy and stochastic "
        "(0 skips it).")] = 100,
    video: Annotated[bool, typer.Option(
        "--video", help="Also write episode.gif of one greedy episode (needs the render extra: "
        "pip install 'relaxcli[render]').")] = False,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue an interrupted run directory after its last completed update "
        "(all other options come from its config.json); results equal an uninterrupted run.")] = None,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a softmax policy with REINFORCE (baselines) or RELAX on a gymnasium environment."""
    from relaxcli.commands.reinforce import ReinforceOptions
    from relaxcli.commands.reinforce import reinforce as run_reinforce

    refuse_options_beside_resume(ctx, resume, may_change=("threads",))
    options = fill(ReinforceOptions, locals())
    invoke(run_reinforce, json_out=json_out, quiet=quiet, options=options, resume=resume, out=out,
           overwrite=overwrite)


@app.command("compare")
def compare(
    run_dirs: Annotated[list[str], typer.Argument(
        help="Run directories, parent folders or globs; every summary.json below them is read.",
        metavar="RUN_DIR...", show_default=False)],
    group_by: Annotated[list[str] | None, typer.Option(
        "--group-by", help="Config keys to group by, comma-separated or repeated (any key of "
        "config.json or its options, e.g. method,tau). Default: dataset and method (train-vae), "
        "env and method (reinforce), problem then each result's method and tau (grad-bench), "
        "leaving out a key with one value in every run (method always stays).")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="summary.json metrics to report, comma-separated or repeated. Default: "
        "the command's key metrics (train-vae: test_neg_elbo, test_iw_nll, seconds_per_epoch; "
        "reinforce: episodes_to_solve, steps_to_solve, eval_return_greedy, wall_seconds; "
        "grad-bench: "
        "bias_norm, variance_trace, mse, snr, seconds_per_estimate).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory for comparison.csv, comparison.md, curves.png and summary.json "
        "(default runs/compare/<UTC time>). Must be new or empty unless --overwrite.")] = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare completed runs: mean +/- std over seeds per group, as a table, CSV, Markdown and curves."""
    from relaxcli.commands.compare import run_compare

    invoke(run_compare, json_out=json_out, quiet=quiet, run_dirs=run_dirs, group_by=group_by,
           metrics=metric, out=out, overwrite=overwrite)


def _exception_types(name: str) -> tuple[type, ...]:
    """click's exception class ``name`` from click and from typer's vendored copy (typer >= 0.19)."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue
        if hasattr(mod, name):
            found.append(getattr(mod, name))
    return tuple(found)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage errors become one line and exit code 2."""
    usage_errors = _exception_types("UsageError")
    no_args_help = _exception_types("NoArgsIsHelpError")
    aborts = _exception_types("Abort")
    exits = _exception_types("Exit")
    saved_argv = sys.argv
    if argv is not None:
        # In-process calls (tests, notebooks): config.json records the command line that ran,
        # not the host process's.
        sys.argv = ["relax", *argv]
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="relax")
    except no_args_help as e:
        # A bare `relax` (or a group without its command): print the help, exit 2 (usage error).
        ctx = getattr(e, "ctx", None)
        help_text = ctx.get_help() if ctx is not None else app.info.help or ""
        sys.stdout.write(help_text.rstrip("\n") + "\n")
        sys.stdout.flush()
        sys.exit(2)
    except usage_errors as e:
        ctx = getattr(e, "ctx", None)
        name = ctx.command_path if ctx is not None else "relax"
        print(f"error: {e.format_message()} (see '{name} --help')", file=sys.stderr)
        sys.exit(2)
    except aborts:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except exits as e:
        sys.exit(getattr(e, "exit_code", 0))
    finally:
        sys.argv = saved_argv
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
