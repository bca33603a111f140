"""The batch checks a pipeline makes before it compiles (steps.check_run) against the processes
its train step will start, with the messages the engine gives when it starts them."""

from __future__ import annotations

import re

import pytest

from adautomix.config import ConfigError
from adautomix.steps import build_config, check_run

ADAUTOMIX_OF_3 = dict(method="adautomix", method_args={"mix_samples": 3})


@pytest.mark.parametrize(
    "num_gpus, num_nodes, batch_size, message",
    [
        # two GPUs share a batch of 4: 2 images each, fewer than the 3 the method mixes
        (
            2,
            1,
            4,
            "each of the 2 processes gets 2 images of the batch of 4, but method 'adautomix' "
            "mixes 3 per sample; use batch_size >= 6",
        ),
        # three CPU nodes, one process each: 8 does not split into 3
        (
            0,
            3,
            8,
            "batch_size 8 is the global batch and must split evenly over the 3 processes "
            "(1 per node x 3 node(s)); use a multiple of 3",
        ),
        (
            0,
            1,
            2,
            "batch_size 2 is smaller than method 'adautomix' needs (3: it mixes that many images "
            "into each sample); raise the batch size or lower the method's mix_samples",
        ),
    ],
)
def test_a_batch_the_processes_cannot_share_is_refused_before_compiling(
    num_gpus, num_nodes, batch_size, message
):
    config = build_config(batch_size=batch_size, **ADAUTOMIX_OF_3)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        check_run(config, num_gpus, num_nodes)


def test_a_batch_every_process_can_mix_passes():
    # 6 over 2 GPUs is 3 images each, as many as the method mixes; 9 over 3 nodes likewise
    check_run(build_config(batch_size=6, **ADAUTOMIX_OF_3), num_gpus=2)
    check_run(build_config(batch_size=9, **ADAUTOMIX_OF_3), num_gpus=0, num_nodes=3)
