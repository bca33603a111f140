"""Models are built once per session and shared: building the larger ones takes a second each.
Tests that change a model's weights work on a deep copy."""

from __future__ import annotations

import pytest
import torch

from adautomix.models import Backbone, create_model

NUM_CLASSES = 10


@pytest.fixture(scope="session")
def build():
    cache: dict[tuple[str, int], Backbone] = {}

    def get(name: str, in_chans: int = 3) -> Backbone:
        if (name, in_chans) not in cache:
            torch.manual_seed(0)
            cache[name, in_chans] = create_model(name, NUM_CLASSES, in_chans)
        return cache[name, in_chans]

    return get
