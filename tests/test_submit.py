"""relax submit / relax status (relaxcli.commands.submit): sweeps through submitit.

* Slurm without a cluster: a fake ``sbatch`` on PATH records each call and its script (what
  submitit generated), so the array range, throttle, time, requeue signal and the dependent
  compare job are checked as Slurm would receive them.
* The local executor runs real ``relax`` commands end to end (child processes: the slow part
  here is importing torch in each, tens of seconds on a busy machine).
* A task interrupted the way submitit does it on preemption (signal -> checkpoint -> requeue)
  resumes its run.
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from relaxcli.commands import submit as sub
from relaxcli.errors import BadInput
from relaxcli.runs import read_metrics, read_status

submitit = pytest.importorskip("submitit")

TINY_VAE = ("relax train-vae --dataset synthetic --method gumbel-softmax --latent-dim 4 "
            "--categories 3 --hidden 16 --eval-samples 2 --device cpu --threads 1 --quiet")


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``srun``/``sbatch`` on PATH; sbatch answers like Slurm and records what it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch-calls"
    calls.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    # sacct answers what the test wrote into SACCT_OUT (nothing: the jobs are not known yet)
    (bin_dir / "sacct").write_text('#!/bin/sh\n[ -f "$SACCT_OUT" ] && cat "$SACCT_OUT"\nexit 0\n')
    (bin_dir / "sbatch").write_text(f"""#!/bin/sh
