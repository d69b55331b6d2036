"""Every figure function of relaxcli.plots, on hand-made inputs: what can be checked of a picture.

Axis limits leave out the untrained (epoch-0) point, no two legend entries share colour and line
style, a registry method keeps its colour from figure to figure, zeros on log axes are drawn on
the axis floor (whose tick reads "0"), legends are ordered by the final value.
"""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex

from relaxcli import plots
from relaxcli.methods import METHODS

matplotlib.use("Agg")


# ------------------------------------------------------------------------------- helpers
def line_key(h) -> tuple:
    """(colour, line style with its dash pattern) of a Line2D, the pattern per unit width."""
    _offset, dashes = h._dash_pattern  # the resolved pattern: tells custom dash tuples apart
    lw = h.get_linewidth() or 1.0
    return (to_hex(h.get_color()), h.get_linestyle(),
            tuple(round(d / lw, 3) for d in (dashes or ())))


def legend_entries(fig) -> list[tuple[str, tuple]]:
    """(text, line_key) of every legend entry of every axes, top to bottom."""
    out = []
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None:
            continue
        for h, t in zip(leg.legend_handles, leg.get_texts()):
            out.append((t.get_text(), line_key(h)))
    return out


def assert_distinct_legend(fig) -> list[str]:
    """No two legend entries (within one legend) share colour and line style."""
    texts = []
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None:
            continue
        keys = [line_key(h) for h in leg.legend_handles]
        clash = {k for k in keys if keys.count(k) > 1}
        assert not clash, f"legend entries share colour and line style: {clash}"
        texts += [t.get_text() for t in leg.get_texts()]
    return texts


def zero_markers(ax) -> list:
    return [ln for ln in ax.lines if (ln.get_gid() or "").startswith("zero:")]


def tick_labels(axis) -> list[str]:
    fmt = axis.get_major_formatter()
    return [fmt(t) for t in axis.get_majorticklocs()]


def caption(fig) -> str:
    return fig._supxlabel.get_text() if fig._supxlabel is not None else ""


def curve(x, mean, std=None, n=None):
    d = {"x": list(x), "mean": list(mean), "std": list(std if std is not None else [0.0] * len(x))}
    if n is not None:
        d["n"] = list(n)
    return d


@pytest.fixture(autouse=True)
def _close_all():
    yield
    plots.plt.close("all")


# ------------------------------------------------------------------------------- styles
def test_every_registry_method_has_its_own_colour_and_marker_pair():
    styles = [plots.method_style(m) for m in METHODS]
    colours = [s.color for s in styles]
    assert len(METHODS) >= 19
    assert len(set(colours)) == len(colours)  # distinct up to the palette's 24
    assert len({(s.color, s.marker) for s in styles}) == len(styles)
    assert plots.method_style("no-such-method") is None


@pytest.mark.parametrize("n", [5, 20, 30, 150])
def test_group_styles_distinct_for_many_groups(n):
    labels = [f"group {i}" for i in range(n)]
    styles = plots.group_styles(labels)
    pairs = [(s.color, s.linestyle) for s in styles.values()]
    assert len(set(pairs)) == n
    if n <= len(plots.PALETTE):
        assert len({s.color for s in styles.values()}) == n  # colours alone tell them apart


def test_group_styles_methods_keep_their_colour_and_others_avoid_it():
    styles = plots.group_styles(["relax", "reinforce-value", "relax tau=2", "other"],
                                {"relax tau=2": "relax"})
    assert styles["relax"] == plots.method_style("relax")
    assert styles["relax tau=2"].color == styles["relax"].color  # same method, same colour ...
    assert styles["relax tau=2"].linestyle != styles["relax"].linestyle  # ... another line style
    assert styles["reinforce-value"].color != styles["relax"].color
    assert styles["other"].color not in {styles["relax"].color, styles["reinforce-value"].color}


