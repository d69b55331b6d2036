"""train-vae's literature protocol (issue #12): collapse diagnostics, validation selection,
learning-rate and temperature schedules, encoder input coding."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from relaxcli import methods as registry
from relaxcli.commands import vae
from relaxcli.console import Reporter
from relaxcli.runs import read_metrics

SMALL = {"dataset": "synthetic", "hidden": "32", "eval_samples": 3, "seed": 0, "device": "cpu",
         "latent_dim": 6, "categories": 4}


def train(out, method="gumbel-softmax", **kw):
    options = vae.TrainVaeOptions(method=method, out=out, **{**SMALL, **kw})
    return vae.run_train_vae(options, Reporter(quiet=True))


class _FixedEncoder(vae.VAE):
    """A VAE whose encoder returns given logits for every image (to test the diagnostics)."""

    def __init__(self, latent, logits):
        super().__init__(latent, (8,))
        self.logits = logits

    def encode(self, x):
        return self.logits.expand(x.shape[0], *self.logits.shape)


def _laws(method_name, n_vars, k):
    m = registry.get_method(method_name)
    latent = vae.latent_for(m, m.family, n_vars, None if m.family == "bernoulli" else k)
    return vae.Laws(m, latent, dict(m.settings), "discrete"), latent


def test_diagnostics_of_a_posterior_equal_to_the_prior():
    laws, latent = _laws("gumbel-softmax", 5, 4)
    model = _FixedEncoder(latent, torch.zeros(5, 4))
    r = vae.evaluate(model, laws, torch.zeros(7, 784), 1.0, 2, True, "cpu")
    assert r["test_kl"] == pytest.approx(0.0, abs=1e-6)
    assert r["test_active_vars"] == 0
    assert r["test_mean_max_prob"] == pytest.approx(0.25, abs=1e-6)
    assert r["test_kl_per_variable"] == pytest.approx([0.0] * 5, abs=1e-6)
    assert r["test_recon"] == pytest.approx(r["test_neg_elbo"], abs=1e-4)


def test_diagnostics_of_a_near_deterministic_posterior_on_some_variables():
    """Variables 0 and 2 are nearly one-hot (KL ~ log 4 each, max q ~ 1); the others uniform."""
    laws, latent = _laws("gumbel-softmax", 4, 4)
    logits = torch.zeros(4, 4)
    logits[0, 1] = logits[2, 3] = 30.0
    r = vae.evaluate(_FixedEncoder(latent, logits), laws, torch.zeros(3, 784), 1.0, 1, False, "cpu")
    assert r["test_active_vars"] == 2
    assert r["test_kl"] == pytest.approx(2 * math.log(4), rel=1e-4)
    assert r["test_kl_per_variable"][1] == pytest.approx(0.0, abs=1e-6)
    assert r["test_mean_max_prob"] == pytest.approx((1 + 1 + 0.25 + 0.25) / 4, rel=1e-4)


def test_bernoulli_mode_probability():
    laws, latent = _laws("relaxed-bernoulli", 3, None)
    logits = torch.tensor([0.0, math.log(3.0), -math.log(3.0)])  # p = 1/2, 3/4, 1/4
    r = vae.evaluate(_FixedEncoder(latent, logits), laws, torch.zeros(2, 784), 0.5, 1, False, "cpu")
    assert r["test_mean_max_prob"] == pytest.approx((0.5 + 0.75 + 0.75) / 3, rel=1e-5)


def test_epoch_records_and_summary_carry_the_collapse_diagnostics(tmp_path):
    s = train(tmp_path / "r", epochs=2)
    for key in ("test_kl", "test_recon", "test_active_vars", "test_mean_max_prob"):
        assert s[key] is not None, key
    assert len(s["kl_per_variable"]) == 6 and s["latent_vars"] == 6
    assert s["test_active_vars"] == sum(v > vae.ACTIVE_KL for v in s["kl_per_variable"])
    assert sum(s["kl_per_variable"]) == pytest.approx(s["test_kl"], rel=1e-4)
    for rec in read_metrics(tmp_path / "r"):
        assert {"test_kl", "test_recon", "test_active_vars", "test_mean_max_prob"} <= set(rec)
        assert rec["test_recon"] + rec["test_kl"] == pytest.approx(rec["test_neg_elbo"], rel=1e-5)


def test_validation_split_selects_the_best_validation_epoch(tmp_path):
    s = train(tmp_path / "r", epochs=4, val_size=40, lr=3e-3)
    recs = [r for r in read_metrics(tmp_path / "r") if r["epoch"] >= 1]
    best = min(recs, key=lambda r: r["val_neg_elbo"])
    assert s["selection"] == "validation" and s["selected_epoch"] == best["epoch"]
    assert s["val_neg_elbo"] == best["val_neg_elbo"]
    assert (tmp_path / "r" / vae.BEST).is_file()
    saved = torch.load(tmp_path / "r" / vae.BEST, weights_only=True)
    assert saved["epoch"] == best["epoch"]
    # the reported test numbers are the selected model's full evaluation (IW bound present)
    assert s["test_iw_nll"] is not None and s["test_iw_nll"] <= s["test_neg_elbo"] + 5
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["options"]["val_size"] == 40


def test_validation_rows_are_held_out_of_training(tmp_path, monkeypatch):
    seen = []
    real = vae.Binarizer.train_batch

    def spy(self, x, index=None):
        seen.append(index.clone())
        return real(self, x, index)

    monkeypatch.setattr(vae.Binarizer, "train_batch", spy)
    train(tmp_path / "r", epochs=1, val_size=56, train_limit=200, binarize="static")
    rows = torch.cat(seen)
    assert int(rows.max()) < 200 - 56 and rows.numel() == 200 - 56


def test_lr_decay_and_anneal_every(tmp_path):
    # synthetic: 256 training images, batch 64 -> 4 steps per epoch
    train(tmp_path / "r", epochs=3, batch_size=64, lr=1e-3, lr_decay=0.5, lr_decay_every=4,
          tau=1.0, anneal_rate=0.1, tau_min=0.01, anneal_every=8)
    recs = {r["epoch"]: r for r in read_metrics(tmp_path / "r")}
    assert [recs[e]["lr"] for e in (1, 2, 3)] == pytest.approx([5e-4, 2.5e-4, 1.25e-4])
    # tau is updated every 8 steps: after 4 steps still tau0, after 8 and 12 steps exp(-0.1 * 8)
    assert [recs[e]["tau"] for e in (1, 2, 3)] == pytest.approx([1.0, math.exp(-0.8), math.exp(-0.8)])


def test_default_encoder_input_is_x_and_centered_is_2x_minus_1():
    m = registry.get_method("gumbel-softmax")
    latent = vae.latent_for(m, "categorical", 2, 3)
    torch.manual_seed(0)
    plain = vae.VAE(latent, (8,))
    torch.manual_seed(0)
    centered = vae.VAE(latent, (8,), input_coding="centered")
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    assert torch.equal(plain.encode(x), plain.encoder(x).view(5, 2, 3))
    assert torch.allclose(centered.encode(x), plain.encoder(2 * x - 1).view(5, 2, 3))


def test_xavier_init_zero_biases():
    m = registry.get_method("gumbel-softmax")
    model = vae.VAE(vae.latent_for(m, "categorical", 2, 3), (8,), init="xavier")
    layers = [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)]
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in layers)
    first = layers[0].weight.detach()
    bound = math.sqrt(6 / (784 + 8))
    assert float(first.abs().max()) <= bound and float(first.abs().max()) > 0.9 * bound


def test_resuming_a_run_made_before_input_coding_keeps_2x_minus_1(tmp_path, monkeypatch):
    """A run directory written by relaxcli 0.1 has no input_coding / init: it was trained on 2x - 1
    with nn.Linear's init, and its resume must rebuild that model, not today's default."""
    train(tmp_path / "r", epochs=1, input_coding="centered", init="torch")
    cfg_path = tmp_path / "r" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in vae.RESUME_DEFAULTS:
        cfg["options"].pop(key)
    cfg_path.write_text(json.dumps(cfg))
    (tmp_path / "r" / "status").write_text("interrupted\n")
    built = []
    real_init = vae.VAE.__init__

    def spy(self, *args, **kwargs):
        built.append((kwargs.get("input_coding"), kwargs.get("init"), kwargs.get("learned_prior")))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(vae.VAE, "__init__", spy)
    s = vae.run_train_vae(vae.TrainVaeOptions(resume=tmp_path / "r", epochs=2), Reporter(quiet=True))
    assert s["epochs"] == 2
    assert built == [("centered", "torch", None)]  # and the fixed prior it had


@pytest.mark.parametrize("bad, fragment", [
    ({"input_coding": "pm1"}, "--input-coding"), ({"init": "he"}, "--init"),
    ({"lr_decay": 0.0}, "--lr-decay"), ({"lr_decay": 1.5}, "--lr-decay"),
    ({"lr_decay_every": 0}, "--lr-decay-every"), ({"anneal_every": 0}, "--anneal-every"),
    ({"val_size": -1}, "--val-size"), ({"val_size": 256}, "--val-size"),
])
def test_bad_protocol_options_exit_2_before_training(tmp_path, bad, fragment):
    from relaxcli.errors import BadInput

    with pytest.raises(BadInput, match=fragment):
        train(tmp_path / "r", epochs=1, **bad)


def test_joint_latent_reports_no_per_variable_kl(tmp_path):
    """The copula's KL is one number for its whole vector: no per-variable KL or active count
    (a length-1 list would read as 1 of 6 variables active)."""
    s = train(tmp_path / "r", "correlated-bernoulli", epochs=1, categories=None)
    assert s["kl_per_variable"] is None and s["test_active_vars"] is None
    assert s["test_kl"] is not None and s["latent_vars"] == 6


# ----------------------------------------------------------------------------- --prior, --hidden none
def test_learned_prior_is_the_prior_of_the_kl():
    """evaluate()'s KL is KL(q || p_learned), summed by hand over the classes: a run that kept the
    uniform prior beside a learned one would give sum q log(q K) instead."""
    laws, latent = _laws("gumbel-softmax", 3, 4)
    q_logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [-3.0, 1.0, 1.0, 0.0]])
    model = _FixedEncoder(latent, q_logits)
    model.prior_raw = torch.nn.Parameter(torch.tensor([[0.0, 1.0, 2.0, -1.0]] * 3))
    r = vae.evaluate(model, laws, torch.zeros(5, 784), 1.0, 1, False, "cpu")
    q, p = q_logits.softmax(-1), model.prior_raw.detach().softmax(-1)
    by_hand = (q * (q.log() - p.log())).sum(-1)
    assert r["test_kl_per_variable"] == pytest.approx(by_hand.tolist(), rel=1e-5)
    uniform = (q * (q * 4).log()).sum(-1)
    assert not torch.allclose(by_hand, uniform, rtol=0.05)  # the check can tell the two apart


def test_learned_prior_converges_to_the_aggregate_posterior():
    """With the encoder fixed, the training step's KL term pulls the learned prior to the
    minimiser of E_x KL(q(z|x) || p), the mean posterior: here softmax(q_logits) itself."""
    laws, latent = _laws("gumbel-softmax", 2, 3)
    q_logits = torch.tensor([[1.5, -0.5, 0.0], [-1.0, 2.0, 0.5]])
    model = _FixedEncoder(latent, q_logits)
    model.prior_raw = torch.nn.Parameter(torch.zeros(2, 3))
    estimator = vae.make_estimator(laws.method)
    optimizer = torch.optim.Adam([model.prior_raw], lr=0.05)
    learner = vae.Learner(model, laws, estimator, 1, True, optimizer,
                          torch.optim.lr_scheduler.StepLR(optimizer, 1000, 1.0), torch.device("cpu"))
    x = torch.bernoulli(torch.full((4, 784), 0.3))
    for _ in range(400):
        vae.train_step(learner, x, 1.0)
    assert model.prior_raw.detach().softmax(-1) == pytest.approx(q_logits.softmax(-1), abs=2e-3)


def _learner(name: str, **kw):
    """The learner run_train_vae builds for ``name`` (its plan), tiny and on the CPU."""
    m = registry.get_method(name)
    categories = None if m.family == "bernoulli" else (5 if m.family == "subset" else 4)
    plan = vae.plan_run(vae.TrainVaeOptions(method=name, **{**SMALL, "categories": categories, **kw}))
    return vae.make_learner(plan.laws(), plan.hidden, plan.estimator_options, plan.options,
                            torch.device("cpu"))


@pytest.mark.parametrize("method", vae.suitable_methods())
def test_every_method_learns_its_prior(method):
    """--prior learned for every suitable method: the prior starts at the neutral law (step 0 is
    the uniform-prior model), its parameters get a gradient from the objective, and evaluation
    (KL, IW bound) runs with it."""
    torch.manual_seed(0)
    learner = _learner(method, prior="learned")
    start = learner.model.prior_raw.detach().clone()
    neutral = vae.prior_raw(learner.laws.method, learner.laws.latent, 1, "cpu")[0]
    assert torch.equal(start, neutral)
    x = torch.bernoulli(torch.full((16, 784), 0.3))
    for _ in range(3):
        vae.train_step(learner, x, 0.7)
    assert not torch.equal(learner.model.prior_raw.detach(), start), "the prior did not move"
    r = vae.evaluate(learner.model, learner.laws, x, 0.7, 2, True, "cpu")
    assert math.isfinite(r["test_neg_elbo"]) and math.isfinite(r["test_iw_nll"])
    assert _learner(method).model.prior_raw is None  # the default stays the fixed prior


def test_hidden_none_is_a_linear_encoder_and_decoder(tmp_path):
    """--hidden none: Jang et al.'s Table 1 VAE, 784 -> latent parameters -> 784, no hidden layer."""
    s = train(tmp_path / "r", epochs=1, hidden="none")
    saved = torch.load(tmp_path / "r" / "model.pt", weights_only=False)["model"]
    weights = {k: tuple(v.shape) for k, v in saved.items() if k.endswith("weight")}
    assert weights == {"encoder.0.weight": (6 * 4, 784), "decoder.0.weight": (784, 6 * 4)}
    assert math.isfinite(s["test_iw_nll"])
    assert json.loads((tmp_path / "r" / "config.json").read_text())["options"]["hidden"] == "none"


