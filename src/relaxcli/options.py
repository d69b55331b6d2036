"""Command options written once: each command declares one keyword-only dataclass whose fields
carry their command-line flag and help text; ``cli.py`` turns the dataclass into the Typer
command (flags, help, defaults, Enum choices), fills an instance and hands it to the command's
``run(options, reporter)``. Nothing here imports Typer, so commands do not depend on the CLI.

Fixed vocabularies are ``str`` Enums (Typer lists their values in ``--help`` and refuses others);
the value reaches the command as the Enum member, which compares equal to its string.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(kw_only=True)
    ... class GreetOptions(RunOptions):
    ...     name: str = argument(help="Who to greet.")
    ...     times: int = option(1, "--times", help="How often.", min=1)
    >>> GreetOptions(name="x").times, GreetOptions(name="x").seed
    (1, 0)
    >>> [f.name for f in cli_fields(GreetOptions)][:2]
    ['name', 'times']
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Choice(str, Enum):
    """A fixed vocabulary (``str`` Enum): Typer lists its values in ``--help`` and refuses others;
    a member compares equal to, formats and prints as its value (what config.json records)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Cli:
    """How one option field appears on the command line."""

    flags: tuple[str, ...]
    help: str
    argument: bool = False
    show_default: bool = True
    min: float | None = None
    max: float | None = None
    hidden: bool = False
    metavar: str | None = None


def option(default: Any, *flags: str, help: str, show_default: bool = True,
           min: float | None = None, max: float | None = None, hidden: bool = False,
           metavar: str | None = None) -> Any:
    """A dataclass field that is the option ``flags`` (e.g. ``"--tau"``) with ``default``
    (``metavar``: how ``--help`` names its value, e.g. ``KEY=VALUE``)."""
    return field(default=default, metadata={"cli": Cli(tuple(flags), help, False, show_default,
                                                        min, max, hidden, metavar)})


def argument(*, help: str, default: Any = MISSING, metavar: str | None = None) -> Any:
    """A dataclass field that is a positional argument (required unless ``default`` is given)."""
    return field(default=default, metadata={"cli": Cli((), help, True, default is not MISSING,
                                                        metavar=metavar)})


def cli_fields(cls) -> list[dataclasses.Field]:
    """The fields of options class ``cls`` that are on the command line: the command's own
    first, then those it inherits (the options every run shares come last in ``--help``)."""
    own, inherited = [], []
    bases = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
             for f in dataclasses.fields(base)}
    for f in dataclasses.fields(cls):
        if "cli" in f.metadata:
            (inherited if f.name in bases else own).append(f)
    return own + inherited


def non_finite(options) -> str | None:
    """The flag of the first float option holding inf or nan (never a silent nonsense run)."""
    for f in cli_fields(type(options)):
        value = getattr(options, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            flag = f.metadata["cli"].flags[0] if f.metadata["cli"].flags else f.name
            return f"{flag} must be a finite number, got {value}"
    return None


@dataclass(kw_only=True)
class RunOptions:
    """The options every command that writes a run directory shares."""

    seed: int = option(0, "--seed", min=0, max=2**63 - 1, help=(
        "Random seed (0 to 2^63 - 1): the same seed gives the same numbers on the same machine."))
    out: Path | None = option(None, "--out", show_default=False, help=(
        "Run directory to write (default runs/<command>/<method>-<UTC time>). Must be new or "
        "empty unless --overwrite."))
    overwrite: bool = option(False, "--overwrite", help=(
        "Replace the contents of an existing, non-empty --out directory."))
    device: str = option("auto", "--device", help="auto (CUDA when available), cpu or cuda.")
    threads: int | None = option(None, "--threads", show_default=False, help=(
        "CPU threads torch may use (>= 1). Default: OMP_NUM_THREADS when set, else min(4, cores). "
        "Give 1 per run when several runs share a machine (the sweeps in experiments/ do). "
        "Recorded in config.json."))
