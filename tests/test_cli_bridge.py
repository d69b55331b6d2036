"""`relax bridge`: Laplace bridge numbers, heatmaps, K != 3, errors, reproducibility."""

import json

import numpy as np
import pytest

from relaxcli.runs import read_status


def _grid_kl(alpha, mu, var, n=300):
    """KL(Dir || LN) by a midpoint rule on the simplex, independent of relaxcli's densities."""
    from math import lgamma

    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    z1, z2 = (i + 1 / 3) / n, (j + 1 / 3) / n
    keep = z1 + z2 < 1 - 1 / (3 * n)
    z = np.stack([z1[keep], z2[keep], 1 - z1[keep] - z2[keep]], -1)
    a = np.asarray(alpha)
    log_dir = lgamma(a.sum()) - sum(lgamma(x) for x in a) + ((a - 1) * np.log(z)).sum(-1)
    # log-ratios r_i = log z_i/z_K ~ N(mu_i - mu_K, diag(var_1:K-1) + var_K 11^T)
    r = np.log(z[:, :2] / z[:, 2:])
    m = np.asarray(mu)[:2] - mu[2]
    cov = np.diag(var[:2]) + var[2]
    d = r - m
    quad = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    log_ln = -0.5 * quad - np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(cov)) - np.log(z).sum(-1)
    w = np.exp(log_dir) / (2 * n * n)  # half-cells: the lower triangles of the grid squares
    return float(np.sum(w * (log_dir - log_ln))) * 2


def test_default_bridge_numbers_and_pictures(tmp_path, run_cli):
    out = tmp_path / "b"
    code, stdout, err = run_cli(["bridge", "-n", "20000", "--out", str(out), "--json"])
    assert code == 0, err
    s = json.loads(stdout)
    assert s == json.loads((out / "summary.json").read_text())
    assert read_status(out) == "completed"
    alpha = np.array([2.0, 5.0, 9.0])
    assert s["alpha"] == [2.0, 5.0, 9.0] and s["K"] == 3
    # METHODS.md section 3: mu, Sigma (a variance), and the exact round trip
    mu = np.log(alpha) - np.log(alpha).mean()
    var = (1 / alpha) * (1 - 2 / 3) + (1 / alpha).sum() / 9
    assert np.allclose(s["mu"], mu)
    assert np.allclose(s["Sigma"], np.diag(var))
    assert np.allclose(s["alpha_back"], alpha) and s["round_trip_max_abs_error"] < 1e-9
    # Dirichlet moments are exact; logistic-normal moments come with standard errors
    mom = s["moments"]
    assert np.allclose(mom["dirichlet"]["mean"], alpha / alpha.sum())
    a0 = alpha.sum()
    assert np.allclose(mom["dirichlet"]["variance"], alpha * (a0 - alpha) / (a0**2 * (a0 + 1)))
    ln = mom["logistic_normal"]
    assert all(se > 0 for se in ln["mean_se"] + ln["variance_se"])
    assert sum(ln["mean"]) == pytest.approx(1.0)
    # the KL estimate agrees with an independent quadrature within its standard error
    kl = s["kl"]["dirichlet_to_logistic_normal"]
    ref = _grid_kl(alpha, mu, var)
    assert kl["se"] > 0 and abs(kl["estimate"] - ref) < 4 * kl["se"] + 0.01
    assert s["kl"]["logistic_normal_to_dirichlet"]["estimate"] > 0
    assert abs(s["kl"]["dirichlet_to_dirichlet_back_exact"]) < 1e-9
    for f in ("dirichlet.png", "logistic_normal.png", "dirichlet_back.png", "bridge.png"):
        assert f in s["files"] and (out / f).exists()
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "bridge.png")
    assert img.shape[0] >= 200 and img.shape[1] >= 600
    assert float(np.std(img[..., :3])) > 0.05


def test_k_not_3_gives_numbers_and_says_no_plots(tmp_path, run_cli):
    out = tmp_path / "b4"
    code, _stdout, err = run_cli(["bridge", "--alpha", "1,2,3,4", "-n", "2000", "--out", str(out)])
    assert code == 0
    assert "only for K = 3" in err
    s = json.loads((out / "summary.json").read_text())
    assert s["K"] == 4 and len(s["mu"]) == 4 and s["files"] == []
    assert "K = 4" in s["plots_skipped"]
    assert not list(out.glob("*.png"))


def test_random_alpha_is_reproducible(tmp_path, run_cli):
    def go(seed, name):
        code, stdout, _ = run_cli(["bridge", "--random", "--dim", "4", "--seed", str(seed), "-n",
                                   "1000", "--out", str(tmp_path / name), "--json"])
        assert code == 0
        return json.loads(stdout)

    a, b, c = go(3, "a"), go(3, "b"), go(4, "c")
    assert a == b and a["alpha"] != c["alpha"]
    assert all(0.5 <= x <= 20 for x in a["alpha"]) and len(a["alpha"]) == 4


BAD = [
    (["--alpha", "1,-2"], "must be > 0"),
    (["--alpha", "0,2"], "must be > 0"),
    (["--alpha", "3"], "at least 2 categories"),
    (["--alpha", "a,b"], "'a' is not a number"),
    (["--alpha", "1,2", "--random"], "either --alpha or --random"),
    (["--random", "--dim", "1"], "--dim must be at least 2"),
    (["-n", "1"], "--num-samples must be at least 2"),
    (["--out", "{tmp}/afile/sub"], "cannot write to --out"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, run_cli):
    (tmp_path / "afile").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code, _stdout, err = run_cli(["bridge", *argv])
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
