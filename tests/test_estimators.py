"""Gradient estimators: unbiasedness against exact gradients, the interface, the variance step.

Estimates are drawn as one batch (one ``raw`` row per independent estimate, as grad-bench does);
"within 4 standard errors" uses the per-coordinate standard error of the mean estimate.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from relaxcli import problems as P
from relaxcli.commands import gradbench as G
from relaxcli.estimators import make_estimator
from relaxcli.methods import METHODS, get_method

CPU = torch.device("cpu")
DRAWS = 20_000


def problem(name: str, theta=None):
    p = P.make_problem(name, 0.45, 4, seed=3, device=CPU)
    if theta is not None:
        p = dataclasses.replace(p, theta=torch.tensor(theta))
    return p


PROBLEMS = {
    "bernoulli-quadratic": problem("bernoulli-quadratic", [0.3]),
    "bernoulli-multi": problem("bernoulli-multi", [0.4, -0.7, 1.1]),
    "categorical-quadratic": problem("categorical-quadratic"),
}
UNBIASED = [m.name for m in METHODS.values() if m.unbiased]
CASES = [(m, p) for p in PROBLEMS for m in UNBIASED if get_method(m).supports(PROBLEMS[p].family)]


def estimator_for(m, prob):
    """The estimator grad-bench builds for method record ``m`` on ``prob`` (its public fields)."""
    kw = {"latent_size": prob.theta.numel()} if m.needs_latent_size else {}
    return make_estimator(m, n_samples=m.min_samples, family=prob.family, **kw)


def estimates(method: str, prob, draws=DRAWS, tau=None, tune_steps=0, tune_lr=0.01, **options):
    m = get_method(method)
    est = estimator_for(m, prob) if not options else make_estimator(m, m.min_samples, family=prob.family, **options)
    if tune_steps:
        P.tune(est, prob, tune_steps, tune_lr)
    est.eval()
    g, _ = P.draw_estimates(est, prob, draws, tau)
    return g


def z_scores(g: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    se = (g.var(0) / len(g)).sqrt()
    # a zero-variance estimator (DisARM in one dimension at p = 1/2) must be exact up to rounding
    return (g.mean(0) - exact).abs() / se.clamp_min(1e-7)


def test_every_unbiased_method_is_covered():
    assert {"reinforce", "reinforce-rloo", "rebar", "relax", "arm", "disarm"} <= set(UNBIASED)
    assert {m for m, _ in CASES} == set(UNBIASED)


@pytest.mark.parametrize("method,prob_name", CASES)
def test_unbiased_within_4_standard_errors(method, prob_name):
    torch.manual_seed(11)
    prob = PROBLEMS[prob_name]
    exact = prob.exact_gradient().double()
    g = estimates(method, prob, tune_steps=20)
    assert g.shape == (DRAWS, prob.theta.numel())
    assert (z_scores(g, exact) < 4).all(), (g.mean(0), exact)


def test_exact_gradient_closed_form():
    """Enumeration matches (1 - 2t) s (1 - s) for E[(b - t)^2], b ~ Bern(s = sigmoid(theta))."""
    prob = PROBLEMS["bernoulli-quadratic"]
    s = torch.sigmoid(torch.tensor(0.3))
    assert torch.allclose(prob.exact_gradient(), (1 - 2 * 0.45) * s * (1 - s))


@pytest.mark.parametrize("method,prob_name,tau", [
    ("relaxed-bernoulli", "bernoulli-quadratic", 2.0),
    ("gumbel-softmax", "categorical-quadratic", 2.0),
])
def test_relaxed_method_at_large_tau_is_clearly_biased(method, prob_name, tau):
    torch.manual_seed(12)
    prob = PROBLEMS[prob_name]
    exact = prob.exact_gradient().double()
    g = estimates(method, prob, tau=tau)
    assert z_scores(g, exact).max() > 4


def test_rebar_relax_variance_against_reinforce_t045():
    """RELAX's toy (t = 0.45, theta = 0): after tuning their own parameters by the variance
    gradient, RELAX's variance is far below REINFORCE's and REBAR's clearly below it. REBAR's
    best (eta, tau) here are in the hundreds (eta f(sigma(z/tau)) must become a constant
    baseline near f's mean), hence the fast tuning rate."""
    prob = problem("bernoulli-quadratic")
    torch.manual_seed(13)
    v_reinforce = float(estimates("reinforce", prob).var(0).sum())
    v_rebar_untuned = float(estimates("rebar", prob).var(0).sum())
    v_rebar = float(estimates("rebar", prob, tune_steps=1500, tune_lr=0.1).var(0).sum())
    v_relax = float(estimates("relax", prob, tune_steps=300, tune_lr=0.1).var(0).sum())
    assert v_relax < 0.1 * v_reinforce
    assert v_rebar < 0.9 * v_rebar_untuned
    assert v_rebar < 0.6 * v_reinforce


def test_rebar_variance_below_reinforce_categorical():
    prob = PROBLEMS["categorical-quadratic"]
    torch.manual_seed(14)
    v_reinforce = float(estimates("reinforce", prob, draws=5000).var(0).sum())
    v_rebar = float(estimates("rebar", prob, draws=5000, tune_steps=50).var(0).sum())
    assert v_rebar < 0.5 * v_reinforce


def _runnable(prob):
    return [m for m in G.applicable_methods(prob)]


@pytest.mark.parametrize("prob_name", ["bernoulli-multi", "categorical-quadratic"])
def test_loss_value_is_mean_cost_and_cost_params_get_their_gradient(prob_name):
    """loss == mean cost exactly; a parameter w inside the cost gets d/dw mean f(b) only."""
    prob = PROBLEMS[prob_name]
    for m in _runnable(prob):
        est = estimator_for(m, prob)
        est.train()
        w = torch.tensor(1.5, requires_grad=True)
        raw = prob.batch(8)
        out = est(raw, lambda z, w=w: w * prob.cost(z))
        assert out.loss.dim() == 0
        assert out.loss.item() == out.cost.mean().item(), m.name
        assert out.cost.shape[1] == 8 and not out.cost.requires_grad
        out.loss.backward()
        assert raw.grad is not None and torch.isfinite(raw.grad).all(), m.name
        if m.relaxed is None:  # score-function: the cost is evaluated at b only
            assert torch.allclose(w.grad, out.cost.mean() / 1.5), m.name


@pytest.mark.parametrize("method", ["rebar", "relax"])
def test_variance_step_fills_parameter_grads_and_leaves_raw_gradient_unchanged(method):
    prob = PROBLEMS["bernoulli-multi"]
    est = estimator_for(get_method(method), prob)
    grads = {}
    for mode in ("train", "eval"):
        getattr(est, mode)()
        est.zero_grad()
        torch.manual_seed(5)
        raw = prob.batch(16)
        est(raw, prob.cost).loss.backward()
        grads[mode] = raw.grad.clone()
        if mode == "train":
            assert est.eta.grad is not None and est.eta.grad.abs() > 0
            assert est.log_temperature.grad is not None and est.log_temperature.grad.abs() > 0
            if method == "relax":
                assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in est.net.parameters())
        else:
            assert est.eta.grad is None
    assert torch.equal(grads["train"], grads["eval"])


