"""Run directories: the one place that decides how every ``relax`` command records its work.

A run's life: :func:`create_run` makes the directory (refusing a non-empty one unless
``overwrite`` or ``resume``), writes ``config.json`` and ``status`` = running; the runner appends
lines to ``metrics.jsonl`` (flushed at once), writes images and checkpoints atomically, then
``summary.json``; :meth:`Run.finish` sets ``status`` = completed. :func:`run_context` marks a run
``interrupted`` on Ctrl-C or SIGTERM (keeping everything) and ``failed`` on an error.

Nothing is lost:

* ``--overwrite`` replaces only a folder that is a relax run directory (its ``config.json`` was
  written by relaxcli, see :func:`is_run_dir`) or an empty one; any other folder (a project, a
  home directory, a sweep holding many runs) is refused with exit 2 and left untouched, and so is
  a folder that holds one of the command's own inputs (``inputs=``).
* A process that writes a run directory holds an OS lock on its ``.relax.lock`` file
  (``fcntl.flock``: released by the kernel when the process ends, even on a crash or
  ``kill -9``, so no stale lock is ever left). A second writer (a second run on the same
  ``--out``, a ``--resume`` of a run that is still going, an ``--overwrite`` of it) exits 2
  naming the process and host that hold it.

Each run also records where it came from (:func:`provenance`, in config.json: relaxcli version,
git commit and dirty flag of a checkout, host, library versions, CUDA device, Slurm ids, start
and end time) and keeps a ``log.txt`` of what it printed, with the traceback when it fails (the
terminal still gets one line). With ``tensorboard=True`` every metrics line is also written as
TensorBoard scalars beside metrics.jsonl (which stays the source of truth).

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
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import relaxcli
from relaxcli.errors import BadInput

STATUSES = ("running", "completed", "failed", "interrupted")
COMMANDS = ("sample", "bridge", "grad-bench", "train-vae", "reinforce", "compare")
RESUMABLE = ("train-vae", "reinforce")  # the commands with --resume RUN_DIR
LOCK_FILE = ".relax.lock"
LOG_FILE = "log.txt"
# The x axis of a metrics line in TensorBoard: the first of these keys that the line has.
STEP_KEYS = ("step", "episode", "update", "epoch")
GIT_TIMEOUT_S = 2.0  # provenance must never slow a run down noticeably, nor fail it

# Files made by mkstemp are 0600; give run files the permissions a plain open() would (umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


class RunDirError(BadInput):
    """The output directory cannot be used (exists and non-empty, unwritable, not a run...)."""


class RunLocked(RunDirError):
    """Another process is writing this run directory (it holds the lock)."""


class RunFailed(RuntimeError):
    """The run cannot go on (e.g. its loss became NaN); the message is the one line to show.

    The CLI prints it without a Python type name and exits 1; the run is marked ``failed``.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a cluster scheduler sends): handled like Ctrl-C, but exit 143."""


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
    lock: RunLock | None = None
    started: bool = False  # run_context has begun: from then on it alone sets the status
    resumed: bool = False  # opened by open_for_resume: config.json gains a "resumes" entry
    writer: Any = None  # a TensorBoard SummaryWriter while run_context runs (config "tensorboard")

    def release(self) -> None:
        """Give up the run directory's lock (idempotent; the OS drops it at exit anyway)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        return self.path / name

    def set_status(self, status: str, message: str | None = None) -> None:
        assert status in STATUSES, status
        atomic_write_text(self.file("status"), status + ("\n" + message if message else "") + "\n")

    def log_metrics(self, record: dict, series: str | None = None) -> None:
        """Append one JSON line to metrics.jsonl and flush it to disk at once.

        With TensorBoard on, the line's numbers also become scalars (see :func:`tensorboard_scalars`);
        ``series`` names the curve family when the string fields do not (grad-bench's method and
        temperature)."""
        plain = to_jsonable(record)
        line = json.dumps(plain, allow_nan=False)
        with open(self.file("metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.writer is not None:
            scalars = tensorboard_scalars(plain, series)
            if scalars is not None:
                step, values = scalars
                for tag, value in values.items():
                    self.writer.add_scalar(tag, value, step)

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


# ------------------------------------------------------------------------------ provenance
SLURM_VARS = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID",
              "array_task_id": "SLURM_ARRAY_TASK_ID", "restart_count": "SLURM_RESTART_COUNT",
              "partition": "SLURM_JOB_PARTITION", "nodelist": "SLURM_JOB_NODELIST"}


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _checkout_root() -> Path | None:
    """The git checkout relaxcli is imported from (an editable install or PYTHONPATH=src), or
    None for an installed wheel: only then is a commit worth recording."""
    for parent in Path(relaxcli.__file__).resolve().parents:
        if (parent / ".git").exists():
            return parent
    return None


_GIT_CACHE: dict[str, Any] = {}


def git_state() -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of relaxcli's checkout, or None (not a checkout, no git,
    or git too slow: each call is bounded by :data:`GIT_TIMEOUT_S` and never raises)."""
    if "state" in _GIT_CACHE:
        return _GIT_CACHE["state"]
    state = None
    root = _checkout_root()
    if root is not None:
        try:
            def git(*args: str) -> str:
                return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                      timeout=GIT_TIMEOUT_S, check=True).stdout.strip()

            commit = git("rev-parse", "HEAD")
            # tracked files only: untracked run outputs beside the code do not make it dirty
            changes = git("status", "--porcelain", "--untracked-files=no")
            state = {"commit": commit, "dirty": bool(changes)}
        except (OSError, subprocess.SubprocessError):
            state = None
    _GIT_CACHE["state"] = state
    return state


def slurm_ids() -> dict | None:
    """The Slurm job's ids when the run is a Slurm job (array ids for a job-array task)."""
    ids = {k: os.environ[v] for k, v in SLURM_VARS.items() if os.environ.get(v)}
    return ids or None


