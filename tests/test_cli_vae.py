"""relax train-vae: every suitable registry method trains on tiny synthetic data; exact KLs; resume."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
import torch
from conftest import data_dir
from torch.distributions import Bernoulli, OneHotCategorical

from relaxcli import methods as registry
from relaxcli.cli import main
from relaxcli.commands import vae
from relaxcli.console import Reporter
from relaxcli.runs import read_metrics

SMALL = {"dataset": "synthetic", "hidden": "32", "eval_samples": 3, "seed": 0, "device": "cpu"}
SUMMARY_KEYS = {"method", "epochs", "test_neg_elbo", "test_iw_nll", "eval_model", "best_epoch",
                "seconds_per_epoch", "train_neg_elbo"}


def train(out, method, **kw):
    opts = {**SMALL, **kw}
    return vae.run_train_vae(vae.TrainVaeOptions(method=method, out=out, **opts), Reporter(quiet=True))


@pytest.mark.parametrize("method", vae.suitable_methods())
def test_one_epoch_every_suitable_method(tmp_path, method):
    m = registry.get_method(method)
    categories = None if m.family == "bernoulli" else (5 if m.family == "subset" else 4)
    s = train(tmp_path / "run", method, epochs=1, latent_dim=8, categories=categories)
    assert set(s) >= SUMMARY_KEYS
    assert s["method"] == method and s["epochs"] == 1 and s["best_epoch"] == 1
    assert s["eval_model"] == ("relaxed" if m.discrete is None or m.takes_correlation else "discrete")
    for key in ("test_neg_elbo", "test_iw_nll", "train_neg_elbo", "seconds_per_epoch"):
        assert math.isfinite(s[key]), key
    # the IW bound is never worse than the ELBO by more than MC noise; both are positive nats
    assert 0 < s["test_iw_nll"] <= s["test_neg_elbo"] + 5
    for f in ("metrics.jsonl", "summary.json", "reconstructions.png", "samples.png", "curves.png",
              "model.pt", "config.json"):
        assert (tmp_path / "run" / f).is_file(), f
    assert (tmp_path / "run" / "status").read_text().startswith("completed")
    recs = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in recs] == [0, 1]


def test_score_function_on_categorical_latent(tmp_path):
    s = train(tmp_path / "run", "reinforce-rloo", epochs=1, latent_dim=4, categories=3,
              latent_family="categorical")
    assert s["latent_shape"] == [4, 3] and math.isfinite(s["test_neg_elbo"])


@pytest.mark.parametrize("method", ["gumbel-softmax", "relaxed-bernoulli"])
def test_elbo_decreases(tmp_path, method):
    m = registry.get_method(method)
    train(tmp_path / "run", method, epochs=6, lr=3e-3, hidden="64", batch_size=16, latent_dim=8,
          categories=None if m.family == "bernoulli" else 4)
    recs = read_metrics(tmp_path / "run")
    test = [r["test_neg_elbo"] for r in recs]
    trn = [r["train_neg_elbo"] for r in recs if r["epoch"] >= 1]
    # 784 pixels of 5%-noisy prototypes: the untrained model sits near 784*log 2 = 543 nats;
    # 96 steps must take off a large part of that (the pixel marginals alone give ~480).
    assert test[-1] < test[0] - 150
    assert trn[-1] < trn[0] - 50


@pytest.mark.parametrize("prior, optimizer", [("uniform", {}), ("learned", {}),
                                               ("learned", {"optimizer": "sgd", "lr": 1e-4})])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, prior, optimizer):
    """Also for SGD: its momentum buffers travel in the checkpoint (a resume that dropped them
    would restart the momentum and differ)."""
    kw = {"epochs": 3, "latent_dim": 6, "categories": 4, "prior": prior, **optimizer}
    full = train(tmp_path / "a", "gumbel-softmax", **kw)

    real_evaluate, calls = vae.evaluate, []

    def interrupted_evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the test pass of epoch 3: as if Ctrl-C came during it
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(vae, "evaluate", interrupted_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "b", "gumbel-softmax", **kw)
    monkeypatch.setattr(vae, "evaluate", real_evaluate)
    assert (tmp_path / "b" / "status").read_text().startswith("interrupted")
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["epoch"] == 2

    resumed = vae.run_train_vae(vae.TrainVaeOptions(resume=tmp_path / "b"), Reporter(quiet=True))
    for key in ("test_neg_elbo", "test_iw_nll", "train_neg_elbo", "best_epoch"):
        assert resumed[key] == full[key], key
    strip = ("seconds", "train_seconds", "train_cpu_seconds")
    a = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(tmp_path / "a")]
    b = [{k: v for k, v in r.items() if k not in strip} for r in read_metrics(tmp_path / "b")]
    assert a == b
    ma = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["model"]
    mb = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_unsuitable_and_unknown_methods_exit_2(tmp_path, capsys):
    for name in ("generalized-gumbel", "no-such-method"):
        with pytest.raises(SystemExit) as e:
            main(["train-vae", "--method", name, "--dataset", "synthetic", "--out", str(tmp_path / name)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "Suitable methods:" in err and "gumbel-softmax" in err and "Traceback" not in err
        assert not (tmp_path / name).exists()


def test_fixed_vocabularies_are_listed_and_refused(tmp_path, run_cli):
    """--dataset, --binarize, --input-coding, --init and --latent-family are Enums: --help lists
    their values, the CLI refuses others (exit 2, one line) before a run directory exists, and a
    string from Python or a resumed config.json is checked against the same vocabulary."""
    code, out, _ = run_cli(["train-vae", "--help"])
    assert code == 0
    for listed in ("mnist|fashion-mnist|synthetic", "dynamic|static|threshold", "x|centered",
                   "torch|xavier", "bernoulli|categorical|subset|simplex"):
        assert listed in out, listed
    for flag, bad in (("--dataset", "cifar"), ("--binarize", "otsu"), ("--input-coding", "pm1"),
                      ("--init", "he"), ("--latent-family", "gaussian")):
        code, _, err = run_cli(["train-vae", "--method", "gumbel-softmax", flag, bad,
                                "--out", tmp_path / "r"])
        assert code == 2 and flag in err and bad in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "r").exists()
    options = vae.checked(vae.TrainVaeOptions(method="gumbel-softmax", dataset="synthetic",
                                              binarize="static", latent_family="categorical"))
    assert options.dataset is vae.Dataset("synthetic") and options.binarize == "static"
    assert options.latent_family is registry.Family.CATEGORICAL and options.epochs == 10
    assert vae.recorded(options)["dataset"] == "synthetic"
    with pytest.raises(vae.BadInput, match="unknown --binarize 'otsu'; choose from: dynamic"):
        vae.checked(vae.TrainVaeOptions(method="gumbel-softmax", binarize="otsu"))


def _files(path):
    return {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}


def test_resume_existing_skips_continues_and_refuses_other_options(tmp_path, run_cli):
    """--resume-existing (each line of the reproduction sweeps): the same line run again reads
    the completed run and writes nothing; a larger --epochs trains the run on, as a true resume
    (equal to a run made that long at once); other options, or fewer epochs, are refused (exit 2,
    one line naming them) and touch nothing; it cannot go with --overwrite, --resume or no --out."""
    kw = {"epochs": 1, "latent_dim": 3, "categories": 3, "resume_existing": True}
    run = tmp_path / "run"
    first = train(run, "gumbel-softmax", **kw)
    before = _files(run)
    assert train(run, "gumbel-softmax", **kw) == first and _files(run) == before
    argv = ["train-vae", "--method", "gumbel-softmax", "--dataset", "synthetic", "--hidden", "32",
            "--latent-dim", "3", "--categories", "3", "--eval-samples", "3", "--device", "cpu",
            "--out", run, "--resume-existing", "--epochs", "1"]  # --seed 0 by default
    for extra, named in ((["--lr", "0.01"], "--lr 0.001 there, 0.01 asked"),
                         (["--seed", "1"], "--seed 0 there, 1 asked"),
                         (["--prior", "learned"], "--prior uniform there, learned asked")):
        code, _, err = run_cli([*argv, *extra])
        assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert run_cli(argv)[0] == 0  # the same line by the CLI: completed, nothing to do
    assert _files(run) == before
    longer = train(run, "gumbel-softmax", **{**kw, "epochs": 2})
    assert [r["epoch"] for r in read_metrics(run)] == [0, 1, 2]
    assert len(json.loads((run / "config.json").read_text())["resumes"]) == 1
    at_once = train(tmp_path / "at-once", "gumbel-softmax", **{**kw, "epochs": 2})
    for key in ("test_neg_elbo", "test_iw_nll", "train_neg_elbo"):
        assert longer[key] == at_once[key], key
    code, _, err = run_cli(argv)
    assert code == 2 and "completed 2 epochs" in err
    for extra, named in ((["--overwrite"], "--overwrite"), ([], "needs --out")):
        with pytest.raises(vae.BadInput, match=named):
            vae.run_train_vae(vae.TrainVaeOptions(method="gumbel-softmax", **SMALL, **kw,
                                                  out=None if not extra else run,
                                                  overwrite=bool(extra)))
    with pytest.raises(vae.BadInput, match="cannot go with --resume"):
        vae.run_train_vae(vae.TrainVaeOptions(resume=run, resume_existing=True, out=run))


def test_resume_existing_resumes_an_interrupted_run_and_restarts_one_cut_in_its_first_epoch(
        tmp_path, monkeypatch):
    """Stopped after a checkpoint: continued to the same numbers as an uninterrupted run. Stopped
    before the first checkpoint: started afresh over the folder (relax's own run directory).
    A folder relax did not make is refused, its files kept; so is another command's run."""
    kw = {"epochs": 2, "latent_dim": 3, "categories": 3, "resume_existing": True}
    full = train(tmp_path / "full", "gumbel-softmax", **kw)
    real_evaluate = vae.evaluate
    for cut_at, name in ((3, "cut-in-epoch-2"), (1, "cut-in-epoch-1")):
        def interrupted_evaluate(*args, calls=[], cut_at=cut_at, **kwargs):  # noqa: B006 - a counter per loop
            calls.append(1)
            if len(calls) == cut_at:  # 1: epoch 0's pass (before any checkpoint); 3: epoch 2's test pass
                raise KeyboardInterrupt
            return real_evaluate(*args, **kwargs)

        monkeypatch.setattr(vae, "evaluate", interrupted_evaluate)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path / name, "gumbel-softmax", **kw)
        monkeypatch.setattr(vae, "evaluate", real_evaluate)
        assert (tmp_path / name / "status").read_text().startswith("interrupted")
        assert (tmp_path / name / "checkpoint.pt").exists() == (cut_at == 3)
        again = train(tmp_path / name, "gumbel-softmax", **kw)
        for key in ("test_neg_elbo", "test_iw_nll", "train_neg_elbo"):
            assert again[key] == full[key], (name, key)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert len(config.get("resumes", [])) == (cut_at == 3), name
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    with pytest.raises(vae.BadInput, match="not 'train-vae'"):
        train(mine, "gumbel-softmax", **kw)
    (mine / "config.json").unlink()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(vae.BadInput, match="not empty"):
        train(mine, "gumbel-softmax", **kw)
    assert _files(mine) == {"notes.txt": b"mine"}