def test_variance_step_is_the_gradient_of_the_squared_estimate():
    """eta.grad equals d/deta mean_i ||g_i||^2, checked by central finite differences."""
    prob = PROBLEMS["bernoulli-quadratic"]
    est = estimator_for(get_method("rebar"), prob).double()
    prob64 = dataclasses.replace(prob, theta=prob.theta.double())
    cost64 = lambda z: ((z - 0.45) ** 2).sum(-1)

    def run(eta, train):
        with torch.no_grad():
            est.eta.fill_(eta)
        est.zero_grad()
        est.train(train)
        torch.manual_seed(9)
        raw = prob64.batch(32)
        est(raw, cost64).loss.backward()
        return raw.grad * 32, est.eta.grad

    _, g_eta = run(0.7, True)
    h = 1e-5
    gp, _ = run(0.7 + h, False)
    gm, _ = run(0.7 - h, False)
    fd = ((gp ** 2).sum(-1).mean() - (gm ** 2).sum(-1).mean()) / (2 * h)
    assert torch.allclose(g_eta, fd, rtol=1e-4, atol=1e-8)


def test_reinforce_baselines():
    prob = PROBLEMS["bernoulli-quadratic"]
    m = get_method("reinforce")
    learned = make_estimator(m, baseline="learned")
    raw = prob.batch(32)
    out = learned(raw, prob.cost)
    out.loss.backward()
    # least-squares gradient towards the cost: d/dc 1/2 mean (c - f)^2 = c - mean f, c = 0 initially
    assert torch.allclose(learned.baseline.constant.grad, -out.cost.mean())
    ma = make_estimator(m, baseline="moving-average", decay=0.5)
    ma(prob.batch(32), prob.cost)
    first = float(ma.average)
    out = ma(prob.batch(32), prob.cost)
    assert float(ma.average) == pytest.approx(0.5 * first + 0.5 * float(out.cost.mean()))
    with pytest.raises(ValueError, match="n_samples >= 2"):
        make_estimator(get_method("reinforce-rloo"), n_samples=1)
    with pytest.raises(ValueError, match="baseline"):
        make_estimator(m, baseline="bogus")
    with pytest.raises(ValueError, match="bernoulli"):
        make_estimator(get_method("arm"), family="categorical")


def test_registry_records():
    for m in METHODS.values():
        assert m.estimator is not None, m.name
    for name in ("reinforce", "reinforce-rloo", "rebar", "relax"):
        m = get_method(name)
        assert m.kind == "score-function" and m.unbiased and m.relaxed is None
        assert m.supports("bernoulli") and m.supports("categorical")
    for name in ("arm", "disarm"):
        assert get_method(name).supports("bernoulli") and not get_method(name).supports("categorical")


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, family", [
    ("reinforce", "bernoulli"), ("reinforce-rloo", "categorical"), ("rebar", "bernoulli"),
    ("relax", "bernoulli"), ("relax", "categorical"), ("arm", "bernoulli"), ("disarm", "bernoulli"),
    ("gumbel-softmax", "categorical"), ("relaxed-bernoulli", "bernoulli")])
def test_every_estimator_follows_the_dtype_and_device_of_the_parameters(name, family, device):
    # RELAX's control-variate network stayed float32: float64 logits raised a dtype mismatch.
    method = get_method(name)
    shape = (3, 4) if family == "bernoulli" else (3, 2, 4)
    raw = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
    opts = {"family": family} if method.families else {}
    if name == "reinforce":
        opts["baseline"] = "learned"
    est = make_estimator(method, n_samples=2, **opts)
    target = torch.linspace(0.1, 0.9, shape[-1], dtype=torch.float64, device=device)
    for _ in range(2):  # the second call uses what the first one built or learned
        out = est(raw, lambda b: ((b - target) ** 2).reshape(b.shape[0], b.shape[1], -1).sum(-1))
        assert out.loss.dtype == torch.float64 and out.loss.device.type == device
        raw.grad = None
        out.loss.backward()
        assert raw.grad.dtype == torch.float64 and bool(torch.isfinite(raw.grad).all())
    for p in est.parameters():
        if p.requires_grad and p.grad is not None:
            assert bool(torch.isfinite(p.grad).all())
