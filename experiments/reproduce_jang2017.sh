#!/usr/bin/env bash
# Reproduce the VAE rows of Jang, Gu, Poole (2017), "Categorical Reparameterization with
# Gumbel-Softmax", Table 1 (density estimation on binarised MNIST, "negative variational lower
# bounds", evaluated with a multi-sample bound, m = 1000), batch 100.
#
# The model (MODEL): the paper's section 4.2 and Figure 4 give a VAE with no deterministic hidden
# layer, 784-200-784 (200 Bernoulli units) and 784-(20x10)-784 (the caption prints -200 last;
# the decoder must output 784 pixels), with "a learned categorical prior":
#   MODEL=paper     --hidden none --prior learned   (the default: what Table 1 describes)
#   MODEL=notebook  --hidden 512,256 --prior uniform (the authors' released notebook's MLP and
#                   fixed uniform prior: a stronger model than the table's)
#
# Protocol: one fixed binarisation (--binarize static); the last 5000 training images held out
# for validation (TensorFlow's 55k / 5k / 10k MNIST split) and the reported model is the epoch of
# best validation -ELBO; the test bound -log p(x) <= IW bound with m = 1000 importance samples
# (--eval-samples 1000); temperature tau = max(0.5, exp(-r t)) updated every N steps, with
# (r, N) in {1e-5, 1e-4} x {500, 1000} chosen on validation (SCHEDULES; methods without a
# temperature run once); 50k steps (91 epochs of 550 steps).
#
# The optimiser: the paper trained with "stochastic gradient descent with momentum 0.9", the
# learning rate chosen per estimator on validation from {3e-5, 1e-5, 3e-4, 1e-4, 3e-3, 1e-3}
# (section 4). The default here is Adam at the grid's two largest rates, 1e-3 and 3e-3 (with Adam
# at 1e-3 every run's validation -ELBO was still falling at 50k steps, so the smaller rates were
# not run); OPTIMIZER=sgd LRS="3e-5 1e-5 3e-4 1e-4 3e-3 1e-3" is the paper's own search. relax
# compare lists every (optimizer, lr, schedule): pick each estimator's row by its validation -ELBO.
#
# Table 1's columns and ours: Gumbel-S. = gumbel-softmax, ST Gumbel-S. = st-gumbel-softmax,
# MuProp = muprop, ST = straight-through-bernoulli (Bernoulli only: the registry has no plain
# straight-through estimator for categoricals), SF = reinforce-rloo (the score function with a
# baseline: the leave-one-out one, two samples per image). DARN and annealed ST are not in the
# registry. The latent of each method comes from `relax list --json`: 200x2 is 200 Bernoulli
# units for a method that serves Bernoulli latents and 200 two-class categoricals (the same law)
# for the categorical-only Gumbel-Softmax pair; a method that serves neither is skipped, saying so.
#
#   experiments/reproduce_jang2017.sh                  # every method, 2 latents, 4 schedules
#   SCHEDULES="1e-4:1000" JOBS=2 experiments/reproduce_jang2017.sh   # one schedule
#   SMOKE=1 experiments/reproduce_jang2017.sh          # synthetic data, 1 epoch: plumbing only
#   DRY_RUN=1 experiments/reproduce_jang2017.sh        # the commands only (cluster, GPU)
#
# Runs are listed schedule by schedule (the first schedule's runs, and every method without a
# temperature, come first), so a sweep cut short has whole rows. Started again with the same OUT,
# the sweep continues where it stopped (`relax train-vae --resume-existing` on each line: a run
# completed with the same options is skipped, an interrupted one resumed, one made with other
# options refused, exit 2): to change MODEL or EXTRA, use a new OUT; a larger EPOCHS trains on.
#
# Environment (besides OUT, JOBS, DRY_RUN, SMOKE, RELAX: see common.sh):
#   MODEL      paper (default) or notebook, see above
#   METHODS    default "gumbel-softmax st-gumbel-softmax muprop reinforce-rloo straight-through-bernoulli"
#   LATENTS    "VARSxCLASSES" items, default "20x10 200x2"
#   SCHEDULES  "r:N" items, default "1e-4:1000 1e-4:500 1e-5:1000 1e-5:500"
#   OPTIMIZER  adam (default) or sgd (SGD with momentum 0.9, the paper's)
#   LRS        learning rates, default "1e-3 3e-3"
#   SEEDS      default "0"
#   EPOCHS     default 91
#   EXTRA      further train-vae options (e.g. "--lr-decay 0.9 --device cuda")
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"
sweep_init jang2017

