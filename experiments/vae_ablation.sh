#!/usr/bin/env bash
# train-vae ablation (issue #12): why the latent went unused. Gumbel-Softmax on Jang et al.'s
# categorical 20x10 model, ~10k steps, ONE change at a time against relaxcli 0.1's settings
# (--input-coding centered --init torch, constant learning rate, tau updated every step with
# r = 3e-5, dynamic binarisation, 20x10, batch 100). Each run reports the test -ELBO, its KL and
# reconstruction terms, the active latent variables (KL > 0.01 nats) and the mean largest
# posterior probability (relax compare shows them; summary.json has the per-variable KL).
#
#   experiments/vae_ablation.sh                        # every configuration, seed 0, 17 epochs
#   SEEDS="0 1" CONFIGS="centered x" experiments/vae_ablation.sh
#   JOBS=2 experiments/vae_ablation.sh                 # two at a time (one torch thread each)
#   SMOKE=1 experiments/vae_ablation.sh                # synthetic data, 1 epoch: plumbing only
#   DRY_RUN=1 experiments/vae_ablation.sh              # the commands only
#
# Started again with the same OUT, the sweep continues where it stopped (each line has
# `relax train-vae --resume-existing`: completed runs skipped, interrupted ones resumed, runs made
# with other options refused and left as they are).
#
# Environment (besides OUT, JOBS, DRY_RUN, SMOKE, RELAX: see common.sh):
#   CONFIGS  which configurations (names below; default all)
#   SEEDS    default "0"
#   EPOCHS   default 17 (17 x 600 = 10.2k steps)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
sweep_init vae-ablation

base=(--method gumbel-softmax --tau 1 --anneal-rate 3e-5 --tau-min 0.5 --input-coding centered --init torch)
declare -A change=(
  [centered]=""                                        # relaxcli 0.1 (the reference)
  [x]="--input-coding x"                               # encoder sees x in {0,1}
  [xavier]="--init xavier"                             # TF/slim's init (Jang's code)
  [lr-decay]="--lr-decay 0.9 --lr-decay-every 1000"    # Jang's notebook: lr x0.9 every 1000 steps
  [static]="--binarize static"                         # one fixed binarisation
  [anneal-1e-4-every-1000]="--anneal-rate 1e-4 --anneal-every 1000"  # Jang's tuned schedule
  [latent-30x10]="--latent-dim 30"                     # the notebook's 30x10
  [batch-50]="--batch-size 50"                         # twice the steps per epoch
  [x+xavier]="--input-coding x --init xavier"
  [x+lr-decay+xavier]="--input-coding x --lr-decay 0.9 --lr-decay-every 1000 --init xavier"
)
order="centered x xavier lr-decay static anneal-1e-4-every-1000 latent-30x10 batch-50 x+xavier x+lr-decay+xavier"

if [[ "$SMOKE" == 1 ]]; then
  : "${SEEDS:=0}" "${EPOCHS:=1}" "${DATASET:=synthetic}"
else
  : "${SEEDS:=0}" "${EPOCHS:=17}" "${DATASET:=mnist}"
fi
: "${CONFIGS:=$order}"
for name in $(list_of "$CONFIGS"); do
  if [[ -z "${change[$name]+set}" ]]; then
    echo "error: unknown configuration '$name'; choose from: $order" >&2
    exit 2
  fi
  for seed in $SEEDS; do
    # shellcheck disable=SC2086  # the change is a list of options on purpose
    run_or_resume "$OUT/$name/seed-$seed" \
      train-vae "${base[@]}" ${change[$name]} --epochs "$EPOCHS" --seed "$seed" \
      --dataset "$DATASET" --eval-samples 1
  done
done | run_sweep
