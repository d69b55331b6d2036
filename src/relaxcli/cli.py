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
import importlib
import inspect
import json
import math
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

import relaxcli
from relaxcli import methods as registry
from relaxcli.commands.bridge import BridgeOptions
from relaxcli.commands.vae import TrainVaeOptions
from relaxcli.console import Reporter
from relaxcli.errors import BadInput
from relaxcli.options import Cli, cli_fields, non_finite
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


def _typer_parameter(f, hint) -> inspect.Parameter:
    """The Typer parameter of one options-dataclass field (its flag, help, default, bounds)."""
    cli: Cli = f.metadata["cli"]
    if cli.argument:
        info = typer.Argument(help=cli.help, show_default=cli.show_default)
    else:
        info = typer.Option(*cli.flags, help=cli.help, show_default=cli.show_default,
                            min=cli.min, max=cli.max, hidden=cli.hidden)
    default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[hint, info])


def options_command(name: str, options_cls: type, runner: str, *, resume_may_change=None) -> None:
    """Register command ``name``: its options are the fields of ``options_cls`` (written once,
    in the command's module), plus --json and --quiet; ``runner`` ("module:function") gets
    ``(options, reporter)``. ``resume_may_change``: the fields that may be given beside
    ``--resume`` (commands that resume), everything else typed beside it is refused."""
    hints = typing.get_type_hints(options_cls)
    params = [_typer_parameter(f, hints[f.name]) for f in cli_fields(options_cls)]
    params += [
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=QuietOpt),
    ]
    if resume_may_change is not None:
        params.insert(0, inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           annotation=typer.Context))

    # ctx arrives as a keyword only when it is in the signature; it is not named in the def, since
    # Typer reads the def's annotations before __signature__'s (ctx would become an argument).
    def command(**values: Any) -> None:
        ctx = values.pop("ctx", None)
        json_out, quiet = values.pop("json_out"), values.pop("quiet")
        if resume_may_change is not None:
            refuse_options_beside_resume(ctx, values.get("resume"), tuple(resume_may_change))
        options = options_cls(**values)
        problem = non_finite(options)
        if problem:
            fail(problem)
        module, function = runner.split(":")
        run = getattr(importlib.import_module(module), function)
        invoke(run, json_out=json_out, quiet=quiet, options=options)

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = options_cls.__doc__
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)


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
            "name": m.name, "family": m.family.value, "families": [f.value for f in m.families],
            "kind": m.kind.value, "unbiased": m.unbiased,
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


options_command("bridge", BridgeOptions, "relaxcli.commands.bridge:run_bridge")


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


options_command("train-vae", TrainVaeOptions, "relaxcli.commands.vae:run_train_vae",
                resume_may_change=("epochs", "threads"))


@app.command("reinforce")
def reinforce(
    ctx: typer.Context,
    env: Annotated[str, typer.Option(
        "--env", help="gymnasium environment id with a discrete action space and vector "
        "observations (e.g. Acrobot-v1, CartPole-v1, MountainCar-v0).")] = "Acrobot-v1",
    estimator: Annotated[str, typer.Option(
        "--estimator", help="Policy-gradient estimator: reinforce (score function with "
        "reward-to-go) or relax (Grathwohl et al. 2018: learned control variate on the "
        "Gumbel-relaxed action, conditional Gumbel sample).")] = "reinforce",
    baseline: Annotated[str, typer.Option(
        "--baseline", help="none, mean (moving average of past returns-to-go) or value (learned "
        "state-value network; advantages normalised per batch).")] = "value",
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
    from relaxcli.commands.reinforce import reinforce as run_reinforce

    refuse_options_beside_resume(ctx, resume, may_change=("threads",))

    invoke(run_reinforce, json_out=json_out, quiet=quiet, resume=resume, out=out,
           overwrite=overwrite, env=env, estimator=estimator, baseline=baseline, gamma=gamma,
           num_envs=num_envs, episodes=episodes, steps=steps, lr=lr, entropy_coef=entropy_coef,
           hidden=hidden, seed=seed, device=device, stop_when_solved=stop_when_solved,
           eval_episodes=eval_episodes, video=video, threads=threads)


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
    per_run_csv: Annotated[bool, typer.Option(
        "--per-run-csv", help="Also write per_run.csv: one row per run (grad-bench: per run and "
        "result row) with its group keys, the compared metrics, and config.json and summary.json "
        "flattened (config.*, options.*, summary.*), for pandas.")] = False,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare completed runs: mean +/- std over seeds per group, as a table, CSV, Markdown and curves."""
    from relaxcli.commands.compare import CompareOptions, run_compare

    invoke(run_compare, json_out=json_out, quiet=quiet, options=CompareOptions(
        run_dirs=run_dirs, group_by=group_by, metrics=metric, out=out, overwrite=overwrite,
        per_run_csv=per_run_csv))


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
