"""The parameter table against the reference torchsummary printout, PyTorch's own counts and a real forward pass."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from s7core.model import build_model, count_parameters
from s7core.spec import PRESETS, NetworkSpec, conv, get_preset, infer_shapes, layer, sepconv
from s7core.summary import Summary, format_summary, summarize, summarize_module

GOLDEN = Path(__file__).resolve().parent / "golden"
REFERENCE = GOLDEN / "seed_layers.txt"  # the reference solution's torchsummary printout (reference_README.md)


def reference_text() -> str:
    return REFERENCE.read_text()


def check_golden(name: str, text: str) -> None:
    """Compare `text` with tests/golden/NAME; S7_UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("S7_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


# ---------------------------------------------------------------- the reference net


def test_seed_table_is_the_reference_printout_exactly() -> None:
    assert format_summary(summarize(get_preset("seed"))) == reference_text()


def test_seed_rows_agree_with_the_reference_row_by_row() -> None:
    summary = summarize(get_preset("seed"))
    rows = [line.split(None, 1) for line in reference_text().splitlines()[3:34]]
    assert len(summary.rows) == len(rows) == 31
    for row, (key, rest) in zip(summary.rows, rows, strict=True):
        shape_text, params_text = rest.rsplit("]", 1)
        assert row.key == key
        assert [-1, *row.output_shape] == json.loads(shape_text + "]")
        assert row.params == int(params_text.replace(",", ""))


def test_seed_totals_and_memory_figures() -> None:
    summary = summarize(get_preset("seed"))
    assert (summary.total_params, summary.trainable_params, summary.non_trainable_params) == (925_706, 925_706, 0)
    figures = [summary.input_mb, summary.forward_backward_mb, summary.params_mb, summary.total_mb]
    assert [f"{mb:.2f}" for mb in figures] == ["0.01", "9.55", "3.53", "13.09"]
    assert summary.input_mb == 3 * 32 * 32 * 4 / 2**20
    assert summary.params_mb == 925_706 * 4 / 2**20


def test_seed_positions_and_module_paths() -> None:
    rows = summarize(get_preset("seed")).rows
    assert (rows[7].name, rows[7].position, rows[7].type) == ("layers.7.depthwise", 7, "Conv2d")
    assert (rows[8].name, rows[8].position) == ("layers.7.pointwise", 7)
    assert (rows[30].name, rows[30].position, rows[30].type) == ("layers.26", 26, "Flatten")
    assert [r.index for r in rows] == list(range(1, 32))


def test_mult_adds_by_hand() -> None:
    rows = summarize(get_preset("seed")).rows
    assert rows[0].mult_adds == 30 * 30 * 128 * 3 * 3 * 3  # each output value: a 3x3x3 dot product
    assert rows[3].mult_adds == 28 * 28 * 128 * 3 * 3 * 128
    assert rows[7].mult_adds == 14 * 14 * 128 * 3 * 3  # depthwise: one 3x3 per channel
    assert rows[8].mult_adds == 14 * 14 * 256 * 128  # pointwise
    assert rows[29].mult_adds == 512 * 10  # final 1x1 conv; its bias add is not a multiply-add
    assert rows[1].mult_adds == rows[6].mult_adds == 0  # BN and pooling are not counted
    assert summarize(get_preset("seed")).mult_adds == sum(r.mult_adds for r in rows) == 158_534_400


def test_tiny_table_matches_its_golden_files() -> None:
    summary = summarize(get_preset("tiny"))
    check_golden("tiny_summary.txt", format_summary(summary))
    check_golden("tiny_summary_extended.txt", format_summary(summary, extended=True))


def test_extended_view_keeps_the_reference_columns() -> None:
    plain = format_summary(summarize(get_preset("seed"))).splitlines()
    extended = format_summary(summarize(get_preset("seed")), extended=True).splitlines()
    for before, after in zip(plain[3:34], extended[3:34], strict=True):
        assert after.startswith(before)
    assert "  3,110,400  layers.0" in extended[3]
    assert "Mult-adds (one image): 158,534,400" in extended


# ---------------------------------------------------------------- against PyTorch, for every preset


def real_output_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Each leaf module's output shape from a real CPU forward pass of two random images."""
    shapes: list[tuple[int, ...]] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:]))) for m in leaves]
    with torch.no_grad():
        model.eval()(torch.randn(2, *input_shape))
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_counts_and_shapes_agree_with_pytorch(name: str) -> None:
    spec = get_preset(name)
    summary = summarize(spec)
    model = build_model(spec)
    assert summary.total_params == summary.trainable_params == count_parameters(model)
    assert sum(r.params for r in summary.rows) == count_parameters(model)
    assert [r.output_shape for r in summary.rows] == real_output_shapes(model, spec.input_shape)
    modules = dict(model.named_modules())
    for row in summary.rows:
        assert row.params == sum(p.numel() for p in modules[row.name].parameters())
        assert isinstance(modules[row.name], getattr(nn, row.type))  # torch's layer type, as torchsummary names it


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_last_row_of_each_spec_layer_has_the_validated_shape(name: str) -> None:
    spec = get_preset(name)
    shapes = infer_shapes(spec)
    last = {row.position: row.output_shape for row in summarize(spec).rows}
    assert sorted(last) == list(range(len(spec.layers)))
    for position, shape in last.items():
        after = shapes[position + 1]
        assert shape == ((after.channels, after.size, after.size) if after.spatial else (after.channels,))


