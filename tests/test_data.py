"""relaxcli.data: idx parsing, read-only folders, the missing-files error, binarisation."""

from __future__ import annotations

import gzip
import os
import stat
import struct

import pytest
import torch
from conftest import data_dir

from relaxcli.cli import main
from relaxcli.data import Binarizer, load_dataset, read_idx, synthetic_dataset
from relaxcli.errors import BadInput


def _write_idx(path, array: torch.Tensor, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(struct.pack(">i", d) for d in array.shape)
    data = header + array.to(torch.uint8).numpy().tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def _fake_mnist(root, n_train=5, n_test=3, gz=False):
    """A tiny dataset in torchvision's layout: root/MNIST/raw/*-ubyte[.gz]."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    tr = torch.randint(0, 256, (n_train, 28, 28), generator=g)
    te = torch.randint(0, 256, (n_test, 28, 28), generator=g)
    sfx = ".gz" if gz else ""
    _write_idx(raw / f"train-images-idx3-ubyte{sfx}", tr, gz)
    _write_idx(raw / f"train-labels-idx1-ubyte{sfx}", torch.arange(n_train) % 10, gz)
    _write_idx(raw / f"t10k-images-idx3-ubyte{sfx}", te, gz)
    _write_idx(raw / f"t10k-labels-idx1-ubyte{sfx}", torch.arange(n_test) % 10, gz)
    return tr, te


def _make_read_only(root):
    for dirpath, _dirnames, filenames in os.walk(root):
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), stat.S_IRUSR | stat.S_IRGRP)
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR)


def _listing(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("gz", [False, True])
def test_load_from_read_only_folder_writes_nothing(tmp_path, monkeypatch, gz):
    monkeypatch.setenv("RELAX_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "data"
    tr, te = _fake_mnist(root, gz=gz)
    _make_read_only(root)
    before = _listing(root)
    try:
        data = load_dataset("mnist", root)
    finally:
        for dirpath, _, _ in os.walk(root):
            os.chmod(dirpath, stat.S_IRWXU)
    assert data.train.dtype == torch.uint8 and data.train.shape == (5, 784)
    assert torch.equal(data.train, tr.reshape(5, 784).to(torch.uint8))
    assert torch.equal(data.test, te.reshape(3, 784).to(torch.uint8))
    assert data.train_labels.tolist() == [0, 1, 2, 3, 4]
    assert _listing(root) == before
    assert not (tmp_path / "cache").exists()  # found locally: no download attempted


def test_missing_files_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAX_OFFLINE", "1")
    monkeypatch.delenv("RELAX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="mnist files not found"):
        load_dataset("mnist", tmp_path / "empty")
    with pytest.raises(BadInput, match="not a directory"):
        load_dataset("mnist", tmp_path / "nope")


def test_missing_files_cli_exit_2_and_no_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RELAX_OFFLINE", "1")
    monkeypatch.delenv("RELAX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train-vae", "--method", "gumbel-softmax", "--data-dir", str(tmp_path / "empty"),
              "--out", str(out), "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "files not found" in err and "Traceback" not in err
    assert not out.exists()


def test_bad_idx_file(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(BadInput, match="magic"):
        read_idx(p)


def test_synthetic_is_deterministic_binary():
    a, b = synthetic_dataset(), synthetic_dataset()
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.train.shape == (256, 784) and a.test.shape == (64, 784)
    assert set(a.train.unique().tolist()) == {0, 255}


def test_binarizations():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (400, 784), generator=g).to(torch.uint8)
    data = synthetic_dataset()
    data.train, data.test = x, x[:100]
    thr = Binarizer("threshold", data)
    assert torch.equal(thr.train_batch(x), (x.float() / 255 > 0.5).float())
    # static: one fixed draw, the same for two binarizers and for repeated batches
    s1, s2 = Binarizer("static", data), Binarizer("static", data)
    idx = torch.arange(50)
    assert torch.equal(s1.train_batch(x[idx], idx), s2.train_batch(x[idx], idx))
    assert torch.equal(s1.train_batch(x[idx], idx), s1.train_batch(x[idx], idx))
    assert torch.equal(s1.test, s2.test)
    # dynamic: a fresh draw per call, with mean x/255 (4 standard errors)
    dyn = Binarizer("dynamic", data)
    d1, d2 = dyn.train_batch(x), dyn.train_batch(x)
    assert not torch.equal(d1, d2)
    p = x.float() / 255
    se = float((p * (1 - p)).sum().sqrt()) / p.numel()
    assert abs(float(d1.mean() - p.mean())) < 4 * se
    assert torch.equal(dyn.test, Binarizer("dynamic", data).test)  # test set: one fixed draw
    with pytest.raises(BadInput, match="binarize"):
        Binarizer("fuzzy", data)


@pytest.mark.skipif(data_dir() is None, reason="RELAX_DATA_DIR with MNIST/raw is not set")
def test_real_mnist_from_read_only_shared_folder(monkeypatch):
    monkeypatch.setenv("RELAX_OFFLINE", "1")
    data = load_dataset("mnist", data_dir())
    assert data.train.shape == (60000, 784) and data.test.shape == (10000, 784)
    assert data.train.dtype == torch.uint8 and int(data.train.max()) == 255
    assert data.train_labels.shape == (60000,) and int(data.train_labels.max()) == 9
