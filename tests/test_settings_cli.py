"""--setting KEY=VALUE: a registry method's keyword settings from the command line (issue #14).

One parser (relaxcli.methods.parse_settings) for every command: the key must be one of the
method's settings, the value takes the type of its default and is tried on the distribution, so
that anything wrong exits 2 with one line before a run directory exists. The settings are
recorded in config.json and demonstrably reach what they set (the estimator's variance, the
samples, a resumed training run).
"""

import csv
import json

import pytest
import torch

from relaxcli import methods as registry
from relaxcli.commands import vae
from relaxcli.errors import BadInput
from relaxcli.methods import get_method, parse_method_settings, parse_settings

TINY_VAE = ["--dataset", "synthetic", "--epochs", "1", "--hidden", "8", "--latent-dim", "2",
            "--categories", "4", "--eval-samples", "2", "--train-limit", "100", "--test-limit", "20",
            "--batch-size", "50", "--device", "cpu"]


# ----------------------------------------------------------------------------- the parser
def test_values_take_the_type_of_the_default():
    assert parse_settings(get_method("gumbel-rao"), ["M=100"]) == {"M": 100}
    assert parse_settings(get_method("gumbel-rao"), ["M=1e2"]) == {"M": 100}  # an integral number
    imle = parse_settings(get_method("imle"), ["terms=3", "lambda=10", "noise=gumbel"])
    assert imle == {"noise": "gumbel", "lambda": 10.0, "terms": 3}
    assert list(imle) == ["noise", "lambda", "terms"]  # the record's order, whatever was typed
    assert type(imle["lambda"]) is float and type(imle["terms"]) is int
    for word, value in (("true", True), ("YES", True), ("1", True), ("false", False), ("no", False),
                        ("0", False)):
        assert parse_settings(get_method("topk"), [f"hard={word}"]) == {"hard": value}
    assert parse_settings(get_method("topk"), ["relaxation=threshold", "k=3"]) == {
        "k": 3, "relaxation": "threshold"}
    assert parse_settings(get_method("decoupled-st-gumbel-softmax"), ["tau_forward=2"]) == {
        "tau_forward": 2.0}
    assert parse_settings(get_method("gumbel-rao"), None) == {}
    # what config.json records reads back to the same values
    for name, items in (("imle", ["lambda=0.1", "terms=4"]), ("topk", ["hard=true"])):
        m = get_method(name)
        parsed = parse_settings(m, items)
        assert parse_settings(m, [f"{k}={registry.format_setting(v)}" for k, v in parsed.items()]) == parsed


@pytest.mark.parametrize("name, items, words", [
    ("gumbel-rao", ["m=3"], ["has no setting 'm'", "Did you mean 'M'", "It takes: M=10"]),
    ("arm", ["M=3"], ["arm takes no settings"]),
    ("gumbel-rao", ["M=abc"], ["M of gumbel-rao is an integer"]),
    ("gumbel-rao", ["M=2.5"], ["integer"]),
    ("gumbel-rao", ["M=0"], ["gumbel-rao refuses it", "M"]),
    ("imle", ["lambda=-1"], ["imle refuses it", "lambda"]),
    ("imle", ["lambda=nan"], ["finite"]),
    ("imle", ["noise=foo"], ["imle refuses it", "noise"]),
    ("imle", ["terms=0"], ["terms"]),
    ("invertible-gaussian", ["delta=0"], ["delta"]),
    ("topk", ["hard=maybe"], ["true or false"]),
    ("topk", ["relaxation=exact"], ["relaxation"]),
    ("correlated-bernoulli", ["correlation=0.5"], ["is a tensor", "use --correlation"]),
    ("generalized-gumbel", ["values=1"], ["cannot be set from the command line"]),
    ("gumbel-rao", ["M"], ["KEY=VALUE"]),
    ("gumbel-rao", ["M=1", "M=2"], ["given twice"]),
])
def test_bad_settings_are_one_line_of_bad_input(name, items, words):
    with pytest.raises(BadInput) as e:
        parse_settings(get_method(name), items, dedicated={"correlation": "--correlation"})
    message = str(e.value)
    assert "\n" not in message and len(message) < 400, message
    for word in words:
        assert word in message, message


