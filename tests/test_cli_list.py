"""`relax list`: a readable table of every registry method, and --json."""

import json

from relaxcli.methods import METHODS


def test_list_json_has_every_method_and_field(run_cli):
    code, out, _err = run_cli(["list", "--json"])
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list(METHODS)
    for r in rows:
        m = METHODS[r["name"]]
        assert (r["family"], r["kind"], r["unbiased"], r["exact_log_prob"], r["default_tau"],
                r["min_tau"]) == (
            m.family, m.kind, m.unbiased, m.exact_log_prob, m.default_tau, m.min_tau)
        assert str(m.paper.year) in r["paper"]


def test_list_table_shows_every_method_on_one_line(run_cli):
    code, out, err = run_cli(["list"])
    assert code == 0 and "Traceback" not in out + err
    for header in ("name", "family", "kind", "unbiased", "exact", "log_prob", "paper", "default", "tau"):
        assert header in out
    lines = out.splitlines()
    for m in METHODS.values():
        # the method's row holds its name, family, kind and paper year together (no wrapping)
        row = [ln for ln in lines if f" {m.name} " in ln]
        assert row, m.name
        assert m.family in row[0] and m.kind in row[0] and str(m.paper.year) in row[0]


def test_list_unknown_option_is_one_line_exit_2(run_cli):
    code, out, err = run_cli(["list", "--bogus"])
    assert code == 2 and out == ""
    assert "bogus" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