def test_cli_json_summary(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train-vae", "--method", "st-gumbel-softmax", "--dataset", "synthetic", "--epochs", "1",
              "--hidden", "16", "--latent-dim", "3", "--categories", "3", "--eval-samples", "2",
              "--out", str(tmp_path / "r"), "--json", "--quiet", "--device", "cpu"])
    assert e.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((tmp_path / "r" / "summary.json").read_text())
    # config.json records every option but where the run goes, with the defaults the run
    # resolved (a resume must not re-resolve them) and vocabularies as their values
    options = json.loads((tmp_path / "r" / "config.json").read_text())["options"]
    fields = {f.name for f in dataclasses.fields(vae.TrainVaeOptions)}
    assert set(options) == fields - set(vae.NOT_RECORDED)
    assert set(vae.NOT_RECORDED) == {"out", "overwrite", "resume", "resume_existing", "tensorboard"}
    assert options["epochs"] == 1 and options["n_samples"] == 1 and options["threads"] >= 1
    assert options["dataset"] == "synthetic" and options["init"] == "xavier" and options["tau"] is None


# ----------------------------------------------------------------------------- exact KL terms
def _enumerate_kl(q_log_mass: dict, p_log_mass: dict) -> float:
    return sum(math.exp(lq) * (lq - p_log_mass[x]) for x, lq in q_log_mass.items())


