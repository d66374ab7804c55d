"""Any torchvision classifier by name: its RF table through the tracer, built without weights; its cost, its
weights (untrained, or pretrained from the cache, read with weights_only; offline a clear message), and the
views that run it. Nothing is downloaded."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from s7core.features import feature_maps
from s7core.rf import zoo
from s7core.rf.effective import effective_rf
from s7core.rf.oracle import measured_support
from s7core.rf.reach import measured_reach
from s7core.rf.zoo import ZooError, torchvision_classifiers, torchvision_rf

pytest.importorskip("torchvision")
SMALL = "mobilenet_v3_small"  # 2.5 M parameters: real weights in well under a second


def test_resnet18_by_name_has_the_tracers_table() -> None:
    table = torchvision_rf("resnet18")
    assert table.records[0].size_out == 224 and table.records[1].name == "conv1"
    assert (table.records[1].kernel, table.records[1].stride, table.records[1].rf) == (7, 2, 7)
    assert table.global_rf == max(r.rf for r in table.records) and not table.warnings


def test_the_list_holds_the_classifiers_only() -> None:
    names = torchvision_classifiers()
    assert {"resnet18", "vgg16", "mobilenet_v2"} <= set(names) and "fasterrcnn_resnet50_fpn" not in names


def test_an_unknown_name_is_refused_with_close_names() -> None:
    with pytest.raises(ZooError, match="did you mean .*resnet18"):
        torchvision_rf("resnet")
    with pytest.raises(ZooError, match="no classifier named 'nope'"):
        torchvision_rf("nope")


# ---------------------------------------------------------------- the network itself: cost, weights, images


def test_costs_come_from_torchvisions_metadata_and_agree_with_a_count() -> None:
    info = zoo.classifier_info("resnet18")
    parameters, mult_adds = zoo._counted("resnet18", (3, 224, 224))
    assert info.parameters == parameters == 11_689_512
    assert abs(info.mult_adds - mult_adds) < 0.01 * mult_adds  # torchvision's figure is rounded to 3 decimals
    assert zoo.classifier_info("resnet18", (3, 112, 112)).mult_adds == round(info.mult_adds / 4)
    assert info.weights_url.endswith(".pth") and info.weights_mb > 40 and info.budget_problem() is None


def test_what_would_take_too_long_or_too_much_memory_is_refused_with_its_numbers() -> None:
    slow = zoo.classifier_info("vgg16", (3, 448, 448)).budget_problem()
    assert slow and "61.9 G mult-adds an image at 448x448" in slow and "smaller input side" in slow
    assert zoo.classifier_info("vgg16").budget_problem() is None
    big = zoo.classifier_info("vit_h_14").budget_problem()
    assert big and "633 M parameters" in big
    with pytest.raises(ZooError, match="633 M parameters"):
        zoo.build_classifier("vit_h_14")


def test_the_untrained_network_is_seeded_and_leaves_the_callers_random_state_alone() -> None:
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a, b = zoo.build_classifier(SMALL), zoo.build_classifier(SMALL)
    assert torch.rand(1) == before
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not a.training


def _cached_file(home: Path, name: str) -> Path:
    path = zoo._weights_path(zoo.classifier_info(name).weights_url)
    assert str(path).startswith(str(home))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class Payload:
    """An object a weights file must never unpickle."""


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache, and no network: a download fails as on an offline machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url: str, target: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(zoo, "_download", offline)
    return tmp_path


def test_pretrained_weights_in_the_cache_are_loaded_with_weights_only(hub: Path) -> None:
    state = zoo.build_classifier(SMALL).state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], 0.5)
    assert not zoo.classifier_info(SMALL).cached
    torch.save(state, _cached_file(hub, SMALL))
    assert zoo.classifier_info(SMALL).cached
    model = zoo.build_classifier(SMALL, zoo.PRETRAINED)
    assert torch.equal(model.state_dict()[first], state[first])


def test_a_weights_file_that_carries_code_is_refused(hub: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1), "extra": Payload()}, _cached_file(hub, SMALL))
    with pytest.raises(zoo.WeightsError, match="not a weights file torch can read safely"):
        zoo.build_classifier(SMALL, zoo.PRETRAINED)


def test_offline_the_download_fails_with_a_message_that_says_what_to_do(hub: Path) -> None:
    with pytest.raises(zoo.WeightsError) as info:
        zoo.build_classifier(SMALL, zoo.PRETRAINED)
    message = str(info.value)
    assert "could not be downloaded from download.pytorch.org" in message and "offline" in message
    assert str(hub) in message  # where to copy the file by hand


def test_an_image_is_normalised_as_imagenet_weights_expect() -> None:
    image = np.full((8, 8, 3), 255, dtype=np.uint8)
    batch = zoo.imagenet_batch(image)
    assert batch.shape == (1, 3, 8, 8)
    assert torch.allclose(batch[0, :, 0, 0], (1 - torch.tensor(zoo.IMAGENET_MEAN)) / torch.tensor(zoo.IMAGENET_STD))
    with pytest.raises(ZooError, match="RGB image of uint8 pixels"):
        zoo.imagenet_batch(np.zeros((8, 8), dtype=np.uint8))


def test_reach_effective_rf_and_feature_maps_of_a_torchvision_classifier() -> None:
    size = 64
    table = torchvision_rf(SMALL, (3, size, size))
    index = next(i for i, r in enumerate(table.records) if r.name in zoo.module_names(SMALL) and r.size_out == 8)
    record = table.records[index]
    reach = measured_reach(zoo.meta_classifier(SMALL), (3, size, size), record.name,
                           (record, table.width_records[index]), 0, 3)  # fmt: skip
    measured = measured_support(zoo.meta_classifier(SMALL), (3, size, size), record.name, (0, 3))
    assert reach.reached == measured.sum() > 0 and np.array_equal(reach.image_mask(size), measured)
    assert reach.padding > 0 and reach.top < 0  # a top-row unit's box starts on the padding
    model = zoo.build_classifier(SMALL)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    erf = effective_rf(model, zoo.imagenet_batch(image), record.name, (0, 3))
    assert erf.shape == (size, size) and erf.max() == 1 and np.all((erf > 0) <= measured)
    maps = feature_maps(model, zoo.imagenet_batch(image), record.name)
    assert maps.shape == (model.get_submodule(record.name).out_channels, 8, 8)