@pytest.mark.parametrize("hidden", ["", "0", "512,,x", "nothing"])
def test_bad_hidden_exits_2(tmp_path, hidden):
    from relaxcli.errors import BadInput

    with pytest.raises(BadInput, match="--hidden"):
        train(tmp_path / "r", epochs=1, hidden=hidden)


def test_a_run_turns_distribution_checks_off_and_restores_them(tmp_path, monkeypatch):
    """train-vae skips torch.distributions' argument checks while it trains (they cost ~13% of a
    step) and gives the caller's setting back afterwards, also when the run fails."""
    from torch.distributions import Distribution

    seen = []
    real_step = vae.train_step

    def spy(*args, **kwargs):
        seen.append(Distribution._validate_args)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(vae, "train_step", spy)
    before = Distribution._validate_args
    for caller in (True, False):
        Distribution.set_default_validate_args(caller)
        try:
            train(tmp_path / f"r{caller}", epochs=1)
            assert Distribution._validate_args is caller
        finally:
            Distribution.set_default_validate_args(before)
    assert seen and not any(seen)

    def boom(*args, **kwargs):
        raise RuntimeError("a failing step")

    monkeypatch.setattr(vae, "train_step", boom)
    Distribution.set_default_validate_args(True)
    try:
        with pytest.raises(RuntimeError):
            train(tmp_path / "failing", epochs=1)
        assert Distribution._validate_args is True
    finally:
        Distribution.set_default_validate_args(before)