def test_log_floor():
    assert plots.log_floor([6.9e-6, 0.1, 0.0, None]) == pytest.approx(1e-6)
    assert plots.log_floor([1e-5]) == pytest.approx(1e-6)
    assert plots.log_floor([0.0]) == 1.0


# ------------------------------------------------------------------------------- compare_curves
def vae_lines(methods, epochs=3):
    lines = {}
    for i, m in enumerate(methods):
        xs = list(range(epochs + 1))
        means = [544.0 + i] + [150.0 + i + 40.0 / e for e in xs[1:]]
        lines[f"{m} (n=3)"] = curve(xs, means, [0.0] + [1.0] * epochs, [3] * (epochs + 1))
    return lines


def test_compare_curves_leaves_out_epoch_0_and_orders_legend_best_first():
    methods = ["reinforce", "gumbel-softmax", "arm"]
    lines = vae_lines(methods)
    fig = plots.compare_curves(lines, "epoch", "test -ELBO", "t", methods={
        f"{m} (n=3)": m for m in methods}, better="lower", untrained_x=0.0)
    (ax,) = fig.axes
    lo, hi = ax.get_ylim()
    assert hi < 300 and lo > 100  # the trained range, not 544
    assert ax.get_xlim()[0] > 0.0
    assert all(0.0 not in ln.get_xdata() for ln in ax.lines)
    assert "544" in caption(fig) and "546" in caption(fig)  # the untrained values, named
    texts = assert_distinct_legend(fig)
    assert [t.split(" (n=3)")[0] for t in texts] == methods  # final 163.3 < 164.3 < 165.3
    assert "163.3" in texts[0]  # the final value in the legend
    # colours are the methods' own
    for m in methods:
        (ln,) = [ln for ln in ax.lines if ln.get_label().startswith(m + " ")]
        assert to_hex(ln.get_color()) == plots.method_style(m).color


def test_same_method_same_colour_in_every_figure():
    a = plots.compare_curves(vae_lines(["relax", "arm"]), "epoch", "y", "a",
                             methods={"relax (n=3)": "relax", "arm (n=3)": "arm"})
    b = plots.compare_curves(vae_lines(["gumbel-softmax", "relax", "reinforce"]), "epoch", "y",
                             "b", methods={"relax (n=3)": "relax"})
    refs = {"relax": {"bias": 1e-3, "variance": 1e-4, "unbiased": True, "tau": 5.0}}
    c = plots.gradbench_tau_sweep({"relaxed-bernoulli": {"tau": [0.5, 1.0], "bias": [0.01, 0.02],
                                                         "variance": [0.1, 0.05]}}, refs)
    want = plots.method_style("relax").color

    def colour_of(fig, text):
        return {t.split(":")[0].split(" (")[0]: k[0] for t, k in legend_entries(fig)}[text]

    assert colour_of(a, "relax") == colour_of(b, "relax") == colour_of(c, "relax") == want


def test_compare_curves_twenty_groups_distinct_and_facets_share_axes():
    names = list(METHODS)[:19] + ["reinforce-value"]
    lines = vae_lines(names)
    methods = {f"{m} (n=3)": m for m in names}
    facets = {f"{m} (n=3)": (METHODS[m].kind if m in METHODS else "other") for m in names}
    fig = plots.compare_curves(lines, "epoch", "y", "t", methods=methods, better="lower",
                               untrained_x=0.0)
    assert len(assert_distinct_legend(fig)) == 20
    keys = [k for _, k in legend_entries(fig)]
    assert len(set(keys)) == 20

    fig = plots.compare_curves(lines, "epoch", "y", "t", methods=methods, facets=facets,
                               better="lower", untrained_x=0.0)
    used = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert [ax.get_title() for ax in used] == list(dict.fromkeys(facets.values()))
    assert len({ax.get_ylim() for ax in used}) == 1  # one y scale for every panel
    assert all(ax.get_ylim()[1] < 300 for ax in used)
    texts = assert_distinct_legend(fig)
    assert sum("best overall" not in t for t in texts) == 20  # every group once


