#!/usr/bin/env bash
# Seed sweep for `relax reinforce` on Acrobot-v1 (the README table): one run per
# (estimator, baseline, seed), stopping when solved; ends with `relax compare`, one row per
# estimator-baseline: episodes and steps to solve (mean ± std over the seeds that solved,
# "solved k/N", and the median with unsolved seeds ranked last), greedy return, wall time.
#
# Usage: experiments/reinforce_seeds.sh [OUT] [extra relax reinforce options...]
#   SMOKE=1 experiments/reinforce_seeds.sh        # 20 episodes, one seed: a plumbing check
#   DRY_RUN=1 experiments/reinforce_seeds.sh      # the commands only (GNU parallel, or | relax submit -)
#   OUT       where run directories go (also the first argument; default
#             runs/sweeps/reinforce-seeds-<UTC time>); see common.sh for JOBS, DRY_RUN, RELAX
#   SEEDS     env var, default "0 1 2 3 4" (SMOKE: "0")
#   CONFIGS   env var, space-separated estimator:baseline pairs, or an estimator alone for
#             those that learn a critic and take no baseline (muprop, reinmax, gumbel-rao, ...;
#             their runs go to <estimator>-critic), default
#             "reinforce:learned reinforce:moving-average reinforce:none relax:learned"
#             (SMOKE: "reinforce:learned relax:learned muprop reinmax")
#   EPISODES  env var, episode budget per run (default 1000; SMOKE: 20)
#   ENV_ID    env var, gymnasium environment (default Acrobot-v1)
# Started again with the same OUT, the sweep continues where it stopped: each line has
# `relax reinforce --resume-existing`, which skips a run completed with the same options, resumes
# an interrupted one from its last update (the numbers equal an uninterrupted run's) and refuses
# (exit 2, reported in the sweep's log) a run made with other options (EPISODES, ENV_ID, extra
# options): use a new OUT to change them.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
if [[ $# -gt 0 && "$1" != -* ]]; then
  OUT="$1"
  shift
fi
sweep_init reinforce-seeds

if [[ "$SMOKE" == 1 ]]; then
  : "${SEEDS:=0}" "${CONFIGS:=reinforce:learned relax:learned muprop reinmax}" "${EPISODES:=20}"
  set -- --eval-episodes 5 "$@"
else
  : "${SEEDS:=0 1 2 3 4}" "${CONFIGS:=reinforce:learned reinforce:moving-average reinforce:none relax:learned}"
  : "${EPISODES:=1000}"
fi
: "${ENV_ID:=Acrobot-v1}"

for cfg in $CONFIGS; do
  if [[ "$cfg" == *:* ]]; then
    est="${cfg%%:*}"; name="$est-${cfg##*:}"; baseline=(--baseline "${cfg##*:}")
  else
    est="$cfg"; name="$est-critic"; baseline=()
  fi
  for seed in $SEEDS; do
    run_or_resume "$OUT/$name/seed$seed" \
      reinforce --env "$ENV_ID" --estimator "$est" "${baseline[@]}" --seed "$seed" \
      --episodes "$EPISODES" --stop-when-solved --device cpu "$@"
  done
done | run_sweep