n=$(ls {calls} | grep -c '[.]sh$')
id=$((1000 + n))
printf '%s\\n' "$@" > {calls}/$id.args
cat "$1" > {calls}/$id.sh
echo "Submitted batch job $id"
""")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _commands(tmp_path, lines):
    path = tmp_path / "commands.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _sbatch_lines(script: str) -> dict:
    out = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --"):].partition("=")
            out[key] = value
    return out


def test_slurm_array_throttle_time_signal_and_dependent_compare(tmp_path, fake_slurm, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sw"
    cmds = _commands(tmp_path, [f"relax sample gumbel-softmax -n 100 --seed {s} --out sw/seed-{s}"
                                for s in range(3)])
    code, out, err = run_cli(["submit", cmds, "--executor", "slurm", "--max-parallel", "2",
                              "--time", "1:30:00", "--partition", "cpu", "--mem", "4G",
                              "--cpus-per-task", "2", "--slurm-option", "account=proj"])
    assert code == 0, err
    assert out == ""  # returns at once; nothing but --json on stdout
    assert "job array 1000" in err and "relax status sw" in err and "job 1001" in err

    array = _sbatch_lines((fake_slurm / "1000.sh").read_text())
    assert array["array"] == "0-2%2"  # three tasks, at most two at once
    assert array["time"] == "90"  # minutes
    assert array["signal"] == "USR2@120"  # submitit's checkpoint-and-requeue signal
    assert array["partition"] == "cpu" and array["mem"] == "4G" and array["account"] == "proj"
    assert array["cpus-per-task"] == "2"
    assert "dependency" not in array

    compare = _sbatch_lines((fake_slurm / "1001.sh").read_text())
    assert compare["dependency"] == "afterany:1000"  # after every task, failed ones included
    assert "array" not in compare and compare["account"] == "proj"

    info = json.loads((sweep / "sweep.json").read_text())  # the sweep dir: common parent of --out
    assert [t["job_id"] for t in info["tasks"]] == ["1000_0", "1000_1", "1000_2"]
    assert info["compare"]["job_id"] == "1001"
    assert (sweep / "commands.txt").read_text().splitlines()[1].endswith("--seed 1 --out sw/seed-1")
    # the pickled task submitit hands to task 1 runs line 2 from here
    task = submitit.core.utils.DelayedSubmission.load(
        sweep / "logs" / "1000_1" / "1000_1_submitted.pkl").function
    assert isinstance(task, sub.RelaxTask) and task.cwd == str(tmp_path)
    assert task.argv == ["sample", "gumbel-softmax", "-n", "100", "--seed", "1", "--out", "sw/seed-1"]
    assert task.resume_argv[-1] == "--overwrite"  # sample has no --resume: restart it

    code, out, err = run_cli(["status", sweep, "--json"])
    assert code == 3  # nothing ran: all queued
    assert json.loads(out)["counts"]["queued"] == 3
    sacct = tmp_path / "sacct.txt"
    monkeypatch.setenv("SACCT_OUT", str(sacct))
    sacct.write_text("1000_0|RUNNING\n1000_0.batch|RUNNING\n1000_[1-2%2]|PENDING\n")
    code, out, _ = run_cli(["status", sweep, "--json"])
    assert code == 3 and json.loads(out)["counts"]["running"] == 1
    sacct.write_text("1000_0|OUT_OF_MEMORY\n1000_1|RUNNING\n1000_2|PENDING\n")
    code, out, _ = run_cli(["status", sweep])
    assert code == 1 and "Slurm: OUT_OF_MEMORY" in out


def test_commands_from_stdin_without_compare(tmp_path, fake_slurm, run_cli, monkeypatch):
    """`DRY_RUN=1 experiments/x.sh | relax submit -`: the printed lines (comments skipped)."""
    import io

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(
        "# 2 commands\nrelax grad-bench --seed 0 --out sw/a\n\nrelax grad-bench --seed 1\n"))
    code, out, err = run_cli(["submit", "-", "--executor", "slurm", "--out", "sw", "--no-compare",
                              "--json"])
    assert code == 0, err
    assert json.loads(out)["compare_job_id"] is None
    assert sorted(p.name for p in fake_slurm.glob("*.sh")) == ["1000.sh"]  # no compare job
    assert _sbatch_lines((fake_slurm / "1000.sh").read_text())["array"] == "0-1%2"
    tasks = json.loads((tmp_path / "sw" / "sweep.json").read_text())["tasks"]
    # a line without --out gets a run directory in the sweep
    assert tasks[1]["argv"][-2:] == ["--out", str(tmp_path / "sw" / "runs" / "001-grad-bench")]


@pytest.mark.parametrize("argv_tail, lines, message", [
    ([], None, "does not exist"),
    ([], ["echo hello"], "is not a relax command"),
    ([], ["relax list"], "not a command that writes a run"),
    (["--executor", "pbs"], ["relax sample gumbel-softmax"], "pbs"),
    (["--partition", "cpu"], ["relax sample gumbel-softmax"], "only apply to --executor slurm"),
    (["--executor", "slurm", "--time", "soon"], ["relax sample gumbel-softmax"], "--time 'soon'"),
    (["--executor", "slurm", "--slurm-option", "account"], ["relax sample gumbel-softmax"], "KEY=VALUE"),
    ([], ["relax sample gumbel-softmax --out a", "relax sample arm --out a"], "its own directory"),
    ([], ["relax train-vae --resume runs/x"], "--resume in a sweep line"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, run_cli, monkeypatch, argv_tail, lines, message):
    monkeypatch.chdir(tmp_path)
    cmds = tmp_path / "missing.txt" if lines is None else _commands(tmp_path, lines)
    code, _, err = run_cli(["submit", cmds, *argv_tail])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_existing_run_dir_is_refused_before_submitting(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x").write_text("x")
    code, _, err = run_cli(["submit", _commands(tmp_path, ["relax sample arm --out old"])])
    assert code == 2 and "exists and is not empty" in err


def test_a_resume_existing_line_may_find_its_run_and_runs_as_it_is_every_attempt(tmp_path, monkeypatch):
    """The sweep scripts' lines (train-vae or reinforce --resume-existing) continue the run an
    earlier sweep left in their folder: submit accepts that folder and reruns the line itself on a
    later attempt (it skips, resumes or restarts the run on its own); other lines are still
    refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x").write_text("x")
    for k, line in enumerate((f"{TINY_VAE} --epochs 2 --out old --resume-existing",
                              "relax reinforce --env CartPole-v1 --episodes 4 --out old --resume-existing")):
        _, (task,) = sub.plan_tasks([("line 1", line)], tmp_path / f"sweep{k}")
        assert task.resume_argv == task.argv and "--resume" not in task.argv
        with pytest.raises(BadInput, match="exists and is not empty"):
            sub.plan_tasks([("line 1", line.replace(" --resume-existing", ""))], tmp_path / f"other{k}")


