"""Feature maps of one layer: the layer's channel count and size, strongest first, the model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s7core.errors import UserError
from s7core.features import feature_maps, tile
from s7core.model import build_model
from s7core.spec import get_preset, infer_shapes


def test_maps_have_the_layers_channels_and_size_and_match_a_direct_forward() -> None:
    spec = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(spec).eval()
    image = torch.randn(1, 3, 32, 32)
    shapes = infer_shapes(spec)
    for index in (0, 3, 8):
        maps = feature_maps(model, image, model.module_name(index))
        assert maps.shape == (shapes[index + 1].channels, shapes[index + 1].size, shapes[index + 1].size)
        with torch.no_grad():
            direct = model.layers[: index + 1](image)[0].numpy()
        assert np.allclose(maps.maps, direct[maps.channels], atol=1e-5)
        assert (np.diff(maps.strength) <= 0).all() and sorted(maps.channels) == list(range(maps.shape[0]))


def test_a_sepconv_part_has_its_own_channel_count() -> None:
    spec = get_preset("tiny")
    model = build_model(spec)
    depthwise = feature_maps(model, torch.randn(1, 3, 32, 32), "layers.6.depthwise")
    assert depthwise.shape[0] == infer_shapes(spec)[6].channels  # depthwise keeps its input's channels


def test_the_model_is_left_as_it_was() -> None:
    model = build_model(get_preset("tiny")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    feature_maps(model, torch.randn(1, 3, 32, 32), "layers.1")
    assert model.training and not model.layers[1]._forward_hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_vector_layer_or_unknown_name_is_refused() -> None:
    model = build_model(get_preset("fast"))
    with pytest.raises(UserError, match="vector"):
        feature_maps(model, torch.randn(1, 3, 32, 32), model.module_name(len(model.spec.layers) - 1))
    with pytest.raises(UserError, match="no module"):
        feature_maps(model, torch.randn(1, 3, 32, 32), "layers.99")


def test_tile_lays_maps_in_a_grid_each_scaled_on_its_own() -> None:
    maps = np.stack([np.full((4, 4), 5.0), np.arange(16.0).reshape(4, 4), -np.arange(16.0).reshape(4, 4)])
    grid = tile(maps, columns=2)
    assert grid.shape == (9, 9) and np.isnan(grid[4]).all() and np.isnan(grid[5:, 5:]).all()
    assert grid[0, 5] == 0 and grid[3, 8] == 1 and (grid[:4, :4] == 0).all()
