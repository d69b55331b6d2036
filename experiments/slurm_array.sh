#!/usr/bin/env bash
# Slurm job-array template: task i runs line i of a commands file written by a sweep's DRY_RUN.
#
#   DRY_RUN=1 OUT=runs/sweeps/vae experiments/vae_methods.sh > vae.txt
#   sbatch --array=1-$(wc -l < vae.txt)%16 experiments/slurm_array.sh vae.txt
#   # when the array has finished (e.g. sbatch --dependency=afterany:<array job id> ...):
#   relax compare runs/sweeps/vae --out runs/sweeps/vae/compare
#
# Set OUT explicitly when you print the commands so that you know where the runs will be
# (every line carries its own --out). Adjust the #SBATCH lines to your cluster; `%16` above
# caps how many tasks run at once. Outside Slurm you can test one line with
#   SLURM_ARRAY_TASK_ID=3 experiments/slurm_array.sh vae.txt
#
#SBATCH --job-name=relax-sweep
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%A_%a.out

set -euo pipefail

commands="${1:-${COMMANDS_FILE:-}}"
if [[ -z "$commands" || ! -f "$commands" ]]; then
  echo "error: give the commands file (one relax command per line) as the first argument" >&2
  exit 2
fi
if ! [[ "${SLURM_ARRAY_TASK_ID:-}" =~ ^[0-9]+$ ]] || [[ "$SLURM_ARRAY_TASK_ID" -lt 1 ]]; then
  echo "error: SLURM_ARRAY_TASK_ID must be a line number >= 1 (submit with sbatch --array=1-N)" >&2
  exit 2
fi
total=$(grep -c '' "$commands")
if [[ "$SLURM_ARRAY_TASK_ID" -gt "$total" ]]; then
  echo "error: task $SLURM_ARRAY_TASK_ID but $commands has only $total lines" >&2
  exit 2
fi
line="$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$commands")"
# One job per task: let torch use the cores Slurm gave it, no more.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
echo "task $SLURM_ARRAY_TASK_ID/$total on $(hostname): $line" >&2
eval "$line"
