"""The dashboard shell and the design pages (Architecture, Receptive field), driven through AppTest.

AppTest cannot type into st.data_editor; a keyed editor is driven the way the browser
drives it, by assigning its edit state (edited_rows / added_rows / deleted_rows). AppTest
keeps the sidebar's elements of the first run only (under st.navigation), so sidebar
checks look at a fresh app.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from pages import _shared as sh
from s7core import runs
from s7core.config import TrainConfig
from s7core.data import make_tiny_cifar10, normalize, synthetic_cifar10
from s7core.links import spec_from_link, spec_to_link
from s7core.names import module_name, position_of
from s7core.rf.effective import effective_rf
from s7core.rf.table import rf_table, unit_window
from s7core.rules import RuleSettings, check_rules
from s7core.spec import get_preset, layer, make_block, spec_from_dict
from s7core.summary import summarize

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 60  # the first run imports torch and builds the parameter table


@pytest.fixture(autouse=True)
def _no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test starts with an empty data folder unless it makes one."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("S7_DATA_DIR", str(empty))
    return empty


def _app(**query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.main.metric if m.label == label)


def _editor(at: AppTest):
    (editor,) = at.data_editor
    return editor


def _edit(at: AppTest, **delta) -> AppTest:
    """Apply one data-editor edit the way the browser sends it, then rerun."""
    state = {"edited_rows": {}, "added_rows": [], "deleted_rows": [], **delta}
    at.session_state[_editor(at).key] = state
    return at.run()


def _rf_column(at: AppTest) -> list[int]:
    """The rf column of the page's RF table."""
    frame = next(df.value for df in at.main.dataframe if "rf" in df.value.columns and "jump_out" in df.value.columns)
    return frame["rf"].tolist()


# ---------------------------------------------------------------- the shell


def test_app_opens_on_architecture_with_the_seed_net_and_sidebar() -> None:
    at = _app()
    assert not at.exception
    assert at.title[0].value == "Architecture"
    assert _metric(at, "Parameters") == "925,706"
    assert _metric(at, "Global RF") == "64 px"
    assert len(_editor(at).value) == 27
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown)
    assert "seed" in sidebar_text and "Rules passed: 4 of 4" in sidebar_text
    assert any("CIFAR-10 not found" in w.value and "S7_DATA_DIR" in w.value for w in at.sidebar.warning)
    assert any("Device:" in c.value for c in at.sidebar.caption)


def test_sidebar_reports_a_found_data_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S7_DATA_DIR", str(make_tiny_cifar10(tmp_path / "tiny")))
    at = _app()
    assert not at.exception
    assert any("CIFAR-10 found (bin)" in s.value for s in at.sidebar.success)


# ---------------------------------------------------------------- editing


def test_editing_a_sepconv_dilation_changes_the_rf_table() -> None:
    at = _app()
    # seed layer 7: sepconv 256 3x3 dilation 2 padding 2; dilation 1 + padding 1 keeps 14x14
    at = _edit(at, edited_rows={7: {"dilation": 1, "padding": 1}})
    seed = get_preset("seed")
    layers = list(seed.layers)
    layers[7] = replace(layers[7], dilation=1, padding=1)
    expected = [r.rf for r in rf_table(seed.with_layers(layers))]
    assert not at.exception
    assert _rf_column(at) == expected
    assert expected[-1] == 60 and _metric(at, "Global RF") == "60 px"
    assert _metric(at, "Parameters") == "925,706"  # dilation costs no parameters


def test_deleting_a_layer_changes_the_parameter_totals() -> None:
    at = _app()
    at = _edit(at, deleted_rows=[3, 4, 5])  # the second conv 128 block
    expected = summarize(get_preset("seed").with_layers(get_preset("seed").layers[:3] + get_preset("seed").layers[6:]))
    assert not at.exception
    assert expected.total_params == 925_706 - 147_456 - 256
    assert _metric(at, "Parameters") == f"{expected.total_params:,}"
    assert _rf_column(at)[-1] == 62  # one 3x3 conv at jump 1 fewer


