"""``relax submit`` and ``relax status``: a sweep's ``relax`` commands as one submitit job array.

A sweep is a list of independent ``relax`` commands, each writing its own run directory (what
``DRY_RUN=1 experiments/*.sh`` prints). ``relax submit`` hands them to submitit
(https://github.com/facebookincubator/submitit), which does the scheduling: on Slurm one job
array (``sbatch --array=0-N%P``) and a ``relax compare`` job that waits for it
(``--dependency=afterany``); locally the same tasks through submitit's local executor, P at a
time. We build no scheduler: submitit writes the sbatch script, runs and logs every task, and
requeues a task that is preempted or runs out of time.

The sweep directory::

    SWEEP/commands.txt        the commands, task i on line i + 1
    SWEEP/sweep.json          executor, its parameters, every task's argv, --out and job id
    SWEEP/logs/<job id>/      submitit's files: each task's stdout/stderr, pickles, sbatch script
    SWEEP/tasks/<i>.json      what the task did: attempts, the argv it ran, exit code, error line
    SWEEP/compare/            the relax compare of the runs (after the last task)

A task runs its command in a child process (relax's CLI in ``python``, from the directory
``relax submit`` ran in). When Slurm warns that the time is up or the node is preempted
(``--signal=USR2@90``), submitit calls :meth:`RelaxTask.checkpoint`: the child is stopped with
SIGTERM (the run is marked ``interrupted``, keeping its last checkpoint) and the task is requeued.
Any later attempt (submitit's requeue, or Slurm requeueing the job itself) resumes
``train-vae`` and ``reinforce`` runs with ``--resume`` and restarts the other, short commands
with ``--overwrite``; a run already completed is not run again. A ``train-vae`` or ``reinforce``
line with ``--resume-existing`` (what the sweep scripts print) is run as it is on every attempt: it
skips, resumes or restarts its run itself, so its --out may already hold the run of an earlier
sweep.

Example:
    >>> DRY_RUN = "DRY_RUN=1 experiments/vae_methods.sh | relax submit - --executor slurm"  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from relaxcli.errors import BadInput
from relaxcli.options import argument, option

# Commands a sweep may hold: those that write one run directory (compare is queued by submit).
SUBMITTABLE = ("sample", "bridge", "grad-bench", "train-vae", "reinforce")
SLURM_TIME_DEFAULT = "4:00:00"  # the per-task wall clock when --time is not given on Slurm
COMPARE_TIME_MIN = 30
SIGNAL_DELAY_S = 120  # Slurm's warning before the time limit: time to stop and checkpoint
STOP_GRACE_S = 60.0  # how long a stopped run may take to write its status before SIGKILL
MAX_REQUEUES = 3  # submitit's max_num_timeout: a task that times out more often fails
CLUSTER_EXTRA = 'pip install -e ".[cluster]" (or pip install submitit)'
SBATCH_KEY = re.compile(r"^[a-z][a-z0-9-]*$")
MEM = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?B?$", re.IGNORECASE)


class Executor(str, Enum):
    """Where the tasks run."""

    slurm = "slurm"
    local = "local"


class TaskState(str, Enum):
    """A task's state in ``relax status``."""

    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    interrupted = "interrupted"


@dataclass
class Task:
    """One line of the commands file, ready to run."""

    index: int
    line: str
    argv: list[str]  # relax's arguments (the subcommand first), --out always given
    out: Path  # absolute
    resume_argv: list[str]  # what a later attempt runs when the run directory exists


