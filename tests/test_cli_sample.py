"""`relax sample METHOD`: files, closed forms next to empirical values, errors, reproducibility."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from relaxcli import methods as registry
from relaxcli.commands import sample as S
from relaxcli.runs import read_status

BUILDABLE = [m.name for m in registry.METHODS.values() if m.relaxed is not None]



def assert_png(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] >= 150 and img.shape[1] >= 150
    assert float(np.std(img[..., :3])) > 0.01  # not a blank canvas


@pytest.mark.parametrize("name", BUILDABLE)
def test_every_method_happy_path(name, tmp_path, run_cli):
    out = tmp_path / name
    code, stdout, err = run_cli(["sample", name, "-n", "400", "--out", str(out), "--json"])
    assert code == 0, err
    summary = json.loads(stdout)  # --json: summary.json on stdout and nothing else
    assert summary == json.loads((out / "summary.json").read_text())
    assert read_status(out) == "completed"
    for f in ("config.json", "samples.pt", "stats.json", "summary.json"):
        assert (out / f).exists(), f
    assert any(p.suffix == ".png" for p in out.iterdir())
    assert set(summary["files"]) <= {p.name for p in out.iterdir()}
    assert summary["all_finite"]
    saved = torch.load(out / "samples.pt")
    assert saved["samples"].shape[0] == 400
    if summary["max_abs_z"] is not None:  # every closed form agrees with its estimate
        assert summary["max_abs_z"] < 5
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["options"]["method"] == name and cfg["seed"] == 0 and cfg["device"] == "cpu"
    # the exact command line that ran, even when called in-process
    assert cfg["argv"] == ["relax", "sample", name, "-n", "400", "--out", str(out), "--json"]


def test_hard_concrete_matches_its_closed_forms(tmp_path, run_cli):
    code, stdout, _ = run_cli(["sample", "hard-concrete", "--tau", "0.5", "-n", "20000",
                               "--out", str(tmp_path / "hc"), "--json"])
    s = json.loads(stdout)
    assert code == 0 and s["tau"] == 0.5
    rec = s["coordinates"][0]
    # METHODS.md: P(z=0) = sigmoid(tau log(-gamma/zeta) - logits), independent of the sampler
    logit = np.log(0.2 / 0.8)
    p0 = 1 / (1 + np.exp(-(0.5 * np.log(0.1 / 1.1) - logit)))
    assert rec["prob_zero_exact"] == pytest.approx(p0, rel=1e-9)
    assert {"prob_zero_exact", "prob_one_exact", "prob_nonzero_exact", "p_gt_half_exact"} <= set(rec)
    assert s["num_checks"] >= 12 and s["max_abs_z"] < 4.5
    assert_png(tmp_path / "hc" / "histogram.png")


def test_correlated_default_is_the_methods_md_example(tmp_path, run_cli):
    code, stdout, _ = run_cli(["sample", "correlated-bernoulli", "-n", "20000",
                               "--out", str(tmp_path / "c"), "--json"])
    s = json.loads(stdout)
    assert code == 0
    assert s["tau"] == 0.1 and s["batch_shape"] == [2] and s["event_shape"] == [3]
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())["options"]
    assert np.allclose(cfg["probs"], S.EXAMPLE_PI)
    assert np.allclose(cfg["builder_options"]["correlation"], S.EXAMPLE_R)
    exact = [r["p_gt_half_exact"] for r in s["coordinates"]]
    assert np.allclose(exact, np.ravel(S.EXAMPLE_PI))  # copula marginals
    assert len(s["pairwise"]) == 6
    # positive correlation makes joint inclusion likelier than under independence
    p01 = next(p for p in s["pairwise"] if p["batch"] == [0] and (p["i"], p["j"]) == (0, 1))
    assert p01["p_both_gt_half_exact"] > 0.2 * 0.4
    assert s["max_abs_z"] < 4.5


def _phi(x):
    import math

    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_topk_hard_frequencies_match_enumeration(tmp_path, run_cli):
    code, stdout, _ = run_cli(["sample", "topk", "--hard", "--k", "3", "-n", "20000",
                               "--out", str(tmp_path / "t"), "--json"])
    s = json.loads(stdout)
    assert code == 0 and all("p_included_exact" in r for r in s["coordinates"])
    assert s["max_abs_z"] < 4.5
    assert_png(tmp_path / "t" / "inclusion.png")


def test_gumbel_softmax_simplex_plot_and_argmax_law(tmp_path, run_cli):
    code, stdout, _ = run_cli(["sample", "gumbel-softmax", "--probs", "0.1,0.3,0.6", "--tau", "0.5",
                               "-n", "20000", "--out", str(tmp_path / "g"), "--json"])
    s = json.loads(stdout)
    assert code == 0
    assert [r["p_argmax_exact"] for r in s["coordinates"]] == pytest.approx([0.1, 0.3, 0.6])
    assert s["max_abs_z"] < 4.5
    assert_png(tmp_path / "g" / "simplex.png")


def test_gaussian_gate_probs_mean_threshold_and_scale(tmp_path, run_cli):
    code, stdout, _ = run_cli(["sample", "gaussian-bernoulli", "--probs", "0.3,0.7", "--scale", "0.2",
                               "-n", "20000", "--out", str(tmp_path / "gb"), "--json"])
    s = json.loads(stdout)
    assert code == 0
    assert [r["p_gt_half_exact"] for r in s["coordinates"]] == pytest.approx([0.3, 0.7])
    assert s["max_abs_z"] < 4.5
    assert json.loads((tmp_path / "gb" / "config.json").read_text())["options"][
        "builder_options"] == {"scale": 0.2}


def test_stochastic_times_smooth_mean_is_p(tmp_path, run_cli):
    _code, stdout, _ = run_cli(["sample", "stochastic-times-smooth", "--logits", "-1,0.5",
                               "-n", "20000", "--out", str(tmp_path / "sts"), "--json"])
    s = json.loads(stdout)
    p = 1 / (1 + np.exp(-np.array([-1.0, 0.5])))
    assert [r["mean_exact"] for r in s["coordinates"]] == pytest.approx(p)
    assert s["max_abs_z"] < 4.5


def test_loc_scale_methods_get_the_parameters_asked_for():
    for name, loc in (("logistic-normal", "0.5,0,-0.5"), ("invertible-gaussian", "0.5,-1")):
        m = registry.get_method(name)
        params = S.resolve_parameters(m, None, None, loc, "0.3", None, None, None, False)
        d = m.build(params["raw"], params["tau"])
        assert torch.allclose(d.loc, torch.tensor([float(x) for x in loc.split(",")],
                                                  dtype=torch.float64))
        assert torch.allclose(d.scale, torch.full_like(d.loc, 0.3))


def test_same_seed_same_summary_other_seed_differs(tmp_path, run_cli):
    def go(seed, name):
        code, stdout, _ = run_cli(["sample", "relaxed-bernoulli", "-n", "500", "--seed", str(seed),
                                   "--out", str(tmp_path / name), "--json"])
        assert code == 0
        return json.loads(stdout)

    a, b, c = go(5, "a"), go(5, "b"), go(6, "c")
    assert a == b
    assert a != c


def test_refuses_non_empty_out_unless_overwrite(tmp_path, run_cli):
    out = str(tmp_path / "r")
    assert run_cli(["sample", "hard-concrete", "-n", "50", "--out", out, "-q"])[0] == 0
    code, stdout, err = run_cli(["sample", "hard-concrete", "-n", "50", "--out", out])
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    code, stdout, err = run_cli(["sample", "hard-concrete", "-n", "50", "--out", out, "--overwrite",
                                 "--quiet"])
    assert code == 0 and stdout == "" and err == ""  # --quiet: nothing at all


def _bad_matrices(tmp_path):
    not_pd = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    np.save(tmp_path / "notpd.npy", not_pd)
    np.savetxt(tmp_path / "asym.csv", np.array([[1, 0.2, 0], [0.3, 1, 0], [0, 0, 1.0]]), delimiter=",")
    np.savetxt(tmp_path / "diag.csv", np.array([[2, 0, 0], [0, 1, 0], [0, 0, 1.0]]), delimiter=",")
    np.savetxt(tmp_path / "small.csv", np.eye(2), delimiter=",")


BAD = [
    (["sample", "hard-conkrete"], "Did you mean 'hard-concrete'"),
    (["sample", "gumbel-softmx"], "Choose from: relaxed-bernoulli"),
    (["sample", "hard-concrete", "--tau", "abc"], "--tau"),
    (["sample", "hard-concrete", "--tau", "-0.5"], "positive temperature"),
    (["sample", "hard-concrete", "--tau", "0"], "positive temperature"),
    (["sample", "hard-concrete", "--probs", "0.2,1.5"], "values must lie in [0, 1]"),
    (["sample", "hard-concrete", "--probs", "-0.1"], "values must lie in [0, 1]"),
    (["sample", "hard-concrete", "--probs", "0.2,x"], "'x' is not a number"),
    (["sample", "hard-concrete", "-n", "many"], "--num-samples"),
    (["sample", "gumbel-softmax", "--probs", "0.2,0.2"], "must sum to 1"),
    (["sample", "hard-concrete", "--probs", "0.5", "--logits", "0"], "either --probs or --logits"),
    (["sample", "correlated-bernoulli", "--correlation", "1.5"], "not a valid correlation"),
    (["sample", "correlated-bernoulli", "--correlation", "{tmp}/notpd.npy"], "not positive definite"),
    (["sample", "correlated-bernoulli", "--correlation", "{tmp}/asym.csv"], "symmetric"),
    (["sample", "correlated-bernoulli", "--correlation", "{tmp}/diag.csv"], "ones on its diagonal"),
    (["sample", "correlated-bernoulli", "--correlation", "{tmp}/small.csv"], "3x3"),
    (["sample", "correlated-bernoulli", "--correlation", "{tmp}/missing.npy"], "neither a number"),
    (["sample", "hard-concrete", "--correlation", "0.3"], "does not apply to hard-concrete"),
    (["sample", "straight-through-bernoulli", "--tau", "1"], "--tau does not apply"),
    (["sample", "topk", "--k", "9"], "--k must be between 1"),
    (["sample", "gaussian-bernoulli", "--scale", "-1"], "positive noise scale"),
    (["sample", "hard-concrete", "--out", "{tmp}/afile/sub"], "cannot write to --out"),
    (["sample", "hard-concrete", "--device", "tpu"], "auto, cpu or cuda"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[1:3]) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, run_cli):
    _bad_matrices(tmp_path)
    (tmp_path / "afile").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code, stdout, err = run_cli(argv + ["--json"])
    assert code == 2
    assert message in err
    assert "Traceback" not in err and stdout == ""
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # bad input is caught before the run starts


def test_ctrl_c_marks_interrupted_keeps_samples_exit_130(tmp_path, run_cli, monkeypatch):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "coordinate_stats", interrupt)
    code, _stdout, err = run_cli(["sample", "hard-concrete", "-n", "100", "--out",
                                 str(tmp_path / "i")])
    assert code == 130
    assert read_status(tmp_path / "i") == "interrupted"
    assert (tmp_path / "i" / "samples.pt").exists()
    assert "Traceback" not in err


def test_console_script_json_is_the_only_stdout(tmp_path):
    r = subprocess.run([sys.executable, "-c", "from relaxcli.cli import main; main()", "sample",
                        "st-gumbel-softmax", "-n", "200", "--out", str(tmp_path / "s"), "--json"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "st-gumbel-softmax"
    assert len(r.stdout.strip().splitlines()) == 1
    argv = json.loads((tmp_path / "s" / "config.json").read_text())["argv"]
    assert argv[1:3] == ["sample", "st-gumbel-softmax"]


def test_logistic_normal_log_ratio_matches_its_gaussian(tmp_path, run_cli):
    code, stdout, _ = run_cli(["sample", "logistic-normal", "--loc", "1,0,-0.5", "--scale", "0.5",
                               "-n", "20000", "--out", str(tmp_path / "ln"), "--json"])
    s = json.loads(stdout)
    assert code == 0
    # log(z_k / z_K) ~ N(loc_k - loc_K, ...): means 1.5 and 0.5 (METHODS.md section 3)
    assert [r.get("log_ratio_exact") for r in s["coordinates"]] == pytest.approx([1.5, 0.5, None])
    assert s["max_abs_z"] < 4.5


def test_score_function_methods_sample_their_discrete_law(tmp_path, run_cli):
    names = [m.name for m in registry.METHODS.values() if m.relaxed is None and m.discrete]
    if not names:
        pytest.skip("no score-function method registered")
    code, _stdout, err = run_cli(["sample", names[0], "--probs", "0.3,0.6", "-n", "5000",
                                 "--out", str(tmp_path / "sf")])
    assert code == 0 and "discrete law" in err
    s = json.loads((tmp_path / "sf" / "summary.json").read_text())
    assert [r["mean_exact"] for r in s["coordinates"]] == pytest.approx([0.3, 0.6])
    assert s["max_abs_z"] < 4.5


@pytest.mark.parametrize("tau, k, warned", [("1", "2", True), ("0.5", "3", True), ("0.5", "2", False)])
def test_topk_sequential_relaxation_warns_where_it_over_counts(tau, k, warned, tmp_path, run_cli):
    out = tmp_path / "t"
    code, _, err = run_cli(["sample", "topk", "--tau", tau, "--k", k, "-n", "200", "--out", str(out)])
    assert code == 0
    lines = [line for line in err.splitlines() if "over-counts" in line]
    assert len(lines) == (1 if warned else 0)
    for name in ("summary.json", "config.json"):
        data = json.loads((out / name).read_text())
        recorded = data.get("warnings", data.get("options", {}).get("warnings"))
        assert recorded == lines