def test_an_added_row_with_defaults_becomes_a_layer() -> None:
    at = _app(preset="tiny")
    tiny = get_preset("tiny")
    # a dropout row appended after the flatten: empty p takes the default 0.1
    at = _edit(at, added_rows=[{"type": "dropout"}])
    assert not at.exception
    assert not at.main.error
    assert spec_from_dict(at.session_state[sh.SPEC_KEY]).layers == (*tiny.layers, layer("dropout", p=0.1))


def test_an_invalid_edit_shows_the_message_and_keeps_the_last_valid_tables() -> None:
    at = _app()
    at = _edit(at, edited_rows={20: {"kernel": 9}})  # avgpool 9x9 on a 7x7 map
    assert not at.exception
    (error,) = at.main.error
    assert error.value.startswith("Row 20, column **kernel**: layer 20 (avgpool): input is 7x7")
    assert _metric(at, "Global RF") == "64 px" and _metric(at, "Parameters") == "925,706"
    # the edit is kept: fixing another cell of the same draft still carries the bad kernel
    assert at.session_state["arch_draft"][20]["kernel"] == 9
    at = _edit(at, edited_rows={20: {"kernel": 7}})
    assert not at.main.error and _metric(at, "Global RF") == "64 px"


def test_an_empty_type_cell_points_at_its_row() -> None:
    at = _app()
    at = _edit(at, added_rows=[{"channels": 8}])
    (error,) = at.main.error
    assert "Row 27, column **type**" in error.value


def test_edits_survive_a_page_switch() -> None:
    at = _app()
    at = _edit(at, edited_rows={7: {"dilation": 1, "padding": 1}})
    at.switch_page("pages/receptive_field.py").run()
    assert not at.exception
    at.switch_page("pages/architecture.py").run()
    assert not at.exception
    assert _metric(at, "Global RF") == "60 px"
    assert _editor(at).value["dilation"].tolist()[7] == 1  # the editor's input now holds the edit


# ---------------------------------------------------------------- whole-network actions


def test_loading_a_preset_replaces_the_network() -> None:
    at = _app()
    at.selectbox(key="arch_preset").set_value("tiny")
    at.button(key="arch_load_preset").click().run()
    tiny = summarize(get_preset("tiny"))
    assert not at.exception
    assert _metric(at, "Parameters") == f"{tiny.total_params:,}"
    assert len(_editor(at).value) == len(get_preset("tiny").layers)


def test_query_param_preset_loads_that_network() -> None:
    at = _app(preset="tiny")
    assert not at.exception
    assert _metric(at, "Parameters") == f"{summarize(get_preset('tiny')).total_params:,}"


def test_a_bad_link_says_so_and_shows_the_default_network() -> None:
    at = _app(preset="nope")
    assert not at.exception
    assert any("unknown preset 'nope'" in e.value for e in at.error)
    assert _metric(at, "Parameters") == "925,706"
    at = _app(spec="!!not-a-spec!!")
    assert any("link is damaged" in e.value for e in at.error)


def test_a_spec_link_round_trips_and_loads() -> None:
    tiny = get_preset("tiny")
    edited = tiny.with_layers(tiny.layers[:-3] + (layer("dropout", p=0.2),) + tiny.layers[-3:])
    params = spec_to_link(edited)
    assert spec_to_link(tiny) == {"preset": "tiny"}
    assert spec_from_link(params["spec"]) == edited
    assert spec_from_link(edited.to_json(indent=None)) == edited
    at = _app(**params)
    assert not at.exception
    assert spec_from_dict(at.session_state[sh.SPEC_KEY]) == edited


def test_uploading_a_spec_loads_it_and_a_bad_one_is_explained() -> None:
    at = _app()
    at.file_uploader(key="arch_upload").upload("tiny.json", get_preset("tiny").to_json().encode(), "application/json")
    at.run()
    assert not at.exception
    assert _metric(at, "Parameters") == f"{summarize(get_preset('tiny')).total_params:,}"
    at.file_uploader(key="arch_upload").upload("bad.json", b'{"layers": [{"type": "conv"}]}', "application/json")
    at.run()
    assert any("field 'channels' is required" in e.value for e in at.main.error)


