"""Any torchvision classifier by name: its RF table through the tracer, built without weights."""

from __future__ import annotations

import pytest

from s7core.rf.zoo import ZooError, torchvision_classifiers, torchvision_rf

pytest.importorskip("torchvision")


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
