"""Every relaxcli class as a latent site in Pyro: one SVI Trace_ELBO step, model prior + guide."""

import subprocess
import sys

import pytest
import torch

import relaxcli.distributions as D

# pyro and relaxcli.pyro (which needs pyro) are imported only after the skip when pyro is missing
pyro = pytest.importorskip("pyro")
import pyro.distributions as pdist  # noqa: E402 - after importorskip("pyro")
from pyro.distributions.torch_distribution import TorchDistributionMixin  # noqa: E402 - after importorskip
from pyro.infer import SVI, Trace_ELBO  # noqa: E402 - after importorskip("pyro")
from pyro.optim import Adam  # noqa: E402 - after importorskip("pyro")

import relaxcli.pyro as RP  # noqa: E402 - needs pyro: after importorskip("pyro")

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
    "ReinMaxBernoulli": (torch.zeros(3), lambda C, p: C(1.0, logits=p)),
    "ReinMaxCategorical": (torch.zeros(4), lambda C, p: C(1.0, logits=p)),
    "GumbelRao": (torch.zeros(4), lambda C, p: C(0.5, logits=p, samples=3)),
    "KSubset": (torch.zeros(5), lambda C, p: C(2, logits=p)),
    "SimpleKSubset": (torch.zeros(5), lambda C, p: C(2, logits=p)),
    "PerturbedTopK": (torch.zeros(5), lambda C, p: C(2, p, 1.0, noise="gumbel")),
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


SHAPES = {  # constructor (keyword arguments) and the argument shapes handed to infer_shapes
    "GumbelSoftmax": (lambda C: C(torch.ones(3, 1), logits=torch.zeros(2, 5)),
                      {"temperature": (3, 1), "logits": (2, 5)}),
    "LogGumbelSoftmax": (lambda C: C(0.5, probs=torch.full((4, 5), 0.2)), {"temperature": (), "probs": (4, 5)}),
    "DecoupledStraightThroughGumbelSoftmax": (lambda C: C(torch.ones(3, 1), 1.0, logits=torch.zeros(2, 5)),
                                              {"temperature_forward": (3, 1), "temperature_backward": (),
                                               "logits": (2, 5)}),
    "GumbelSoftmaxTopK": (lambda C: C(2, 0.5, logits=torch.zeros(4, 6)), {"temperature": (), "logits": (4, 6)}),
    "GeneralizedGumbelSoftmax": (lambda C: C(torch.arange(5.0), torch.ones(3, 1), logits=torch.zeros(2, 5)),
                                 {"values": (5,), "temperature": (3, 1), "logits": (2, 5)}),
    "InvertibleGaussian": (lambda C: C(torch.zeros(4, 2), torch.ones(2), torch.ones(3, 1)),
                           {"loc": (4, 2), "scale": (2,), "temperature": (3, 1)}),
    "LogisticNormalSoftmax": (lambda C: C(torch.zeros(4, 3), torch.ones(3)), {"loc": (4, 3), "scale": (3,)}),
    "CorrelatedRelaxedBernoulli": (lambda C: C(0.5, logits=torch.zeros(4, 3),
                                               correlation=torch.eye(3).expand(2, 1, 3, 3)),
                                   {"temperature": (), "logits": (4, 3), "correlation": (2, 1, 3, 3)}),
    "LogitCorrelatedRelaxedBernoulli": (lambda C: C(torch.ones(4, 1), logits=torch.zeros(3), correlation=torch.eye(3)),
                                        {"temperature": (4, 1), "logits": (3,), "correlation": (3, 3)}),
}


@pytest.mark.parametrize("name", SHAPES)
def test_infer_shapes_of_vector_event_classes(name):
    # Pyro's default raised NotImplementedError for every vector event (and gave the generalized
    # Gumbel-Softmax the values' dimension as a batch dimension).
    make, shapes = SHAPES[name]
    cls = getattr(RP, name)
    d = make(cls)
    assert cls.infer_shapes(**shapes) == (d.batch_shape, d.event_shape)
