#!/usr/bin/env bash
# Shared machinery of the sweep scripts in experiments/. Source it; do not run it.
#
# A sweep script builds its command lines with `emit relax-arguments...` (one shell-quoted
# `relax ...` line each, written to stdout), pipes them into `run_sweep [compare options]`, and
# that is all:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
#   sweep_init my-sweep                       # sets OUT (default runs/sweeps/my-sweep-<UTC time>)
#   for seed in $SEEDS; do emit grad-bench --seed "$seed" --out "$OUT/seed-$seed" --quiet; done \
#     | run_sweep --group-by method
#
# Environment (every script):
#   OUT      where the runs go: one sub-directory per run, then OUT/compare (default
#            runs/sweeps/<sweep>-<UTC time>); it should be new, since runs refuse a non-empty --out
#   SEEDS    space-separated seeds (each script has its own default)
#   METHODS  space- or comma-separated registry methods (scripts that sweep methods)
#   EPOCHS   training epochs (train-vae scripts)
#   JOBS     how many commands run at once (xargs -P; default 1). With JOBS > 1 every run gets
#            `--threads 1` (and OMP_NUM_THREADS=1 unless set), so N runs do not fight over the
#            cores: on a busy 2-core machine torch's default threads made VAE training 6-23x
#            slower than one thread per run. With JOBS = 1 a run uses relax's default,
#            min(4, cores) threads
#   DRY_RUN  1: print the commands, one per line, and run nothing (hand them to GNU parallel,
#            or to `relax submit -`); the compare command is printed on stderr
#   SUBMIT   slurm or local: hand the commands to `relax submit` instead of xargs (needs
#            pip install -e ".[cluster]"): slurm queues one job array into OUT plus a dependent
#            relax compare and returns at once (follow it with `relax status OUT`); local runs
#            them through submitit here, JOBS at a time. The sweep's --group-by goes to that
#            compare (its other compare options do not: rerun relax compare for those)
#   SUBMIT_ARGS  more `relax submit` options, word-split, e.g. "--partition gpu --gpus 1
#            --time 2:00:00 --slurm-option account=myproj"
#   SMOKE    1: a tiny budget that finishes in a few minutes (what the tests run)
#   RELAX    how to call the CLI (default: relax; e.g. "python -m relaxcli.cli")
#
# Exit status: 0 when every run and the comparison succeeded; 1 when some run failed (the
# comparison still runs over the others and says which were skipped); relax compare's own
# status when it fails.

set -euo pipefail

: "${JOBS:=1}"
: "${DRY_RUN:=0}"
: "${SMOKE:=0}"
: "${RELAX:=relax}"

if [[ -n "${SUBMIT:-}" && "$SUBMIT" != slurm && "$SUBMIT" != local ]]; then
  echo "error: SUBMIT must be slurm or local, not '$SUBMIT'" >&2
  exit 2
fi
if ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: JOBS must be a positive integer, not '$JOBS'" >&2
  exit 2
fi

# sweep_init NAME: fix OUT for this sweep (a UTC time stamp keeps sweeps apart).
sweep_init() {
  SWEEP_NAME="$1"
  : "${OUT:=runs/sweeps/${SWEEP_NAME}-$(date -u +%Y%m%dT%H%M%SZ)}"
  OUT="${OUT%/}"
  export OUT
}

