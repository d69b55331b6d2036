"""Every relaxcli class as a latent site in Pyro: one SVI Trace_ELBO step, model prior + guide."""

import subprocess
import sys

import pytest
import torch

pyro = pytest.importorskip("pyro")
import pyro.distributions as pdist
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

import relaxcli.distributions as D
import relaxcli.pyro as RP

R = torch.tensor([[1.0, 0.5, 0.3], [0.5, 1.0, 0.7], [0.3, 0.7, 1.0]])

# name -> (initial unconstrained parameter, constructor(pyro_class, parameter)). Straight-through
# and hard variants put their atoms where the parameters say, so the model's prior uses the
# guide's initial parameter values (its log_prob is then finite at the guide's sample). Top-k and
# the generalized Gumbel-Softmax use hard=True: their soft values have no closed-form density.
CASES = {
    "RelaxedBernoulli": (torch.zeros(3), lambda C, p: C(0.5, logits=p)),
    "GaussianRelaxedBernoulli": (torch.full((3,), 0.5), lambda C, p: C(p, 0.5)),
    "HardConcrete": (torch.zeros(3), lambda C, p: C(2 / 3, logits=p)),
    "StochasticTimesSmooth": (torch.zeros(3), lambda C, p: C(logits=p)),
    "StraightThroughBernoulli": (torch.zeros(3), lambda C, p: C(logits=p)),
    "CorrelatedRelaxedBernoulli": (torch.zeros(3), lambda C, p: C(0.5, logits=p, correlation=R)),
    "GumbelSoftmax": (torch.zeros(4), lambda C, p: C(0.5, logits=p)),
    "DecoupledStraightThroughGumbelSoftmax": (torch.zeros(4), lambda C, p: C(1.0, 0.5, logits=p)),
    "GumbelSoftmaxTopK": (torch.zeros(5), lambda C, p: C(2, 0.5, logits=p, hard=True)),
    "InvertibleGaussian": (torch.zeros(3), lambda C, p: C(p, torch.ones(3), 0.5)),
    "GeneralizedGumbelSoftmax": (torch.zeros(4), lambda C, p: C(torch.arange(4.0), 0.5, logits=p, hard=True)),
    "LogisticNormalSoftmax": (torch.zeros(4), lambda C, p: C(p, torch.ones(4))),
    "LogitRelaxedBernoulli": (torch.zeros(3), lambda C, p: C(0.5, logits=p)),
    "LogGumbelSoftmax": (torch.zeros(4), lambda C, p: C(0.5, logits=p)),
    "LogitCorrelatedRelaxedBernoulli": (torch.zeros(3), lambda C, p: C(0.5, logits=p, correlation=R)),
}


def test_every_class_is_wrapped():
    assert set(CASES) == set(D.__all__) == set(RP.__all__)
    for name in CASES:
        cls = getattr(RP, name)
        # torch class first, then Pyro's mixin (the order Pyro's documentation asks for)
        assert cls.__bases__ == (getattr(D, name), TorchDistributionMixin)


@pytest.mark.parametrize("name", CASES)
def test_one_svi_step(name):
    pyro.clear_param_store()
    init, make = CASES[name]
    cls = getattr(RP, name)
    data = torch.tensor(1.0)

    def model():
        prior = make(cls, init.clone())
        z = pyro.sample("z", prior.to_event(len(prior.batch_shape)))
        pyro.sample("x", pdist.Normal(z.sum(), 1.0), obs=data)

    def guide():
        p = pyro.param("p", init.clone())
        q = make(cls, p)
        pyro.sample("z", q.to_event(len(q.batch_shape)))

    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    with pyro.validation_enabled(True):
        loss = svi.step()
    assert torch.isfinite(torch.tensor(loss))
    p = pyro.param("p").detach()
    assert torch.isfinite(p).all()
    assert not torch.equal(p, init)  # a gradient reached the guide's parameter
    # the site is a genuine instance of both the relaxcli class and a Pyro distribution
    d = make(cls, init)
    assert isinstance(d, getattr(D, name)) and isinstance(d, TorchDistributionMixin)
    assert d.expand((2,) + tuple(d.batch_shape)).batch_shape[0] == 2


def test_core_imports_without_pyro():
    code = (
        "import sys; sys.modules['pyro'] = None\n"
        "import relaxcli, relaxcli.distributions, relaxcli.methods, relaxcli.bridge\n"
        "try:\n    import relaxcli.pyro\nexcept ImportError as e:\n    print('pyro-missing:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pyro-missing: relaxcli.pyro needs pyro-ppl" in out.stdout
