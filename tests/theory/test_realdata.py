"""Bundled real datasets. Oracles: recounts of the class shares, and the standardisation recomputed here."""

import numpy as np
import pytest

from reluflow.theory.realdata import DATASETS, load_split


@pytest.mark.parametrize("name, n, p, q", [("digits", 1797, 64, 10), ("wine", 178, 13, 3),
                                           ("breast_cancer", 569, 30, 2), ("iris", 150, 4, 3)])
def test_splits_are_stratified_standardised_on_train_and_seeded(name, n, p, q):
    s = load_split(name, test_fraction=0.3, seed=4)
    assert s.n_features == p and s.n_classes == q and len(s.y_train) + len(s.y_test) == n
    share_tr = np.bincount(s.y_train, minlength=q) / len(s.y_train)
    share_te = np.bincount(s.y_test, minlength=q) / len(s.y_test)
    assert np.abs(share_tr - share_te).max() < 0.05  # stratified
    raw = s.X_train * s.scale + s.mean
    np.testing.assert_allclose(s.mean, raw.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(s.X_train.mean(axis=0), 0, atol=1e-10)
    spread = raw.std(axis=0) > 0
    np.testing.assert_allclose(s.X_train.std(axis=0)[spread], 1, atol=1e-10)
    again, other = load_split(name, seed=4), load_split(name, seed=5)
    np.testing.assert_array_equal(again.X_test, s.X_test)
    assert not np.array_equal(other.y_train, s.y_train) or not np.array_equal(other.X_train, s.X_train)


def test_n_train_caps_the_training_part_stratified():
    s = load_split("digits", seed=0, n_train=300)
    assert len(s.y_train) == 300 and np.bincount(s.y_train).min() >= 25


@pytest.mark.parametrize("kwargs, error, match", [({"name": "mnist"}, ValueError, "name must be one of"),
                                                  ({"test_fraction": 0.0}, ValueError, "test_fraction"),
                                                  ({"test_fraction": 0.95}, ValueError, "test_fraction"),
                                                  ({"seed": -1}, ValueError, "seed"),
                                                  ({"n_train": 3}, ValueError, "n_train")])
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_split(**{"name": "digits", **kwargs})


def test_the_list_of_datasets():
    assert DATASETS == ("digits", "wine", "breast_cancer", "iris")
