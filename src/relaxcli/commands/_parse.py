"""Parsing and validating the numbers users type on the command line (errors -> BadInput, exit 2).

Each function reads one option's text and either returns clean numbers or raises
:class:`relaxcli.errors.BadInput` with one line naming the option, what was wrong and what is
allowed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from relaxcli.errors import BadInput

NUMBER_FILE_SUFFIXES = (".npy", ".pt", ".csv")


def load_numbers(text: str, option: str) -> np.ndarray:
    """The array of numbers in a ``.npy``, ``.pt`` (a saved tensor) or ``.csv`` file (one value
    per line reads as one row); any unreadable file is bad input naming ``option``."""
    path = Path(str(text))
    suffix = path.suffix.lower()
    if suffix not in NUMBER_FILE_SUFFIXES:
        raise BadInput(f"{option}: {text!r} must end in {', '.join(NUMBER_FILE_SUFFIXES)}")
    if not path.is_file():
        raise BadInput(f"{option}: {text!r} is not an existing file")
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".pt":
            import torch  # only a .pt file needs it

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, torch.Tensor):
                raise ValueError(f"it holds a {type(obj).__name__}, not a tensor")
            arr = obj.detach().double().numpy()
        else:
            arr = np.loadtxt(path, delimiter=",", ndmin=2, dtype=float)
            if arr.shape[1] == 1 and arr.shape[0] > 1:  # one value per line: one row
                arr = arr.T
        return np.asarray(arr, dtype=float)
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise BadInput(f"{option}: cannot read {text!r} as numbers ({e})") from None


def parse_number(text: str, option: str) -> float:
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise BadInput(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(x):
        raise BadInput(f"{option}: {text!r} is not a finite number")
    return x


def parse_rows(text: str, option: str) -> list[list[float]]:
    """``"0.2,0.5"`` -> [[0.2, 0.5]]; ``"0.2,0.4;0.3,0.5"`` -> two rows (a batch) of equal length."""
    rows = [r for r in str(text).replace(" ", "").split(";")]
    if not rows or any(r == "" for r in rows):
        raise BadInput(f"{option}: give a comma-separated list of numbers such as 0.2,0.5,0.8 "
                       f"(rows of a batch separated by ';'), not {text!r}")
    out = []
    for r in rows:
        items = r.split(",")
        if any(i == "" for i in items):
            raise BadInput(f"{option}: empty entry in {text!r}; give numbers separated by commas")
        out.append([parse_number(i, option) for i in items])
    if len({len(r) for r in out}) != 1:
        raise BadInput(f"{option}: every ';'-separated row must have the same length, got "
                       f"{[len(r) for r in out]}")
    return out


def check_positive(x: float, option: str, what: str = "a positive number") -> float:
    if not (math.isfinite(x) and x > 0):
        raise BadInput(f"{option} must be {what}, got {x:g}")
    return x


def check_probabilities(rows: list[list[float]], option: str, simplex: bool) -> None:
    """Entries in [0, 1] (strictly inside: the methods are built from finite logits)."""
    for r in rows:
        for p in r:
            if not 0.0 <= p <= 1.0:
                raise BadInput(f"{option}: {p:g} is not a probability; values must lie in [0, 1]")
            if p in (0.0, 1.0):
                raise BadInput(f"{option}: {p:g} is an exact 0 or 1; use values strictly between 0 "
                               "and 1 (the methods are built from finite logits)")
        if simplex:
            if len(r) < 2:
                raise BadInput(f"{option}: a categorical law needs at least 2 categories, got {len(r)}")
            if abs(sum(r) - 1.0) > 1e-3:
                raise BadInput(f"{option}: category probabilities must sum to 1, got {sum(r):.6g} "
                               f"for {','.join(f'{p:g}' for p in r)}")


def load_correlation(text: str, dim: int, option: str = "--correlation") -> np.ndarray:
    """A number rho (equal off-diagonal correlation) or a path to a .npy / .csv matrix, validated.

    Valid means: dim x dim, finite, symmetric, unit diagonal, positive definite.
    """
    try:
        rho = float(text)
    except ValueError:
        rho = None
    if rho is not None:
        if not math.isfinite(rho):
            raise BadInput(f"{option}: {text!r} is not a finite number")
        r = np.full((dim, dim), rho)
        np.fill_diagonal(r, 1.0)
        if not (-1.0 / max(dim - 1, 1) < rho < 1.0) and dim > 1:
            raise BadInput(f"{option} {rho:g} is not a valid correlation for {dim} variables: an "
                           f"equal correlation must lie in ({-1.0 / (dim - 1):.4g}, 1) to be "
                           "positive definite")
    else:
        if not Path(text).is_file():
            raise BadInput(f"{option}: {text!r} is neither a number nor an existing "
                           f"{'/'.join(NUMBER_FILE_SUFFIXES)} file")
        r = load_numbers(text, option)
    if r.ndim != 2 or r.shape != (dim, dim):
        raise BadInput(f"{option}: need a {dim}x{dim} correlation matrix (one row and column per "
                       f"variable), got shape {tuple(r.shape)}")
    if not np.all(np.isfinite(r)):
        raise BadInput(f"{option}: the matrix has non-finite entries")
    if not np.allclose(r, r.T, atol=1e-6):
        raise BadInput(f"{option}: a correlation matrix must be symmetric")
    if not np.allclose(np.diag(r), 1.0, atol=1e-6):
        raise BadInput(f"{option}: a correlation matrix must have ones on its diagonal, got "
                       f"{np.diag(r).tolist()}")
    if np.any(np.abs(r) > 1.0 + 1e-12):
        raise BadInput(f"{option}: correlations must lie in [-1, 1]")
    if np.linalg.eigvalsh(r).min() <= 1e-10:
        raise BadInput(f"{option}: the matrix is not positive definite (smallest eigenvalue "
                       f"{np.linalg.eigvalsh(r).min():.3g}); a correlation matrix must be")
    return r