def test_inserting_a_block_adds_its_layers() -> None:
    at = _app()
    at.selectbox(key="arch_block").set_value("sep-bn-relu")
    at.number_input(key="arch_block_channels").set_value(64)
    at.number_input(key="arch_block_at").set_value(6)  # before the first maxpool
    at.button(key="arch_insert").click().run()
    assert not at.exception
    types = _editor(at).value["type"].tolist()
    assert len(types) == 30 and types[6:9] == ["sepconv", "bn", "relu"]
    seed = get_preset("seed")
    expected = summarize(seed.with_layers(seed.layers[:6] + tuple(make_block("sep-bn-relu", 64)) + seed.layers[6:]))
    assert _metric(at, "Parameters") == f"{expected.total_params:,}"


def test_moving_a_row_down_reorders_the_layers() -> None:
    at = _app()
    at.number_input(key="arch_row").set_value(1)
    at.button(key="arch_move_down").click().run()
    assert not at.exception
    assert _editor(at).value["type"].tolist()[:3] == ["conv", "relu", "bn"]
    assert at.number_input(key="arch_row").value == 2


def test_thresholds_change_the_rule_badges() -> None:
    at = _app()
    at.number_input(key="arch_rule_min_rf").set_value(70).run()
    assert not at.exception
    badges = [m.value for m in at.main.markdown if "-badge[" in m.value]
    assert len(badges) == 4
    (rf_rule,) = [r for r in check_rules(get_preset("seed"), RuleSettings(min_rf=70)) if r.key == "rf"]
    assert rf_rule.reason.startswith("global receptive field 64, needs at least 71")
    assert f":red-badge[:material/cancel: Global receptive field above 70] :small[{rf_rule.reason}]" in badges
    assert sum(b.startswith(":green-badge") for b in badges) == 3


# ---------------------------------------------------------------- helpers


def test_editor_delta_is_applied_like_streamlit_does() -> None:
    base = sh.spec_to_rows(get_preset("tiny"))
    delta = {"edited_rows": {0: {"channels": 8}, len(base): {"p": 0.3}}, "deleted_rows": [1], "added_rows": [{}]}
    rows = sh.apply_editor_delta(base, delta)
    assert len(rows) == len(base)  # one deleted, one added
    assert rows[0]["channels"] == 8 and rows[1] == base[2]
    assert rows[-1] == dict.fromkeys(sh.TABLE_COLUMNS) | {"p": 0.3}
    assert base[0]["channels"] == 16  # the input rows are untouched


def test_each_tab_below_the_editor_draws_only_its_own_content() -> None:
    at = _app()
    frames = [df.value for df in at.main.dataframe]  # the layer editor, then what the open tab shows
    assert len(frames) == 2 and "jump_out" in frames[1].columns  # the RF table; no picture, no parameter table
    assert not at.get("plotly_chart")
    at.session_state["arch_tab"] = "RF picture"
    at = at.run()
    (picture,) = _figures(at)
    records = rf_table(get_preset("seed"))
    shown = [r for i, r in enumerate(records) if i > 0 and not (r.kernel == 1 and r.rf == records[i - 1].rf)]
    titles = [a["text"] for a in picture["layout"]["annotations"]]
    assert titles == [f"{r.name} {r.layer} · RF {r.rf}" for r in shown]  # a panel a layer; 1x1 convs left out
    boxes = picture["layout"]["shapes"]
    assert [round(b["x1"] - b["x0"]) for b in boxes] == [r.rf for r in shown]  # the box grows with the RF
    passed = [b["line"]["color"] == "#2a9d8f" for b in boxes]  # green once the RF is past 44
    assert passed == [r.rf > 44 for r in shown] and passed[-1] and not passed[0]
    assert [df.value.columns[0] for df in at.main.dataframe] == ["type"]  # the editor only
    at.session_state["arch_tab"] = "Parameters"
    at = at.run()
    (params,) = [df.value for df in at.main.dataframe if "params" in df.value.columns]
    assert params["params"].sum() == 925_706 and not at.get("plotly_chart")
    assert {"output_shape", "params", "mult_adds", "trainable"} <= set(params.columns)
    assert any("Total 925,706 parameters" in c.value for c in at.main.caption)


