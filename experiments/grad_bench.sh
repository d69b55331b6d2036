#!/usr/bin/env bash
# grad-bench sweep: measured bias and variance of every gradient estimator against the exact
# gradient, on the toy problems, repeated over seeds; ends with `relax compare`, whose table
# has one row per (problem, method, tau) with mean ± std over the seeds.
#
#   experiments/grad_bench.sh                       # full: 3 problems x 3 seeds, 10000 draws
#   SMOKE=1 experiments/grad_bench.sh               # ~10 s per run (what the tests run)
#   DRY_RUN=1 experiments/grad_bench.sh > cmds.txt  # the commands only (GNU parallel, or | relax submit -)
#
# Environment (besides OUT, JOBS, DRY_RUN, SMOKE, RELAX: see common.sh):
#   PROBLEMS  space-separated problems (default: bernoulli-quadratic categorical-quadratic
#             bernoulli-multi; SMOKE: bernoulli-quadratic)
#   SEEDS     default "0 1 2" (SMOKE: "0 1")
#   METHODS   comma/space-separated methods (default: all that apply to each problem; give only
#             methods of one family when PROBLEMS mixes Bernoulli and categorical problems)
#   TAUS      temperatures of the relaxed methods, comma-separated (default 0.1,0.3,0.5,1,2;
#             SMOKE: 0.5,1)
#   DRAWS     gradient estimates per method (default 10000; SMOKE: 100)
#   TUNE_STEPS  Adam steps fitting REBAR/RELAX's own parameters first (default: grad-bench's;
#             SMOKE: 20)
#   TARGET    t of bernoulli-quadratic (default: grad-bench's 0.45; RELAX's paper also uses 0.499)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
sweep_init grad-bench

if [[ "$SMOKE" == 1 ]]; then
  : "${PROBLEMS:=bernoulli-quadratic}" "${SEEDS:=0 1}" "${TAUS:=0.5,1}" "${DRAWS:=100}"
  : "${TUNE_STEPS:=20}"
else
  : "${PROBLEMS:=bernoulli-quadratic categorical-quadratic bernoulli-multi}"
  : "${SEEDS:=0 1 2}" "${TAUS:=0.1,0.3,0.5,1,2}" "${DRAWS:=10000}"
fi
: "${METHODS:=}" "${TARGET:=}" "${TUNE_STEPS:=}"

for problem in $PROBLEMS; do
  for seed in $SEEDS; do
    args=(grad-bench --problem "$problem" --draws "$DRAWS" --tau "$TAUS" --seed "$seed")
    if [[ -n "$METHODS" ]]; then
      methods="$(list_of "$METHODS" | paste -sd, -)"
      args+=(--methods "$methods")
    fi
    if [[ -n "$TUNE_STEPS" ]]; then
      args+=(--tune-steps "$TUNE_STEPS")
    fi
    if [[ -n "$TARGET" && "$problem" == bernoulli-quadratic ]]; then
      args+=(--target "$TARGET")
    fi
    emit "${args[@]}" --out "$OUT/$problem/seed-$seed" --quiet
  done
done | run_sweep
