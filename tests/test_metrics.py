"""UAR / WAR / per-class recall against hand-computed cases, and fold mean ± std."""

import math

import numpy as np
import pytest
import torch

from ifdd_bench.engine.metrics import ConfusionMatrix, classification_metrics, confusion_counts, metrics_from_confusion


def test_hand_computed_case_with_never_predicted_and_absent_class():
    # K = 5. Class 3 has one sample and is never predicted; class 4 has no sample at all.
    targets = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    preds = [0, 0, 1, 1, 1, 2, 2, 0, 2, 0]
    m = classification_metrics(preds, targets, 5)
    # recalls: c0 2/3, c1 2/2, c2 3/4, c3 0/1 (never predicted), c4 absent -> left out of the mean
    assert m["recall"][:4] == pytest.approx([2 / 3, 1.0, 0.75, 0.0])
    assert math.isnan(m["recall"][4])
    assert m["uar"] == pytest.approx((2 / 3 + 1 + 0.75 + 0) / 4)
    assert m["war"] == pytest.approx(7 / 10)
    assert m["support"] == [3, 2, 4, 1, 0]
    assert m["classes_present"] == 4
    assert m["confusion"][0] == [2, 1, 0, 0, 0]  # rows = truth, columns = prediction
    assert m["confusion"][3] == [1, 0, 0, 0, 0]


def test_prediction_of_a_class_absent_from_targets_counts_as_an_error_only():
    m = classification_metrics([0, 4, 1, 1], [0, 0, 1, 1], 5)
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)  # class 4 has no targets: not averaged in
    assert m["war"] == pytest.approx(0.75)


def test_uar_differs_from_war_on_imbalanced_data():
    # 8 samples of class 0 all right, 2 samples of class 1 all wrong
    m = classification_metrics([0] * 10, [0] * 8 + [1] * 2, 2)
    assert m["war"] == pytest.approx(0.8)
    assert m["uar"] == pytest.approx(0.5)


def test_accumulator_over_batches_equals_one_shot_and_matches_numpy():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 7, 200)
    preds = np.where(rng.random(200) < 0.6, targets, rng.integers(0, 7, 200))
    acc = ConfusionMatrix(7)
    for start in range(0, 200, 32):
        acc.update(torch.as_tensor(preds[start:start + 32]), torch.as_tensor(targets[start:start + 32]))
    one = classification_metrics(preds, targets, 7)
    assert acc.compute() == one
    expected = np.zeros((7, 7), dtype=int)
    np.add.at(expected, (targets, preds), 1)
    assert one["confusion"] == expected.tolist()
    assert one["war"] == pytest.approx((preds == targets).mean())


def test_empty_and_invalid_inputs():
    m = metrics_from_confusion(np.zeros((3, 3), dtype=int))
    assert math.isnan(m["uar"]) and math.isnan(m["war"])
    with pytest.raises(ValueError):
        confusion_counts(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError):
        confusion_counts(torch.tensor([0]), torch.tensor([0, 1]), 3)