def test_bernoulli_kl_matches_enumeration():
    logits = torch.tensor([[0.3, -1.2, 2.0]])
    kl = vae.latent_kl(Bernoulli(logits=logits), Bernoulli(logits=torch.zeros(1, 3))).sum(-1)
    q = Bernoulli(logits=logits)
    lq = {b: float(q.log_prob(torch.tensor([b], dtype=torch.float)).sum()) for b in itertools.product([0, 1], repeat=3)}
    lp = {b: 3 * math.log(0.5) for b in lq}
    assert float(kl) == pytest.approx(_enumerate_kl(lq, lp), rel=1e-5)


def test_categorical_kl_matches_enumeration():
    logits = torch.tensor([[[0.5, -1.0, 0.2], [2.0, 0.0, -3.0]]])  # 1 image, 2 variables, K=3
    q = OneHotCategorical(logits=logits)
    kl = vae.latent_kl(q, OneHotCategorical(logits=torch.zeros(1, 2, 3))).sum(-1)
    eye = torch.eye(3)
    lq = {(i, j): float(q.log_prob(torch.stack([eye[i], eye[j]])).sum()) for i in range(3) for j in range(3)}
    lp = {x: 2 * math.log(1 / 3) for x in lq}
    assert float(kl) == pytest.approx(_enumerate_kl(lq, lp), rel=1e-5)


