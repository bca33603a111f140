"""A network that cannot take the run's images says so before anything trains."""

import pytest
import torch

from adautomix.config import ConfigError
from adautomix.models import check_input_size, create_model


def test_convnext_refuses_28px_images_and_names_a_size_it_takes():
    network = create_model("convnext_t", 10, in_chans=1).train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.raises(
        ConfigError, match=r"'convnext_t' cannot take 28 px images; set --image-size 32"
    ):
        check_input_size(network, "convnext_t", 1, 28)
    assert network.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    check_input_size(network, "convnext_t", 1, 32)


def test_a_small_image_network_takes_28px_and_is_left_as_it_was():
    network = create_model("resnet18", 10, in_chans=1).train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert check_input_size(network, "resnet18", 1, 28) is None  # no error: it takes them
    assert network.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    with torch.no_grad():  # and it really does: a batch of 28 px images gives one row of logits
        assert network.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