def provenance(device: str | None = None) -> dict:
    """Where and with what a run ran: the keys :func:`create_run` adds to config.json.

    >>> sorted(provenance("cpu"))[:4]
    ['cuda_device', 'cwd', 'git', 'gymnasium_version']
    """
    cuda = None
    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        with contextlib.suppress(Exception):  # a name is nice to have, never worth a failure
            cuda = torch.cuda.get_device_name(torch.device(device))
    return {
        "hostname": socket.gethostname(),
        "cwd": os.getcwd(),
        "git": git_state(),
        "numpy_version": _package_version("numpy"),
        "gymnasium_version": _package_version("gymnasium"),
        "cuda_device": cuda,
        "slurm": slurm_ids(),
    }


# ------------------------------------------------------------------------------ tensorboard
TENSORBOARD_MISSING = ("--tensorboard needs the tensorboard package: pip install tensorboard "
                       "(or pip install -e \".[tensorboard]\")")


def require_tensorboard() -> None:
    """Exit 2 (:class:`BadInput`, naming what to install) before any work when --tensorboard is
    asked for but tensorboard is not installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise BadInput(TENSORBOARD_MISSING) from None


def tensorboard_writer(log_dir: Path):
    """A TensorBoard ``SummaryWriter`` writing its event files into ``log_dir``."""
    require_tensorboard()
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise BadInput(TENSORBOARD_MISSING) from None
    return SummaryWriter(log_dir=str(log_dir), flush_secs=10)


def tensorboard_scalars(record: dict, series: str | None = None) -> tuple[int, dict] | None:
    """A metrics line as ``(step, {tag: value})``: the step is its first key in :data:`STEP_KEYS`,
    every other finite number a scalar, under a prefix made of ``series`` and the line's string
    fields (reinforce's ``kind``). None when the line has no step.

    >>> tensorboard_scalars({"kind": "episode", "episode": 3, "return": -50.0, "length": 51})
    (3, {'episode/return': -50.0, 'episode/length': 51})
    >>> tensorboard_scalars({"method": "rebar", "step": 2, "loss": 0.5}, series="tau=1")
    (2, {'tau=1/rebar/loss': 0.5})
    """
    step_key = next((k for k in STEP_KEYS if isinstance(record.get(k), int)), None)
    if step_key is None:
        return None
    prefix = [series] if series else []
    prefix += [v for v in record.values() if isinstance(v, str)]
    values = {}
    for key, value in record.items():
        if key == step_key or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            values["/".join([*prefix, key])] = value
    return int(record[step_key]), values


# ------------------------------------------------------------------------------ log.txt
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_CURSOR = re.compile(r"\x1b\[[0-9;?]*[ABCDGHJKlh]")  # a live display redrawing itself


class _Tee:
    """A text stream that writes to ``stream`` and a plain copy to ``log``.

    On a terminal, rich draws a live progress bar by moving the cursor back over its last render
    and drawing it again, with any message printed meanwhile above it, in one write: such a write
    goes to the log without its control codes and without its last line (the bar, one line per
    progress in relaxcli), so log.txt gets the messages and no bar frames."""

    def __init__(self, stream, log):
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        with contextlib.suppress(OSError, ValueError):
            self._log.write(_plain(text))
            self._log.flush()
        return n

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the real stream's
        return getattr(self._stream, name)


def _plain(text: str) -> str:
    """What of one terminal write belongs in a log (see :class:`_Tee`).

    >>> _plain("\\x1b[32mok\\x1b[0m\\n")
    'ok\\n'
    >>> _plain("\\r\\x1b[2K\\x1b[1A\\x1b[2Kepoch 3: loss 1.0\\ntrain ━━━━━ 3/10")
    'epoch 3: loss 1.0\\n'
    """
    if not _CURSOR.search(text):
        return _ANSI.sub("", text)
    lines = _ANSI.sub("", text).replace("\r", "").split("\n")
    return "".join(line + "\n" for line in lines[:-1] if line.strip())


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[Any]:
    """Copy stdout and stderr into ``path`` (appended: a resumed run adds to its log)."""
    log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    try:
        yield log
    finally:
        sys.stdout, sys.stderr = saved
        log.close()


# ------------------------------------------------------------------------------ locking
class RunLock:
    """An exclusive ``fcntl.flock`` on ``<run>/.relax.lock``, holding ``pid host time`` for messages.

    The kernel drops the lock when the file is closed or the process dies (crash, ``kill -9``),
    so a lock never outlives its holder; the file itself stays (removing lock files races).
    """

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        path = Path(run_dir) / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as e:
            raise RunDirError(f"cannot lock {str(run_dir)!r}: {e.strerror or e}") from None
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock, as before
            pass
        except OSError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise RunLocked(f"{str(run_dir)!r} is in use by another relax process ({holder}); "
                            "wait for it to finish or stop it first") from None
        info = f"pid {os.getpid()} on {socket.gethostname()} since {utc_now_iso()}\n"
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __del__(self):  # a Run dropped without release(): do not keep the directory locked
        self.release()


def _lock_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def is_locked(path: Path | str) -> str | None:
    """Who holds the lock of run directory ``path`` ("pid N on HOST since ..."), or None."""
    lock = Path(path) / LOCK_FILE
    if not lock.exists():
        return None
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _lock_holder(fd)
    finally:
        os.close(fd)
    return None


# ------------------------------------------------------------------------------ what may be replaced
def _own_entry(name: str) -> bool:
    """Files relaxcli itself leaves in a run directory besides its outputs (lock, temporaries)."""
    return name in (LOCK_FILE, ".relax-write-probe") or (name.startswith(".") and name.endswith(".tmp"))


def is_run_dir(path: Path | str) -> bool:
    """Whether ``path`` is a folder that a relax command created: its config.json is a JSON object
    with relaxcli's ``command`` and ``relaxcli_version``, its ``status`` (when present) is a
    known status, and it holds only plain files (a run never makes sub-folders or links)."""
    path = Path(path)
    try:
        if not path.is_dir() or path.is_symlink():
            return False
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not (isinstance(config, dict) and config.get("command") in COMMANDS
                and "relaxcli_version" in config):
            return False
        status = read_status(path)
        if (path / "status").exists() and status not in STATUSES:
            return False
        return all(child.is_file() and not child.is_symlink() for child in path.iterdir())
    except (OSError, ValueError, IndexError):
        return False


def _is_within(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies below it (paths resolved, links followed)."""
    try:
        inner, outer = inner.resolve(), outer.resolve()
    except OSError:
        return False
    return inner == outer or outer in inner.parents


def _replaceable(path: Path, command: str, inputs: list[Path]) -> None:
    """Refuse (exit 2, nothing touched) to empty ``path`` unless it is a relax run directory that
    holds none of the command's inputs and no other process is writing."""
    for item in inputs:
        if _is_within(Path(item), path):
            raise RunDirError(f"--out {str(path)!r} holds this command's own input {str(item)!r}; "
                              "--overwrite would delete it: choose another --out")
    if not is_run_dir(path):
        raise RunDirError(
            f"--out {str(path)!r} exists, is not empty and is not a relax run directory (no "
            "relaxcli config.json, or it holds sub-folders/links); --overwrite only replaces a "
            "run directory, so nothing was touched: choose a new or empty --out")


def create_run(command: str, method: str | None, options: dict, out: Path | str | None = None,
               overwrite: bool = False, seed: int | None = None, device: str | None = None,
               argv: list[str] | None = None, inputs: list[Path | str] | None = None,
               tensorboard: bool = False) -> Run:
    """Create a fresh run directory, lock it and write its config.json (status = running).

    config.json holds the command, method, options, seed, device and ``argv`` (what ``relax
    rerun`` replays) and the run's :func:`provenance`; ``end_time`` is added when it ends.
    ``tensorboard``: also write TensorBoard event files (recorded, so ``--resume`` keeps it).

    An existing non-empty ``out`` is refused unless ``overwrite`` and it is a relax run directory
    (:func:`is_run_dir`) holding none of ``inputs`` (files or folders the command reads) and not
    locked by another process; its files are then removed, since keeping stale images beside new
    ones would mix two runs. Anything else is refused with :class:`RunDirError` (exit 2) and left
    untouched.
    """
    if tensorboard:
        require_tensorboard()
    path = Path(out) if out is not None else default_out(command, method)
    inputs = [Path(i) for i in inputs or []]
    lock = None
    try:
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {str(path)!r} exists and is not a directory")
        if path.is_dir() and any(not _own_entry(c.name) for c in path.iterdir()):
            if not overwrite:
                raise RunDirError(
                    f"--out {str(path)!r} exists and is not empty; pass --overwrite to replace it"
                    + (" or --resume to continue it" if command in RESUMABLE else "")
                )
            _replaceable(path, command, inputs)
            lock = RunLock.acquire(path)
            _replaceable(path, command, inputs)  # checked again under the lock
            _clear_dir(path)
    except OSError as e:  # e.g. a directory we may not list or clear
        if lock is not None:
            lock.release()
        raise RunDirError(f"cannot use --out {str(path)!r}: {e.strerror or e}") from None
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    _check_writable(path)
    if lock is None:
        lock = RunLock.acquire(path)
    config = {
        "command": command,
        "method": method,
        "options": to_jsonable(options),
        "seed": seed,
        "device": device,
        "threads": torch.get_num_threads(),
        "relaxcli_version": relaxcli.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "start_time": utc_now_iso(),
        "end_time": None,
        "argv": list(sys.argv if argv is None else argv),
        **provenance(device),
    }
    if tensorboard:
        config["tensorboard"] = True
    run = Run(path, config, lock)
    try:
        run.write_json("config.json", config)
        run.set_status("running")
    except BaseException:
        run.release()
        raise
    return run


def _clear_dir(path: Path) -> None:
    """Remove the plain files of a run directory (never its lock file, never a sub-folder)."""
    for child in path.iterdir():
        if child.name == LOCK_FILE:
            continue
        child.unlink()


def read_run_config(path: Path | str, command: str, flag: str = "--resume") -> dict:
    """The config.json of run directory ``path``, which must be a run of ``command``; anything
    else (no config.json, unreadable, another command's run) is bad input naming ``flag``."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise RunDirError(f"{flag} {str(path)!r} is not a run directory (no config.json)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{flag} {str(path)!r}: config.json is unreadable ({e})") from None
    if not isinstance(config, dict):
        raise RunDirError(f"{flag} {str(path)!r}: config.json is not a relax run's config")
    if config.get("command") != command:
        raise RunDirError(
            f"{flag} {str(path)!r} is a {config.get('command')!r} run, not {command!r}")
    return config


def open_for_resume(path: Path | str, command: str, allow_completed: bool = False) -> Run:
    """Reopen an existing run directory of ``command`` to continue it, and lock it.

    The status is left as it is until :func:`run_context` starts the continuation (then
    ``running``): a resume refused before that (bad options, another process holding the lock)
    leaves the run as it was. Between the two, wrap the preparation in :func:`preparing` so that a
    resume that cannot start (unreadable checkpoint, missing data) marks the run ``failed``.
    """
    path = Path(path)
    config = read_run_config(path, command)
    if read_status(path) == "completed" and not allow_completed:
        raise RunDirError(f"--resume {str(path)!r} is already completed; nothing to resume")
    lock = RunLock.acquire(path)
    return Run(path, config, lock, resumed=True)


def option_differences(asked: dict, there: dict, may_differ: tuple[str, ...] = ()) -> list[str]:
    """For ``--resume-existing``: each recorded option (JSON values) of the run ``there`` that the
    command line ``asked`` differently, as ``--lr 0.001 there, 0.01 asked``; ``may_differ`` are
    the options a resume may change (they are not compared)."""
    return [f"--{key.replace('_', '-')} {there.get(key)} there, {value} asked"
            for key, value in asked.items() if key not in may_differ and value != there.get(key)]


def read_summary(path: Path | str) -> dict:
    """summary.json of a run marked completed; unreadable, it is bad input naming the folder."""
    path = Path(path)
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path} is marked completed but its summary.json is unreadable ({e}); "
                          "give a new --out") from None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path} is marked completed but its summary.json is not a summary")
    return summary


class Refused(BadInput):
    """A request that a run directory refuses as asked (e.g. ``--resume --epochs`` not beyond the
    last saved epoch): exit 2, and the run's status stays what it was."""


@contextlib.contextmanager
def preparing(run: Run) -> Iterator[Run]:
    """Between :func:`open_for_resume` and :func:`run_context`: an error marks the run ``failed``
    (its continuation could not start: an unreadable checkpoint, missing data...) and releases
    its lock; a :class:`Refused` request only releases the lock."""
    try:
        yield run
    except Refused:
        run.release()
        raise
    except BaseException as e:
        if run.started:  # the run itself failed or was interrupted: run_context said so
            raise
        with contextlib.suppress(OSError):
            run.set_status("failed", f"resume could not start: {_one_line(e)}")
        run.release()
        raise


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, (BadInput, RunFailed)):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_checkpoint(path: Path | str, map_location=None) -> Any:
    """``torch.load`` of a run's checkpoint; an unreadable or corrupted file is bad input (exit 2)
    naming the file, never a bare ``OSError``/``UnpicklingError``."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise BadInput(f"checkpoint {str(path)!r} does not exist") from None
    except Exception as e:  # noqa: BLE001 - zip/pickle/OS errors of a damaged file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f"checkpoint {str(path)!r} is corrupted or unreadable ({reason[:200]}); "
                       "it cannot be resumed (start a new run)") from None
    if not isinstance(obj, dict):
        raise BadInput(f"checkpoint {str(path)!r} is not a relax checkpoint (a {type(obj).__name__})")
    return obj


# ------------------------------------------------------------------------------ threads
def default_threads() -> int:
    """torch threads when ``--threads`` is not given: OMP_NUM_THREADS when set, else
    min(4, cores). Beyond a few threads the small matrices here gain nothing, and on a busy
    machine every extra thread waits for a core."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def set_threads(threads: int | None) -> int:
    """Validate ``--threads`` (>= 1; None = :func:`default_threads`) and give torch that many
    intra-op threads; returns the number, which :func:`create_run` records in config.json."""
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BadInput(f"--threads must be a whole number >= 1, got {threads!r}")
    if threads > 1024:
        raise BadInput(f"--threads {threads} is more than any machine here has; give at most the "
                       "number of cores")
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def run_context(run: Run, resume_hint: str | None = None) -> Iterator[Run]:
    """Mark the run running, then interrupted (Ctrl-C, SIGTERM: re-raised) or failed on the way out.

    The CLI turns KeyboardInterrupt into exit 130, :class:`Terminated` (SIGTERM) into 143 and
    other errors into exit 1; this context makes sure the status file tells the truth, prints how
    to resume, and releases the run directory's lock. SIGTERM is turned into
    :class:`Terminated` inside it (main thread only), so a cluster job that is cancelled leaves
    an ``interrupted``, resumable run like Ctrl-C does.
    """
    run.started = True
    if read_status(run.path) != "running":
        run.set_status("running")
    if run.resumed:  # where and when each continuation ran, beside the first start
        run.config.setdefault("resumes", []).append(
            {"start_time": utc_now_iso(), "hostname": socket.gethostname(), "slurm": slurm_ids()})
        with contextlib.suppress(OSError):
            run.write_json("config.json", run.config)
    previous = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with _logging_to(run.file(LOG_FILE)) as log:
            log.write(f"# {utc_now_iso()} on {socket.gethostname()}: "
                      f"{' '.join(map(str, sys.argv))}\n")
            if run.config.get("tensorboard") and run.writer is None:
                run.writer = tensorboard_writer(run.path)
            try:
                yield run
            except KeyboardInterrupt as e:
                log.write(f"# {utc_now_iso()}: {'SIGTERM' if isinstance(e, Terminated) else 'interrupted'}\n")
                raise
            except BaseException:
                # the whole traceback goes to log.txt; the terminal gets one line from the CLI
                with contextlib.suppress(OSError, ValueError):
                    log.write(traceback.format_exc())
                raise
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        run.set_status("interrupted", what if isinstance(e, Terminated) else None)
        msg = f"{what}: everything written so far is kept in {run.path}"
        if resume_hint:
            msg += f"; resume with: {resume_hint}"
        print(msg, file=sys.stderr, flush=True)
        raise
    except BaseException as e:
        run.set_status("failed", _one_line(e))
        raise
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, previous)
        if run.writer is not None:
            with contextlib.suppress(Exception):
                run.writer.close()
            run.writer = None
        run.config["end_time"] = utc_now_iso()
        with contextlib.suppress(OSError):
            run.write_json("config.json", run.config)
        run.release()


def _raise_terminated(signum, frame) -> None:
    raise Terminated()
