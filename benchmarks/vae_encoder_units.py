"""How the encoder's ReLU units of trained ``relax train-vae`` runs behave on the test images.

For each run directory (its ``model.pt`` and ``config.json``), feed the binarised test images to
the encoder as the run did (``input_coding`` x or 2x - 1) and report, per hidden layer, the
fraction of units that are dead (zero on every test image) and always on (positive on every test
image, i.e. linear), plus, for the first layer, how large the image-independent part of a unit's
pre-activation is (w . mean coded image, std over units) next to its image-dependent spread
(std over images, averaged over units). Written for issue #12's ablation (experiments/README.md).

Usage:
    python benchmarks/vae_encoder_units.py runs/sweeps/vae-ablation/*/seed-0
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from relaxcli.data import Binarizer, load_dataset


def encoder_report(run: Path, data) -> dict:
    cfg = json.loads((run / "config.json").read_text())["options"]
    coding = cfg.get("input_coding", "centered")  # runs before the option existed used 2x - 1
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=False)["model"]
    weights = [(state[k], state[k.replace("weight", "bias")]) for k in sorted(state)
               if k.startswith("encoder.") and k.endswith("weight")]
    x = Binarizer("static", data).test
    h = 2 * x - 1 if coding == "centered" else x
    report = {"run": str(run), "input_coding": coding}
    for i, (w, b) in enumerate(weights[:-1]):  # hidden layers only (the last one outputs logits)
        pre = h @ w.T + b
        report[f"layer{i + 1}_dead"] = float(((pre > 0).sum(0) == 0).float().mean())
        report[f"layer{i + 1}_always_on"] = float(((pre > 0).sum(0) == x.shape[0]).float().mean())
        if i == 0:
            report["layer1_offset_std"] = float((w @ h.mean(0)).std())
            report["layer1_image_std"] = float(pre.std(0).mean())
        h = torch.relu(pre)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--data-dir", default=os.environ.get("RELAX_DATA_DIR"))
    args = p.parse_args()
    data = load_dataset("mnist", args.data_dir)
    for run in args.runs:
        print(json.dumps(encoder_report(run, data)), flush=True)


if __name__ == "__main__":
    main()
