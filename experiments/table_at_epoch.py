"""Markdown table of train-vae runs at one epoch (matched budgets), read from their metrics.jsonl.

`relax compare` reports each run's final summary; an ablation whose runs trained for different
numbers of epochs is compared here at the same epoch (same number of steps when the batch size
is the same). The run's name is its path relative to the common parent, without a trailing
seed-N. Columns: training objective of that epoch, test -ELBO (discrete latents, one sample),
its KL term, active latent variables (KL > 0.01 nats) and the mean largest posterior probability.

    python experiments/table_at_epoch.py runs/sweeps/vae-ablation*/*/seed-0 --epoch 6
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--epoch", type=int, required=True)
    args = p.parse_args()
    parent = Path(os.path.commonpath([r.resolve() for r in args.runs]))
    print("| run | epoch | step | train objective | test -ELBO | KL | active | mean max q |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in args.runs:
        recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
        rec = next((r for r in recs if r["epoch"] == args.epoch), None)
        name = str(run.resolve().relative_to(parent.parent)).removesuffix(f"/{run.name}") \
            if run.name.startswith("seed-") else str(run)
        if rec is None:
            print(f"| {name} | {args.epoch} | - | (not reached) | | | | |")
            continue
        print(f"| {name} | {rec['epoch']} | {rec['step']} | {rec['train_neg_elbo']:.1f} | "
              f"{rec['test_neg_elbo']:.1f} | {rec['test_kl']:.1f} | {rec['test_active_vars']} | "
              f"{rec['test_mean_max_prob']:.3f} |")


if __name__ == "__main__":
    main()