def test_rows_round_trip_to_the_same_spec() -> None:
    for name in ("seed", "tiny"):
        spec = get_preset(name)
        assert sh.rows_to_spec(sh.spec_to_rows(spec), spec) == spec


# ---------------------------------------------------------------- receptive-field page


def _rf_page(**query: str) -> AppTest:
    at = _app(**query)
    at.switch_page("pages/receptive_field.py").run()
    return at


def test_rf_page_without_data_offers_a_synthetic_image() -> None:
    at = _rf_page(preset="tiny")
    assert not at.exception
    assert at.title[0].value == "Receptive field"
    assert any("CIFAR-10 not found" in w.value for w in at.main.warning)
    assert at.radio(key="rf_source").value == "Synthetic"


def test_rf_page_with_a_tiny_data_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S7_DATA_DIR", str(make_tiny_cifar10(tmp_path / "tiny", n_train=20, n_test=20)))
    at = _rf_page(preset="tiny")
    assert not at.exception
    assert at.radio(key="rf_source").value == "CIFAR-10 test set"
    assert at.number_input(key="rf_image").max == 19


def test_an_edit_drops_the_link_from_the_address() -> None:
    at = _app(preset="tiny")
    assert at.query_params == {"preset": "tiny"}
    at = _edit(at, edited_rows={0: {"channels": 24}})
    assert not at.exception
    assert at.query_params == {}
    assert spec_from_dict(at.session_state[sh.SPEC_KEY]).layers[0].channels == 24


def test_share_puts_the_network_in_the_address() -> None:
    at = _app(preset="tiny")
    at = _edit(at, edited_rows={0: {"channels": 24}})
    at.button(key="arch_share").click().run()
    assert not at.exception
    shared = spec_from_link(at.query_params["spec"])
    assert shared.layers[0].channels == 24 and shared.layers[1:] == get_preset("tiny").layers[1:]


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _titled(at: AppTest, start: str) -> dict:
    """The one figure whose title starts with `start`."""
    (figure,) = [f for f in _figures(at) if f["layout"].get("title", {}).get("text", "").startswith(start)]
    return figure


def _z(trace: dict) -> np.ndarray:
    """A heatmap's values from its JSON (plotly packs arrays as base64 with a dtype and shape)."""
    z = trace["z"]
    if isinstance(z, dict):
        shape = [int(n) for n in str(z["shape"]).split(",")]
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    return np.array(z)


def _box(shape: dict) -> tuple[float, float, float, float]:
    return shape["y0"], shape["x0"], shape["y1"], shape["x1"]


def test_rf_page_draws_the_units_window_from_unit_window() -> None:
    at = _rf_page(preset="tiny")
    records = rf_table(get_preset("tiny"))
    index = [r.name for r in records].index("15.depthwise")  # 4x4 output, RF 41
    at.select_slider(key="rf_layer").set_value(index).run()
    at.slider(key="rf_row").set_value(0).run()
    at.slider(key="rf_col").set_value(3).run()
    assert not at.exception
    record = records[index]
    window = unit_window(record, 0, 3, 32)
    assert (record.name, record.size_out, record.rf) == ("15.depthwise", 4, 41)
    full, on_image = _figures(at)[0]["layout"]["shapes"]
    assert _box(full) == (window.top - 0.5, window.left - 0.5, window.bottom + 0.5, window.right + 0.5)
    assert _box(on_image) == (-0.5, window.clipped_left - 0.5, window.clipped_bottom + 0.5, 31.5)
    assert window.top < 0 and window.right > 31  # the corner unit sees padding ...
    assert f"{window.padding_fraction:.0%} on padding" in _figures(at)[0]["layout"]["title"]["text"]