def test_bernoulli_kl_stays_finite_when_a_learned_prior_logit_passes_float32s_rounding():
    """A learned Bernoulli prior logit of 17 makes torch's probs round to exactly 1 in float32,
    and torch's Bernoulli KL then returns inf (a 50k-step run stopped on it); the VAE's KL is the
    log-space one, equal to the float64 value."""
    from torch.distributions import Bernoulli

    q, p = Bernoulli(logits=torch.tensor([[10.0, -3.0]])), Bernoulli(logits=torch.tensor([[17.0, -20.0]]))
    assert not torch.isfinite(torch.distributions.kl_divergence(q, p)).all()  # torch's, for the record
    exact = vae.latent_kl(Bernoulli(logits=q.logits.double()), Bernoulli(logits=p.logits.double()))
    got = vae.latent_kl(q, p)
    assert torch.isfinite(got).all() and torch.allclose(got.double(), exact, rtol=1e-3, atol=2e-5)


def test_optimizer_adam_by_default_sgd_with_momentum_on_request():
    """--optimizer: Adam by default; sgd is SGD with Jang et al.'s momentum 0.9 unless --momentum
    says otherwise, at --lr, over the model's and the estimator's parameters."""
    assert isinstance(_learner("gumbel-softmax").optimizer, torch.optim.Adam)
    sgd = _learner("rebar", optimizer="sgd", lr=0.01).optimizer  # rebar: estimator parameters too
    assert isinstance(sgd, torch.optim.SGD)
    assert [g["momentum"] for g in sgd.param_groups] == [0.9] and sgd.param_groups[0]["lr"] == 0.01
    # the momentum in effect is recorded (config.json), so a resume keeps it
    assert vae.plan_run(vae.TrainVaeOptions(method="gumbel-softmax", optimizer="sgd", **SMALL)
                        ).options.momentum == 0.9
    assert _learner("gumbel-softmax", optimizer="sgd", momentum=0.5).optimizer.param_groups[0][
        "momentum"] == 0.5
    learner = _learner("rebar", optimizer="sgd")
    optimised = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    everything = list(learner.model.parameters()) + list(learner.estimator.parameters())
    assert len(list(learner.estimator.parameters())) > 0 and optimised == {id(p) for p in everything}


