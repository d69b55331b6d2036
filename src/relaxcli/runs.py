"""Run directories: the one place that decides how every ``relax`` command records its work.

A run's life: :func:`create_run` makes the directory (refusing a non-empty one unless
``overwrite`` or ``resume``), writes ``config.json`` and ``status`` = running; the runner appends
lines to ``metrics.jsonl`` (flushed at once), writes images and checkpoints atomically, then
``summary.json``; :meth:`Run.finish` sets ``status`` = completed. :func:`run_context` marks a run
``interrupted`` on Ctrl-C (keeping everything) and ``failed`` on an error.

Every file is written atomically (temporary file in the same directory + ``os.replace``), so a
killed process never leaves a half-written JSON or checkpoint behind.

Example:
    >>> run = create_run("sample", "hard-concrete", {"tau": 0.5}, out=None)   # doctest: +SKIP
    >>> run.log_metrics({"step": 1, "loss": 0.3})                              # doctest: +SKIP
    >>> run.finish({"loss": 0.3})                                               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import math
import os
import platform
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import relaxcli
from relaxcli.errors import BadInput

STATUSES = ("running", "completed", "failed", "interrupted")

# Files made by mkstemp are 0600; give run files the permissions a plain open() would (umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


class RunDirError(BadInput):
    """The output directory cannot be used (exists and non-empty, unwritable, not a run...)."""


def utc_timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def to_jsonable(x: Any) -> Any:
    """Tensors, numpy values, Paths and non-finite floats into plain JSON (NaN/inf -> null)."""
    if isinstance(x, torch.Tensor):
        return to_jsonable(x.detach().cpu().tolist())
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return to_jsonable(x.tolist())
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_savefig(fig, path: Path, **kwargs) -> None:
    """Save a matplotlib figure atomically as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kwargs)
    atomic_write_bytes(path, buf.getvalue())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run is reproducible on one machine."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # numpy is a dependency; guard only for odd installs
        pass
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error.

    Raises :class:`BadInput` (exit 2): the device is part of the user's input.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise BadInput(f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda was asked for, but no CUDA device is available (use auto or cpu)")
    return torch.device(device)


def default_out(command: str, method: str | None) -> Path:
    name = f"{method}-{utc_timestamp()}" if method else utc_timestamp()
    return Path("runs") / command / name


@dataclass
class Run:
    """An open run directory. Use :func:`create_run` or :func:`open_for_resume` to get one."""

    path: Path
    config: dict

    # ------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        return self.path / name

    def set_status(self, status: str, message: str | None = None) -> None:
        assert status in STATUSES, status
        atomic_write_text(self.file("status"), status + ("\n" + message if message else "") + "\n")

    def log_metrics(self, record: dict) -> None:
        """Append one JSON line to metrics.jsonl and flush it to disk at once."""
        line = json.dumps(to_jsonable(record), allow_nan=False)
        with open(self.file("metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.path)

    def truncate_metrics(self, keep: Callable[[dict], bool]) -> None:
        """Keep only metric lines for which ``keep(record)`` is true (used by resume)."""
        records = [r for r in self.read_metrics() if keep(r)]
        atomic_write_text(self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in records))

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.file(name), obj)
        return self.file(name)

    def save_figure(self, fig, name: str, **kwargs) -> Path:
        atomic_savefig(fig, self.file(name), **kwargs)
        return self.file(name)

    def save_torch(self, name: str, obj: Any) -> Path:
        atomic_torch_save(self.file(name), obj)
        return self.file(name)

    def write_summary(self, summary: dict) -> dict:
        summary = to_jsonable(summary)
        atomic_write_json(self.file("summary.json"), summary)
        return summary

    def finish(self, summary: dict) -> dict:
        """Write summary.json, then mark the run completed."""
        summary = self.write_summary(summary)
        self.set_status("completed")
        return summary


def read_metrics(path: Path) -> list[dict]:
    p = Path(path) / "metrics.jsonl"
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut by a crash mid-write (metrics are appended, not atomic): drop it.
                continue
    return out


def read_status(path: Path) -> str | None:
    p = Path(path) / "status"
    if not p.exists():
        return None
    return p.read_text(encoding="utf-8").splitlines()[0].strip()


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".relax-write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write to --out {str(path)!r}: {e.strerror or e}") from None


def create_run(command: str, method: str | None, options: dict, out: Path | str | None = None,
               overwrite: bool = False, seed: int | None = None, device: str | None = None,
               argv: list[str] | None = None) -> Run:
    """Create a fresh run directory and write its config.json (status = running).

    An existing non-empty ``out`` is refused unless ``overwrite`` (then its files are removed,
    since keeping stale images beside new ones would mix two runs).
    """
    path = Path(out) if out is not None else default_out(command, method)
    try:
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {str(path)!r} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise RunDirError(
                    f"--out {str(path)!r} exists and is not empty; pass --overwrite to replace it"
                    + (" or --resume to continue it" if command in ("train-vae", "reinforce") else "")
                )
            _clear_dir(path)
    except OSError as e:  # e.g. a directory we may not list or clear
        raise RunDirError(f"cannot use --out {str(path)!r}: {e.strerror or e}") from None
    _check_writable(path)
    config = {
        "command": command,
        "method": method,
        "options": to_jsonable(options),
        "seed": seed,
        "device": device,
        "relaxcli_version": relaxcli.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "start_time": utc_now_iso(),
        "argv": list(sys.argv if argv is None else argv),
    }
    run = Run(path, config)
    run.write_json("config.json", config)
    run.set_status("running")
    return run


def _clear_dir(path: Path) -> None:
    import shutil

    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def open_for_resume(path: Path | str, command: str) -> Run:
    """Reopen an existing run directory of ``command`` to continue it (status back to running)."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise RunDirError(f"--resume {str(path)!r} is not a run directory (no config.json)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"--resume {str(path)!r}: config.json is unreadable ({e})") from None
    if config.get("command") != command:
        raise RunDirError(
            f"--resume {str(path)!r} is a {config.get('command')!r} run, not {command!r}")
    if read_status(path) == "completed":
        raise RunDirError(f"--resume {str(path)!r} is already completed; nothing to resume")
    run = Run(path, config)
    run.set_status("running")
    return run


@contextlib.contextmanager
def run_context(run: Run, resume_hint: str | None = None) -> Iterator[Run]:
    """Mark the run interrupted (and re-raise KeyboardInterrupt) or failed on the way out.

    The CLI turns KeyboardInterrupt into exit 130 and other errors into exit 1; this context
    only makes sure the status file tells the truth and prints how to resume.
    """
    try:
        yield run
    except KeyboardInterrupt:
        run.set_status("interrupted")
        msg = f"interrupted: everything written so far is kept in {run.path}"
        if resume_hint:
            msg += f"; resume with: {resume_hint}"
        print(msg, file=sys.stderr)
        raise
    except BaseException as e:
        run.set_status("failed", f"{type(e).__name__}: {e}")
        raise
