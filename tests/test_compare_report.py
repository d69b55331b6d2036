"""`relax compare` reads the commands' report declarations (relaxcli.report) and names none.

A toy command's report, declared inside a test, is tabled, bolded, split into rows and drawn
with no change to compare.py; compare.py's source names no command; reinforce's curve is
smoothed by reinforce's own moving average; --per-run-csv writes one row per run.
"""

from __future__ import annotations

import ast
import csv
import json
import statistics
from pathlib import Path

import pytest

from relaxcli import report, runs
from relaxcli.commands import COMMAND_MODULES, report_for

COMPARE_PY = Path(__file__).parents[1] / "src" / "relaxcli" / "commands" / "compare.py"


def make_run(path: Path, command: str, method: str | None, summary: dict, *,
             options: dict | None = None, seed: int = 0, metrics: list[dict] = ()) -> Path:
    run = runs.create_run(command, method, options or {}, out=path, seed=seed)
    for m in metrics:
        run.log_metrics(m)
    run.finish(summary)
    run.release()
    return path




TOY_LOSS = {"alpha": [3.0, 4.0, 5.0], "beta": [1.0, 2.0, 6.0]}


@pytest.fixture
def toy_sweep(tmp_path, monkeypatch) -> Path:
    """A made-up command 'toy-bench' whose report exists only in this test: per run one row per
    case, a higher-is-better vector 'score' (reduced by its mean) and a lower-is-better 'loss'."""
    toy = report.Report(
        command="toy-bench",
        metrics=(report.Metric("loss", label="toy loss", better="lower"),
                 report.Metric("score", label="mean score", better="higher", reduce="mean"),
                 report.Metric("never", label="ignored")),
        default_metrics=("loss", "score"),
        group_by=("method",),
        rows=report.Rows(field="cases", keys=("case",)),
        curve=report.Curve(x="step", y=("err",), smooth=lambda ys: [2 * y for y in ys],
                           xlabel="step", ylabel="2 err", title="toy curves", better="lower",
                           legend_metric="loss"),
        table_note="Toy note.",
    )
    monkeypatch.setitem(report.REPORTS, "toy-bench", toy)
    root = tmp_path / "toy"
    for method, losses in TOY_LOSS.items():
        for seed, loss in enumerate(losses):
            cases = [{"case": "easy", "loss": loss, "score": [1.0, 3.0 + (method == "alpha")]},
                     {"case": "hard", "loss": 10 * loss, "score": [0.0, 1.0]}]
            make_run(root / method / f"s{seed}", "toy-bench", method, {"cases": cases},
                     options={"seed": seed}, seed=seed,
                     metrics=[{"step": s, "err": loss / s} for s in (1, 2, 3)])
    return root


def test_a_toy_commands_declared_report_is_tabled_without_touching_compare(
        toy_sweep, tmp_path, run_cli, spy_plots):
    seen = spy_plots("compare_curves")
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", toy_sweep, "--out", out, "--json"])
    assert code == 0, err
    s = json.loads(stdout)
    assert s["command"] == "toy-bench" and s["metrics"] == ["loss", "score"]
    assert s["group_by"] == ["method", "case"]  # the run's key, then the rows' key
    groups = {(g["key"]["method"], g["key"]["case"]): g for g in s["groups"]}
    assert set(groups) == {(m, c) for m in TOY_LOSS for c in ("easy", "hard")}
    easy = groups["beta", "easy"]["metrics"]
    assert easy["loss"]["mean"] == pytest.approx(3.0)
    assert easy["loss"]["std"] == pytest.approx(statistics.stdev(TOY_LOSS["beta"]))
    assert easy["score"]["mean"] == pytest.approx(2.0)  # mean of (1, 3): the declared reduce
    md = (out / "comparison.md").read_text().splitlines()
    assert md[0] == "| method | case | n | toy loss | mean score |"
    # alpha, easy: loss 4 (beta's is 3, lower wins), score 2.5 (higher wins) -> bold
    assert md[2] == "| alpha | easy | 3 | 4.0 ± 1.0 | **2.5 ± 0** |"
    assert md[4] == "| beta | easy | 3 | **3.0 ± 2.6** | 2 ± 0 |"
    assert "Toy note." in (out / "comparison.md").read_text()
    # the declared curve: smoothed by the declared function, legend best first by 'loss'
    assert seen["title"] == "toy curves" and seen["better"] == "lower"
    first = seen["order"][0]
    assert first.startswith("beta, easy")
    assert seen["lines"][first]["mean"] == pytest.approx([2 * 3.0, 2 * 1.5, 2 * 1.0])
    assert (out / "curves.png").stat().st_size > 0


