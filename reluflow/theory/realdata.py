"""Real data for the companion: scikit-learn's bundled datasets, split and standardised, seeded.

The datasets ship inside scikit-learn as files, so they load offline:

- ``"digits"``: 1,797 images of 8×8 pixels (64 features, grey levels 0–16), 10 classes;
- ``"wine"``: 178 wines, 13 chemical measurements, 3 cultivars;
- ``"breast_cancer"``: 569 tumours, 30 features of cell nuclei, 2 classes;
- ``"iris"``: 150 flowers, 4 measurements, 3 species.

:func:`load_split` returns a seeded, stratified train/test split (every class keeps its share in both parts),
standardised with the mean and standard deviation of the *training* part only (features of zero spread are
left centred, not divided), so that nothing about the test points leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reluflow.validation import as_real, check_positive_int

__all__ = ["DATASETS", "DataSplit", "load_split"]

#: Names of the bundled datasets, with their scikit-learn loaders.
DATASETS = ("digits", "wine", "breast_cancer", "iris")


@dataclass(frozen=True, repr=False)
class DataSplit:
    """A standardised train/test split: points as rows, integer labels 0..Q-1."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def __repr__(self) -> str:
        return (f"<DataSplit {self.name}: {len(self.y_train)} train / {len(self.y_test)} test points, "
                f"{self.n_features} features, {self.n_classes} classes>")


def load_split(name: str, *, test_fraction: float = 0.3, seed: int = 0, n_train: int | None = None) -> DataSplit:
    """Load a bundled dataset and split it, stratified by class and seeded; standardise on the training part.

    Parameters
    ----------
    name : one of :data:`DATASETS`.
    test_fraction : share of the points held out for testing, in (0, 1).
    seed : seed of the split (integer ≥ 0).
    n_train : optional cap on the training points (a stratified subsample of the training part, same seed).
    """
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}; got {name!r}")
    test_fraction = as_real(test_fraction, "test_fraction", minimum=0.0, strict=True, maximum=0.9)
    seed = check_positive_int(seed, "seed", minimum=0)
    bunch = getattr(datasets, f"load_{name}")()
    X, y = np.asarray(bunch.data, dtype=float), np.asarray(bunch.target, dtype=np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    if n_train is not None:
        n_train = check_positive_int(n_train, "n_train", minimum=2 * int(y.max() + 1))
        if n_train < len(y_tr):
            X_tr, _, y_tr, _ = train_test_split(X_tr, y_tr, train_size=n_train, random_state=seed, stratify=y_tr)
    mean = X_tr.mean(axis=0)
    scale = X_tr.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return DataSplit(name, (X_tr - mean) / scale, y_tr, (X_te - mean) / scale, y_te, mean, scale)
