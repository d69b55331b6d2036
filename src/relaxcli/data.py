"""Datasets for the VAE: MNIST / Fashion-MNIST held in memory as one uint8 tensor, binarised on the fly.

Where the files come from (first hit wins):

1. ``data_dir`` (``--data-dir``), then the ``RELAX_DATA_DIR`` environment variable, then the user
   cache (``$XDG_CACHE_HOME/relaxcli/data``, default ``~/.cache/relaxcli/data``). Each root may
   hold torchvision's layout (``<root>/MNIST/raw/train-images-idx3-ubyte[.gz]``,
   ``<root>/FashionMNIST/raw/...``) or the four idx files directly.
2. The idx files are parsed here directly (plain or ``.gz``), so a read-only folder works:
   nothing is ever written into a data folder.
3. Only when no root has the files, and ``RELAX_OFFLINE`` is not set, torchvision downloads them
   into the user cache. If that fails too, :class:`~relaxcli.errors.BadInput` says where we
   looked and how to fix it (CLI exit 2).

``synthetic`` is a tiny, deterministic test/smoke dataset (256 train + 64 test 28x28 images made
of 8 random prototypes with 5% pixel flips); it needs no files.

Binarisation (:class:`Binarizer`), each a function of the uint8 intensities x in [0, 255]:

- ``dynamic``: a fresh draw b ~ Bernoulli(x/255) every time a training batch is served (so every
  epoch sees a new draw; it uses the global torch RNG, which run checkpoints save). The *test*
  set is one fixed draw (seed 0) so test numbers are comparable across runs and epochs.
- ``static``: one fixed draw b ~ Bernoulli(x/255) with a fixed seed (0) for train and test.
- ``threshold``: b = 1{x/255 > 0.5}.

Example:
    >>> from relaxcli.data import load_dataset, Binarizer
    >>> data = load_dataset("synthetic")
    >>> data.train.shape, data.train.dtype
    (torch.Size([256, 784]), torch.uint8)
    >>> Binarizer("threshold", data).train_batch(data.train[:3]).shape
    torch.Size([3, 784])
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from relaxcli.errors import BadInput

DATASETS = ("mnist", "fashion-mnist", "synthetic")
BINARIZATIONS = ("dynamic", "static", "threshold")

# torchvision's folder name per dataset and the idx files each split needs.
_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
STATIC_SEED = 0  # the fixed seed of static binarisation and of the dynamic test draw


@dataclass
class ImageData:
    """A dataset in memory: images flattened to (N, 784) uint8, labels (N,) int64."""

    name: str
    train: Tensor
    test: Tensor
    train_labels: Tensor
    test_labels: Tensor
    source: str  # the folder the files were read from ("generated" for synthetic)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (28, 28)


def user_cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/relaxcli/data`` (default ``~/.cache/relaxcli/data``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "relaxcli" / "data"


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (plain or gzip): magic 0x0000 08 <ndim>, big-endian int32 dims, uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as e:  # a cut or damaged download
        why = "truncated" if isinstance(e, EOFError) else f"unreadable ({e})"
        raise BadInput(f"{path} is {why}; delete it and download or copy it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise BadInput(f"{path} is not an idx file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise BadInput(f"{path} is truncated: expected {int(np.prod(dims))} bytes of data, found {data.size}")
    return data.reshape(tuple(int(d) for d in dims))


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_raw_folder(root: Path, name: str) -> Path | None:
    """The folder under ``root`` that holds all four idx files of ``name``, if any."""
    for folder in (root / _FOLDERS[name] / "raw", root / _FOLDERS[name], root):
        if all(_find_file(folder, s) for split in _FILES.values() for s in split):
            return folder
    return None


def candidate_roots(data_dir: str | Path | None) -> list[Path]:
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    env = os.environ.get("RELAX_DATA_DIR")
    if env:
        roots.append(Path(env))
    roots.append(user_cache_dir())
    return roots


def _download(name: str, root: Path) -> None:
    """Download with torchvision into ``root`` (the user cache); raises on any failure."""
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}[name]
    root.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(root=str(root), train=train, download=True)


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool | None = None) -> ImageData:
    """Load ``name`` ("mnist", "fashion-mnist" or "synthetic") as uint8 tensors in memory.

    ``download`` None means: allowed unless the environment variable ``RELAX_OFFLINE`` is set.
    """
    if name not in DATASETS:
        raise BadInput(f"unknown --dataset {name!r}; choose from: {', '.join(DATASETS)}")
    if name == "synthetic":
        return synthetic_dataset()
    if data_dir is not None and not str(data_dir).strip():
        raise BadInput("--data-dir is empty; give a folder, or leave the option out to use "
                       "RELAX_DATA_DIR or the user cache")
    roots = candidate_roots(data_dir)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput(f"--data-dir {str(data_dir)!r} is not a directory")
    folder = next((f for f in (_find_raw_folder(r, name) for r in roots) if f is not None), None)
    if folder is None:
        if download is None:
            download = not os.environ.get("RELAX_OFFLINE")
        looked = ", ".join(str(r) for r in roots)
        hint = (f"put {_FOLDERS[name]}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] under "
                "--data-dir or RELAX_DATA_DIR")
        if not download:
            raise BadInput(f"{name} files not found (looked in: {looked}) and downloading is off "
                           f"(RELAX_OFFLINE); {hint}")
        cache = user_cache_dir()
        try:
            _download(name, cache)
        except Exception as e:  # noqa: BLE001 - any network/IO failure becomes one clear line
            raise BadInput(f"{name} files not found (looked in: {looked}) and the download into "
                           f"{cache} failed ({type(e).__name__}: {e}); {hint}") from None
        folder = _find_raw_folder(cache, name)
        if folder is None:
            raise BadInput(f"{name}: download into {cache} finished but the idx files are missing; {hint}")

    def images(stem: str) -> Tensor:
        arr = read_idx(_find_file(folder, stem))
        return torch.from_numpy(arr.reshape(arr.shape[0], -1).copy())

    def labels(stem: str) -> Tensor:
        return torch.from_numpy(read_idx(_find_file(folder, stem)).astype(np.int64))

    (tri, trl), (tei, tel) = _FILES["train"], _FILES["test"]
    return ImageData(name, images(tri), images(tei), labels(trl), labels(tel), str(folder))


def synthetic_dataset(n_train: int = 256, n_test: int = 64, n_prototypes: int = 8,
                      flip: float = 0.05, seed: int = 1234) -> ImageData:
    """A tiny structured binary dataset for tests and smoke runs (not for reporting numbers).

    Each image is one of ``n_prototypes`` random binary 28x28 patterns (pixel on with prob 0.3)
    with each pixel flipped with probability ``flip``; intensities are 0 or 255, so every
    binarisation gives the same images. Deterministic in ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(n_prototypes, 784, generator=g) < 0.3
    n = n_train + n_test
    labels = torch.randint(n_prototypes, (n,), generator=g)
    flips = torch.rand(n, 784, generator=g) < flip
    x = (protos[labels] ^ flips).to(torch.uint8) * 255
    return ImageData("synthetic", x[:n_train], x[n_train:], labels[:n_train], labels[n_train:], "generated")