# ------------------------------------------------------------------------------ parsing
def parse_time(text: str) -> int:
    """Slurm's --time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes, rounded up.

    >>> parse_time("90"), parse_time("1:30:00"), parse_time("2-00:00:00"), parse_time("0:30")
    (90, 90, 2880, 1)
    """
    text = text.strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise BadInput(f"--time {text!r}: give minutes or Slurm's [D-]H:M:S (e.g. 90, 4:00:00, 1-00:00:00)")
    days, a, b, c = m.groups()
    parts = [int(a)] + [int(x) for x in (b, c) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        parts += [0] * (3 - len(parts))
        seconds = int(days) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    elif len(parts) == 1:  # M
        seconds = parts[0] * 60
    elif len(parts) == 2:  # M:S
        seconds = parts[0] * 60 + parts[1]
    else:  # H:M:S
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    if seconds <= 0:
        raise BadInput(f"--time {text!r} must be longer than 0")
    return -(-seconds // 60)


def _option_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in ``argv`` (the last one), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _without(argv: list[str], flags: tuple[str, ...] = (), options: tuple[str, ...] = ()) -> list[str]:
    """``argv`` without the given flags and options (with their values)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in flags or any(arg.startswith(o + "=") for o in options):
            continue
        if arg in options:
            skip = True
            continue
        out.append(arg)
    return out


def relax_argv(line: str, where: str) -> list[str]:
    """The relax arguments of one command line (``relax ...`` or ``python -m relaxcli.cli ...``).

    >>> relax_argv("relax sample gumbel-softmax --out 'runs/a b'", "line 1")
    ['sample', 'gumbel-softmax', '--out', 'runs/a b']
    """
    try:
        words = shlex.split(line, comments=False)
    except ValueError as e:
        raise BadInput(f"{where}: cannot split {line!r} into words ({e})") from None
    if words and Path(words[0]).name == "relax":
        args = words[1:]
    elif len(words) >= 3 and Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "relaxcli.cli"]:
        args = words[3:]
    else:
        raise BadInput(f"{where}: {line!r} is not a relax command (each line must start with 'relax')")
    if not args or args[0] not in SUBMITTABLE:
        got = args[0] if args else "nothing"
        raise BadInput(f"{where}: 'relax {got}' is not a command that writes a run; a sweep holds "
                       f"{', '.join(SUBMITTABLE)}")
    return args


def read_commands(source: str) -> list[tuple[str, str]]:
    """``(where, line)`` for each command in the file ``source`` (``-``: stdin); blank lines and
    ``#`` comments are skipped."""
    if source == "-":
        text = sys.stdin.read()
        name = "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise BadInput(f"commands file {source!r} does not exist (give a file with one relax "
                           "command per line, or - for stdin)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"cannot read commands file {source!r}: {e}") from None
        name = source
    lines = [(f"{name} line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise BadInput(f"{name} holds no relax command (one per line, e.g. from DRY_RUN=1 "
                       "experiments/vae_methods.sh)")
    return lines


def _common_parent(paths: list[Path]) -> Path | None:
    """The deepest folder holding every path, unless it is the working directory or above it."""
    try:
        common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:
        return None
    cwd = Path.cwd().resolve()
    if common == cwd or common in cwd.parents:
        return None
    return common


def plan_tasks(lines: list[tuple[str, str]], out: Path | None) -> tuple[Path, list[Task]]:
    """The sweep directory and its tasks; refuses (exit 2) what a task would refuse later."""
    from relaxcli.runs import RESUMABLE, utc_timestamp

    parsed = [(where, line, relax_argv(line, where)) for where, line in lines]
    outs = [_option_value(a, "--out") for _, _, a in parsed]
    if out is None:
        given = [Path(o).resolve() for o in outs if o is not None]
        # the folder of a sweep's runs, when there is one (a lone run's folder is no sweep's)
        common = _common_parent(given) if len(given) == len(outs) > 1 else None
        out = common if common is not None else Path("runs") / "sweeps" / f"sweep-{utc_timestamp()}"
    sweep = Path(out).resolve()
    if (sweep / "sweep.json").exists():
        raise BadInput(f"{str(out)!r} already holds a sweep (sweep.json); give a new --out")
    tasks, seen = [], {}
    for i, ((where, line, args), given) in enumerate(zip(parsed, outs)):
        if given is None:  # every run needs a known directory: status and compare read it
            given = str(sweep / "runs" / f"{i:03d}-{args[0]}")
            args = [*args, "--out", given]
        run_out = Path(given).resolve()
        if run_out in seen:
            raise BadInput(f"{where}: --out {given} is also the --out of {seen[run_out]}; each run "
                           "needs its own directory")
        seen[run_out] = where
        if run_out == sweep:
            raise BadInput(f"{where}: --out {given} is the sweep directory itself; give each run "
                           "a directory below it")
        if "--resume" in args or any(a.startswith("--resume=") for a in args):
            raise BadInput(f"{where}: --resume in a sweep line; submit continues interrupted runs "
                           "itself (give the original command)")
        # a --resume-existing line (the reproduction scripts') continues or skips the run its
        # folder holds, every attempt, and refuses one made with other options itself
        continues = args[0] in RESUMABLE and "--resume-existing" in args
        if (run_out.is_dir() and any(run_out.iterdir()) and "--overwrite" not in args
                and not continues):
            raise BadInput(f"{where}: --out {given} exists and is not empty, so the run would "
                           "refuse it; use a new --out or add --overwrite to the line")
        keep = [a for a in ("--quiet", "-q", "--json") if a in args]
        threads = _option_value(args, "--threads")
        if continues:
            resume = list(args)
        elif args[0] in RESUMABLE:
            resume = [args[0], "--resume", str(run_out), *keep,
                      *(["--threads", threads] if threads else [])]
        else:
            resume = [*_without(args, flags=("--overwrite",)), "--overwrite"]
        tasks.append(Task(i, line, args, run_out, resume))
    _refuse_foreign_entries(sweep, out, [t.out for t in tasks])
    return sweep, tasks


def _refuse_foreign_entries(sweep: Path, out, run_dirs: list[Path]) -> None:
    """The sweep directory may exist only as the parent of its own runs' folders: commands.txt,
    sweep.json, logs/, tasks/ and compare/ are written into it, so a folder that holds anything
    else (a user's files, another sweep's runs) is refused rather than mixed into (exit 2)."""
    if not sweep.is_dir():
        return
    own = {d.relative_to(sweep).parts[0] for d in run_dirs if sweep in d.parents}
    foreign = sorted(e.name for e in sweep.iterdir() if e.name not in own)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise BadInput(f"--out {str(out)!r} exists and holds {shown}, which are not this sweep's "
                       "runs; give a new folder for the sweep")


# ------------------------------------------------------------------------------ what runs on a node
# The child: relax's CLI with SIGUSR2 ignored. Slurm signals every process of the job step, and
# only the submitit task (the parent) must act on it (USR2's default action would kill the run).
CHILD = ("import signal, runpy; signal.signal(signal.SIGUSR2, signal.SIG_IGN); "
         "runpy.run_module('relaxcli.cli', run_name='__main__', alter_sys=True)")


def _last_error(lines: list[str]) -> str | None:
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else None


class _Child:
    """A relax child process whose stderr is copied to ours, remembering its last lines."""

    def __init__(self, argv: list[str], cwd: str, env: dict):
        self.tail: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, *argv], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        self.reader = threading.Thread(target=self._copy, daemon=True)
        self.reader.start()

    def _copy(self) -> None:
        for line in self.proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            if line.strip():
                self.tail = [*self.tail[-19:], line.rstrip("\n")]

    def wait(self) -> int:
        # poll, never Popen.wait(): a signal handler (checkpoint) must be able to reap the child
        while (rc := self.proc.poll()) is None:
            time.sleep(0.2)
        self.reader.join(timeout=5)
        return rc

    def stop(self) -> int | None:
        """SIGTERM (the run marks itself interrupted and exits 143), SIGKILL after STOP_GRACE_S."""
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                return self.proc.returncode
            if done:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


def _job_identity() -> dict:
    """The submitit job id and log files of the running task (empty outside submitit)."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return {"job_id": env.job_id, "stdout": str(env.paths.stdout), "stderr": str(env.paths.stderr)}
    except Exception:  # noqa: BLE001 - called directly (tests, debugging): no job
        return {}


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _first_line(path: Path) -> tuple[str | None, str | None]:
    """A run directory's status and its message (the status file's second line)."""
    try:
        lines = (Path(path) / "status").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None, None
    return (lines[0].strip() if lines else None), (lines[1].strip() if len(lines) > 1 else None)


class RelaxTask:
    """One sweep task as submitit runs it: a callable that runs its relax command, and a
    ``checkpoint`` that submitit calls on preemption or timeout (then requeues the task).

    Picklable (submitit sends it to the node) and light to import: torch loads only in the child.
    """

    def __init__(self, sweep: str, index: int, argv: list[str], resume_argv: list[str], out: str,
                 cwd: str, threads: int | None = None):
        self.sweep, self.index, self.argv, self.resume_argv = sweep, index, argv, resume_argv
        self.out, self.cwd, self.threads = out, cwd, threads
        self._child: _Child | None = None
        self._checkpointed = False

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_child", "_checkpointed")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._child, self._checkpointed = None, False

    @property
    def record_path(self) -> Path:
        return Path(self.sweep) / "tasks" / f"{self.index}.json"

    def _attempt_argv(self, attempt: int) -> list[str] | None:
        """The command line of this attempt: the line itself the first time; afterwards, nothing
        when its run completed, the resume (or restart) command when the run directory exists."""
        if attempt == 1:
            return self.argv
        status, _ = _first_line(Path(self.out))
        if status == "completed":
            return None
        if (Path(self.out) / "config.json").exists():
            return self.resume_argv
        return self.argv

    def __call__(self) -> int:
        record = _read_json(self.record_path)
        attempt = int(record.get("attempts", 0)) + 1
        argv = self._attempt_argv(attempt)
        record.update({"index": self.index, "attempts": attempt, "out": self.out,
                       "host": os.uname().nodename, "started": _now(), "ended": None,
                       **_job_identity()})
        if argv is None:
            record.update(state="completed", exit_code=0, ended=_now(), argv=None)
            _write_json(self.record_path, record)
            print(f"task {self.index}: {self.out} is already completed", file=sys.stderr, flush=True)
            return 0
        record.update(state="running", argv=argv, exit_code=None, error=None)
        _write_json(self.record_path, record)
        env = dict(os.environ)
        if self.threads and "OMP_NUM_THREADS" not in env:  # runs sharing a machine: no oversubscription
            env["OMP_NUM_THREADS"] = str(self.threads)
        elif env.get("SLURM_CPUS_PER_TASK") and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = env["SLURM_CPUS_PER_TASK"]
        print(f"task {self.index} attempt {attempt}: relax {shlex.join(argv)}", file=sys.stderr, flush=True)
        self._child = _Child(argv, self.cwd, env)
        try:
            rc = self._child.wait()
        except BaseException:  # Ctrl-C or a cancelled job: never leave the run going on alone
            if not self._checkpointed:  # (after a checkpoint, submitit exits to requeue us)
                rc = self._child.stop()
                self._finish(record, rc, "interrupted")
            raise
        self._finish(record, rc, "completed" if rc == 0 else "failed")
        if rc != 0:
            raise RuntimeError(f"task {self.index}: relax exited with {rc}: "
                               f"{record.get('error') or 'see its log'}")
        return 0

    def _finish(self, record: dict, rc: int | None, state: str) -> None:
        record.update(state=state, exit_code=rc, ended=_now(),
                      error=_last_error(self._child.tail) if rc else None)
        with contextlib.suppress(OSError):
            _write_json(self.record_path, record)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's hook on preemption or timeout: stop the run (it keeps its last checkpoint and
        marks itself interrupted) and requeue this task, whose next attempt resumes it."""
        import submitit

        if self._child is not None and self._child.proc.returncode is None:
            self._checkpointed = True
            rc = self._child.stop()
            record = _read_json(self.record_path)
            self._finish(record, rc, "requeued")
        return submitit.helpers.DelayedSubmission(
            RelaxTask(self.sweep, self.index, self.argv, self.resume_argv, self.out, self.cwd,
                      self.threads))


class CompareTask(RelaxTask):
    """The sweep's ``relax compare`` over the run directories that exist when it starts."""

    def __init__(self, sweep: str, outs: list[str], compare_args: list[str], cwd: str):
        self.outs, self.compare_args = outs, compare_args
        super().__init__(sweep, -1, [], [], str(Path(sweep) / "compare"), cwd)

    @property
    def record_path(self) -> Path:
        return Path(self.sweep) / "tasks" / "compare.json"

    def _attempt_argv(self, attempt: int) -> list[str] | None:
        present = [o for o in self.outs if Path(o).is_dir()]
        if not present:
            raise RuntimeError("no run directory of the sweep exists: nothing to compare")
        return ["compare", *present, "--out", self.out, "--overwrite", *self.compare_args]

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        if self._child is not None and self._child.proc.returncode is None:
            self._checkpointed = True
            self._child.stop()
        return submitit.helpers.DelayedSubmission(
            CompareTask(self.sweep, self.outs, self.compare_args, self.cwd))


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ relax submit
def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise BadInput(f"relax submit needs submitit, which is not installed: {CLUSTER_EXTRA}") from None
    return submitit


def slurm_parameters(*, name: str, partition: str | None, time_min: int, cpus_per_task: int | None,
                     gpus: int | None, mem: str | None, max_parallel: int, extra: dict) -> dict:
    """submitit SlurmExecutor parameters for the array (see ``_make_sbatch_string``)."""
    params: dict[str, Any] = {"job_name": name, "time": time_min, "signal_delay_s": SIGNAL_DELAY_S,
                              "array_parallelism": max_parallel}
    if partition:
        params["partition"] = partition
    if cpus_per_task:
        params["cpus_per_task"] = cpus_per_task
    if gpus:
        params["gpus_per_node"] = gpus
    if mem:
        params["mem"] = mem.upper() if mem[-1].isalpha() else mem
    if extra:
        params["additional_parameters"] = dict(extra)
    return params


def _slurm_options(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not SBATCH_KEY.match(key):
            raise BadInput(f"--slurm-option {pair!r}: give KEY=VALUE with an sbatch option name, "
                           "e.g. account=myproj or qos=high")
        out[key] = value
    return out


@dataclass(kw_only=True)
class SubmitOptions:
    """Run a sweep's commands through submitit: a Slurm job array (+ a dependent compare job), or locally.

    Needs the cluster extra (pip install -e ".[cluster]"). Follow it with relax status SWEEP_DIR.
    """

    commands: str = argument(metavar="COMMANDS", help=(
        "File with one relax command per line (as DRY_RUN=1 experiments/*.sh prints them), or - "
        "for stdin."))
    executor: Executor = option(Executor.local, "--executor", help=(
        "slurm: one job array, returns at once; local: this machine, --max-parallel at a time, "
        "returns when done."))
    out: Path | None = option(None, "--out", show_default=False, help=(
        "Sweep directory (commands.txt, sweep.json, logs/, tasks/, compare/). Default: the folder "
        "holding every line's --out, else runs/sweeps/sweep-<UTC time>. Lines without --out "
        "write their run below it."))
    max_parallel: int | None = option(None, "--max-parallel", show_default=False, help=(
        "Tasks running at once (Slurm: the array throttle %N; default all. local: default 1)."))
    time: str | None = option(None, "--time", show_default=False, help=(
        "Wall clock per task, minutes or [D-]H:M:S (Slurm default 4:00:00; local: no limit). A "
        "task out of time is requeued and train-vae/reinforce resume."))
    partition: str | None = option(None, "--partition", show_default=False, help="Slurm partition.")
    cpus_per_task: int | None = option(None, "--cpus-per-task", show_default=False, help=(
        "Slurm CPUs per task (default 1); torch uses that many threads."))
    gpus: int | None = option(None, "--gpus", show_default=False, help="Slurm GPUs per task.")
    mem: str | None = option(None, "--mem", show_default=False, help="Slurm memory per task, e.g. 8G.")
    slurm_option: list[str] | None = option(None, "--slurm-option", show_default=False, help=(
        "Any other sbatch option as KEY=VALUE (repeatable), e.g. account=myproj, qos=high, "
        "constraint=volta."))
    compare: bool = option(True, "--compare/--no-compare", help=(
        "Queue relax compare of the runs after the last task."))
    group_by: list[str] | None = option(None, "--group-by", show_default=False, help=(
        "Passed to that relax compare."))


def run_submit(options: SubmitOptions, reporter) -> dict:
    """Submit the commands; Slurm: return once queued; local: run them and return the outcome."""
    o = options
    commands, out, partition, time, cpus_per_task, gpus, mem = (
        o.commands, o.out, o.partition, o.time, o.cpus_per_task, o.gpus, o.mem)
    max_parallel, slurm_option, compare, group_by = o.max_parallel, o.slurm_option, o.compare, o.group_by
    executor = o.executor
    executor = Executor(executor)
    slurm_only = {"--partition": partition, "--cpus-per-task": cpus_per_task, "--gpus": gpus,
                  "--mem": mem, "--slurm-option": slurm_option or None}
    if executor is Executor.local:
        given = [k for k, v in slurm_only.items() if v is not None]
        if given:
            raise BadInput(f"{', '.join(given)} only apply to --executor slurm")
    if max_parallel is not None and max_parallel < 1:
        raise BadInput(f"--max-parallel must be >= 1, got {max_parallel}")
    for name, value in (("--cpus-per-task", cpus_per_task), ("--gpus", gpus)):
        if value is not None and value < (1 if name == "--cpus-per-task" else 0):
            raise BadInput(f"{name} must be >= {1 if name == '--cpus-per-task' else 0}, got {value}")
    if mem is not None and not MEM.match(mem):
        raise BadInput(f"--mem {mem!r}: give a size such as 8G or 16000M")
    extra = _slurm_options(slurm_option or [])
    time_min = parse_time(time) if time is not None else (
        parse_time(SLURM_TIME_DEFAULT) if executor is Executor.slurm else None)
    submitit = _import_submitit()
    sweep, tasks = plan_tasks(read_commands(commands), out)
    n = len(tasks)
    parallel = min(n, max_parallel or (n if executor is Executor.slurm else 1))
    cwd = os.getcwd()
    # Runs sharing one machine get an equal share of its cores (as experiments/common.sh does).
    threads = max(1, (os.cpu_count() or 1) // parallel) if executor is Executor.local else None
    jobs = [RelaxTask(str(sweep), t.index, t.argv, t.resume_argv, str(t.out), cwd, threads) for t in tasks]
    compare_args = [a for g in group_by or [] for a in ("--group-by", g)]

    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "commands.txt").write_text("".join(t.line + "\n" for t in tasks), encoding="utf-8")
    info: dict[str, Any] = {
        "executor": executor.value, "created": _now(), "cwd": cwd, "commands_file": commands,
        "max_parallel": parallel, "time_min": time_min,
        "tasks": [{"index": t.index, "command": t.line, "argv": t.argv, "out": str(t.out),
                   "job_id": None} for t in tasks],
        "compare": None,
    }
    folder = sweep / "logs" / "%j"
    if executor is Executor.slurm:
        params = slurm_parameters(name=f"relax-{sweep.name}", partition=partition, time_min=time_min,
                                  cpus_per_task=cpus_per_task or 1, gpus=gpus, mem=mem,
                                  max_parallel=parallel, extra=extra)
        info["parameters"] = params
        return _submit_slurm(submitit, reporter, sweep, folder, params, jobs, info, compare,
                             compare_args, cwd)
    return _run_local(submitit, reporter, sweep, folder, time_min, jobs, info, parallel, compare,
                      compare_args, cwd)


def _slurm_executor(submitit, folder: Path, params: dict):
    try:
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
    except RuntimeError as e:  # no srun on PATH: not a Slurm machine
        raise BadInput(f"--executor slurm: {e} (use --executor local on this machine)") from None
    try:
        ex.update_parameters(**params)
    except ValueError as e:
        raise BadInput(f"Slurm options: {str(e).splitlines()[0]}") from None
    return ex


def _submit_slurm(submitit, reporter, sweep, folder, params, jobs, info, compare, compare_args, cwd) -> dict:
    ex = _slurm_executor(submitit, folder, params)
    try:
        with ex.batch():
            submitted = [ex.submit(job) for job in jobs]
    except submitit.core.utils.FailedJobError as e:
        raise BadInput(f"sbatch refused the array: {_sbatch_error(e)}") from None
    array_id = submitted[0].job_id.split("_")[0]
    for entry, job in zip(info["tasks"], submitted):
        entry["job_id"] = job.job_id
    info["array_job_id"] = array_id
    _write_json(sweep / "sweep.json", info)
    compare_id = None
    if compare:
        cparams = {k: v for k, v in params.items() if k not in ("array_parallelism", "gpus_per_node")}
        cparams.update(time=COMPARE_TIME_MIN, cpus_per_task=1, dependency=f"afterany:{array_id}",
                       job_name=f"{params['job_name']}-compare")
        cex = _slurm_executor(submitit, folder, cparams)
        task = CompareTask(str(sweep), [e["out"] for e in info["tasks"]], compare_args, cwd)
        try:
            compare_id = cex.submit(task).job_id
        except submitit.core.utils.FailedJobError as e:
            raise BadInput(f"sbatch refused the compare job: {_sbatch_error(e)}") from None
        info["compare"] = {"job_id": compare_id, "out": str(sweep / "compare")}
        _write_json(sweep / "sweep.json", info)
    n = len(jobs)
    reporter.note(f"submitted {n} task{'s' * (n != 1)} as Slurm job array {array_id} "
                  f"(at most {params['array_parallelism']} at a time, {params['time']} min each)"
                  + (f"; relax compare is job {compare_id}, after the array" if compare_id else ""))
    reporter.note(f"follow it:  relax status {_shown(sweep)}    (squeue -j {array_id}; "
                  f"logs in {_shown(sweep / 'logs')})")
    if compare_id:
        reporter.note(f"the table:  {_shown(sweep / 'compare' / 'comparison.md')} once job "
                      f"{compare_id} has run")
    return {"sweep": str(sweep), "executor": "slurm", "tasks": n, "array_job_id": array_id,
            "compare_job_id": compare_id}


def _sbatch_error(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if "error" in line.lower()]
    return (lines or [str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__])[0]


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return str(path)


def _run_local(submitit, reporter, sweep, folder, time_min, jobs, info, parallel, compare,
               compare_args, cwd) -> dict:
    from relaxcli.runs import RunFailed

    ex = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
    # no --time: no limit (submitit's local default is 2 minutes)
    ex.update_parameters(timeout_min=time_min or 60 * 24 * 365, signal_delay_s=min(
        SIGNAL_DELAY_S, max(1, (time_min or 0) * 60 // 4)))
    _write_json(sweep / "sweep.json", info)
    pending, running, failed = list(zip(info["tasks"], jobs)), [], []
    n = len(jobs)
    reporter.note(f"sweep {_shown(sweep)}: {n} task{'s' * (n != 1)}, {parallel} at a time "
                  "(submitit local executor)")
    with reporter.progress("tasks", total=n) as bar:
        while pending or running:
            while pending and len(running) < parallel:
                entry, job = pending.pop(0)
                submitted = ex.submit(job)
                entry["job_id"] = submitted.job_id
                _write_json(sweep / "sweep.json", info)
                running.append((entry, submitted))
            time.sleep(0.2)
            for entry, job in [r for r in running if r[1].done()]:
                running.remove((entry, job))
                record = _read_json(sweep / "tasks" / f"{entry['index']}.json")
                ok = record.get("state") == "completed"
                if not ok:
                    failed.append(entry["index"])
                reporter.note(f"[{entry['index']}] {'ok' if ok else 'FAILED'}: {entry['command']}"
                              + ("" if ok else f" ({record.get('error') or 'see its log'})"))
                bar.advance(1)
    compared = None
    if compare:
        task = CompareTask(str(sweep), [e["out"] for e in info["tasks"]], compare_args, cwd)
        cjob = ex.submit(task)
        info["compare"] = {"job_id": cjob.job_id, "out": str(sweep / "compare")}
        _write_json(sweep / "sweep.json", info)
        while not cjob.done():
            time.sleep(0.2)
        compared = _read_json(sweep / "tasks" / "compare.json").get("state") == "completed"
        if not compared:
            reporter.note(f"relax compare failed: {_read_json(sweep / 'tasks' / 'compare.json').get('error')}")
    summary = {"sweep": str(sweep), "executor": "local", "tasks": n, "failed": failed,
               "compare": str(sweep / "compare") if compared else None}
    if failed:
        raise RunFailed(f"{len(failed)} of {n} tasks failed (tasks {', '.join(map(str, failed))}); "
                        f"see relax status {_shown(sweep)}")
    reporter.note(f"sweep done: relax status {_shown(sweep)}"
                  + (f"; the table is in {_shown(sweep / 'compare' / 'comparison.md')}" if compared else ""))
    return summary


# ------------------------------------------------------------------------------ relax status
SLURM_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING",
                "SUSPENDED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def slurm_states(array_job_id: str) -> dict[str, str]:
    """``{"<array>_<task>": state}`` from sacct (empty when sacct is missing or slow)."""
    try:
        out = subprocess.run(["sacct", "-j", array_job_id, "--format=JobID,State", "--parsable2",
                              "--noheader"], capture_output=True, text=True, timeout=20,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_sacct(out)


def parse_sacct(text: str) -> dict[str, str]:
    """sacct's ``JobID|State`` lines as ``{"<array>_<task>": state}``; the tasks that have not
    started share one line, ``123_[2-5%2]``, which is expanded.

    >>> parse_sacct("123_0|COMPLETED\\n123_0.batch|COMPLETED\\n123_1|RUNNING\\n123_[2-3,5%2]|PENDING\\n")
    {'123_0': 'COMPLETED', '123_1': 'RUNNING', '123_2': 'PENDING', '123_3': 'PENDING', '123_5': 'PENDING'}
    """
    states = {}
    for line in text.splitlines():
        job, _, state = line.partition("|")
        job, state = job.strip(), (state.split() or [""])[0].strip()
        if not state or "." in job:  # the .batch/.extern steps
            continue
        packed = re.fullmatch(r"(\d+)_\[([\d,-]+)(?:%\d+)?\]", job)
        if packed is None:
            states[job] = state
            continue
        for part in packed.group(2).split(","):
            first, _, last = part.partition("-")
            for i in range(int(first), int(last or first) + 1):
                states[f"{packed.group(1)}_{i}"] = state
    return states


def task_state(entry: dict, record: dict, executor_state: str | None) -> tuple[TaskState, str | None]:
    """One task's state and the line worth showing (the error of a failed task).

    The run directory's status file decides once the run exists; before that the task record and
    the executor. A run marked running whose job has ended (killed, out of memory, node lost)
    is reported interrupted.
    """
    from relaxcli.runs import is_locked

    status, message = _first_line(Path(entry["out"]))
    queued = executor_state in SLURM_QUEUED
    if status == "completed":
        return TaskState.completed, None
    if status == "failed":
        return TaskState.failed, message or record.get("error")
    if status == "interrupted":
        if queued or record.get("state") == "requeued":
            return TaskState.queued, "requeued: will resume"
        return TaskState.interrupted, message or "interrupted"
    if status == "running":
        if executor_state in SLURM_RUNNING or is_locked(entry["out"]):
            return TaskState.running, None
        if queued:
            return TaskState.queued, "requeued: will resume"
        if executor_state is None and record.get("host") not in (None, os.uname().nodename):
            return TaskState.running, f"on {record['host']}"  # its lock is not visible from here
        return TaskState.interrupted, "its process is gone (killed, out of memory or out of time?)"
    # no run directory yet
    if record.get("state") in ("failed", "interrupted"):
        return TaskState.failed, record.get("error") or f"relax exited with {record.get('exit_code')}"
    if record.get("state") == "running" or executor_state in SLURM_RUNNING:
        return TaskState.running, None
    if executor_state and executor_state not in SLURM_QUEUED:
        return TaskState.failed, f"Slurm: {executor_state}"
    return TaskState.queued, None


def run_status(*, sweep_dir: Path) -> dict:
    """Every task's state in sweep ``sweep_dir`` (see :func:`task_state`), and the counts."""
    sweep = Path(sweep_dir)
    info = _read_json(sweep / "sweep.json")
    if not info.get("tasks"):
        raise BadInput(f"{str(sweep_dir)!r} is not a sweep directory (no readable sweep.json from "
                       "relax submit)")
    states = slurm_states(info["array_job_id"]) if info.get("array_job_id") else {}
    rows = []
    for entry in info["tasks"]:
        record = _read_json(sweep / "tasks" / f"{entry['index']}.json")
        state, note = task_state(entry, record, states.get(str(entry.get("job_id"))))
        rows.append({"index": entry["index"], "state": state.value, "job_id": entry.get("job_id"),
                     "out": entry["out"], "note": note, "attempts": record.get("attempts", 0),
                     "log": record.get("stderr"), "command": entry["command"]})
    counts = {s.value: sum(r["state"] == s.value for r in rows) for s in TaskState}
    compare = info.get("compare") or {}
    compare_state = _read_json(sweep / "tasks" / "compare.json").get("state")
    return {"sweep": str(sweep), "executor": info.get("executor"), "tasks": rows, "counts": counts,
            "compare": {**compare, "state": compare_state} if compare else None}
