"""The ``relax`` commands, one module each, and the one table that lists them.

:data:`COMMAND_MODULES` maps a command's name (what its runs write as config.json's ``command``)
to its module; each module declares its report (:mod:`relaxcli.report`) when imported.
:func:`report_for` imports only the module a comparison needs, so ``relax compare`` names no
command and does not pay for importing the others.
"""

from __future__ import annotations

import importlib

from relaxcli.report import REPORTS, Report

COMMAND_MODULES = {
    "sample": "relaxcli.commands.sample",
    "bridge": "relaxcli.commands.bridge",
    "grad-bench": "relaxcli.commands.gradbench",
    "train-vae": "relaxcli.commands.vae",
    "reinforce": "relaxcli.commands.reinforce",
}


def report_for(command: str) -> Report:
    """The declared report of ``command``; a plain one (every numeric summary key, grouped by
    method) for a command that declares none."""
    if command not in REPORTS and command in COMMAND_MODULES:
        importlib.import_module(COMMAND_MODULES[command])
    return REPORTS.get(command) or Report(command=command)
