"""relax train-vae against a bare PyTorch loop of the same model: same numbers, how much slower?

The bare loop is the Gumbel-Softmax VAE of Jang et al. (2017) written directly with torch: MLP
encoder 784-512-256-(20x10) (``--hidden``; ``none``: linear, 784-(20x10), Table 1's model),
``torch.distributions.RelaxedOneHotCategorical`` for the relaxed sample, the analytic KL of the
categorical posterior to the uniform prior (``--prior learned``: to softmax of learned logits, one
set for all images), decoder (20x10)-256-512-784 with a Bernoulli likelihood, Adam, dynamic binarisation, tau =
max(tau_min, tau0 exp(-r step)). It shares no code with relaxcli (only the MNIST reader), so it
is an independent check of the relaxcli runner: with the same options both should reach the same
relaxed training objective and test -ELBO (discrete one-hot latents, one sample) up to seed noise,
and the ratio of their seconds per step is relaxcli's overhead.

Usage:
    python benchmarks/vae_bare_loop.py --epochs 17 --threads 1            # both, seed 0
    python benchmarks/vae_bare_loop.py --epochs 3 --init torch            # nn.Linear's init
    python benchmarks/vae_bare_loop.py --epochs 17 --input-coding centered --which bare
    python benchmarks/vae_bare_loop.py --epochs 3 --hidden none --prior learned   # Table 1's model
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.distributions import OneHotCategorical, RelaxedOneHotCategorical
from torch.nn import functional as F

from relaxcli.data import load_dataset

N_VARS, K = 20, 10


def mlp(sizes: list[int], init: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
        if init == "xavier":  # Glorot-uniform weights, zero biases (TensorFlow's default)
            nn.init.xavier_uniform_(layers[-2].weight)
            nn.init.zeros_(layers[-2].bias)
    return nn.Sequential(*layers[:-1])  # no ReLU after the last layer


def neg_elbo(encoder, decoder, prior_logits, x, tau, coding, relaxed=True):
    """(-ELBO per image, KL per image): relaxed sample for training, one-hot for evaluation."""
    logits = encoder(2 * x - 1 if coding == "centered" else x).view(-1, N_VARS, K)
    z = RelaxedOneHotCategorical(torch.tensor(tau), logits=logits).rsample() if relaxed \
        else OneHotCategorical(logits=logits).sample()
    recon = F.binary_cross_entropy_with_logits(decoder(z.flatten(1)), x, reduction="none").sum(-1)
    log_q, log_p = torch.log_softmax(logits, -1), torch.log_softmax(prior_logits, -1)
    kl = (log_q.exp() * (log_q - log_p)).sum((-1, -2))
    return recon + kl, kl


def bare_loop(args, data) -> dict:
    torch.manual_seed(args.seed)
    hidden = [] if args.hidden == "none" else [int(h) for h in args.hidden.split(",")]
    encoder = mlp([784, *hidden, N_VARS * K], args.init)
    decoder = mlp([N_VARS * K, *reversed(hidden), 784], args.init)
    prior_logits = nn.Parameter(torch.zeros(N_VARS, K), requires_grad=args.prior == "learned")
    learned = [prior_logits] if args.prior == "learned" else []
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters(), *learned], lr=args.lr)
    train = data.train.float() / 255
    step, t0, last = 0, time.perf_counter(), []
    steps_per_epoch = math.ceil(train.shape[0] / 100)
    for _ in range(args.epochs):
        for idx in torch.randperm(train.shape[0]).split(100):
            tau = max(args.tau_min, math.exp(-args.anneal_rate * step))
            loss, _ = neg_elbo(encoder, decoder, prior_logits, torch.bernoulli(train[idx]), tau,
                               args.input_coding)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            step += 1
            if step > (args.epochs - 1) * steps_per_epoch:  # the last epoch's objective
                last.append(float(loss.detach().mean()))
    seconds = time.perf_counter() - t0
    g = torch.Generator().manual_seed(1)
    test = torch.bernoulli(data.test.float() / 255, generator=g)
    with torch.no_grad():
        elbo, kl = neg_elbo(encoder, decoder, prior_logits, test, tau, args.input_coding, relaxed=False)
    return {"which": "bare", "steps": step, "train_neg_elbo": sum(last) / len(last),
            "test_neg_elbo": float(elbo.mean()), "test_kl": float(kl.mean()),
            "seconds_per_step": seconds / step}


def relaxcli_run(args) -> dict:
    from relaxcli.commands.vae import TrainVaeOptions, run_train_vae
    from relaxcli.console import Reporter

    with tempfile.TemporaryDirectory() as tmp:
        options = TrainVaeOptions(
            method="gumbel-softmax", epochs=args.epochs, lr=args.lr, tau=1.0,
            anneal_rate=args.anneal_rate, tau_min=args.tau_min, input_coding=args.input_coding,
            init=args.init, hidden=args.hidden, prior=args.prior, eval_samples=1, seed=args.seed,
            data_dir=args.data_dir, device="cpu",
            out=Path(tmp) / "run")
        s = run_train_vae(options, Reporter(quiet=True))
    return {"which": "relaxcli", "steps": s["steps"], "train_neg_elbo": s["train_neg_elbo"],
            "test_neg_elbo": s["test_neg_elbo"], "test_kl": s["test_kl"],
            "seconds_per_step": s["train_seconds_per_epoch"] * s["epochs"] / s["steps"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=17)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--anneal-rate", type=float, default=3e-5)
    p.add_argument("--tau-min", type=float, default=0.5)
    p.add_argument("--input-coding", choices=("x", "centered"), default="x")
    p.add_argument("--init", choices=("xavier", "torch"), default="xavier")
    p.add_argument("--hidden", default="512,256", help="hidden widths, or none (linear)")
    p.add_argument("--prior", choices=("uniform", "learned"), default="uniform")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--which", choices=("both", "bare", "relaxcli"), default="both")
    p.add_argument("--data-dir", default=os.environ.get("RELAX_DATA_DIR"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", args.data_dir)
    if args.which in ("both", "bare"):
        print(json.dumps(bare_loop(args, data)), flush=True)
    if args.which in ("both", "relaxcli"):
        print(json.dumps(relaxcli_run(args)), flush=True)


if __name__ == "__main__":
    main()
