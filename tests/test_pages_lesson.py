"""The lesson's views through AppTest: refused inputs, the edited row named, the preset box, the RF arithmetic,
which pixels reach a unit (against the gradient), feature maps, and a torchvision classifier by name."""

from __future__ import annotations

import json
import re
import urllib.error
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from s7core.model import build_model
from s7core.names import module_name, position_of
from s7core.rf import zoo
from s7core.rf.oracle import measured_support
from s7core.rf.table import rf_table, unit_window
from s7core.rf.zoo import torchvision_rf
from s7core.spec import get_preset, infer_shapes

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 90


@pytest.fixture(autouse=True)
def _no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "no-data").mkdir()
    monkeypatch.setenv("S7_DATA_DIR", str(tmp_path / "no-data"))


def _app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _edit(at: AppTest, **delta) -> AppTest:
    (editor,) = at.data_editor
    at.session_state[editor.key] = {"edited_rows": {}, "added_rows": [], "deleted_rows": [], **delta}
    return at.run()


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _titled(at: AppTest, start: str) -> dict:
    (figure,) = [f for f in _figures(at) if f["layout"].get("title", {}).get("text", "").startswith(start)]
    return figure


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.main.markdown)


# ---------------------------------------------------------------- Architecture


def test_a_kernel_of_99_is_refused_by_name_not_clamped() -> None:
    at = _edit(_app(), edited_rows={3: {"kernel": 99}})
    (error,) = at.main.error
    assert error.value.startswith("Row 3, column **kernel**: layer 3 (conv): kernel is 99; at most 64 is allowed")
    assert "64x64" not in error.value


def test_an_edit_that_breaks_a_later_row_names_the_edited_row() -> None:
    at = _edit(_app(), edited_rows={3: {"stride": 9}})
    assert at.main.error[0].value.startswith("Row 20, column **kernel**: layer 20 (avgpool)")
    (blame,) = at.main.warning
    assert blame.value == (
        "Your edit of row 3 (conv: stride 9) makes its output 128x4x4 (it was 128x28x28); "
        "because of that, row 20 (avgpool) fails."
    )


def test_picking_a_preset_loads_it_and_a_link_renames_the_box() -> None:
    at = _app()
    assert at.selectbox(key="arch_preset").value == "seed"
    at.selectbox(key="arch_preset").set_value("fast").run()  # no button press
    assert at.main.metric[0].value == "125,274" and len(at.data_editor[0].value) == len(get_preset("fast").layers)
    linked = _app(preset="tiny")
    assert linked.selectbox(key="arch_preset").value == "tiny"
    edited = _edit(linked, edited_rows={0: {"channels": 24}})
    assert edited.selectbox(key="arch_preset").value is None  # an edited network is no preset


def test_the_rf_arithmetic_of_the_studied_layer_and_next_on_both_pages() -> None:
    records = rf_table(get_preset("seed"))
    at = _app()
    index = at.session_state["s7_layer"]
    text = _markdown(at)
    record, before = records[index], records[index - 1]
    assert f"#### Layer {record.name} · {record.layer}" in text
    span = (record.kernel - 1) * record.dilation
    assert (
        f"**RF out** = RF in + (k - 1) × d × jump in  \n= {before.rf} + ({record.kernel} - 1) × {record.dilation} × "
        f"{record.jump_in} = **{before.rf + span * record.jump_in}**" in text
    )
    assert f"**jump out** = jump in × s  \n= {record.jump_in} × {record.stride} = **{record.jump_out}**" in text
    at.button(key="arch_next").click().run()
    assert at.session_state["s7_layer"] == index + 1 and f"#### Layer {records[index + 1].name}" in _markdown(at)
    at.switch_page("pages/receptive_field.py").run()
    assert at.select_slider(key="rf_layer").value == index + 1  # the RF page studies the same layer
    at.button(key="rf_previous").click().run()
    at.switch_page("pages/architecture.py").run()
    assert f"#### Layer {records[index].name}" in _markdown(at)


def test_the_lessons_words_are_on_the_page_not_only_in_tooltips() -> None:
    captions = " ".join(c.value for c in _app().main.caption)
    for term in ("**jump**", "**groups**", "**dropout p**", "**d** dilation", "**out** output side"):
        assert term in captions, term


# ---------------------------------------------------------------- Receptive field


def _reach_counts(at: AppTest) -> tuple[int, int, int]:
    found = re.search(
        r"- \*\*([\d,]+)\*\* image pixels have a path.*\n- \*\*([\d,]+)\*\* have none.*\n- \*\*([\d,]+)\*\* lie on",
        _markdown(at),
    )
    return tuple(int(g.replace(",", "")) for g in found.groups())


def test_the_reach_map_of_the_reference_net_matches_a_gradient_measurement() -> None:
    spec = get_preset("seed")
    records = rf_table(spec)
    index = [r.name for r in records].index("10.depthwise")
    at = _app("receptive_field")
    at.select_slider(key="rf_layer").set_value(index).run()
    at.slider(key="rf_row").set_value(0).run()
    at.slider(key="rf_col").set_value(5).run()
    assert not at.exception
    measured = measured_support(build_model(spec), spec.input_shape, module_name(*position_of("10.depthwise")), (0, 5))
    reached, holes, padding = _reach_counts(at)
    record = records[index]
    assert reached == measured.sum() and reached + holes + padding == record.rf**2 and padding > 0
    figure = _titled(at, "10.depthwise, unit (0, 5): which pixels reach it")
    image = figure["data"][1]  # over the faded whole image
    box = unit_window(record, 0, 5, 32)
    assert (image["x0"], image["y0"]) == (box.left, box.top) and box.top < 0  # the box starts on the padding
    assert "untrained (seeded), 10.depthwise, unit (0, 5)" in json.dumps(_figures(at))  # the effective RF too


