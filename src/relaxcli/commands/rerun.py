"""``relax rerun RUN_DIR [--seed S] [--out DIR]``: the same run again, from its config.json.

config.json keeps the command line that made the run (``argv``, recorded by
:func:`relaxcli.runs.create_run`). A rerun replays it with ``--seed`` and ``--out`` replaced,
so every option, default or given, is what it was (defaults are those of the installed
relaxcli: ``config.json``'s ``relaxcli_version`` and ``git`` say which one made the original).
The new run goes beside the original, ``RUN_DIR-seed<S>``, so that ``relax compare`` over their
folder averages the seeds of one table row.

Example:
    >>> rerun_argv({"command": "sample", "seed": 0, "argv": ["relax", "sample", "gumbel-softmax",
    ...             "--seed", "0", "--out", "runs/a"]}, seed=3, out="runs/a-seed3")
    ['sample', 'gumbel-softmax', '--seed', '3', '--out', 'runs/a-seed3']
"""

from __future__ import annotations

import json
from pathlib import Path

from relaxcli.commands.submit import SUBMITTABLE, _without
from relaxcli.errors import BadInput


def rerun_argv(config: dict, *, seed: int, out: str) -> list[str]:
    """The original arguments with ``--seed``/``--out`` replaced and ``--overwrite``/``--resume``
    dropped."""
    argv = config.get("argv")
    command = config.get("command")
    if command not in SUBMITTABLE:
        raise BadInput(f"a {command!r} run cannot be rerun (rerun replays {', '.join(SUBMITTABLE)})")
    if not (isinstance(argv, list) and len(argv) >= 2 and argv[1] == command):
        raise BadInput(f"config.json's argv {argv!r} is not the relax {command} command line that "
                       "made the run (a run made from Python, not the CLI?)")
    args = _without([str(a) for a in argv[1:]], flags=("--overwrite",),
                    options=("--seed", "--out", "--resume"))
    return [*args, "--seed", str(seed), "--out", str(out)]


def plan_rerun(*, run_dir: Path, seed: int | None = None, out: Path | None = None) -> list[str]:
    """The relax arguments that rerun ``run_dir`` (the CLI then runs them as any command line)."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{str(run_dir)!r} is not a run directory (no config.json)") from None
    except (OSError, ValueError) as e:
        raise BadInput(f"{str(run_dir)!r}: config.json is unreadable ({e})") from None
    if not isinstance(config, dict):
        raise BadInput(f"{str(run_dir)!r}: config.json is not a relax run's config")
    if seed is None:
        seed = config.get("seed")
        if seed is None:
            raise BadInput(f"{str(run_dir)!r} records no seed; give --seed")
    if out is None:
        out = run_dir.parent / f"{run_dir.name}-seed{seed}"
    return rerun_argv(config, seed=seed, out=str(out))