def test_rf_page_keeps_the_unit_inside_a_smaller_layer() -> None:
    at = _rf_page(preset="tiny")
    at.select_slider(key="rf_layer").set_value(1).run()  # 0: 32x32 output
    at.slider(key="rf_row").set_value(30).run()
    index = [r.name for r in rf_table(get_preset("tiny"))].index("15.pointwise")
    at.select_slider(key="rf_layer").set_value(index).run()  # 4x4 output: row 30 no longer exists
    assert not at.exception
    assert at.slider(key="rf_row").value == 1 and at.slider(key="rf_row").max == 3


def test_rf_page_next_and_previous_step_through_the_layers() -> None:
    at = _rf_page(preset="tiny")
    start = at.select_slider(key="rf_layer").value
    at.button(key="rf_next").click().run()
    at.button(key="rf_next").click().run()
    at.button(key="rf_previous").click().run()
    assert not at.exception
    assert at.select_slider(key="rf_layer").value == start + 1
    frames = _figures(at)[1]["frames"]
    assert len(frames) == len(rf_table(get_preset("tiny"))) - 1  # one frame a layer, for the animation


def test_rf_page_resizes_an_uploaded_image() -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    at = _rf_page(preset="tiny")
    at.radio(key="rf_source").set_value("Upload").run()
    at.file_uploader(key="rf_upload").upload("red.png", buffer.getvalue(), "image/png")
    at.run()
    assert not at.exception
    assert any("red.png, resized from 64x48 to 32x32" in c.value for c in at.main.caption)
    image = _figures(at)[0]["data"][0]
    assert image["type"] == "image" and image["zsmooth"] is False


def test_rf_page_explains_an_upload_that_is_not_an_image() -> None:
    at = _rf_page(preset="tiny")
    at.radio(key="rf_source").set_value("Upload").run()
    at.file_uploader(key="rf_upload").upload("notes.png", b"not a picture", "image/png")
    at.run()
    assert not at.exception
    assert any("notes.png is not a PNG, JPEG" in e.value for e in at.main.error)
    assert any("synthetic image 0" in c.value for c in at.main.caption)  # the page still draws


def test_rf_page_shows_the_effective_rf_untrained_and_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=100, n_test=20)
    config = TrainConfig(epochs=1, batch_size=50, val_split=0, device="cpu", seed=1)
    run_dir = runs.create_run(get_preset("tiny"), config, runs_dir=tmp_path / "runs", name="tiny-one", data_dir=data)
    runs.execute_run(run_dir)
    monkeypatch.setenv("S7_RUNS_DIR", str(tmp_path / "runs"))
    at = _rf_page(preset="tiny")
    at.radio(key="rf_source").set_value("Synthetic").run()
    assert not at.exception
    layer = at.select_slider(key="rf_layer").value
    record = rf_table(get_preset("tiny"))[layer]
    image = normalize(torch.from_numpy(synthetic_cifar10(0, 10, seed=0)[1][0][:1]))
    untrained, trained = _titled(at, "untrained (seeded), "), _titled(at, "trained (tiny-one)")
    centre = (record.size_out - 1) // 2  # the unit sliders open on the centre unit
    assert f"unit ({centre}, {centre})" in trained["layout"]["title"]["text"]
    expected = effective_rf(runs.load_run_model(run_dir), image, module_name(*position_of(record.name)))
    np.testing.assert_allclose(_z(trained["data"][0]), expected, atol=1e-6)
    assert _z(untrained["data"][0]).shape == (32, 32)
    assert not np.allclose(_z(untrained["data"][0]), expected)


def test_rf_page_scales_the_image_to_a_larger_input() -> None:
    tiny = get_preset("tiny")
    big = replace(tiny, name="tiny-48", input_shape=(3, 48, 48))
    at = _rf_page(**spec_to_link(big))
    assert not at.exception
    assert any("scaled from 32x32 to the network's 48x48 input" in c.value for c in at.main.caption)
    assert _z(_titled(at, "untrained (seeded), ")["data"][0]).shape == (48, 48)  # the effective RF, 48x48 input
