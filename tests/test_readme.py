"""The README stays true: its method table is the registry's, and its Python examples run."""

import re
from pathlib import Path

import pytest

from relaxcli.methods import METHODS, markdown_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_method_table_is_the_registry():
    assert markdown_table() in README, "README's method table differs from `relax list --markdown`"
    for name in METHODS:
        assert f"| `{name}` |" in README


@pytest.mark.parametrize("index", range(len(re.findall(r"```python\n", README))))
def test_python_examples_run(index):
    block = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)[index]
    if "pyro" in block:
        pytest.importorskip("pyro")
    exec(compile(block, f"README.md python block {index}", "exec"), {})  # noqa: S102 - running the README is the point
