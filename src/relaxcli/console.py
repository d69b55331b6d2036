"""Terminal output shared by every command: rich on stderr, plain lines when not a terminal.

stdout is reserved for ``--json`` (sweep scripts parse it), so tables, progress and messages all
go to stderr, and nothing but errors with ``--quiet``.

* On a terminal: rich progress bars, tables and messages.
* Without one (a log file, a pipe, a cluster job): the same messages and tables as plain text
  (no colours, 160 columns), and instead of bars one plain progress line
  ``description: n/total (info) [elapsed, ~remaining left]`` at most every
  :data:`PLAIN_EVERY_SECONDS` seconds and only after another tenth of the work, or at least every
  :data:`PLAIN_MAX_SILENCE` seconds; so an hour-long run leaves a log that shows it is alive,
  each epoch's or update's result, and the final result with the run directory.

:meth:`Reporter.note` is one plain line a user must not miss (e.g. "plots are drawn only for
K = 3"), shown unless ``--quiet``.
"""

from __future__ import annotations

import sys
import time
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
        """A message (rich markup); plain text off a terminal; nothing with --quiet."""
        if not self.quiet:
            if not self.interactive:  # a log: never wrap a line (a path cut in two is no use)
                kwargs.setdefault("soft_wrap", True)
            self.console.print(*objects, **kwargs)

    def table(self, table) -> None:
        """A rich table: drawn on a terminal, plain text in a log; nothing with --quiet."""
        self.print(table)

    def note(self, message: str) -> None:
        """One plain line on stderr (not rich markup) unless --quiet, terminal or not."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        if self.quiet:
            yield ProgressTask(None, None)
            return
        if not self.show_progress:  # a log or a pipe: a plain line now and then
            yield PlainProgress(description, total)
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


PLAIN_EVERY_SECONDS = 10.0   # plain progress: at most one line per this many seconds...
PLAIN_MAX_SILENCE = 60.0     # ...and at least one per this many, whatever the fraction done


class PlainProgress(ProgressTask):
    """Progress for logs and pipes: a plain line after each further tenth of the work (at most
    every PLAIN_EVERY_SECONDS seconds), or after PLAIN_MAX_SILENCE seconds without one."""

    def __init__(self, description: str, total: int | None, stream=None):
        super().__init__(None, None)
        self.description, self.total, self.done, self.info = description, total, 0, ""
        self.stream = stream
        self.start = self.last = time.monotonic()
        self.last_done = 0

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.done += n
        if info is not None:
            self.info = info
        now = time.monotonic()
        step = (self.total or 0) / 10
        if (now - self.last >= PLAIN_EVERY_SECONDS and (not step or self.done - self.last_done >= step)
                or now - self.last >= PLAIN_MAX_SILENCE):
            self.line(now)

    def line(self, now: float) -> None:
        elapsed = now - self.start
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        left = ""
        if self.total and 0 < self.done < self.total:
            left = f", ~{_clock(elapsed * (self.total - self.done) / self.done)} left"
        info = f" ({self.info.strip()})" if self.info.strip() else ""
        print(f"{self.description}: {count}{info} [{_clock(elapsed)}{left}]",
              file=self.stream or sys.stderr, flush=True)
        self.last, self.last_done = now, self.done


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