def test_topk_kl_matches_enumeration_by_hand():
    """KL of the 2-subset law to the uniform law over C(4,2) = 6 subsets, from first principles:
    P({i,j}) = p_i p_j/(1-p_i) + p_j p_i/(1-p_j) (two orders of sampling without replacement)."""
    m = registry.get_method("topk")
    logits = torch.tensor([[[1.0, 0.0, -0.5, 2.0]]])
    q = m.discrete_law(logits, k=2)
    p_law = m.discrete_law(torch.zeros(1, 1, 4), k=2)
    kl = vae.latent_kl(q, p_law).sum(-1)
    p = torch.softmax(logits[0, 0].double(), -1).tolist()
    want = 0.0
    for i, j in itertools.combinations(range(4), 2):
        mass = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
        want += mass * (math.log(mass) - math.log(1 / 6))
    assert float(kl) == pytest.approx(want, rel=1e-4)


def test_igr_kl_is_exact_against_monte_carlo():
    """The closed-form KL to the IGR prior equals E_q[log q - log p] (4 standard errors)."""
    m = registry.get_method("invertible-gaussian")
    latent = vae.latent_for(m, "categorical", 2, 4)
    torch.manual_seed(1)
    raw = torch.randn(1, *latent.raw_shape)
    q = m.build(raw, 1.0)
    p = m.build(vae.prior_raw(m, latent, 1, "cpu"), 1.0)
    kl = float(vae.latent_kl(q, p).sum(-1))
    z = q.sample((20000,))
    d = vae.per_image(q.log_prob(z) - p.log_prob(z), 2)[:, 0].double()
    se = float(d.std()) / math.sqrt(d.numel())
    assert abs(kl - float(d.mean())) < 4 * se + 1e-4


@pytest.mark.skipif(data_dir() is None, reason="RELAX_DATA_DIR with MNIST/raw is not set")
def test_real_mnist_short_run_beats_untrained(tmp_path):
    s = vae.run_train_vae(vae.TrainVaeOptions(
        method="gumbel-softmax", out=tmp_path / "r", data_dir=data_dir(), epochs=1,
        train_limit=3000, test_limit=500, eval_samples=5, device="cpu"), Reporter(quiet=True))
    # the untrained decoder is near 784*log 2 = 543 nats; 30 Adam steps must beat it clearly
    assert s["untrained_test_neg_elbo"] > 500
    assert s["test_neg_elbo"] < s["untrained_test_neg_elbo"] - 200


def test_topk_at_tau_one_warns_once_and_records_it(tmp_path, capsys):
    s = vae.run_train_vae(vae.TrainVaeOptions(method="topk", out=tmp_path / "r", epochs=1, latent_dim=2,
                                              categories=5, tau=1.0, **SMALL), Reporter())
    err = capsys.readouterr().err
    assert err.count("over-counts") == 1 and "tau = 1" in err
    assert len(s["warnings"]) == 1 and "tau = 1" in s["warnings"][0]
    quiet = train(tmp_path / "q", "topk", epochs=1, latent_dim=2, categories=5, tau=0.5)
    assert quiet["warnings"] == []


def test_correlated_bernoulli_densities_come_from_logit_space(tmp_path, monkeypatch):
    # In float32 about half the gates round to exactly 0 or 1 at small tau, where a density of
    # the gate value is not the density of the point drawn; the runner must sample and evaluate
    # the copula in logit space (exact, and the Jacobian cancels in log q - log p).
    from relaxcli.distributions import CorrelatedRelaxedBernoulli

    def refuse(self, value):
        raise AssertionError("the VAE evaluated the copula's density of a gate value")

    monkeypatch.setattr(CorrelatedRelaxedBernoulli, "log_prob", refuse)
    s = train(tmp_path / "r", "correlated-bernoulli", epochs=1, latent_dim=6, tau=0.05)
    assert math.isfinite(s["test_neg_elbo"]) and math.isfinite(s["train_neg_elbo"])