def test_several_methods_plain_and_targeted_keys():
    chosen = [get_method(n) for n in ("gumbel-rao", "gumbel-softmax", "st-gumbel-softmax")]
    assert parse_method_settings(chosen, ["M=100"]) == {"gumbel-rao": {"M": 100}}
    assert parse_method_settings(chosen, ["hard=true", "gumbel-softmax:hard=false"]) == {
        "gumbel-softmax": {"hard": False}}  # METHOD:KEY wins over KEY for that method
    subset = [get_method("imle"), get_method("simple")]
    assert parse_method_settings(subset, ["k=3"]) == {"imle": {"k": 3}, "simple": {"k": 3}}
    with pytest.raises(BadInput, match="no method run here takes 'k'"):
        parse_method_settings(chosen, ["k=2"])
    with pytest.raises(BadInput, match="not among the methods run here"):
        parse_method_settings(chosen, ["imle:lambda=2"])
    with pytest.raises(BadInput, match="Did you mean 'gumbel-rao'"):
        parse_method_settings(chosen, ["gumbelrao:M=2"])


# ----------------------------------------------------------------------------- the commands refuse before a run exists
@pytest.mark.parametrize("argv", [
    ["sample", "gumbel-rao", "--setting", "bogus=1"],
    ["sample", "imle", "--setting", "noise=foo"],
    ["sample", "imle", "--k", "3", "--setting", "k=2"],
    ["sample", "topk", "--hard", "--setting", "hard=false"],
    ["sample", "decoupled-st-gumbel-softmax", "--tau-forward", "2", "--setting", "tau_forward=3"],
    ["grad-bench", "--problem", "categorical-quadratic", "--methods", "gumbel-rao", "--setting", "bogus=1"],
    ["grad-bench", "--problem", "categorical-quadratic", "--methods", "gumbel-rao", "--setting", "M=abc"],
    ["grad-bench", "--problem", "categorical-quadratic", "--methods", "gumbel-rao", "--setting", "M=0"],
    ["grad-bench", "--problem", "categorical-quadratic", "--methods", "gumbel-rao,st-gumbel-softmax",
     "--setting", "lambda=2"],
    # the problem's exact gradient is that of its own 2-subset law
    ["grad-bench", "--problem", "ksubset-quadratic", "--methods", "imle", "--setting", "k=3"],
    ["train-vae", "--method", "imle", *TINY_VAE, "--setting", "bogus=1"],
    ["train-vae", "--method", "imle", *TINY_VAE, "--setting", "lambda=-1"],
    ["train-vae", "--method", "imle", *TINY_VAE, "--k", "3", "--setting", "k=2"],
    ["train-vae", "--method", "arm", *TINY_VAE[:2], "--setting", "M=3"],
])
def test_bad_setting_exits_2_with_one_line_and_no_run_directory(run_cli, tmp_path, argv):
    out = tmp_path / "run"
    code, stdout, err = run_cli([*argv, "--out", out])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "setting" in err
    assert not out.exists()


# ----------------------------------------------------------------------------- they reach what they set
def _grad_bench(run_cli, out, *setting):
    code, _, err = run_cli(["grad-bench", "--problem", "categorical-quadratic", "--methods",
                            "gumbel-rao", "--tau", "1", "--draws", "2000", "--seed", "3", "-q",
                            *setting, "--out", out])
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    return summary["results"][0], config["options"]


def test_gumbel_rao_M_reaches_the_estimator_in_grad_bench(run_cli, tmp_path):
    one, config_one = _grad_bench(run_cli, tmp_path / "m1", "--setting", "M=1")
    many, config_many = _grad_bench(run_cli, tmp_path / "m100", "--setting", "gumbel-rao:M=100")
    assert config_one["settings"] == {"gumbel-rao": {"M": 1}}
    assert config_many["settings"] == {"gumbel-rao": {"M": 100}}
    assert one["settings"] == {"M": 1} and many["settings"] == {"M": 100}
    with open(tmp_path / "m100" / "results.csv", newline="") as f:   # and in results.csv
        assert [row["settings"] for row in csv.DictReader(f)] == ["M=100"]
    # Rao-Blackwellising over 100 conditional Gumbels instead of 1 cuts the variance (about 0.25
    # -> 0.18 here); an ignored setting would give both runs M = 10 and the same numbers
    assert many["variance"] < 0.85 * one["variance"], (one["variance"], many["variance"])