def test_compare_py_names_no_command():
    """compare.py knows commands only through their declarations: none is a string literal in
    it, and it imports no command module."""
    tree = ast.parse(COMPARE_PY.read_text(encoding="utf-8"))
    names = set(COMMAND_MODULES) | {"train-vae", "grad-bench", "reinforce", "sample", "bridge"}
    literals = [n.value for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert not [s for s in literals if s in names]
    assert not [s for s in literals for name in names if "-" in name and name in s]
    modules = {m.rsplit(".", 1)[1] for m in COMMAND_MODULES.values()}
    imported = [a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names] + [n.module or "" for n in ast.walk(tree)
                                     if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.rsplit(".", 1)[-1] in modules]


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_every_command_declares_its_report_beside_itself(command):
    import importlib

    module = importlib.import_module(COMMAND_MODULES[command])
    assert report_for(command) is module.REPORT and module.REPORT.command == command
    declared = {m.name for m in module.REPORT.metrics}
    assert set(module.REPORT.default_metrics or ()) <= declared


def test_reinforce_curve_is_smoothed_by_reinforces_own_moving_average(tmp_path, run_cli,
                                                                     monkeypatch, spy_plots):
    from relaxcli.commands import reinforce

    calls = []

    def counted(x, window=reinforce.SOLVE_WINDOW):
        calls.append(window)
        return real(x, window)

    real = reinforce.moving_average
    monkeypatch.setattr(reinforce, "moving_average", counted)
    seen = spy_plots("compare_curves")
    returns = [[-500.0 + 3 * i + 7 * seed for i in range(150)] for seed in (0, 1)]
    for seed, rets in enumerate(returns):
        make_run(tmp_path / "rl" / f"s{seed}", "reinforce", "reinforce-value",
                 {"env": "Acrobot-v1", "episodes_to_solve": None, "reward_threshold": -100.0},
                 options={"env": "Acrobot-v1", "seed": seed}, seed=seed,
                 metrics=[{"kind": "episode", "episode": i + 1, "return": r}
                          for i, r in enumerate(rets)] + [{"kind": "update", "update": 1}])
    code, _, err = run_cli(["compare", tmp_path / "rl", "--out", tmp_path / "c", "--quiet"])
    assert code == 0, err
    assert calls == [reinforce.SOLVE_WINDOW] * 2
    (line,) = seen["lines"].values()
    ma = [real(r) for r in returns]
    assert line["x"] == [float(i) for i in range(1, 151)]
    assert line["mean"] == pytest.approx([(a + b) / 2 for a, b in zip(*ma)])
    assert seen["references"] == {"solve threshold -100": -100.0}


def test_per_run_csv_one_row_per_run_regroups_to_the_table(toy_sweep, tmp_path, run_cli):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", toy_sweep, "--out", out, "--json", "--per-run-csv"])
    assert code == 0, err
    assert "per_run.csv" in json.loads(stdout)["files"]
    rows = list(csv.DictReader((out / "per_run.csv").open()))
    assert len(rows) == 6 * 2  # 6 runs x 2 cases (a row per unit of comparison)
    assert list(rows[0])[:5] == ["run", "method", "case", "loss", "score"]
    first = rows[0]
    assert Path(first["run"]) == (toy_sweep / "alpha" / "s0").resolve()
    assert first["config.command"] == "toy-bench" and first["options.seed"] == "0"
    assert json.loads(first["cases.score"]) == [1.0, 4.0]  # the row's own fields, as JSON
    assert float(first["score"]) == 2.5  # the compared number (mean of the vector)
    # grouping the per-run rows gives back comparison.csv's mean and std
    table = {(r["method"], r["case"]): r for r in csv.DictReader((out / "comparison.csv").open())}
    for (method, case), t in table.items():
        xs = [float(r["loss"]) for r in rows if (r["method"], r["case"]) == (method, case)]
        assert float(t["loss_mean"]) == pytest.approx(statistics.mean(xs))
        assert float(t["loss_std"]) == pytest.approx(statistics.stdev(xs))
    # without the flag: no per_run.csv
    code, _, err = run_cli(["compare", toy_sweep, "--out", tmp_path / "c2", "--quiet"])
    assert code == 0, err
    assert not (tmp_path / "c2" / "per_run.csv").exists()


def test_group_by_offers_experiment_keys_not_provenance(tmp_path, run_cli):
    """--group-by's list of available keys names what defines runs, not the machine/provenance
    keys every config.json now carries (hostname, git, versions, Slurm ids...)."""
    for seed in (0, 1):
        code, _, err = run_cli(["sample", "relaxed-bernoulli", "-n", "100", "--seed", str(seed),
                                "--out", tmp_path / f"s{seed}", "--quiet"])
        assert code == 0, err
    code, _, err = run_cli(["compare", tmp_path / "s0", tmp_path / "s1", "--group-by", "nope",
                            "--out", tmp_path / "c", "--quiet"])
    assert code == 2 and "available:" in err
    offered = {k.strip() for k in err.split("available:")[1].split(",")}
    assert "method" in offered
    for meta in ("hostname", "git", "cwd", "numpy_version", "slurm", "end_time"):
        assert meta not in offered, meta


def test_whole_numbers_print_without_decimals():
    """A count or an epoch (20 active variables, epoch 79, one run's value) reads 20, not 20.00;
    measured values keep their decimals."""
    from relaxcli.commands.compare import fmt_mean_std, fmt_number

    assert [fmt_number(x) for x in (20.0, 79.0, 200.0, 150000.0, -3.0)] == ["20", "79", "200", "150000", "-3"]
    assert [fmt_number(x) for x in (101.54, 12.345, 0.412, 1.2e-5, None)] == ["101.5", "12.35", "0.412", "1.2e-05", "-"]
    assert fmt_mean_std(20.0, 0.0) == "20 ± 0" and fmt_mean_std(199.667, 0.577) == "199.67 ± 0.58"