def test_to_dict_is_plain_json() -> None:
    data = json.loads(json.dumps(summarize(get_preset("tiny")).to_dict()))
    assert data["total_params"] == 32_298 and data["non_trainable_params"] == 0
    assert data["rows"][0] == {
        "index": 1,
        "name": "layers.0",
        "position": 0,
        "type": "Conv2d",
        "output_shape": [16, 32, 32],
        "params": 432,
        "trainable": 432,
        "mult_adds": 442_368,
    }


def test_summarize_caches_per_spec_and_sees_edits() -> None:
    spec = get_preset("tiny")
    assert summarize(spec) is summarize(get_preset("tiny"))  # equal frozen specs share one entry
    wider = spec.with_layers((conv(20, 3, 1), *spec.layers[1:]))
    assert summarize(wider).rows[0].params == 20 * 3 * 9
    assert summarize(wider).total_params != summarize(spec).total_params


# ---------------------------------------------------------------- any module


class TwoBranch(nn.Module):
    """Not a spec model: a frozen stem, a reused activation, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4 * 8 * 8, 5)
        self.stem.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))  # (N, 4, 8, 8)
        return self.act(self.head(x.flatten(1)))  # (N, 5)


def test_summarize_module_on_any_module() -> None:
    model = TwoBranch().train()
    summary = summarize_module(model, (1, 8, 8))
    assert [(r.key, r.name, r.position) for r in summary.rows] == [
        ("Conv2d-1", "stem", None),
        ("ReLU-2", "act", None),
        ("Linear-3", "head", None),
        ("ReLU-4", "act", None),  # a module called twice gets two rows, as in torchsummary
    ]
    assert [r.output_shape for r in summary.rows] == [(4, 8, 8), (4, 8, 8), (5,), (5,)]
    assert summary.total_params == 40 + 256 * 5 + 5
    assert summary.trainable_params == 256 * 5 + 5 and summary.non_trainable_params == 40
    assert summary.rows[0].trainable == 0
    assert summary.rows[2].mult_adds == 256 * 5
    assert model.training, "the model's mode is restored"
    assert isinstance(summary, Summary)


def test_flat_network_with_linear_layer() -> None:
    layers = (sepconv(8, 3, 1), layer("bn"), layer("maxpool"), layer("flatten"), layer("linear", channels=10))
    spec = NetworkSpec(layers, input_shape=(3, 8, 8))
    summary = summarize(spec)
    assert [r.type for r in summary.rows] == ["Conv2d", "Conv2d", "BatchNorm2d", "MaxPool2d", "Flatten", "Linear"]
    assert summary.rows[-1].output_shape == (10,)
    assert summary.rows[-1].params == 8 * 4 * 4 * 10 + 10
    assert "Linear-6" in format_summary(summary) and "[-1, 10]" in format_summary(summary)


def test_a_spec_with_a_list_of_layers_is_summarized_too() -> None:
    spec = get_preset("tiny")
    assert summarize(NetworkSpec(list(spec.layers))).total_params == 32_298  # unhashable, so not cached