def test_sample_imle_terms_reaches_the_distribution(run_cli, tmp_path):
    def sample(out, *setting):
        code, _, err = run_cli(["sample", "imle", "-n", "300", "--seed", "1", "-q", *setting,
                                "--out", out])
        assert code == 0, err
        return (torch.load(out / "samples.pt", weights_only=False)["samples"],
                json.loads((out / "config.json").read_text())["options"],
                json.loads((out / "summary.json").read_text()))

    default, _, _ = sample(tmp_path / "default")
    few, config, summary = sample(tmp_path / "few", "--setting", "terms=1", "--setting", "k=3",
                                  "--k", "3")
    assert config["settings"] == {"k": 3, "terms": 1}
    assert config["builder_options"]["terms"] == 1 and config["builder_options"]["k"] == 3
    assert summary["settings"] == {"k": 3, "noise": "sog", "lambda": 1.0, "terms": 1}
    assert float(few.sum(-1).mean()) == 3.0  # 3-subsets: --k and --setting k agreed
    same_k, _, _ = sample(tmp_path / "k2", "--setting", "terms=1")
    assert not torch.equal(same_k, default)  # other noise: the setting reached the sampler


def test_train_vae_records_the_setting_and_a_resume_keeps_it(run_cli, tmp_path, monkeypatch):
    seen = []
    make_learner = vae.make_learner

    def spy(laws, hidden, estimator_options, options, device):
        seen.append((dict(laws.settings), dict(estimator_options)))
        discrete.clear()  # what the run's model uses from here on (not --setting's own checks)
        return make_learner(laws, hidden, estimator_options, options, device)

    monkeypatch.setattr(vae, "make_learner", spy)
    discrete = []
    law = registry.Method.discrete_law

    def spy_law(self, raw, family=None, **settings):
        discrete.append(settings.get("lambda"))
        return law(self, raw, family, **settings)

    monkeypatch.setattr(registry.Method, "discrete_law", spy_law)
    out = tmp_path / "run"
    code, _, err = run_cli(["train-vae", "--method", "imle", *TINY_VAE, "--setting", "lambda=7.5",
                            "--setting", "noise=gumbel", "--out", out])
    assert code == 0, err
    options = json.loads((out / "config.json").read_text())["options"]
    assert options["settings"] == ["noise=gumbel", "lambda=7.5"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == {"k": 2, "noise": "gumbel", "lambda": 7.5, "terms": 10}
    assert seen[-1][0]["lambda"] == 7.5 and seen[-1][1]["lambda"] == 7.5  # law and estimator
    assert seen[-1][1]["noise"] == "gumbel"
    assert discrete and set(discrete) == {7.5}  # the KL's and the evaluation's discrete law

    code, _, err = run_cli(["train-vae", "--resume", out, "--setting", "lambda=1"])
    assert code == 2 and "--setting" in err  # a resume keeps the run's settings
    seen.clear()
    code, _, err = run_cli(["train-vae", "--resume", out, "--epochs", "2", "-q"])
    assert code == 0, err
    assert seen[-1][0]["lambda"] == 7.5 and seen[-1][1]["noise"] == "gumbel"
    assert json.loads((out / "config.json").read_text())["options"]["settings"] == [
        "noise=gumbel", "lambda=7.5"]
    assert json.loads((out / "summary.json").read_text())["settings"]["lambda"] == 7.5


def test_relax_list_shows_the_settings(run_cli):
    code, out, _ = run_cli(["list", "--json"])
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["gumbel-rao"]["settings"] == {"M": 10}
    assert rows["correlated-bernoulli"]["settings"] == {"correlation": None, "scale_tril": None}
    code, out, _ = run_cli(["list"])
    text = " ".join(out.split())  # the line after the table wraps at the console's width
    assert "gumbel-rao: M=10" in text and "imle: k=2, noise=sog, lambda=1.0, terms=10" in text


def test_compare_groups_grad_bench_runs_by_their_settings_in_words(run_cli, tmp_path):
    """Two grad-bench runs that differ only in --setting are two groups of relax compare,
    labelled with the settings as KEY=VALUE text (not a nested tuple)."""
    for m in (1, 100):
        code, _, err = run_cli(["grad-bench", "--problem", "categorical-quadratic", "--methods",
                                "gumbel-rao", "--tau", "1", "--draws", "200", "-q", "--setting",
                                f"M={m}", "--out", str(tmp_path / "gb" / f"m{m}")])
        assert code == 0, err
    code, _, err = run_cli(["compare", str(tmp_path / "gb"), "--out", str(tmp_path / "cmp"), "-q"])
    assert code == 0, err
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| gumbel-rao: M=1 |" in table and "| gumbel-rao: M=100 |" in table, table
