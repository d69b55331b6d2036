#!/usr/bin/env bash
# train-vae method sweep: the same VAE trained with every method, over seeds; ends with
# `relax compare` (mean ± std of the test -ELBO, the IW bound on -log p(x), the KL, the active
# latent variables and seconds per epoch, one row per method).
#
# PROTOCOL picks the model, the budget and the compare's columns:
#   PROTOCOL=notebook (default) Jang et al.'s released notebook's MLP (784-512-256, uniform
#                   prior), dynamic binarisation, last epoch reported, a 100-sample IW bound,
#                   50 epochs; every method from its registry temperature, annealed
#                   tau = max(tau_min, tau0 exp(-3e-5 step)) (train-vae's defaults)
#   PROTOCOL=paper  the protocol of Jang et al.'s Table 1 (see reproduce_jang2017.sh), for every
#                   method: a linear VAE with a learned prior (--hidden none --prior learned),
#                   one fixed binarisation, 5000 validation images and the best-on-validation
#                   epoch, a 1000-sample IW bound, 91 epochs (~50k steps); every method from its
#                   registry temperature, tau = max(tau_min, tau0 exp(-1e-4 s)) with s updated
#                   every 1000 steps (Table 1's (r, N) = (1e-4, 1000))
# Each method keeps its own latent (train-vae's default: 200 Bernoulli units, 20 categorical
# groups of 10, or 20 groups of 2-of-10 subsets for topk / simple); score-function estimators get
# no temperature (REBAR / RELAX learn theirs).
#
#   experiments/vae_methods.sh                         # all suitable methods x 3 seeds, 50 epochs
#   PROTOCOL=paper SEEDS=0 JOBS=2 experiments/vae_methods.sh    # Table 1's protocol, ~50k steps
#   EPOCHS=5 SEEDS=0 METHODS="gumbel-softmax st-gumbel-softmax" experiments/vae_methods.sh
#   SMOKE=1 experiments/vae_methods.sh                 # synthetic data, 1 epoch: a plumbing check
#   DRY_RUN=1 experiments/vae_methods.sh > cmds.txt    # the commands only (GNU parallel, or | relax submit -)
#
# Runs are listed seed by seed (every method's seed 0 first), so a sweep cut short has whole
# columns of the table. Started again with the same OUT, the sweep continues where it stopped:
# each line has `relax train-vae --resume-existing`, which skips a run completed with the same
# options, resumes an interrupted one and refuses (exit 2, reported in the sweep's log) a run made
# with other options: to change PROTOCOL or EXTRA, use a new OUT; a larger EPOCHS trains on.
#
# Environment (besides OUT, JOBS, DRY_RUN, SMOKE, RELAX: see common.sh):
#   PROTOCOL  notebook (default) or paper, see above
#   METHODS   comma/space-separated methods (default: every method train-vae accepts)
#   SEEDS     default "0 1 2" (SMOKE: "0")
#   EPOCHS    default 50 (PROTOCOL=paper: 91; SMOKE: 1)
#   DATASET   mnist (default) or fashion-mnist; SMOKE uses the synthetic set
#   EXTRA     further train-vae options, word-split (e.g. "--anneal-rate 0 --binarize static")

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
sweep_init vae-methods

: "${PROTOCOL:=notebook}"
case "$PROTOCOL" in
  notebook) protocol=() epochs=50 metrics=() ;;
  paper) protocol=(--hidden none --prior learned --binarize static --anneal-rate 1e-4
                   --anneal-every 1000) epochs=91
         metrics=(--metric test_iw_nll,test_neg_elbo,test_kl,test_active_vars,selected_epoch,seconds_per_epoch) ;;
  *) echo "error: PROTOCOL must be notebook or paper, not '$PROTOCOL'" >&2; exit 2 ;;
esac
if [[ "$SMOKE" == 1 ]]; then  # validation and bound at a size the synthetic set has
  : "${SEEDS:=0}" "${EPOCHS:=1}" "${DATASET:=synthetic}"
  val=32 eval=5
else
  : "${SEEDS:=0 1 2}" "${EPOCHS:=$epochs}" "${DATASET:=mnist}"
  val=5000 eval=1000
fi
[[ "$PROTOCOL" == paper ]] && protocol+=(--val-size "$val" --eval-samples "$eval")
: "${EXTRA:=}"
if [[ -z "${METHODS:-}" ]]; then
  METHODS="$(python -c 'from relaxcli.commands.vae import suitable_methods; print(" ".join(suitable_methods()))')"
fi

for seed in $SEEDS; do
  for method in $(list_of "$METHODS"); do
    # shellcheck disable=SC2086  # EXTRA is a list of options on purpose
    run_or_resume "$OUT/$method/seed-$seed" \
      train-vae --method "$method" "${protocol[@]}" --epochs "$EPOCHS" --seed "$seed" \
      --dataset "$DATASET" $EXTRA
  done
done | run_sweep --group-by method "${metrics[@]}"
