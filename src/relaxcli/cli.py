"""The ``relax`` command line: parses options, validates, calls a runner, maps errors to exit codes.

Exit codes (stable, for shell sweeps): 0 success; 1 the run failed; 2 bad input (one line on
stderr saying what was wrong and what is allowed); 130 interrupted with Ctrl-C (the run directory
keeps everything written so far and is marked ``interrupted``).

This module holds no science: every command is one function that hands its options to a runner
in :mod:`relaxcli.experiments`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

import relaxcli
from relaxcli import methods as registry
from relaxcli.console import Reporter
from relaxcli.errors import BadInput

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
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="Run directory to write (default runs/<command>/<method>-<UTC time>). "
    "Must be new or empty unless --overwrite.")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace the contents of an existing, non-empty --out directory.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same numbers on the same machine.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print summary.json to stdout and nothing else.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No tables or progress on stderr.")]


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def invoke(runner: Callable[..., dict], *, json_out: bool, quiet: bool, **kwargs: Any) -> None:
    """Call ``runner(reporter=..., **kwargs)``; print its summary as JSON when ``--json``.

    BadInput -> exit 2, KeyboardInterrupt -> exit 130, any other error -> exit 1, each with one
    line on stderr (the run directory's ``status`` file records the same).
    """
    reporter = Reporter(quiet=quiet or json_out and not sys.stderr.isatty(), json_mode=json_out)
    try:
        summary = runner(reporter=reporter, **kwargs)
    except BadInput as e:
        fail(str(e), 2)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - one clear line, never a traceback
        fail(f"{type(e).__name__}: {e}", 1)
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()


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
def list_methods(json_out: JsonOpt = False) -> None:
    """List every registered method: family, kind, unbiasedness, exact log_prob, paper, default tau."""
    rows = [
        {
            "name": m.name, "family": m.family, "kind": m.kind, "unbiased": m.unbiased,
            "exact_log_prob": m.exact_log_prob, "paper": m.paper.cite(),
            "default_tau": m.default_tau, "summary": m.summary, "paper_short": m.paper.short(),
        }
        for m in registry.METHODS.values()
    ]
    if json_out:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    from rich.table import Table

    table = Table(title="relaxcli methods")
    for col in ("name", "family", "kind", "unbiased", "exact log_prob", "paper", "default tau"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["family"], r["kind"], "yes" if r["unbiased"] else "no",
                      "yes" if r["exact_log_prob"] else "no", r["paper_short"],
                      "-" if r["default_tau"] is None else f"{r['default_tau']:.3g}")
    Reporter().console.print(table)


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
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="relax")
    except no_args_help:
        sys.exit(0)  # help was printed
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
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
