"""`relax compare`: grouping, mean/std, null metrics, Markdown/CSV output, skipped runs, errors.

Run directories are made two ways: small real runs of the CLI (train-vae on synthetic data,
grad-bench when available) and hand-made ones written through relaxcli.runs with known numbers,
so that means and standard deviations can be checked exactly.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from relaxcli import runs
from relaxcli.cli import main


def relax(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (no torch import per call); (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def make_run(path: Path, command: str, method: str | None, summary: dict | None, *,
             options: dict | None = None, seed: int = 0, status: str = "completed",
             metrics: list[dict] | None = None) -> Path:
    run = runs.create_run(command, method, options or {}, out=path, seed=seed)
    for m in metrics or []:
        run.log_metrics(m)
    if summary is not None:
        run.write_summary(summary)
    if status == "completed":
        run.set_status("completed")
    elif status != "running":
        run.set_status(status, "made by the test")
    return path


VAE_VALUES = {"gumbel-softmax": [100.0, 101.0, 102.0], "st-gumbel-softmax": [106.0, 108.0, 110.0]}


@pytest.fixture
def vae_sweep(tmp_path) -> Path:
    """2 methods x 3 seeds with known test -ELBOs, one failed, one interrupted, one running."""
    root = tmp_path / "sweep"
    for method, values in VAE_VALUES.items():
        for seed, v in enumerate(values):
            curve = [{"epoch": e, "test_neg_elbo": v + 10.0 / e} for e in (1, 2, 3)]
            make_run(root / method / f"seed-{seed}", "train-vae", method,
                     {"method": method, "test_neg_elbo": v, "test_iw_nll": v - 2.0,
                      "seconds_per_epoch": 1.0 + seed, "eval_model": "discrete"},
                     options={"tau": 1.0}, seed=seed, metrics=curve)
    make_run(root / "bad" / "failed", "train-vae", "gumbel-softmax", None, status="failed")
    make_run(root / "bad" / "interrupted", "train-vae", "gumbel-softmax",
             {"test_neg_elbo": 0.0}, status="interrupted")
    make_run(root / "bad" / "running", "train-vae", "gumbel-softmax", None, status="running")
    return root


def test_groups_mean_std_and_outputs(vae_sweep, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = relax(capsys, "compare", vae_sweep, "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["command"] == "train-vae"
    assert summary["runs_found"] == 9 and summary["runs_used"] == 6
    reasons = sorted(s["reason"] for s in summary["skipped"])
    assert reasons == ["status failed", "status interrupted", "status running"]
    assert any("skipped 3 of 9 runs" in n for n in summary["notes"])
    groups = {g["key"]["method"]: g for g in summary["groups"]}
    assert set(groups) == set(VAE_VALUES)
    for method, values in VAE_VALUES.items():
        s = groups[method]["metrics"]["test_neg_elbo"]
        assert groups[method]["n"] == 3 and s["n"] == 3
        assert s["mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
        assert s["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)  # ddof = 1
        assert groups[method]["metrics"]["test_iw_nll"]["mean"] == pytest.approx(
            statistics.mean(values) - 2.0)
    for name in ("comparison.csv", "comparison.md", "curves.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert runs.read_status(out) == "completed"

    md = (out / "comparison.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "| method | n | test -ELBO | IW bound on -log p(x) | s/epoch |"
    assert lines[1] == "|---|---|---:|---:|---:|"
    # Lower -ELBO is better: gumbel-softmax's mean is bold; s/epoch ties, so nobody is bold.
    assert lines[2] == "| gumbel-softmax | 3 | **101.0 ± 1.0** | **99.0 ± 1.0** | 2.0 ± 1.0 |"
    assert lines[3] == "| st-gumbel-softmax | 3 | 108.0 ± 2.0 | 106.0 ± 2.0 | 2.0 ± 1.0 |"

    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["gumbel-softmax", "st-gumbel-softmax"]
    assert float(rows[1]["test_neg_elbo_mean"]) == pytest.approx(108.0)
    assert float(rows[1]["test_neg_elbo_std"]) == pytest.approx(2.0)
    assert rows[1]["test_neg_elbo_n"] == "3"


def test_group_by_option_keys_and_metric_choice(tmp_path, capsys):
    root = tmp_path / "runs"
    for tau in (0.5, 1.0):
        for seed in (0, 1):
            make_run(root / f"t{tau}-s{seed}", "train-vae", "gumbel-softmax",
                     {"test_neg_elbo": 100 + tau + seed, "train_neg_elbo": 90 + tau},
                     options={"tau": tau}, seed=seed)
    code, stdout, err = relax(capsys, "compare", root, "--group-by", "method,tau",
                              "--metric", "train_neg_elbo", "--out", tmp_path / "c", "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["group_by"] == ["method", "tau"] and s["metrics"] == ["train_neg_elbo"]
    assert [(g["key"]["tau"], g["n"]) for g in s["groups"]] == [(0.5, 2), (1.0, 2)]
    assert s["groups"][0]["metrics"]["train_neg_elbo"]["mean"] == pytest.approx(90.5)
    assert s["groups"][0]["metrics"]["train_neg_elbo"]["std"] == 0.0
    # Repeated options work like commas; grouping by seed gives one run per group (no std).
    code, stdout, _ = relax(capsys, "compare", root, "--group-by", "tau", "--group-by", "seed",
                            "--out", tmp_path / "c2", "--json")
    s = json.loads(stdout)
    assert len(s["groups"]) == 4 and all(g["metrics"]["test_neg_elbo"]["std"] is None
                                         for g in s["groups"])


def test_null_metric_is_counted_not_averaged_as_zero(tmp_path, capsys):
    root = tmp_path / "rl"
    solved = [120, 180, None, 150, None]
    for seed, ep in enumerate(solved):
        returns = [{"kind": "episode", "episode": i, "return": -500.0 + 2 * i + seed}
                   for i in range(1, 160)]
        make_run(root / f"seed-{seed}", "reinforce", "reinforce-value",
                 {"env": "Acrobot-v1", "episodes_to_solve": ep,
                  "steps_to_solve": None if ep is None else ep * 200,
                  "eval_return_greedy": -90.0 - seed}, options={"env": "Acrobot-v1"},
                 seed=seed, metrics=returns + [{"kind": "update", "update": 1}])
    out = tmp_path / "c"
    code, stdout, err = relax(capsys, "compare", root, "--out", out, "--json")
    assert code == 0, err
    (g,) = json.loads(stdout)["groups"]
    s = g["metrics"]["episodes_to_solve"]
    assert (s["n"], s["null"], s["missing"]) == (3, 2, 0)
    assert s["mean"] == pytest.approx(150.0)  # (120 + 180 + 150) / 3, not / 5 with zeros
    assert s["std"] == pytest.approx(30.0)
    # The median ranks the two unsolved runs last: 120, 150, 180, never, never -> 180.
    assert s["median"] == 180
    assert "150 ± 30 (solved 3/5, median 180)" in (out / "comparison.md").read_text()
    assert (out / "curves.png").exists()


def test_gradbench_rows_reduce_vectors(tmp_path, capsys):
    root = tmp_path / "gb"
    for seed in (0, 1):
        results = [
            {"method": "reinforce", "tau": None, "unbiased": True, "mean": [0.1, 0.2],
             "bias": [0.01 * (seed + 1), 0.0], "variance": [1.0 + seed, 2.0], "mse": [1.0, 2.0],
             "snr": [0.1, 0.3], "seconds_per_estimate": 1e-4, "draws": 100},
            {"method": "gumbel-softmax", "tau": 0.5, "unbiased": False, "mean": [0.1, 0.2],
             "bias": [0.3, 0.4], "variance": [0.01, 0.02], "mse": [0.1, 0.2], "snr": [1.0, 2.0],
             "seconds_per_estimate": 2e-4, "draws": 100},
            {"method": "gumbel-softmax", "tau": 1.0, "unbiased": False, "mean": [0.1, 0.2],
             "bias": [0.6, 0.8], "variance": [0.005, 0.005], "mse": [0.4, 0.7],
             "snr": [1.0, 2.0], "seconds_per_estimate": 2e-4, "draws": 100},
        ]
        make_run(root / f"s{seed}", "grad-bench", None,
                 {"problem": "categorical-quadratic", "parameters": [0.0, 0.0],
                  "exact_gradient": [0.1, 0.2], "results": results}, seed=seed)
    out = tmp_path / "c"
    code, stdout, err = relax(capsys, "compare", root, "--out", out, "--json")
    assert code == 0, err
    s = json.loads(stdout)
    keys = [(g["key"]["method"], g["key"]["tau"]) for g in s["groups"]]
    assert keys == [("gumbel-softmax", 0.5), ("gumbel-softmax", 1.0), ("reinforce", None)]
    gs05, gs1, rf = s["groups"]
    assert gs05["metrics"]["bias_norm"]["mean"] == pytest.approx(0.5)  # ||(0.3, 0.4)||
    assert gs1["metrics"]["bias_norm"]["mean"] == pytest.approx(1.0)
    assert rf["metrics"]["variance_trace"]["mean"] == pytest.approx(3.5)  # (3 + 4) / 2
    assert rf["metrics"]["variance_trace"]["std"] == pytest.approx(math.sqrt(0.5))
    assert rf["metrics"]["mse"]["mean"] == pytest.approx(3.0)
    assert (out / "curves.png").exists()  # variance against tau


def test_skips_corrupt_and_reports_reason(vae_sweep, tmp_path, capsys):
    bad = vae_sweep / "gumbel-softmax" / "seed-0" / "summary.json"
    bad.write_text('{"test_neg_elbo": 1')  # cut mid-write
    code, stdout, err = relax(capsys, "compare", vae_sweep, "--out", tmp_path / "c", "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["runs_used"] == 5
    assert any(x["reason"].startswith("summary.json is not valid JSON")
               and x["path"].endswith("seed-0") for x in s["skipped"])
    g = next(g for g in s["groups"] if g["key"]["method"] == "gumbel-softmax")
    assert g["metrics"]["test_neg_elbo"]["mean"] == pytest.approx(101.5)  # 101, 102
    assert "Traceback" not in err


@pytest.mark.parametrize("case", ["nothing", "missing_path", "all_failed", "mixed",
                                  "bad_group", "bad_metric", "text_metric", "no_match_glob",
                                  "out_not_empty"])
def test_bad_input_exits_2_with_one_line(case, vae_sweep, tmp_path, capsys):
    args = [vae_sweep]
    if case == "nothing":
        (tmp_path / "empty").mkdir()
        args = [tmp_path / "empty"]
    elif case == "missing_path":
        args = [tmp_path / "nope"]
    elif case == "all_failed":
        args = [vae_sweep / "bad"]
    elif case == "mixed":
        make_run(tmp_path / "rl", "reinforce", "reinforce-none", {"episodes_to_solve": None})
        args = [vae_sweep, tmp_path / "rl"]
    elif case == "bad_group":
        args += ["--group-by", "method,colour"]
    elif case == "bad_metric":
        args += ["--metric", "accuracy"]
    elif case == "text_metric":
        args += ["--metric", "eval_model"]  # "discrete": nothing to average
    elif case == "no_match_glob":
        args = [str(tmp_path / "zzz*")]
    elif case == "out_not_empty":
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("keep me")
        args += ["--out", tmp_path / "full"]
    if case != "out_not_empty":
        args += ["--out", tmp_path / "cmp"]
    code, stdout, err = relax(capsys, "compare", *args)
    assert code == 2, (case, err)
    assert stdout == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    expected = {"nothing": "no run directories", "missing_path": "does not exist",
                "all_failed": "no completed runs", "mixed": "different commands",
                "bad_group": "colour", "bad_metric": "accuracy", "text_metric": "not a number",
                "no_match_glob": "matches nothing",
                "out_not_empty": "not empty"}[case]
    assert expected in lines[0]
    if case == "bad_group":
        assert "available:" in lines[0] and "tau" in lines[0]
    if case == "out_not_empty":
        assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_globs_and_earlier_comparisons_are_not_runs(vae_sweep, tmp_path, capsys):
    # A comparison written inside the sweep folder is not itself compared the next time.
    code, _, err = relax(capsys, "compare", vae_sweep, "--out", vae_sweep / "compare")
    assert code == 0, err
    code, stdout, err = relax(capsys, "compare", str(vae_sweep / "*" / "seed-[01]"),
                              "--out", tmp_path / "c", "--json")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["runs_found"] == 4 and s["runs_used"] == 4
    code, stdout, _ = relax(capsys, "compare", vae_sweep, "--out", tmp_path / "c2", "--json")
    assert json.loads(stdout)["runs_found"] == 9


def test_real_train_vae_runs(tmp_path, capsys):
    """Two tiny real runs: compare's mean/std equal those of the two summary.json files."""
    root = tmp_path / "real"
    tiny = ["--dataset", "synthetic", "--epochs", "1", "--latent-dim", "4", "--categories", "3",
            "--hidden", "16", "--batch-size", "32", "--train-limit", "64", "--test-limit", "32",
            "--eval-samples", "2", "--quiet"]
    for seed in (0, 1):
        code, _, err = relax(capsys, "train-vae", "--method", "gumbel-softmax", "--seed", seed,
                             "--out", root / f"seed-{seed}", *tiny)
        assert code == 0, err
    values = [json.loads((root / f"seed-{s}" / "summary.json").read_text())["test_neg_elbo"]
              for s in (0, 1)]
    code, stdout, err = relax(capsys, "compare", root, "--out", tmp_path / "c", "--json")
    assert code == 0, err
    (g,) = json.loads(stdout)["groups"]
    assert g["key"] == {"method": "gumbel-softmax"} and g["n"] == 2
    s = g["metrics"]["test_neg_elbo"]
    assert s["mean"] == pytest.approx(statistics.mean(values))
    assert s["std"] == pytest.approx(statistics.stdev(values))
    assert (tmp_path / "c" / "curves.png").exists()


def test_best_solve_metric_is_the_lowest_median_not_the_mean_of_the_few_that_solved(tmp_path, capsys):
    """A group that solved once, fast, must not be bold over one that always solved."""
    root = tmp_path / "rl"
    for method, episodes in {"lucky": [100, None, None], "steady": [300, 320, 340]}.items():
        for seed, ep in enumerate(episodes):
            make_run(root / method / f"seed-{seed}", "reinforce", method,
                     {"env": "Acrobot-v1", "episodes_to_solve": ep,
                      "steps_to_solve": None if ep is None else ep * 200,
                      "eval_return_greedy": -90.0}, options={"env": "Acrobot-v1"}, seed=seed)
    out = tmp_path / "c"
    code, _, err = relax(capsys, "compare", root, "--out", out, "--quiet")
    assert code == 0, err
    rows = {line.split(" | ")[0].strip("| "): line for line in (out / "comparison.md").read_text().splitlines()
            if line.startswith(("| lucky", "| steady"))}
    assert "**320 ± 20 (solved 3/3, median 320)**" in rows["steady"]
    assert "**" not in rows["lucky"].split(" | ")[2]
