#!/usr/bin/env bash
# train-vae temperature sweep: test -ELBO (discrete evaluation) against the initial temperature
# tau0, with and without Jang's annealing, for the relaxed methods; ends with `relax compare`
# grouped by method, tau and anneal rate.
#
#   experiments/vae_tau_sweep.sh                              # 2 methods x 4 taus x 2 schedules x 2 seeds
#   TAUS="0.5 1" METHODS=gumbel-softmax EPOCHS=3 SEEDS=0 experiments/vae_tau_sweep.sh
#   SMOKE=1 experiments/vae_tau_sweep.sh                      # synthetic data, 1 epoch
#
# Started again with the same OUT, the sweep continues where it stopped (each line has
# `relax train-vae --resume-existing`: completed runs skipped, interrupted ones resumed, runs made
# with other options refused and left as they are; a larger EPOCHS trains the runs on).
#
# Environment (besides OUT, JOBS, DRY_RUN, SMOKE, RELAX: see common.sh):
#   METHODS   default "gumbel-softmax st-gumbel-softmax" (SMOKE: gumbel-softmax)
#   TAUS      initial temperatures, space/comma-separated (default "0.3 0.5 1 2"; SMOKE "0.5 1")
#   ANNEAL    anneal rates r in tau = max(tau_min, tau0 exp(-r step)) (default "0 3e-5")
#   TAU_MIN   lowest temperature (default 0.1, so that tau0 < 0.5 still anneals)
#   SEEDS     default "0 1" (SMOKE: "0");  EPOCHS  default 20 (SMOKE: 1)
#   DATASET   mnist (default) or fashion-mnist; SMOKE uses the synthetic set
#   EXTRA     further train-vae options, word-split

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
sweep_init vae-tau

if [[ "$SMOKE" == 1 ]]; then
  : "${METHODS:=gumbel-softmax}" "${TAUS:=0.5 1}" "${SEEDS:=0}" "${EPOCHS:=1}" "${DATASET:=synthetic}"
else
  : "${METHODS:=gumbel-softmax st-gumbel-softmax}" "${TAUS:=0.3 0.5 1 2}" "${SEEDS:=0 1}"
  : "${EPOCHS:=20}" "${DATASET:=mnist}"
fi
: "${ANNEAL:=0 3e-5}" "${TAU_MIN:=0.1}" "${EXTRA:=}"

for method in $(list_of "$METHODS"); do
  for tau in $(list_of "$TAUS"); do
    for rate in $(list_of "$ANNEAL"); do
      for seed in $SEEDS; do
        # shellcheck disable=SC2086  # EXTRA is a list of options on purpose
        run_or_resume "$OUT/$method/tau-$tau/anneal-$rate/seed-$seed" \
          train-vae --method "$method" --tau "$tau" --anneal-rate "$rate" --tau-min "$TAU_MIN" \
          --epochs "$EPOCHS" --seed "$seed" --dataset "$DATASET" $EXTRA
      done
    done
  done
done | run_sweep --group-by method,tau,anneal_rate
