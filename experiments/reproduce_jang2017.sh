#!/usr/bin/env bash
# Reproduce the VAE rows of Jang, Gu, Poole (2017), "Categorical Reparameterization with
# Gumbel-Softmax", Table 1 (density estimation on binarised MNIST): the 784-512-256 MLP encoder
# and mirrored decoder, a categorical 20x10 latent or 200 Bernoulli units (here 200 two-class
# categoricals, the K = 2 case of the same estimators), Adam, batch 100.
#
# Protocol (the paper's, as far as train-vae can state it): one fixed binarisation
# (--binarize static); the last 5000 training images held out for validation (TensorFlow's 55k /
# 5k / 10k MNIST split) and the reported model is the epoch of best validation -ELBO; the test
# bound -log p(x) <= IW bound with m = 1000 importance samples (--eval-samples 1000); temperature
# tau = max(0.5, exp(-r t)) updated every N steps, with (r, N) in {1e-5, 1e-4} x {500, 1000}
# chosen on validation (SCHEDULES); 50k steps (91 epochs of 550 steps).
#
#   experiments/reproduce_jang2017.sh                  # GS, ST-GS x 2 latents x 4 schedules
#   SCHEDULES="1e-4:1000" JOBS=2 experiments/reproduce_jang2017.sh   # one schedule (our CPU runs)
#   SMOKE=1 experiments/reproduce_jang2017.sh          # synthetic data, 1 epoch: plumbing only
#   DRY_RUN=1 experiments/reproduce_jang2017.sh        # the commands only (cluster, GPU)
#
# Environment (besides OUT, JOBS, DRY_RUN, SMOKE, RELAX: see common.sh):
#   METHODS    default "gumbel-softmax st-gumbel-softmax"
#   LATENTS    "VARSxCLASSES" items, default "20x10 200x2"
#   SCHEDULES  "r:N" items, default "1e-5:500 1e-5:1000 1e-4:500 1e-4:1000"
#   SEEDS      default "0"
#   EPOCHS     default 91
#   EXTRA      further train-vae options (e.g. "--lr-decay 0.9 --device cuda")
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
sweep_init jang2017

: "${METHODS:=gumbel-softmax st-gumbel-softmax}"
: "${LATENTS:=20x10 200x2}"
: "${SCHEDULES:=1e-5:500 1e-5:1000 1e-4:500 1e-4:1000}"
if [[ "$SMOKE" == 1 ]]; then
  : "${SEEDS:=0}" "${EPOCHS:=1}" "${DATASET:=synthetic}" "${VAL:=32}" "${EVAL:=5}"
else
  : "${SEEDS:=0}" "${EPOCHS:=91}" "${DATASET:=mnist}" "${VAL:=5000}" "${EVAL:=1000}"
fi
: "${EXTRA:=}"

for method in $(list_of "$METHODS"); do
  for latent in $(list_of "$LATENTS"); do
    vars="${latent%x*}" classes="${latent#*x}"
    for schedule in $(list_of "$SCHEDULES"); do
      rate="${schedule%:*}" every="${schedule#*:}"
      for seed in $SEEDS; do
        # shellcheck disable=SC2086  # EXTRA is a list of options on purpose
        emit train-vae --method "$method" --latent-dim "$vars" --categories "$classes" \
          --tau 1 --tau-min 0.5 --anneal-rate "$rate" --anneal-every "$every" \
          --binarize static --val-size "$VAL" --eval-samples "$EVAL" --epochs "$EPOCHS" \
          --seed "$seed" --dataset "$DATASET" $EXTRA \
          --out "$OUT/$method/${latent}/r${rate}-N${every}/seed-$seed" --json --quiet
      done
    done
  done
done | run_sweep --group-by method,latent_dim,categories,anneal_rate,anneal_every \
  --metric test_iw_nll,test_neg_elbo,test_kl,test_active_vars,selected_epoch,seconds_per_epoch