def test_compare_curves_explicit_order_notes_and_partial_runs():
    lines = {"a": curve(range(1, 6), [1, 2, 3, 4, 5], [0.5] * 5, [3, 3, 3, 1, 1]),
             "b": curve(range(1, 6), [2, 3, 4, 5, 6], [0.5] * 5, [3] * 5)}
    fig = plots.compare_curves(lines, "episode", "return", "t", references={"threshold": 4.5},
                               order=["a", "b"], legend_notes={"a": "solved 3/3", "b": "solved 0/3"})
    texts = assert_distinct_legend(fig)
    assert texts == ["a: solved 3/3", "b: solved 0/3"]
    assert "Thin line" in caption(fig)
    (ax,) = fig.axes
    assert any(t.get_text() == "threshold" for t in ax.texts)
    assert any(np.allclose(ln.get_ydata(), 4.5) for ln in ax.lines)  # the reference line


def test_compare_curves_zeros_on_a_log_axis_sit_on_the_labelled_floor():
    lines = {"reinforce": curve([0.1, 1.0, 2.0], [0.01, 0.001, 0.0]),
             "relax": curve([0.1, 1.0, 2.0], [1e-3, 1e-4, 1e-5])}
    fig = plots.compare_curves(lines, "tau", "variance", "t", references={"disarm": 0.0},
                               logx=True, logy=True)
    (ax,) = fig.axes
    floor = ax.get_ylim()[0]
    assert floor == pytest.approx(1e-6)
    (z,) = zero_markers(ax)
    assert z.get_ydata()[0] == pytest.approx(floor) and z.get_xdata()[0] == 2.0
    assert "0" in tick_labels(ax.yaxis)
    assert any(t.get_text() == "disarm = 0" for t in ax.texts)


# ------------------------------------------------------------------------------- grad-bench
def gradbench_inputs():
    sweeps = {"relaxed-bernoulli": {"tau": [0.1, 0.5, 2.0], "bias": [2e-3, 5e-3, 1.4e-2],
                                    "variance": [0.08, 0.014, 0.001]},
              "hard-concrete": {"tau": [0.1, 0.5, 2.0], "bias": [2.5e-3, 0.0, 1.2e-2],
                                "variance": [0.14, 0.026, 0.002],
                                "bias_std": [1e-3, 0.0, 1e-3], "variance_std": [0.01, 0.001, 0.0]}}
    refs = {"reinforce": {"bias": 5e-4, "variance": 0.016, "unbiased": True},
            "relax": {"bias": 2e-5, "variance": 7e-6, "unbiased": True, "tau": 7.76},
            "disarm": {"bias": 0.0, "variance": 0.0, "unbiased": True},
            "stochastic-times-smooth": {"bias": 0.039, "variance": 0.0017, "unbiased": False}}
    return sweeps, refs


