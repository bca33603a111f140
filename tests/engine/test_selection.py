"""Which epoch a run keeps, and what it reports: selected on validation, reported on test."""

from adautomix.engine.train import final_metrics, selected_epoch


def epoch(n, val=None, val_ema=None, test=50.0, test_ema=None):
    h = {"epoch": n, "train_loss": 1.0, "test_top1": test}
    if val is not None:
        h["val_top1"] = val
    if val_ema is not None:
        h["val_top1_ema"] = val_ema
    if test_ema is not None:
        h["test_top1_ema"] = test_ema
    return h


def test_the_registered_networks_best_validation_epoch_is_selected():
    # the online network peaks at epoch 3, the EMA network (the one registered) at epoch 2
    history = [epoch(1, 60, 61), epoch(2, 70, 75), epoch(3, 80, 74), epoch(4, 65, 70)]
    assert selected_epoch(history) == 2


def test_without_ema_the_online_network_is_judged_and_a_tie_keeps_the_later_epoch():
    history = [epoch(1, 60), epoch(2, 70), epoch(3, 70), epoch(4, 65)]
    assert selected_epoch(history) == 3


def test_without_a_validation_split_the_last_epoch_is_kept_whatever_test_says():
    history = [epoch(1, test=90.0), epoch(2, test=80.0)]
    assert selected_epoch(history) == 2


def test_the_papers_statistic_is_the_median_of_the_last_ten_test_epochs():
    tests = [10.0 * i for i in range(12)]  # epochs 1..12: 0, 10, ..., 110
    history = [epoch(i + 1, val=t, val_ema=t, test=t, test_ema=t + 1) for i, t in enumerate(tests)]
    final = final_metrics(history)
    # the last ten are 20..110: median (60 + 70) / 2
    assert final["test_top1_median10"] == 65.0 and final["test_top1_ema_median10"] == 66.0
    assert final["selected_epoch"] == 12 and final["test_top1"] == 110.0
    assert "val_top1_median10" not in final  # the statistic is a test figure only
