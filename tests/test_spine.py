"""The registry is the spine: a method added with one class and one ``register`` call runs in
every command without a command change, and no command decides anything by a method's name."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from torch.distributions import Bernoulli

from relaxcli import methods as registry
from relaxcli.methods import Family, Kind, Method, Paper

COMMANDS = sorted((Path(registry.__file__).parent / "commands").glob("*.py"))
# names that are also the program's or a command's name ("relax", "reinforce") cannot be told
# apart from them in text ("relax reinforce --resume", argv[0] == "relax"): not checked
SHARED_WORDS = {"relax", "reinforce"}


class ToyStraightThrough(Bernoulli):
    """b ~ Bernoulli(p) forward, the gradient of p backward (written here, not in the library)."""

    has_rsample = True

    def rsample(self, sample_shape=torch.Size()):  # noqa: B008 (torch's own signature)
        p = self.probs.expand(self._extended_shape(sample_shape))
        b = torch.bernoulli(p.detach())
        return b + p - p.detach()


@pytest.fixture
def toy_method():
    record = registry.register(Method(
        name="toy-straight-through", kind=Kind.STRAIGHT_THROUGH, families=(Family.BERNOULLI,),
        unbiased=False, exact_log_prob=True, paper=Paper("Test", 2026), summary="a test's toy",
        relaxed=lambda raw, tau, **_: ToyStraightThrough(logits=raw),
        discrete=registry.bernoulli_law, rounds_to_discrete=True,
    ))
    yield record
    del registry.METHODS[record.name]


def test_a_toy_method_runs_in_sample_grad_bench_and_train_vae(toy_method, run_cli, tmp_path):
    code, out, err = run_cli(["sample", toy_method.name, "-n", "4000", "--probs", "0.3,0.7",
                              "--out", tmp_path / "s", "--json", "--quiet"])
    assert code == 0, err
    s = json.loads(out)
    assert s["method"] == toy_method.name
    code, out, err = run_cli(["grad-bench", "--methods", f"{toy_method.name},straight-through-bernoulli",
                              "--draws", "2000", "--tune-steps", "0", "--out", tmp_path / "g",
                              "--json", "--quiet"])
    assert code == 0, err
    rows = {r["method"]: r for r in json.loads(out)["results"]}
    # the toy is the straight-through Bernoulli estimator: the same mean gradient (4 SE)
    a, b = rows[toy_method.name], rows["straight-through-bernoulli"]
    se = ((a["variance"] + b["variance"]) / 2000) ** 0.5
    assert abs(a["mean"][0] - b["mean"][0]) < 4 * se
    code, out, err = run_cli(["train-vae", "--method", toy_method.name, "--dataset", "synthetic",
                              "--epochs", "1", "--latent-dim", "8", "--hidden", "16",
                              "--train-limit", "200", "--test-limit", "50", "--eval-samples", "2",
                              "--out", tmp_path / "v", "--json", "--quiet"])
    assert code == 0, err
    v = json.loads(out)
    assert v["method"] == toy_method.name and v["eval_model"] == "discrete"
    assert v["test_neg_elbo"] > 0


def _code_strings(path: Path):
    """(line, text) of every string constant that is not documentation (a docstring or the help
    text of an ``option(...)``/``argument(...)`` field, which may name methods as examples)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("option", "argument"):
            docs |= {id(c) for kw in call.keywords if kw.arg == "help" for c in ast.walk(kw.value)}
    return tree, [(n.lineno, n.value) for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_no_command_names_a_method(path):
    names = set(registry.METHODS) - SHARED_WORDS
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
                         + r")(?![\w-])")
    tree, strings = _code_strings(path)
    found = [(line, text) for line, text in strings if pattern.search(text)]
    assert not found, f"{path.name} names methods: {found}"
    # nor compares anything with a method's name (the program's and commands' names aside)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for c in [node.left, *node.comparators]:
                assert not (isinstance(c, ast.Constant) and c.value in names), \
                    f"{path.name}:{node.lineno} compares with the method name {c.value!r}"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_no_command_reads_option_bags_or_signatures(path):
    source = path.read_text()
    assert "inspect.signature" not in source
    assert not re.search(r"\bm(ethod)?\.options\b", source), f"{path.name} reads a record's option bag"


def test_the_fixture_really_registers_and_removes():
    assert "toy-straight-through" not in registry.METHODS


@pytest.mark.parametrize("name", [n for n, m in registry.METHODS.items() if m.discrete is not None])
def test_every_discrete_law_has_a_registered_kl(name):
    """The VAE's KL is kl_divergence(q, p) of the discrete laws: registered for every method."""
    m = registry.METHODS[name]
    k = 4
    for family in m.families:
        if family is Family.SIMPLEX:
            continue
        shape = (3, 2) if family is Family.BERNOULLI else (3, 2, m.params.size(k))
        q = m.discrete_law(torch.randn(shape), family)
        p = m.discrete_law(m.params.neutral(shape), family)
        kl = torch.distributions.kl_divergence(q, p)
        assert torch.isfinite(kl).all() and (kl >= -1e-6).all(), (name, family)