def test_an_sgd_step_moves_the_weights_by_lr_times_the_gradient():
    """The first SGD-momentum step is w - lr * grad (the momentum buffer starts at the gradient);
    the second adds momentum * the first step's: train_step really uses the SGD optimiser."""
    torch.manual_seed(0)
    learner = _learner("st-gumbel-softmax", optimizer="sgd", lr=1e-3, momentum=0.5)
    x = torch.bernoulli(torch.full((16, 784), 0.3))
    w = learner.model.decoder[-1].weight
    before = w.detach().clone()
    torch.manual_seed(1)
    vae.train_step(learner, x, 1.0)
    grad = w.grad.detach().clone()
    assert torch.allclose(w.detach(), before - 1e-3 * grad, atol=1e-7)
    middle = w.detach().clone()
    vae.train_step(learner, x, 1.0)
    assert torch.allclose(w.detach(), middle - 1e-3 * (0.5 * grad + w.grad), atol=1e-7)


@pytest.mark.parametrize("bad, fragment", [
    ({"momentum": 0.9}, "needs --optimizer sgd"), ({"optimizer": "sgd", "momentum": 1.0}, r"\[0, 1\)"),
    ({"optimizer": "sgd", "momentum": -0.1}, r"\[0, 1\)"), ({"optimizer": "rmsprop"}, "--optimizer"),
])
def test_bad_optimizer_options_exit_2(tmp_path, bad, fragment):
    from relaxcli.errors import BadInput

    with pytest.raises(BadInput, match=fragment):
        train(tmp_path / "r", epochs=1, **bad)
    assert not (tmp_path / "r").exists()