# list_of "a,b c": one item per word, commas allowed as separators (METHODS="a,b" or "a b").
list_of() {
  local item
  for item in ${1//,/ }; do printf '%s\n' "$item"; done
}

# emit ARGS...: print one command line, `$RELAX` followed by the ARGS, shell-quoted where needed
# (plain words such as --tau 0.5,1 or runs/x/seed-0 stay readable).
emit() {
  local line="$RELAX" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then line+=" $arg"
    else line+=" $(printf '%q' "$arg")"; fi
  done
  printf '%s\n' "$line"
}

# run_or_resume DIR COMMAND ARGS...: the line for one train-vae or reinforce run directory (ARGS
# --out DIR --resume-existing), so that a sweep started again on the same OUT continues where it
# stopped: the command skips a run completed with these options, resumes one that stopped,
# restarts one that stopped before its first epoch or update, and refuses (exit 2, that run
# marked failed in the sweep's log) one made with other options, so that one table never mixes
# settings and no run is replaced. The same line serves `relax submit` (every attempt runs it as
# it is) and GNU parallel.
run_or_resume() {
  local dir="$1"; shift
  emit "$@" --out "$dir" --resume-existing --json --quiet
}

# new_log_dir: make and print OUT/logs/<UTC time>, a folder no earlier start of this sweep used
# (mkdir without -p fails on an existing folder, so two starts in the same second stay apart).
new_log_dir() {
  local stamp dir k=1
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$OUT/logs"
  dir="$OUT/logs/$stamp"
  until mkdir "$dir" 2>/dev/null; do
    k=$((k + 1)); dir="$OUT/logs/$stamp-$k"
    [[ $k -le 1000 ]] || { echo "error: cannot make a log folder under $OUT/logs" >&2; return 2; }
  done
  printf '%s\n' "$dir"
}

# run_sweep [relax compare options...] < commands (one per line)
# DRY_RUN=1: print the commands. Otherwise run them JOBS at a time, then
# `relax compare OUT --out OUT/compare [options]`. Each start of the sweep gets its own folder,
# OUT/logs/<UTC start time>/, with commands.txt and each command's output in <n>.log (a
# <n>.failed file holds a failed command's exit status): a sweep started again on the same OUT
# (the reproduction scripts' runs skip or resume themselves) keeps the logs of
# every earlier start.
run_sweep() {
  local -a cmds=()
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -n "${line// /}" ]] && cmds+=("$line")
  done
  local compare_cmd
  compare_cmd="$(emit compare "$OUT" --out "$OUT/compare" --overwrite "$@")"
  if [[ ${#cmds[@]} -eq 0 ]]; then
    if [[ -d "$OUT" && "$DRY_RUN" != 1 ]]; then  # a restarted sweep whose runs are all done
      echo "+ $compare_cmd" >&2
      eval "$compare_cmd"
      return
    fi
    echo "error: this sweep has no commands (check SEEDS / METHODS)" >&2
    return 2
  fi
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "${cmds[@]}"
    echo "# ${#cmds[@]} commands; when they have all finished: $compare_cmd" >&2
    return 0
  fi
  if [[ -n "${SUBMIT:-}" ]]; then
    local -a group=()
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --group-by) group+=(--group-by "$2"); shift 2 ;;
        --group-by=*) group+=("$1"); shift ;;
        *) shift ;;
      esac
    done
    [[ "$SUBMIT" == local ]] && group+=(--max-parallel "$JOBS")
    # shellcheck disable=SC2086  # RELAX and SUBMIT_ARGS are word lists
    printf '%s\n' "${cmds[@]}" | $RELAX submit - --executor "$SUBMIT" --out "$OUT" \
      ${SUBMIT_ARGS:-} "${group[@]}"
    return
  fi

  local logs
  logs="$(new_log_dir)" || return 2
  printf '%s\n' "${cmds[@]}" > "$logs/commands.txt"
  if [[ "$JOBS" -gt 1 ]]; then
    # one thread per run: JOBS runs side by side already use the cores
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    local j
    for j in "${!cmds[@]}"; do
      [[ "${cmds[$j]}" == *" --threads "* ]] || cmds[$j]="${cmds[$j]} --threads 1"
    done
  fi
  echo "sweep ${SWEEP_NAME:-}: ${#cmds[@]} runs, $JOBS at a time, into $OUT (logs in $logs)" >&2

  local i
  # NUL-separated (index, command) pairs: a command may contain any character but NUL.
  for i in "${!cmds[@]}"; do printf '%d\0%s\0' "$((i + 1))" "${cmds[$i]}"; done \
    | LOGS="$logs" xargs -0 -n 2 -P "$JOBS" bash -c '
        n="$1"; cmd="$2"; log="$LOGS/$n.log"
        if eval "$cmd" > "$log" 2>&1; then
          echo "[$n] ok: $cmd" >&2
        else
          rc=$?; echo "$rc" > "$LOGS/$n.failed"
          echo "[$n] FAILED (exit $rc, log $log): $cmd" >&2
        fi' _ || true

  local failed
  failed=$(find "$logs" -name '*.failed' | wc -l)
  echo "+ $compare_cmd" >&2
  eval "$compare_cmd"
  if [[ "$failed" -gt 0 ]]; then
    echo "sweep ${SWEEP_NAME:-}: $failed of ${#cmds[@]} runs failed (see $logs/*.log)" >&2
    return 1
  fi
  echo "sweep ${SWEEP_NAME:-}: done; the table is in $OUT/compare/comparison.md" >&2
}