: "${MODEL:=paper}"
: "${METHODS:=gumbel-softmax st-gumbel-softmax muprop reinforce-rloo straight-through-bernoulli}"
: "${LATENTS:=20x10 200x2}"
: "${SCHEDULES:=1e-4:1000 1e-4:500 1e-5:1000 1e-5:500}"
: "${OPTIMIZER:=adam}" "${LRS:=1e-3 3e-3}"
if [[ "$SMOKE" == 1 ]]; then
  : "${SEEDS:=0}" "${EPOCHS:=1}" "${DATASET:=synthetic}" "${VAL:=32}" "${EVAL:=5}"
else
  : "${SEEDS:=0}" "${EPOCHS:=91}" "${DATASET:=mnist}" "${VAL:=5000}" "${EVAL:=1000}"
fi
: "${EXTRA:=}"
case "$OPTIMIZER" in
  adam|sgd) ;;
  *) echo "error: OPTIMIZER must be adam or sgd, not '$OPTIMIZER'" >&2; exit 2 ;;
esac
for lr in $(list_of "$LRS"); do
  [[ "$lr" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] ||
    { echo "error: LRS must be positive numbers like 1e-3, not '$lr'" >&2; exit 2; }
done
case "$MODEL" in
  paper) model=(--hidden none --prior learned) ;;
  notebook) model=(--hidden 512,256 --prior uniform) ;;
  *) echo "error: MODEL must be paper or notebook, not '$MODEL'" >&2; exit 2 ;;
esac

# One line per (method, latent) that can run: "METHOD LATENT TEMPERATURE(0|1) train-vae latent
# options", from the registry's own record of each method (families, temperature).
# shellcheck disable=SC2086  # RELAX is a word list
plan="$($RELAX list --json | python3 -c '
import json, sys
methods = {m["name"]: m for m in json.load(sys.stdin)}
for name in sys.argv[1].replace(",", " ").split():
    if name not in methods:
        sys.exit(f"error: unknown method {name!r} in METHODS (relax list names them)")
    m = methods[name]
    for latent in sys.argv[2].replace(",", " ").split():
        n, k = latent.split("x")
        if k == "2" and "bernoulli" in m["families"]:
            args = f"--latent-family bernoulli --latent-dim {n}"
        elif "categorical" in m["families"]:
            args = f"--latent-family categorical --latent-dim {n} --categories {k}"
        else:
            families = " and ".join(m["families"])
            print(f"skip {name} on {latent}: it serves {families} latents", file=sys.stderr)
            continue
        print(name, latent, int(m["default_tau"] is not None), args)
' "$METHODS" "$LATENTS")"

first=1
for schedule in $(list_of "$SCHEDULES"); do
  rate="${schedule%:*}" every="${schedule#*:}"
  while read -r method latent tempered args; do
    [[ -z "$method" ]] && continue
    if [[ "$tempered" == 1 ]]; then
      tag="r${rate}-N${every}" temp=(--tau 1 --tau-min 0.5 --anneal-rate "$rate" --anneal-every "$every")
    elif [[ "$first" == 1 ]]; then
      tag="no-temperature" temp=()
    else
      continue
    fi
    for lr in $(list_of "$LRS"); do
      # Adam at 1e-3 (the first sweeps' setting) keeps the plain tag; any other optimiser or
      # learning rate is named in the folder
      run_tag="$tag"
      [[ "$OPTIMIZER" == adam && "$lr" == 1e-3 ]] || run_tag="$tag-$OPTIMIZER-lr$lr"
      for seed in $SEEDS; do
        # shellcheck disable=SC2086  # args and EXTRA are lists of options on purpose
        run_or_resume "$OUT/$method/$latent/$run_tag/seed-$seed" \
          train-vae --method "$method" $args "${model[@]}" "${temp[@]}" \
          --optimizer "$OPTIMIZER" --lr "$lr" \
          --binarize static --val-size "$VAL" --eval-samples "$EVAL" --epochs "$EPOCHS" \
          --seed "$seed" --dataset "$DATASET" $EXTRA
      done
    done
  done <<< "$plan"
  first=0
done | run_sweep --group-by method,latent_family,latent_dim,categories,hidden,prior,optimizer,lr,anneal_rate,anneal_every \
  --metric test_iw_nll,val_neg_elbo,test_neg_elbo,test_kl,test_active_vars,selected_epoch,seconds_per_epoch
