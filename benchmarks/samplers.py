"""Speed of every registry sampler: median time of build + rsample + backward at a realistic size.

For each method in ``relaxcli.methods.METHODS`` that has a builder, one timed step is: build the
distribution from raw parameters (``requires_grad``), draw ``rsample()``, and back-propagate a
weighted sum of the sample to the parameters (what one training step of a model does). Where
torch ships the same law (``RelaxedBernoulli``, ``RelaxedOneHotCategorical``) the same step is
timed for torch's class next to ours, alternating with ours step by step (same load), with the
same ``validate_args`` default for both, and both builds inside the timed step.

Sizes (per step): Bernoulli family 256 x 200 units; categorical 256 x 20 variables x 10
categories; top-k of k=10 from K=1000 at batch 256; IGR 256 x 20 x 9 Gaussian coordinates (10
categories); logistic-normal 256 x 20 x 10.

Usage:
    python benchmarks/samplers.py --repeats 50 --threads 1
    python benchmarks/samplers.py --json > samplers.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch.distributions import RelaxedBernoulli, RelaxedOneHotCategorical

from relaxcli.methods import METHODS, Method


def raw_shape(method: Method) -> tuple[tuple[int, ...], str, dict]:
    """Raw parameter shape, a human-readable size, and extra builder options for ``method``."""
    if method.family == "bernoulli":
        return (256, 200), "256x200", {}
    if method.family == "subset":
        return (256, method.params.size(1000)), "256, top-10 of 1000", {"k": 10}
    if method.name == "invertible-gaussian":
        return (256, 20, method.params.size(10)), "256x20x9 (K=10)", {}
    return (256, 20, method.params.size(10)), "256x20x10", {}


def torch_builtin(method: Method) -> Callable[[torch.Tensor, float], torch.distributions.Distribution] | None:
    """torch's own class for the same law, where one exists."""
    if method.name == "relaxed-bernoulli":
        return lambda raw, tau: RelaxedBernoulli(torch.tensor(tau), logits=raw)
    if method.name == "gumbel-softmax":
        return lambda raw, tau: RelaxedOneHotCategorical(torch.tensor(tau), logits=raw)
    return None


def median_ms(*steps: Callable[[], None], repeats: int, warmup: int = 3) -> list[float]:
    """Median wall time (ms) of each step; the steps alternate within every repeat.

    Interleaving ours and torch's step means both see the same machine load (a shared 2-core
    machine drifts by 2x within seconds), so their ratio is meaningful even when absolute
    times are not.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, ts in zip(steps, times):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
    return [1000.0 * statistics.median(ts) for ts in times]


def make_step(build: Callable, raw: torch.Tensor, tau: float) -> Callable[[], None]:
    def step() -> None:
        raw.grad = None
        z = build(raw, tau).rsample()
        # a weighted sum so the backward pass is a generic one (not the gradient of a constant)
        (z * torch.linspace(-1.0, 1.0, z.shape[-1])).sum().backward()

    return step


def run(repeats: int, names: list[str] | None = None) -> list[dict]:
    rows = []
    for method in METHODS.values():
        if method.relaxed is None or (names and method.name not in names):
            continue
        shape, size, opts = raw_shape(method)
        torch.manual_seed(0)
        raw = torch.randn(shape).requires_grad_(True)
        tau = method.default_tau if method.default_tau is not None else 1.0
        options = dict(opts)

        def ours(r, t, _m=method, _o=options):
            return _m.build(r, t, **_o)

        builtin = torch_builtin(method)
        steps = [make_step(ours, raw, tau)] + ([make_step(builtin, raw, tau)] if builtin else [])
        ours_ms, torch_ms = (median_ms(*steps, repeats=repeats) + [None])[:2]
        rows.append({
            "method": method.name,
            "size": size,
            "ours_ms": round(ours_ms, 3),
            "torch_ms": None if torch_ms is None else round(torch_ms, 3),
            "ratio": None if torch_ms is None else round(ours_ms / torch_ms, 2),
        })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| method | size | ours ms | torch ms | ratio |", "|---|---|---:|---:|---:|"]
    for r in rows:
        torch_ms = "—" if r["torch_ms"] is None else f"{r['torch_ms']:.2f}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['method']} | {r['size']} | {r['ours_ms']:.2f} | {torch_ms} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per method (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (torch.set_num_threads)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a Markdown table")
    parser.add_argument("--no-validate", action="store_true",
                        help="turn off torch's argument validation (on by default, as for users)")
    parser.add_argument("--methods", default="",
                        help="comma-separated registry names to time (default: every sampler)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS or METHODS[n].relaxed is None]
    if unknown:
        parser.error(f"--methods: not registry samplers: {', '.join(unknown)}")
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    if args.no_validate:
        torch.distributions.Distribution.set_default_validate_args(False)
    rows = run(args.repeats, names)
    if args.json:
        print(json.dumps({"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
                          "validate_args": not args.no_validate, "rows": rows}, indent=2))
    else:
        print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} steps "
              f"(build + rsample + backward), argument validation {'off' if args.no_validate else 'on'}\n")
        print(markdown(rows))


if __name__ == "__main__":
    main()