def test_gradbench_tau_sweep_bias_variance_picture():
    sweeps, refs = gradbench_inputs()
    fig = plots.gradbench_tau_sweep(sweeps, refs, title="grad-bench bernoulli-quadratic")
    ax_bv, ax_b, ax_v = fig.axes[:3]
    assert "variance against bias" in ax_bv.get_title()
    # the unbiased estimators sit on the zero-bias line: the x floor, labelled 0
    xfloor = ax_bv.get_xlim()[0]
    assert "0" in tick_labels(ax_bv.xaxis)
    for name in ("reinforce", "relax", "disarm"):
        (pt,) = [ln for ln in ax_bv.lines if len(ln.get_xdata()) == 1
                 and to_hex(ln.get_color()) == plots.method_style(name).color]
        assert pt.get_xdata()[0] == pytest.approx(xfloor)
    # one point per temperature for a swept method
    (hc,) = [ln for ln in ax_bv.lines if to_hex(ln.get_color()) == plots.method_style(
        "hard-concrete").color and len(ln.get_xdata()) == 3]
    assert hc.get_xdata()[1] == pytest.approx(xfloor)  # its zero bias at tau 0.5, on the floor
    # DisARM's exact zero variance is drawn, on the variance floor, in both variance panels
    for ax in (ax_bv, ax_v):
        assert ax.get_ylim()[0] == pytest.approx(plots.log_floor([7e-6]))
        assert "0" in tick_labels(ax.yaxis)
    (z,) = zero_markers(ax_bv)
    assert z.get_gid() == "zero:disarm" and z.get_ydata()[0] == pytest.approx(ax_bv.get_ylim()[0])
    # hard-concrete's zero bias at tau 0.5 is on the bias panel's floor
    (zb,) = zero_markers(ax_b)
    assert zb.get_ydata()[0] == pytest.approx(ax_b.get_ylim()[0]) and zb.get_xdata()[0] == 0.5
    texts = assert_distinct_legend(fig)
    assert len(texts) == 6
    assert texts[0].startswith("disarm") and texts[1].startswith("relax (learned τ 7.76)")
    mses = [float(t.split("MSE ")[1].split()[0]) for t in texts]
    assert mses == sorted(mses)


def test_gradbench_problems_one_block_per_problem():
    sweeps, refs = gradbench_inputs()
    fig = plots.gradbench_problems({"p1": (sweeps, refs), "p2": ({}, {"reinforce": refs["reinforce"]})})
    assert len(fig.axes) == 6
    assert fig.axes[0].get_title().endswith(": p1") and fig.axes[3].get_title().endswith(": p2")


def test_gradbench_training_zero_variance_on_the_floor():
    steps = list(range(0, 101, 10))
    curves = {"reinforce": {"step": steps, "loss": [0.25 - 0.001 * s / 100 for s in steps],
                            "log10_variance": [-1.8] * len(steps)},
              "disarm": {"step": steps, "loss": [0.25 - 0.002 * s / 100 for s in steps],
                         "log10_variance": [None] * len(steps)},
              "relaxed-bernoulli tau=0.5": {"step": steps, "loss": [0.25] * len(steps),
                                            "log10_variance": [-2.5] * len(steps)},
              "relaxed-bernoulli tau=1": {"step": steps, "loss": [0.2495] * len(steps),
                                          "log10_variance": [-3.0] * len(steps)}}
    fig = plots.gradbench_training(curves, optimum=0.245)
    _ax_loss, ax_var = fig.axes
    (z,) = zero_markers(ax_var)
    assert z.get_gid() == "zero:disarm"
    assert np.allclose(z.get_ydata(), ax_var.get_ylim()[0])
    assert "0" in tick_labels(ax_var.yaxis)
    texts = assert_distinct_legend(fig)
    assert texts[0].startswith("disarm")  # lowest final loss first
    keys = dict(legend_entries(fig))
    rb = [k for t, k in keys.items() if t.startswith("relaxed-bernoulli")]
    assert rb[0][0] == rb[1][0] == plots.method_style("relaxed-bernoulli").color
    assert rb[0] != rb[1]  # same colour, another line style


# ------------------------------------------------------------------------------- train-vae
def test_vae_curves_one_epoch_readable_without_the_untrained_point():
    fig = plots.vae_curves([1], [190.3], [185.2], title="train-vae x", untrained=544.1)
    (ax,) = fig.axes
    lo, hi = ax.get_ylim()
    assert lo < 185.2 and 190.3 < hi < 300  # both points, and not 544
    assert "544.10" in caption(fig)
    labels = {t.get_text() for t in ax.texts}
    assert {"185.20", "190.30"} <= labels  # each curve's value written at its end
    assert list(ax.get_xticks()) == [1]
    assert_distinct_legend(fig)


def test_vae_curves_many_epochs():
    epochs = list(range(1, 31))
    fig = plots.vae_curves(epochs, [150 + 40 / e for e in epochs], [152 + 40 / e for e in epochs])
    (ax,) = fig.axes
    assert ax.get_ylim()[1] < 200
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert len(assert_distinct_legend(fig)) == 2


