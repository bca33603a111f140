"""The shared parts of adautomix/models/backbone.py (the Backbone contract itself is checked on
every model in test_create_model.py)."""

from __future__ import annotations

import torch
from torch import nn

from adautomix.models.backbone import running_stat_batch_norms


def test_every_batchnorm_kind_with_running_statistics_is_found_and_nothing_else():
    """AdAutoMix's teacher and the distributed engine both take their BN layers from here, so
    it must find every kind torch has (SyncBatchNorm after conversion, a LazyBatchNorm once it
    has run) and skip what keeps no running statistics."""
    kept = [nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.BatchNorm3d(3), nn.LazyBatchNorm2d()]
    skipped = [
        nn.BatchNorm2d(3, track_running_stats=False),
        nn.InstanceNorm2d(3),
        nn.GroupNorm(1, 3),
        nn.LayerNorm(3),
    ]
    net = nn.ModuleList([*kept, *skipped])
    kept[3](torch.randn(2, 3, 4, 4))  # materialises as a BatchNorm2d
    assert running_stat_batch_norms(net) == kept
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))
    assert [type(m) for m in running_stat_batch_norms(synced)] == [nn.SyncBatchNorm]
