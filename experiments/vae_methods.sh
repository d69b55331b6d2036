#!/usr/bin/env bash
# train-vae method sweep: the same VAE (Jang et al. 2017's MLP 784-512-256, Bernoulli likelihood)
# trained with every method, over seeds; ends with `relax compare` (mean ± std of test -ELBO, the
# IW bound on -log p(x) and seconds per epoch, one row per method).
#
#   experiments/vae_methods.sh                         # all suitable methods x 3 seeds, 50 epochs
#   EPOCHS=5 SEEDS=0 METHODS="gumbel-softmax st-gumbel-softmax" experiments/vae_methods.sh
#   SMOKE=1 experiments/vae_methods.sh                 # synthetic data, 1 epoch: a plumbing check
#   DRY_RUN=1 experiments/vae_methods.sh > cmds.txt    # the commands only (GNU parallel, or | relax submit -)
#
# Environment (besides OUT, JOBS, DRY_RUN, SMOKE, RELAX: see common.sh):
#   METHODS   comma/space-separated methods (default: every method train-vae accepts)
#   SEEDS     default "0 1 2" (SMOKE: "0")
#   EPOCHS    default 50 (SMOKE: 1)
#   DATASET   mnist (default) or fashion-mnist; SMOKE uses the synthetic set
#   EXTRA     further train-vae options, word-split (e.g. "--anneal-rate 0 --binarize static")
# Temperatures: every method starts at its registry default and follows Jang's schedule
# tau = max(tau_min, tau0 exp(-3e-5 step)) (train-vae's defaults); score-function estimators
# get no temperature (REBAR/RELAX learn theirs).

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
sweep_init vae-methods

if [[ "$SMOKE" == 1 ]]; then
  : "${SEEDS:=0}" "${EPOCHS:=1}" "${DATASET:=synthetic}"
else
  : "${SEEDS:=0 1 2}" "${EPOCHS:=50}" "${DATASET:=mnist}"
fi
: "${EXTRA:=}"
if [[ -z "${METHODS:-}" ]]; then
  METHODS="$(python -c 'from relaxcli.commands.vae import suitable_methods; print(" ".join(suitable_methods()))')"
fi

for method in $(list_of "$METHODS"); do
  for seed in $SEEDS; do
    # shellcheck disable=SC2086  # EXTRA is a list of options on purpose
    emit train-vae --method "$method" --epochs "$EPOCHS" --seed "$seed" --dataset "$DATASET" \
      $EXTRA --out "$OUT/$method/seed-$seed" --json --quiet
  done
done | run_sweep --group-by method