def test_the_gridding_example_shows_its_holes() -> None:
    at = _app("receptive_field")
    at.button(key="rf_gridding").click().run()
    assert not at.exception
    assert _reach_counts(at) == (49, 120, 0) and any("gridding" in w.value for w in at.main.warning)


@pytest.mark.parametrize("preset", ["tiny", "fast"])
def test_feature_maps_have_the_layers_channel_count_and_size(preset: str) -> None:
    spec = get_preset(preset)
    records = rf_table(spec)
    shapes = infer_shapes(spec)
    at = _app("receptive_field", preset=preset)
    for index in (1, len(records) // 2):
        at.select_slider(key="rf_layer").set_value(index).run()
        assert not at.exception
        position, part = position_of(records[index].name)
        shape = shapes[position + 1] if part != "depthwise" else replace(shapes[position], size=records[index].size_out)
        figure = _titled(at, f"feature maps, untrained (seeded): {shape.channels} x {shape.size}x{shape.size}")
        shown, columns = min(shape.channels, 32), 8  # the strongest 32 at most, eight a row, a gap between
        height, width = (int(n) for n in figure["data"][0]["z"]["shape"].split(","))
        rows = -(-shown // columns)
        assert (height, width) == (rows * (shape.size + 1) - 1, min(shown, columns) * (shape.size + 1) - 1)


def test_the_animation_opens_at_the_studied_layer() -> None:
    at = _app("receptive_field", preset="tiny")
    at.select_slider(key="rf_layer").set_value(5).run()
    animation = next(f for f in _figures(at) if f.get("frames"))
    assert animation["layout"]["sliders"][0]["active"] == 4
    record = rf_table(get_preset("tiny"))[5]
    assert animation["layout"]["title"]["text"].startswith(f"{record.name} ·")


def _torchvision_page(side: int) -> AppTest:
    """The Receptive-field page on resnet18 at a small input side (its views then take a fraction of a second)."""
    at = _app("receptive_field")
    at.session_state["rf_tv_resnet18"] = side
    at.radio(key="rf_network").set_value("A torchvision classifier").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_a_torchvision_classifier_by_name_gets_every_view() -> None:
    side = 64
    at = _torchvision_page(side)
    table = torchvision_rf("resnet18", (3, side, side))
    assert at.main.metric[0].value == f"{table.global_rf:,} px"
    frame = at.main.dataframe[0].value
    assert frame["name"].tolist() == [r.name for r in table.records]
    assert frame["rf"].tolist() == [r.rf for r in table.records]
    index = [r.name for r in table.records].index("layer2.0.conv1")
    at.select_slider(key=f"rf_tv_layer_resnet18_{side}").set_value(index).run()
    at.slider(key="rf_tv_row").set_value(0).run()
    assert not at.exception, [e.message for e in at.exception]
    col = at.slider(key="rf_tv_col").value
    measured = measured_support(zoo.meta_classifier("resnet18"), (3, side, side), "layer2.0.conv1", (0, col))
    assert f"{int(measured.sum()):,} image pixels have a path to unit (0, {col}) of layer2.0.conv1" in "\n".join(
        c.value for c in at.main.caption
    )
    _titled(at, f"layer2.0.conv1, unit (0, {col}): which pixels reach it")
    _titled(at, f"untrained, layer2.0.conv1, unit (0, {col}): RF {table.records[index].rf}")
    size = table.records[index].size_out
    figure = _titled(at, f"feature maps, untrained, layer2.0.conv1: 128 x {size}x{size}")
    assert figure["data"][0]["z"]["shape"]
    assert any("Weights shown: **untrained" in i.value for i in at.main.info)


def test_a_torchvision_classifier_too_costly_for_this_machine_is_refused_in_words() -> None:
    at = _torchvision_page(64)
    at.session_state["rf_tv_vgg16"] = 448
    at.selectbox(key="rf_tv_name").set_value("vgg16").run()
    assert not at.exception and at.main.metric[0].value == f"{torchvision_rf('vgg16', (3, 448, 448)).global_rf:,} px"
    (warning,) = [w.value for w in at.main.warning if "views that run the network are off" in w.value]
    assert "vgg16 needs 61.9 G mult-adds an image at 448x448" in warning
    assert not [f for f in _figures(at) if "feature maps" in f["layout"].get("title", {}).get("text", "")]


def test_offline_pretrained_weights_fall_back_to_untrained_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url: str, target: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(zoo, "_download", offline)
    at = _torchvision_page(64)
    weights = at.radio(key="rf_tv_weights")
    assert "downloads from PyTorch's servers once, 45 MB" in weights.format_func(zoo.PRETRAINED)
    weights.set_value(zoo.PRETRAINED).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.radio(key="rf_tv_weights").value == zoo.UNTRAINED
    (warning,) = [w.value for w in at.main.warning if "could not be downloaded" in w.value]
    assert "download.pytorch.org" in warning and "Showing the untrained network" in warning
    assert any("Weights shown: **untrained" in i.value for i in at.main.info)


def test_projector_mode_from_the_address_enlarges_the_charts() -> None:
    normal = _app("receptive_field")
    big = _app("receptive_field", projector="1")
    assert big.toggle(key="s7_projector").value is True and normal.toggle(key="s7_projector").value is False
    size = lambda at: _titled(at, "unit (")["layout"]["height"]  # noqa: E731
    assert size(big) > size(normal)
