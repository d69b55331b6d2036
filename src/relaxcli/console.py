"""Terminal output shared by every command: rich on stderr, silent when not a terminal.

stdout is reserved for ``--json`` (sweep scripts parse it), so tables, progress bars and
messages all go to stderr. Progress bars and tables (:meth:`Reporter.print`,
:meth:`Reporter.table`, :meth:`Reporter.progress`) are shown only when stderr is a terminal and
the user did not pass ``--quiet``, so logs and pipes stay clean; :meth:`Reporter.note` (one plain
line a user must not miss, e.g. "plots are drawn only for K = 3") is shown unless ``--quiet``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Reporter:
    """What a runner uses to talk to the user: ``table``, ``print``, ``progress``."""

    def __init__(self, quiet: bool = False, json_mode: bool = False):
        # Rich falls back to 80 columns when stderr is not a terminal, which truncates method
        # names in logs; use a wide fixed width there instead.
        self.console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
        # --json means "summary.json on stdout and nothing else"; stderr stays usable for
        # progress and tables unless --quiet.
        self.quiet = quiet
        self.json_mode = json_mode

    @property
    def interactive(self) -> bool:
        """stderr is a terminal and the user did not ask for --quiet."""
        return not self.quiet and sys.stderr.isatty()

    @property
    def show_progress(self) -> bool:
        return self.interactive

    def print(self, *objects, **kwargs) -> None:
        if self.interactive:
            self.console.print(*objects, **kwargs)

    def table(self, table) -> None:
        self.print(table)

    def note(self, message: str) -> None:
        """One plain line on stderr (not rich markup) unless --quiet, terminal or not."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        if not self.show_progress:
            yield ProgressTask(None, None)
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        with progress:
            task = progress.add_task(description, total=total, info="")
            yield ProgressTask(progress, task)


class ProgressTask:
    """A handle to advance one progress bar (a no-op when progress is off)."""

    def __init__(self, progress: Progress | None, task):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1, info: str | None = None) -> None:
        if self._progress is not None:
            kw = {"info": info} if info is not None else {}
            self._progress.update(self._task, advance=n, **kw)