def test_reinmax_keeps_its_papers_temperature_floor_by_default():
    """ReinMax's paper keeps tau >= 1 (registry min_tau): its default schedule stops at 1 (constant
    at tau0 = 1), an explicit --tau-min still rules, and other methods keep min(0.5, tau0)."""
    plan = vae.plan_run(vae.TrainVaeOptions(method="reinmax", **SMALL))
    assert plan.temperature.tau_min == 1.0 and plan.temperature(10**6) == 1.0
    assert plan.options.tau_min == 1.0  # recorded in config.json
    assert vae.plan_run(vae.TrainVaeOptions(method="reinmax-bernoulli", **{**SMALL, "categories": None})
                        ).temperature.tau_min == 1.0
    assert vae.plan_run(vae.TrainVaeOptions(method="reinmax", tau=1.5, **SMALL)).temperature.tau_min == 1.0
    assert vae.plan_run(vae.TrainVaeOptions(method="reinmax", tau_min=0.5, **SMALL)).temperature.tau_min == 0.5
    assert vae.plan_run(vae.TrainVaeOptions(method="gumbel-softmax", **SMALL)).temperature.tau_min == 0.5
    with pytest.raises(ValueError, match="min_tau"):
        dataclasses.replace(registry.get_method("reinmax"), default_tau=0.5)


def test_a_run_made_before_the_floor_was_recorded_resumes_with_its_old_floor(tmp_path):
    """config.json without a tau_min (runs made before it was recorded) resumes with the rule of
    that time, min(0.5, tau0), also for ReinMax, whose default floor is now 1."""
    train(tmp_path / "r", "reinmax", epochs=1, anneal_rate=1.0)  # at the floor after one step
    cfg_path = tmp_path / "r" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["options"]["tau_min"] == 1.0
    assert [r["tau"] for r in read_metrics(tmp_path / "r") if r["epoch"] == 1] == [1.0]
    cfg["options"]["tau_min"] = None
    cfg_path.write_text(json.dumps(cfg))
    (tmp_path / "r" / "status").write_text("interrupted\n")
    vae.run_train_vae(vae.TrainVaeOptions(resume=tmp_path / "r", epochs=2), Reporter(quiet=True))
    assert [r["tau"] for r in read_metrics(tmp_path / "r") if r["epoch"] == 2] == [0.5]


def test_latent_label_names_the_latent_as_the_tables_do():
    from relaxcli import methods
    from relaxcli.commands.vae import latent_for

    assert latent_for(methods.get_method("disarm"), "bernoulli", None, None).label == "200 Bernoulli"
    assert latent_for(methods.get_method("gumbel-softmax"), "categorical", None, None).label == "20 x 10"
