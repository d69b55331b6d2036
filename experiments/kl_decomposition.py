"""Where a train-vae run's KL term goes: mutual information, total correlation, per-variable KL.

The KL term of the ELBO, averaged over the N test images x_n (the data law is their empirical
law), splits exactly into three non-negative parts (Hoffman & Johnson 2016, "ELBO surgery";
Chen et al. 2018, beta-TCVAE):

    E_n KL(q(z|x_n) || p(z)) = I_q(x; z) + KL(q(z) || prod_v q(z_v)) + sum_v KL(q(z_v) || p(z_v))
                               [mutual      [total correlation of       [each variable's aggregate
                                information]  the aggregate posterior]    law against the prior]

with the aggregate posterior q(z) = (1/N) sum_n q(z|x_n) and q(z_v) its marginals. The mutual
information is at most log N (the latent cannot say more about which image it came from than
there are images): 9.21 nats on MNIST's 10000 test images. So a KL far above log N is mostly
total correlation, i.e. sharp posteriors whose codes are spread over a product space that a
factorised prior cannot concentrate on; a learned factorised prior removes the last term.

For factorised discrete latents (Bernoulli units, categorical groups) every term is exact except
the mutual information's log q(z), estimated by Monte Carlo with z ~ q(z|x_m) for every test
image m and q(z) summed exactly over all N images; the total correlation is then the KL minus
the two others. Reported with its standard error.

    python experiments/kl_decomposition.py runs/sweeps/jang2017-paper-lr/gumbel-softmax/20x10/*/seed-0

Needs the run's dataset (RELAX_DATA_DIR or the run's --data-dir) and its model.pt.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch import Tensor
from torch.distributions import Bernoulli, OneHotCategorical


def log_masses(law) -> Tensor | None:
    """log q(z_v = k) of a factorised discrete law, (N, V, K); None for any other law."""
    if type(law) is Bernoulli:
        logits = law.logits.reshape(law.logits.shape[0], -1)
        return torch.stack([torch.nn.functional.logsigmoid(-logits),
                            torch.nn.functional.logsigmoid(logits)], dim=-1)
    if type(law) is OneHotCategorical:
        logits = law.logits
        return torch.log_softmax(logits.reshape(logits.shape[0], -1, logits.shape[-1]), dim=-1)
    return None


def decompose(log_q: Tensor, log_p: Tensor, samples: int = 1, generator: torch.Generator | None = None,
              chunk: int = 2048) -> dict:
    """The decomposition above, in nats per image, for posteriors ``log_q`` (N, V, K) of N images
    and a factorised prior ``log_p`` (V, K): kl, mutual_info (and its standard error
    mutual_info_se, over ``samples`` draws per image), total_correlation, dimwise_kl, and the bound
    log_n on the mutual information."""
    log_q, log_p = log_q.double(), log_p.double().expand_as(log_q[0])
    n, v, k = log_q.shape
    q = log_q.exp()
    kl = (q * (log_q - log_p)).sum((1, 2)).mean()
    log_agg = torch.logsumexp(log_q, dim=0) - math.log(n)  # q(z_v = k), (V, K)
    dimwise = (log_agg.exp() * (log_agg - log_p)).sum()
    table = log_q.reshape(n, v * k).T  # log q(z_v = k | x_n), one row per (v, k)
    terms = []
    for _ in range(samples):
        idx = torch.multinomial(q.reshape(n * v, k), 1, generator=generator).reshape(n, v)
        onehot = torch.nn.functional.one_hot(idx, k).reshape(n, v * k).double()
        for start in range(0, n, chunk):  # log q(z_m | x_n) for every image n: (chunk, N)
            cross = onehot[start:start + chunk] @ table
            own = cross[torch.arange(cross.shape[0]), torch.arange(start, start + cross.shape[0])]
            terms.append(own - (torch.logsumexp(cross, dim=1) - math.log(n)))
    terms = torch.cat(terms)
    mi = terms.mean()
    return {"kl": kl.item(), "mutual_info": mi.item(),
            "mutual_info_se": (terms.std() / math.sqrt(terms.numel())).item(),
            "total_correlation": (kl - mi - dimwise).item(), "dimwise_kl": dimwise.item(),
            "log_n": math.log(n)}


def run_decomposition(run_dir: Path, samples: int, seed: int) -> dict:
    """Rebuild the run's selected model (model.pt), encode its test images, decompose."""
    from relaxcli.commands import vae

    config = json.loads((run_dir / "config.json").read_text())
    plan = vae.plan_run(vae.saved_options(config))
    options, laws = plan.options, plan.laws()
    if laws.eval_model != "discrete":
        raise ValueError(f"{run_dir}: {plan.method.name} has no discrete posterior to decompose")
    split = vae.split_data(vae.load_data(options), options)
    learned = vae.prior_raw(plan.method, plan.latent, 1, "cpu")[0] if options.prior is vae.Prior.LEARNED else None
    model = vae.VAE(plan.latent, plan.hidden, learn_correlation=plan.method.takes_correlation,
                    input_coding=options.input_coding.value, init=options.init.value, learned_prior=learned)
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["model"])
    model.eval()
    with torch.no_grad():
        log_q = log_masses(laws.posterior(model.encode(split.test_x), 1.0, model, True))
        log_p = log_masses(laws.prior(model, 1, 1.0, True))
    if log_q is None or log_p is None:
        raise ValueError(f"{run_dir}: {plan.method.name}'s posterior is not a factorised "
                         "Bernoulli or categorical law")
    generator = torch.Generator().manual_seed(seed)
    return {"run": str(run_dir), "method": plan.method.name,
            "latent": plan.latent.label,
            **decompose(log_q, log_p[0], samples, generator)}


def markdown(rows: list[dict]) -> str:
    head = ("| run | method | latent | KL | mutual information (<= log N) | total correlation | "
            "per-variable KL |\n|---|---|---|---:|---:|---:|---:|")
    lines = [f"| {r['run']} | {r['method']} | {r['latent']} | {r['kl']:.2f} | "
             f"{r['mutual_info']:.2f} +- {r['mutual_info_se']:.2f} (<= {r['log_n']:.2f}) | "
             f"{r['total_correlation']:.2f} | {r['dimwise_kl']:.2f} |" for r in rows]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="completed train-vae run directories")
    parser.add_argument("--samples", type=int, default=1, help="latent draws per test image (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of Markdown")
    args = parser.parse_args(argv)
    from relaxcli.errors import BadInput

    rows = []
    for run in args.runs:
        if not (run / "model.pt").is_file() or not (run / "config.json").is_file():
            print(f"error: {run} is not a completed train-vae run (no model.pt or config.json)",
                  file=sys.stderr)
            return 2
        try:
            rows.append(run_decomposition(run, args.samples, args.seed))
        except (ValueError, BadInput) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