def test_vae_reconstructions_and_samples():
    rng = np.random.default_rng(0)
    fig = plots.vae_reconstructions(rng.random((4, 28, 28)), rng.random((4, 28, 28)))
    (img,) = fig.axes[0].images
    assert img.get_array().shape == (2 * 29 - 1, 4 * 29 - 1)
    fig = plots.vae_samples(rng.random((9, 28, 28)))
    (img,) = fig.axes[0].images
    assert img.get_array().shape == (3 * 29 - 1, 3 * 29 - 1)


# ------------------------------------------------------------------------------- reinforce
def test_reinforce_curve_marks_the_solve_episode():
    returns = [-500.0] * 100 + [-50.0] * 150
    ma = [float(np.mean(returns[max(0, i - 99):i + 1])) for i in range(len(returns))]
    fig = plots.reinforce_curve(returns, ma, threshold=-100, title="t")
    (ax,) = fig.axes
    texts = assert_distinct_legend(fig)
    first = next(i for i in range(99, len(ma)) if ma[i] >= -100)
    assert f"solved at episode {first + 1}" in texts
    assert any(np.allclose(ln.get_ydata(), -100) for ln in ax.lines)
    fig = plots.reinforce_curve([-500.0] * 20, [-500.0] * 20, threshold=-100)
    assert not any("solved" in t for t in assert_distinct_legend(fig))


def test_episode_gif():
    from PIL import Image

    frames = [np.full((8, 8, 3), i * 40, np.uint8) for i in range(4)]
    gif = Image.open(io.BytesIO(plots.episode_gif(frames, fps=10)))
    assert gif.n_frames == 4


# ------------------------------------------------------------------------------- sample/bridge
def test_value_histogram_draws_atoms_as_bars_and_exact_ticks():
    rng = np.random.default_rng(0)
    v = rng.random((200, 2))
    v[:50, 0] = 0.0
    v[50:80, 0] = 1.0
    fig = plots.value_histogram(v, ["z1", "z2"], exact_atoms={0.0: [0.25, 0.0], 1.0: [0.15, 0.0]},
                                title="t")
    ax = fig.axes[0]
    heights = sorted(p.get_height() for p in ax.patches)
    assert pytest.approx(0.25) in heights and pytest.approx(0.15) in heights
    assert any(np.allclose(ln.get_ydata(), 0.25) for ln in ax.lines)  # the closed form tick


def test_category_means_and_topk_inclusion():
    fig = plots.category_means([[0.2, 0.3, 0.5]], exact=[[0.2, 0.3, 0.5]], labels=["row 0"])
    ax = fig.axes[0]
    assert [round(p.get_height(), 3) for p in ax.patches] == [0.2, 0.3, 0.5]
    fig = plots.topk_inclusion([[0.5, 0.7, 0.8]], exact=[[0.5, 0.7, 0.8]], k=2)
    assert fig.axes[0].get_title() == "top-2 inclusion frequencies"


def test_simplex_figures():
    rng = np.random.default_rng(0)
    fig = plots.simplex_scatter(rng.dirichlet([1, 1, 1], 100), title="s")
    assert len(fig.axes[0].collections) == 1
    pts, tris = plots.simplex_lattice(20)
    assert np.allclose(pts.sum(1), 1.0) and (pts > 0).all()
    dens = np.ones(len(pts))
    fig = plots.simplex_heatmap(pts, tris, dens, vmax=2.0, title="h")
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    fig = plots.simplex_heatmaps(pts, tris, {"a": dens, "b": 2 * dens}, vmax=2.0)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]


def test_fmt_value():
    assert plots.fmt_value(162.23, 0.42) == "162.23 ± 0.42"
    assert plots.fmt_value(150.0) == "150"
    assert plots.fmt_value(None) == "-"
    assert plots.fmt_value(math.nan, 1.0) == "-"


