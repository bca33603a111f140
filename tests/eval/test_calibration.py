"""ECE: 0 when calibrated, a hand-computed case, the paper's sorted-bins variant, and agreement
with torchmetrics' multiclass calibration error."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from adautomix.config import ConfigError
from adautomix.eval import evaluate
from adautomix.eval.calibration import CalibrationError


def two_class_logits(confidences: list[float], correct: list[bool]):
    """Logits whose softmax puts `confidence` on class 0; the label is 0 where `correct`."""
    logits = torch.tensor([[math.log(c), math.log(1 - c)] for c in confidences])
    labels = torch.tensor([0 if ok else 1 for ok in correct])
    return logits, labels


def ece_of(logits, labels, bins=10):
    metric = CalibrationError(bins)
    metric.update(logits, labels)
    return metric.compute()


def test_a_perfectly_calibrated_case_has_no_error():
    # 3 of 4 right at confidence 0.75, 19 of 20 right at 0.95, 6 of 10 right at 0.6
    confidences = [0.75] * 4 + [0.95] * 20 + [0.6] * 10
    correct = [True] * 3 + [False] + [True] * 19 + [False] + [True] * 6 + [False] * 4
    values = ece_of(*two_class_logits(confidences, correct))
    assert values["ece"] == pytest.approx(0, abs=1e-4)
    assert values["ece_paper"] == pytest.approx(0, abs=1e-4)


def test_a_hand_computed_case_standard_and_sorted_bins():
    """Bins (0.5, 0.6]: 2 samples, accuracy 0.5, confidence 0.55; (0.8, 0.9]: 1, right at 0.85;
    (0.9, 1]: 1, wrong at 0.95.
    Standard: (2·0.05 + 0.15 + 0.95) / 4 = 0.30.
    Sorted (acc [0 ×8, 0.5, 1], conf [0 ×7, 0.55, 0.85, 0.95], counts unsorted [.. 2 at bin 5,
    1 at 8, 1 at 9]): (2·|0 - 0| + |0.5 - 0.85| + |1 - 0.95|) / 4 = 0.10."""
    logits, labels = two_class_logits([0.55, 0.55, 0.85, 0.95], [True, False, True, False])
    values = ece_of(logits, labels)
    assert values["ece"] == pytest.approx(30.0, abs=1e-4)
    assert values["ece_paper"] == pytest.approx(10.0, abs=1e-4)


def test_standard_ece_matches_torchmetrics_and_splitting_into_batches_changes_nothing():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(500, 7, generator=generator)
    labels = torch.randint(0, 7, (500,), generator=generator)
    expected = 100 * float(
        multiclass_calibration_error(logits.softmax(1), labels, num_classes=7, n_bins=10, norm="l1")
    )
    loader = [(logits[i : i + 64], labels[i : i + 64]) for i in range(0, 500, 64)]
    values = evaluate(torch.nn.Identity(), loader, ["ece"])
    assert values["ece"] == pytest.approx(expected, abs=1e-3)


def test_the_reliability_diagram_draws():
    metric = CalibrationError()
    metric.update(*two_class_logits([0.55, 0.85, 0.95], [True, True, False]))
    figure = metric.figure()
    assert "ECE" in figure.axes[0].get_title()


@pytest.mark.parametrize("bins", [0, -3, 2.5, True])
def test_bad_bin_counts_are_refused(bins):
    with pytest.raises(ConfigError, match="ece bins"):
        CalibrationError(bins)


def test_bins_are_closed_on_the_right():
    """Confidence exactly 0.5 (equal logits) is in (0.4, 0.5], and 1.0 in (0.9, 1]."""
    metric = CalibrationError()
    metric.update(torch.tensor([[0.0, 0.0], [0.0, 0.0], [200.0, -200.0]]), torch.tensor([0, 1, 0]))
    count, accuracy, _ = metric.per_bin()
    assert count.tolist() == [0] * 4 + [2] + [0] * 4 + [1]
    assert accuracy[4] == 0.5