def _fixed_draw(x: Tensor, seed: int = STATIC_SEED) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.float() / 255.0, generator=g)


class Binarizer:
    """Turns uint8 batches into {0,1} float batches according to ``mode`` (see module docstring).

    Static draws are made once here (train and test, fixed seed); dynamic training batches are
    drawn from the global torch RNG at :meth:`train_batch` time.
    """

    def __init__(self, mode: str, data: ImageData):
        if mode not in BINARIZATIONS:
            raise BadInput(f"unknown --binarize {mode!r}; choose from: {', '.join(BINARIZATIONS)}")
        self.mode = mode
        if mode == "threshold":
            self.test = (data.test > 127).float()  # x/255 > 0.5  <=>  x >= 128
        else:
            self.test = _fixed_draw(data.test, STATIC_SEED + 1)
        self._static_train = _fixed_draw(data.train, STATIC_SEED) if mode == "static" else None

    def train_batch(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """Binarise the training images ``x`` (uint8, (B, 784)); ``index`` their rows (static mode)."""
        if self.mode == "threshold":
            return (x > 127).float()
        if self.mode == "static":
            if index is None:
                raise ValueError("static binarisation needs the batch's row indices")
            return self._static_train[index]
        return torch.bernoulli(x.float().div_(255.0))

    def heldout(self, x: Tensor, index: Tensor) -> Tensor:
        """A fixed binarisation of training rows ``x`` (uint8, rows ``index`` of the training set)
        held out for validation: their static draw in static mode, the threshold in threshold mode,
        one fixed draw (its own seed) in dynamic mode, so validation numbers compare across epochs."""
        if self.mode == "threshold":
            return (x > 127).float()
        if self.mode == "static":
            return self._static_train[index]
        return _fixed_draw(x, STATIC_SEED + 2)
