"""The ``relax`` command line: parses options, validates, calls a runner, maps errors to exit codes.

Exit codes (stable, for shell sweeps): 0 success (``relax status``: every task completed; 3
while tasks are still queued or running and none failed; 1 when some failed or were
interrupted); 1 the run failed; 2 bad input (one line on
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
from relaxcli.commands.compare import CompareOptions
from relaxcli.commands.gradbench import GradBenchOptions
from relaxcli.commands.reinforce import ReinforceOptions
from relaxcli.commands.sample import SampleOptions
from relaxcli.commands.submit import SubmitOptions  # light: neither torch nor submitit
from relaxcli.commands.vae import TrainVaeOptions
from relaxcli.console import Reporter
from relaxcli.errors import BadInput
from relaxcli.estimators.score import RENAMED_BASELINES
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

TensorboardOpt = Annotated[bool, typer.Option(
    "--tensorboard", help="Also write TensorBoard event files beside metrics.jsonl (which stays "
    "the record), for `tensorboard --logdir runs`; needs pip install tensorboard. A --resume "
    "keeps the original run's choice.")]


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
        info = typer.Argument(help=cli.help, show_default=cli.show_default, metavar=cli.metavar)
    else:
        info = typer.Option(*cli.flags, help=cli.help, show_default=cli.show_default,
                            min=cli.min, max=cli.max, hidden=cli.hidden, metavar=cli.metavar)
    default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[hint, info])


def options_command(name: str, options_cls: type, runner: str, *, resume_may_change=None,
                    context_settings: dict | None = None) -> None:
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
    app.command(name, context_settings=context_settings)(command)
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
    """List every registered method: family, kind, unbiasedness, exact log_prob, paper, default tau, settings."""
    if markdown:
        sys.stdout.write(registry.markdown_table())
        return
    rows = [
        {
            "name": m.name, "family": m.family.value, "families": [f.value for f in m.families],
            "kind": m.kind.value, "unbiased": m.unbiased,
            "exact_log_prob": m.exact_log_prob, "paper": m.paper.cite(),
            "default_tau": m.default_tau, "min_tau": m.min_tau, "summary": m.summary,
            "paper_short": m.paper.short(),
            # keyword settings and defaults (--setting KEY=VALUE); tensor ones as null
            "settings": {k: registry.settable(m).get(k) for k in m.settings},
            "settings_text": ", ".join(f"{k}={registry.format_setting(v)}"
                                       for k, v in registry.settable(m).items()),
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
    console.print("settings, given as --setting KEY=VALUE to sample, grad-bench and train-vae "
                  f"(defaults): {registry.settings_overview()}", markup=False, highlight=False)


options_command("sample", SampleOptions, "relaxcli.commands.sample:run_sample")
options_command("bridge", BridgeOptions, "relaxcli.commands.bridge:run_bridge")


options_command("grad-bench", GradBenchOptions, "relaxcli.commands.gradbench:run_grad_bench")


options_command("train-vae", TrainVaeOptions, "relaxcli.commands.vae:run_train_vae",
                resume_may_change=("epochs", "threads"))


def _renamed_baseline(token: str) -> str:
    """relax reinforce's --baseline names before 0.2 still parse, with a one-line note."""
    if token in RENAMED_BASELINES:
        print(f"note: --baseline {token} is deprecated; use --baseline {RENAMED_BASELINES[token]}",
              file=sys.stderr)
        return RENAMED_BASELINES[token]
    return token


options_command("reinforce", ReinforceOptions, "relaxcli.commands.reinforce:reinforce",
                resume_may_change=("threads",),
                context_settings={"token_normalize_func": _renamed_baseline})


options_command("compare", CompareOptions, "relaxcli.commands.compare:run_compare")


# ---------------------------------------------------------------- sweeps on a cluster


options_command("submit", SubmitOptions, "relaxcli.commands.submit:run_submit")


@app.command("status")
def status(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep directory made by relax submit.",
                                              metavar="SWEEP_DIR", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Each task of a sweep: queued, running, completed, failed or interrupted, with failures' last error line.

    Exit 0 when every task completed, 1 when some failed or were interrupted (and not requeued),
    3 while the others are still queued or running.
    """
    from relaxcli.commands.submit import run_status

    try:
        summary = run_status(sweep_dir=sweep_dir)
    except BadInput as e:
        fail(str(e), 2)
    counts = summary["counts"]
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        console = Console(width=None if sys.stdout.isatty() else 200)
        table = Table(title=f"sweep {sweep_dir} ({summary['executor']})", title_justify="left",
                      box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        for name in ("task", "state", "job", "run directory", "note"):
            table.add_column(name, overflow="fold")
        colours = {"completed": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
        for r in summary["tasks"]:
            colour = colours.get(r["state"], "white")
            table.add_row(str(r["index"]), f"[{colour}]{r['state']}[/{colour}]", str(r["job_id"] or "-"),
                          r["out"], (r["note"] or "") + (f"  (log {r['log']})" if r["log"] and
                                                         r["state"] in ("failed", "interrupted") else ""),
                          )
        console.print(table, markup=True, highlight=False)
        line = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        cmp = summary["compare"]
        if cmp:
            line += f"; compare: {cmp.get('state') or 'not run yet'} ({cmp['out']})"
        console.print(line, markup=False, highlight=False)
    if counts["completed"] == len(summary["tasks"]):
        raise typer.Exit(0)
    raise typer.Exit(1 if counts["failed"] or counts["interrupted"] else 3)


@app.command("rerun")
def rerun(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (its config.json is replayed).",
                                            metavar="RUN_DIR", show_default=False)],
    seed: Annotated[int | None, typer.Option(
        "--seed", min=0, max=2**63 - 1, help="New seed (default: the run's own).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where the new run goes (default RUN_DIR-seed<S>, beside the original).",
        show_default=False)] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The same run again from its config.json, e.g. with a new --seed for one more sample of a table row."""
    from relaxcli.commands.rerun import plan_rerun

    try:
        argv = plan_rerun(run_dir=run_dir, seed=seed, out=out)
    except BadInput as e:
        fail(str(e), 2)
    argv += [flag for flag, on in (("--json", json_out), ("--quiet", quiet)) if on and flag not in argv]
    if not quiet:
        print(f"relax {' '.join(argv)}", file=sys.stderr, flush=True)
    main(argv)  # the replayed command line runs as if typed, and exits with its own status


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