# ------------------------------------------------------------------------------- relax compare
def make_run(path, command, summary, metrics=(), options=None, seed=0):
    from relaxcli import runs

    run = runs.create_run(command, summary.get("method"), options or {}, out=path, seed=seed)
    for m in metrics:
        run.log_metrics(m)
    run.write_summary(summary)
    run.set_status("completed")




def run_compare(*args):
    from relaxcli.cli import main

    with pytest.raises(SystemExit) as e:
        main(["compare", *map(str, args), "--quiet"])
    assert e.value.code == 0


def test_compare_vae_figure_facets_by_kind_best_first(tmp_path, spy_plots):
    names = [m for m in METHODS if METHODS[m].kind != "straight-through"][:10]
    for i, m in enumerate(names):
        for seed in (0, 1):
            final = 150.0 + i + seed
            curve = [{"epoch": 0, "test_neg_elbo": 544.0},
                     {"epoch": 1, "test_neg_elbo": final + 20},
                     {"epoch": 2, "test_neg_elbo": final}]
            make_run(tmp_path / "s" / m / f"seed-{seed}", "train-vae",
                     {"method": m, "test_neg_elbo": final}, curve, seed=seed)
    seen = spy_plots("compare_curves")
    run_compare(tmp_path / "s", "--out", tmp_path / "c")
    assert (tmp_path / "c" / "curves.png").stat().st_size > 10_000
    assert seen["untrained_x"] == 0.0 and seen["better"] == "lower"
    assert set(seen["facets"].values()) == {f"{METHODS[m].kind} methods" for m in names}
    assert [seen["methods"][lab] for lab in seen["order"]] == names  # 150.5, 151.5, ...
    first = seen["order"][0]
    assert seen["legend_notes"][first] == "150.50 ± 0.71"  # the table's number


def test_compare_gradbench_figure_per_problem(tmp_path, spy_plots):
    for problem in ("p1", "p2"):
        for seed in (0, 1):
            results = [{"method": "relaxed-bernoulli", "tau": t, "unbiased": False,
                        "bias": [0.01 * t], "variance": [0.1 / t], "mse": [0.0]}
                       for t in (1.0, 0.5)]
            results += [{"method": "disarm", "tau": None, "unbiased": True, "bias": [0.0],
                         "variance": [0.0], "mse": [0.0]},
                        {"method": "relax", "tau": 7.0 + seed, "unbiased": True,
                         "bias": [1e-4], "variance": [1e-5], "mse": [1e-5]}]
            make_run(tmp_path / "g" / problem / f"seed-{seed}", "grad-bench",
                     {"problem": problem, "results": results},
                     options={"problem": problem, "tau": [0.5, 1.0]}, seed=seed)
    seen = spy_plots("gradbench_problems")
    run_compare(tmp_path / "g", "--out", tmp_path / "c")
    assert (tmp_path / "c" / "curves.png").stat().st_size > 10_000
    assert list(seen["problems"]) == ["p1", "p2"]
    sweeps, refs = seen["problems"]["p1"]
    assert sweeps["relaxed-bernoulli"]["tau"] == [0.5, 1.0]  # sorted by temperature
    assert sweeps["relaxed-bernoulli"]["variance"] == pytest.approx([0.2, 0.1])
    assert refs["disarm"]["unbiased"] and refs["disarm"]["variance"] == 0.0
    assert refs["relax"]["tau"] == "learned" and refs["relax"]["unbiased"]


def test_gradbench_figure_without_any_temperature_method():
    """Only methods without a temperature (e.g. straight-through and DisARM): no log-scale crash."""
    refs = {"straight-through-bernoulli": {"bias": 2e-3, "variance": 0.06, "unbiased": False},
            "disarm": {"bias": 0.0, "variance": 0.0, "unbiased": True}}
    fig = plots.gradbench_tau_sweep({}, refs)
    fig.canvas.draw()
    plots.close(fig)
