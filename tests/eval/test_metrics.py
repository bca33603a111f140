"""eval/: top-k accuracy, mean cross-entropy and the confusion matrix against cases worked out by
hand, accumulated over several batches, with the network handed back in the mode it came in."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adautomix.eval import evaluate
from adautomix.eval.confusion import confusion_matrix


class Logits(nn.Module):
    """A 'network' whose input is its logits, so a test chooses the predictions."""

    def forward(self, x):
        return x * 1.0


# Four samples, three classes. Ranks per row (best first): 0: [2, 0, 1]; 1: [1, 2, 0];
# 2: [0, 1, 2]; 3: [2, 1, 0].
LOGITS = torch.tensor(
    [[2.0, 0.0, 3.0], [0.0, 3.0, 1.0], [math.log(2.0), 0.0, -50.0], [0.0, 1.0, 2.0]]
)
LABELS = torch.tensor([0, 1, 0, 0])
# in two batches, to check that counts accumulate
LOADER = [(LOGITS[:3], LABELS[:3]), (LOGITS[3:], LABELS[3:])]


def test_top1_top5_and_loss_equal_the_hand_computed_values():
    results = evaluate(Logits(), LOADER, ["top1", "top5", "loss"])
    # top-1: sample 1 and sample 2 are right -> 2 of 4
    assert results["top1"] == pytest.approx(50.0)
    # top-5 on three classes is top-3: always right
    assert results["top5"] == pytest.approx(100.0)
    # CE per sample = logsumexp(row) - row[label]
    ce = [
        math.log(math.exp(2) + 1 + math.exp(3)) - 2,
        math.log(1 + math.exp(3) + math.exp(1)) - 3,
        math.log(2 + 1 + math.exp(-50)) - math.log(2),
        math.log(1 + math.e + math.exp(2)) - 0,
    ]
    assert results["loss"] == pytest.approx(sum(ce) / 4, rel=1e-6)


def test_topk_counts_a_label_anywhere_in_the_first_k():
    from adautomix.eval.accuracy import TopK

    top2 = TopK(2)
    for logits, labels in LOADER:
        top2.update(logits, labels)
    # second choices: row 0 -> 0 (right), row 3 -> 1 (wrong)
    assert top2.compute() == pytest.approx(75.0)


def test_unknown_metric_names_the_valid_ones():
    with pytest.raises(ValueError, match="top1, top5, loss"):
        evaluate(Logits(), LOADER, ["top1", "top7"])


def test_confusion_matrix_counts_true_against_predicted():
    matrix = confusion_matrix(Logits(), LOADER, num_classes=3)
    expected = torch.tensor(
        [
            [1, 0, 2],  # true 0: predicted 2, 0, 2
            [0, 1, 0],  # true 1: predicted 1
            [0, 0, 0],
        ]
    )
    assert matrix.dtype == torch.int64 and torch.equal(matrix, expected)


@pytest.mark.parametrize("training", [True, False])
def test_evaluation_runs_in_eval_mode_and_restores_the_mode(training):
    seen = []

    class Probe(Logits):
        def forward(self, x):
            seen.append((self.training, torch.is_inference_mode_enabled()))
            return super().forward(x)

    network = Probe().train(training)
    evaluate(network, LOADER, ["top1"])
    confusion_matrix(network, LOADER, 3)
    assert seen == [(False, True)] * 4 and network.training == training
