"""Jang et al. 2017's Table 1 (VAE rows) beside train-vae runs, each row chosen as the paper chose.

The paper picked each estimator's temperature schedule (r, N) and learning rate on the validation
set and reported that model's test bound (section 4). Here, among the completed runs of one
model (encoder widths and prior), latent and method, the runs are grouped by their training
setting (optimiser, learning rate, temperature schedule; seeds of one setting are averaged) and
the setting with the lowest mean validation -ELBO is the row: its mean test IW bound is set
beside the paper's number. Runs without a validation split are left out (nothing to choose by).

    python experiments/jang2017_table.py runs/sweeps/jang2017-paper runs/sweeps/jang2017-paper-*

Columns: the latent (a categorical of 2 classes is a Bernoulli unit), the method and its Table 1
column, the paper's number, the chosen setting and how many settings were compared, seeds, the
test IW bound (mean, and +- sample std over seeds when there are several) and its difference
from the paper (positive: behind the paper), the one-sample test -ELBO, the KL, active latent
variables (KL > 0.01 nats), the mean largest posterior probability, the selected epoch, the
validation -ELBO and the training CPU seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# Table 1 of arXiv:1611.01144v5, VAE rows, "negative variational lower bounds (nats)". The
# registry has no DARN and no annealed ST; SF is the score function with a baseline (here the
# leave-one-out one), ST the plain straight-through estimator (Bernoulli units only here).
PAPER = {
    "200 Bernoulli": {"reinforce-rloo": ("SF", 112.2), "muprop": ("MuProp", 109.7),
                      "straight-through-bernoulli": ("ST", 116.0),
                      "gumbel-softmax": ("Gumbel-S.", 105.0), "st-gumbel-softmax": ("ST Gumbel-S.", 111.5)},
    "20 x 10": {"reinforce-rloo": ("SF", 110.6), "muprop": ("MuProp", 107.0),
                "gumbel-softmax": ("Gumbel-S.", 101.5), "st-gumbel-softmax": ("ST Gumbel-S.", 107.8)},
}
# the training setting a row is chosen over (besides the method, latent and model)
SETTING = ("optimizer", "lr", "anneal_rate", "anneal_every", "tau", "tau_min")


def latent_name(o: dict) -> str:
    if o.get("latent_family") == "bernoulli" or o.get("categories") == 2:
        return f"{o['latent_dim']} Bernoulli"
    return f"{o['latent_dim']} x {o['categories']}"


def completed_runs(roots: list[Path]) -> list[tuple[dict, dict]]:
    runs = []
    for root in roots:
        for summary in sorted(root.rglob("summary.json")):
            run = summary.parent
            status = run / "status"
            config = run / "config.json"
            if not (status.exists() and config.exists()) or \
                    status.read_text().splitlines()[:1] != ["completed"]:
                continue
            cfg = json.loads(config.read_text())
            if cfg.get("command") != "train-vae":
                continue
            runs.append((cfg["options"], json.loads(summary.read_text())))
    return runs


def setting_text(o: dict) -> str:
    schedule = f"r = {o['anneal_rate']:g}, N = {o['anneal_every']}" if o.get("tau") else "no temperature"
    return f"{o.get('optimizer') or 'adam'} {o['lr']:g}, {schedule}"


def fmt(values: list[float], digits: int = 2) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="+", type=Path, help="sweep folders (searched for completed runs)")
    args = p.parse_args()
    missing = [str(s) for s in args.sweeps if not s.is_dir()]
    if missing:
        p.exit(2, f"error: no such folder: {', '.join(missing)}\n")
    rows: dict[tuple, dict[tuple, list[dict]]] = {}
    for o, s in completed_runs(args.sweeps):
        if not o.get("val_size") or s.get("val_neg_elbo") is None:
            continue
        # runs made before --optimizer / --prior trained with Adam and the fixed uniform prior
        o = {"optimizer": "adam", "prior": "uniform", **o}
        key = (o["hidden"], o["prior"], latent_name(o), o["method"])
        rows.setdefault(key, {}).setdefault(tuple(o.get(k) for k in SETTING), []).append(
            {"options": o, "summary": s})
    print("| model | latent | method (Table 1 column) | paper | chosen on validation (settings compared) "
          "| seeds | IW bound | vs paper | test -ELBO | KL | active | mean max q | selected epoch "
          "| val -ELBO | train CPU s/epoch |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    order = {name: i for i, name in enumerate(["20 x 10", "200 Bernoulli"])}
    for key in sorted(rows, key=lambda k: (k[0], k[1], order.get(k[2], 9), k[3])):
        hidden, prior, latent, method = key
        settings = rows[key]
        best = min(settings.values(), key=lambda runs: statistics.fmean(
            r["summary"]["val_neg_elbo"] for r in runs))
        s = [r["summary"] for r in best]
        column, paper = PAPER.get(latent, {}).get(method, ("-", None))
        iw = [x["test_iw_nll"] for x in s]
        gap = "-" if paper is None else f"{statistics.fmean(iw) - paper:+.2f}"
        samples = {x.get("eval_samples") for x in s}
        print(f"| {'linear' if hidden == 'none' else hidden}, {prior} prior | {latent} | {method} "
              f"({column}) | {'-' if paper is None else paper} | "
              f"{setting_text(best[0]['options'])} ({len(settings)}) | {len(s)} | "
              f"{fmt(iw)} (m = {'/'.join(str(m) for m in sorted(samples))}) | {gap} | "
              f"{fmt([x['test_neg_elbo'] for x in s])} | {fmt([x['test_kl'] for x in s], 1)} | "
              f"{fmt([x['test_active_vars'] for x in s], 0)} / {s[0]['latent_vars']} | "
              f"{fmt([x['test_mean_max_prob'] for x in s])} | "
              f"{', '.join(str(x['selected_epoch']) for x in s)} | "
              f"{fmt([x['val_neg_elbo'] for x in s])} | "
              f"{fmt([x['train_cpu_seconds_per_epoch'] for x in s], 1)} |")


if __name__ == "__main__":
    main()