def test_a_sweep_is_not_written_into_a_folder_holding_other_files(tmp_path, run_cli, monkeypatch):
    """--out of the sweep may exist only as the parent of its runs: a folder with the user's own
    files is refused untouched, not mixed with commands.txt, sweep.json, logs/ and tasks/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, err = run_cli(["submit", _commands(tmp_path, ["relax sample arm --out mine/a"]),
                            "--out", "mine"])
    assert code == 2 and "holds notes.txt" in err, err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_without_submitit_names_the_extra(tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    code, _, err = run_cli(["submit", _commands(tmp_path, ["relax sample arm"])])
    assert code == 2 and 'pip install -e ".[cluster]"' in err


def test_slurm_without_slurm_exits_2(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    code, _, err = run_cli(["submit", _commands(tmp_path, ["relax sample arm --out r"]),
                            "--executor", "slurm", "--out", tmp_path / "sw"])
    assert code == 2 and "--executor local" in err


def test_status_of_a_folder_that_is_not_a_sweep(tmp_path, run_cli):
    code, _, err = run_cli(["status", tmp_path])
    assert code == 2 and "not a sweep directory" in err


def test_parse_time_follows_slurm():
    assert [sub.parse_time(t) for t in ("5", "5:30", "1:00:00", "1-0", "1-2:03", "0-0:0:1")] == \
        [5, 6, 60, 1440, 1563, 1]


def test_task_state_from_run_dir_record_and_executor(tmp_path):
    run = tmp_path / "r"
    entry = {"out": str(run)}
    assert sub.task_state(entry, {}, None)[0] is sub.TaskState.queued
    assert sub.task_state(entry, {}, "PENDING")[0] is sub.TaskState.queued
    assert sub.task_state(entry, {}, "OUT_OF_MEMORY") == (sub.TaskState.failed, "Slurm: OUT_OF_MEMORY")
    # relax refused its options before making the run directory
    failed = {"state": "failed", "error": "error: --epochs must be >= 1"}
    assert sub.task_state(entry, failed, None) == (sub.TaskState.failed, "error: --epochs must be >= 1")
    run.mkdir()
    (run / "status").write_text("failed\nRunFailed: loss became nan\n")
    assert sub.task_state(entry, {}, None) == (sub.TaskState.failed, "RunFailed: loss became nan")
    (run / "status").write_text("running\n")  # no lock held, the job is over: the process died
    assert sub.task_state(entry, {"host": os.uname().nodename}, None)[0] is sub.TaskState.interrupted
    assert sub.task_state(entry, {}, "RUNNING")[0] is sub.TaskState.running
    (run / "status").write_text("interrupted\n")
    assert sub.task_state(entry, {"state": "requeued"}, None)[0] is sub.TaskState.queued
    assert sub.task_state(entry, {}, None)[0] is sub.TaskState.interrupted


@pytest.mark.slow
def test_local_sweep_end_to_end_then_status_and_compare(tmp_path, run_cli, monkeypatch):
    """Two real train-vae runs and one that train-vae refuses, through submitit's local executor
    three at once, then the compare job; relax status and relax compare read the sweep."""
    monkeypatch.chdir(tmp_path)
    lines = [f"{TINY_VAE} --epochs 1 --seed {s} --out sweep/vae-{s}" for s in (0, 1)]
    lines.append(f"{TINY_VAE} --epochs 0 --out sweep/bad")  # exit 2: --epochs must be >= 1
    code, out, err = run_cli(["submit", _commands(tmp_path, lines), "--executor", "local",
                              "--max-parallel", "3", "--json"])
    assert code == 1 and "1 of 3 tasks failed" in err.splitlines()[-1], err
    sweep = tmp_path / "sweep"
    for s in (0, 1):
        assert read_status(sweep / f"vae-{s}") == "completed"
        record = json.loads((sweep / "tasks" / f"{s}.json").read_text())
        assert record["attempts"] == 1 and record["exit_code"] == 0
        assert Path(record["stderr"]).is_file()  # the task's own log from submitit
    # the compare job ran after the tasks, over the runs that exist
    assert "gumbel-softmax" in (sweep / "compare" / "comparison.md").read_text()

    code, out, _ = run_cli(["status", sweep, "--json"])
    status = json.loads(out)
    assert code == 1 and status["counts"] == {"queued": 0, "running": 0, "completed": 2,
                                              "failed": 1, "interrupted": 0}
    bad = status["tasks"][2]
    assert bad["state"] == "failed" and bad["note"] == "error: --epochs must be >= 1, got 0"
    code, out, _ = run_cli(["status", sweep])  # the table names the failed task's log
    assert code == 1 and "failed" in out and "error: --epochs must be >= 1" in out

    code, out, err = run_cli(["compare", sweep, "--out", tmp_path / "cmp", "--json"])
    assert code == 0, err
    assert "gumbel-softmax" in (tmp_path / "cmp" / "comparison.md").read_text()


class _Requeued(Exception):
    pass


@pytest.mark.slow
def test_preempted_task_is_checkpointed_requeued_and_resumes(tmp_path, monkeypatch):
    """What submitit does on Slurm's USR2 (preemption or time limit): call the task's checkpoint
    from the signal handler, then leave to be requeued; the requeued task resumes the run."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep" / "vae"
    sweep, (t,) = sub.plan_tasks([("line 1", f"{TINY_VAE} --epochs 40 --out {out}")], tmp_path / "sweep")
    task = sub.RelaxTask(str(sweep), 0, t.argv, t.resume_argv, str(t.out), str(tmp_path))
    requeued = {}

    def handler(signum, frame):  # submitit's SignalHandler.checkpoint_and_try_requeue, in short
        requeued["next"] = task.checkpoint()
        raise _Requeued

    def preempt_after_two_epochs():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if any(r.get("epoch", 0) >= 2 for r in read_metrics(out)):
                os.kill(os.getpid(), signal.SIGUSR2)
                return
            time.sleep(0.05)

    previous = signal.signal(signal.SIGUSR2, handler)
    try:
        threading.Thread(target=preempt_after_two_epochs, daemon=True).start()
        with pytest.raises(_Requeued):
            task()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert read_status(out) == "interrupted"
    stopped_at = max(r["epoch"] for r in read_metrics(out))
    assert 2 <= stopped_at < 40
    record = json.loads((sweep / "tasks" / "0.json").read_text())
    assert record["state"] == "requeued" and record["exit_code"] == 143  # SIGTERM, handled

    assert requeued["next"].result() == 0  # the requeued job: attempt 2
    record = json.loads((sweep / "tasks" / "0.json").read_text())
    assert record["attempts"] == 2 and record["state"] == "completed"
    assert record["argv"] == ["train-vae", "--resume", str(out), "--quiet", "--threads", "1"]
    assert read_status(out) == "completed"
    epochs = [r["epoch"] for r in read_metrics(out)]
    assert epochs == list(range(41))  # each epoch once: resumed, not restarted
    config = json.loads((out / "config.json").read_text())
    assert len(config["resumes"]) == 1 and config["end_time"] is not None
    # a third start (Slurm requeueing a finished job) does not run it again
    assert sub.RelaxTask(str(sweep), 0, t.argv, t.resume_argv, str(t.out), str(tmp_path))() == 0
    assert json.loads((sweep / "tasks" / "0.json").read_text())["argv"] is None
