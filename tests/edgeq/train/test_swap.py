from __future__ import annotations

import pytest


def test_swap_replaces_every_silu_and_names_it_in_the_yaml(demo_pt):
    from edgeq.train.source import load_training_source
    from edgeq.train.swap import activation_counts, swap_activations

    model = load_training_source(demo_pt, None, False).model
    before = activation_counts(model)
    replaced = swap_activations(model, "relu6")
    after = activation_counts(model)
    assert replaced == before["SiLU"] and "SiLU" not in after and after["ReLU6"] == before["SiLU"]
    assert model.yaml["activation"] == "nn.ReLU6()"


def test_swap_refuses_an_unknown_activation(demo_pt):
    from edgeq.errors import EdgeqError
    from edgeq.train.swap import check_activation

    with pytest.raises(EdgeqError, match="not offered"):
        check_activation("gelu")


def test_remedy_command_quotes_the_users_paths():
    from edgeq.train.commands import remedy_command

    line = remedy_command({"command": "adapt", "activation": "relu6"}, "my models/best.pt", "d.yaml", "edgetpu")
    assert line == "edgeq adapt --activation relu6 --model 'my models/best.pt' --data d.yaml --target edgetpu"
