"""The Train, Results and Misclassified pages, driven through AppTest against runs on a tiny synthetic data set.

One run of the `tiny` preset is trained in-process for one epoch (a few seconds) and shared by the module;
each test points S7_RUNS_DIR at the runs it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runs_helpers import playing_trainer
from streamlit.testing.v1 import AppTest

from s7core import runs
from s7core.config import TrainConfig, settings
from s7core.data import make_tiny_cifar10
from s7core.evaluate import misclassified
from s7core.recipes import get_recipe
from s7core.spec import get_preset

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 60  # the first run of a page imports torch and reads the data


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small learnable data set on disk: 200 training and 100 test images."""
    return make_tiny_cifar10(tmp_path_factory.mktemp("data"), n_train=200, n_test=100)


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A runs folder holding one finished one-epoch run of the tiny preset."""
    root = tmp_path_factory.mktemp("runs")
    config = TrainConfig(epochs=1, batch_size=50, val_split=0, device="cpu", seed=1)
    run_dir = runs.create_run(
        get_preset("tiny"), config, runs_dir=root, name="tiny-one", data_dir=tiny_data, recipe="default"
    )
    runs.execute_run(run_dir)
    assert runs.run_info(run_dir).state == "finished"
    return root


@pytest.fixture
def with_data(tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("S7_DATA_DIR", str(tiny_data))
    return tiny_data


@pytest.fixture
def with_run(finished_runs: Path, with_data: Path, monkeypatch: pytest.MonkeyPatch) -> runs.RunInfo:
    monkeypatch.setenv("S7_RUNS_DIR", str(finished_runs))
    return runs.run_info(finished_runs / "tiny-one")


@pytest.fixture
def empty_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("S7_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.switch_page(f"pages/{name}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _launch_button(at: AppTest):
    (button,) = [b for b in at.button if b.label == "Launch training"]
    return button


def _metric(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.main.metric if m.label == label]


def _captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("info", "error", "warning", "success", "markdown") for e in at.get(kind))


# ---------------------------------------------------------------- no runs


@pytest.mark.parametrize("name", ["train", "results", "misclassified"])
def test_each_page_renders_with_no_runs(name: str, empty_runs: Path, with_data: Path) -> None:
    at = _page(name)
    assert "No run" in _texts(at) or "No finished run" in _texts(at)


def test_train_page_has_its_controls(empty_runs: Path, with_data: Path) -> None:
    at = _page("train")
    options = at.selectbox(key="train_network").options
    assert options[0].startswith("preset: fast (quick") and options[1].startswith("The network being edited")
    assert "preset: tiny" in options
    assert at.selectbox(key="train_recipe_fast").value == "fast"  # the quick demo: the fast net, its own recipe
    assert at.number_input(key="train_fast_lr").value == pytest.approx(get_recipe("fast").config.lr)
    assert at.number_input(key="train_fast_epochs").value == get_recipe("fast").config.epochs
    assert at.number_input(key="train_max_concurrent").value == 1
    launch = _launch_button(at)
    assert launch.label == "Launch training" and not launch.disabled


def test_picking_the_seed_preset_picks_its_own_recipe(empty_runs: Path, with_data: Path) -> None:
    at = _page("train")
    at.selectbox(key="train_network").select("seed").run()
    assert at.selectbox(key="train_recipe_seed").value == "seed"
    seed = get_recipe("seed").config
    assert seed.batch_size != get_recipe("fast").config.batch_size  # the field shows the recipe's own batch
    assert at.number_input(key="train_seed_batch_size").value == seed.batch_size


def test_reference_recipe_warns_that_it_looks_at_the_test_set(empty_runs: Path, with_data: Path) -> None:
    at = _page("train")
    at.selectbox(key="train_recipe_fast").select("reference").run()
    assert any("TEST loss" in w.value for w in at.warning)
    assert at.number_input(key="train_reference_batch_size").value == 32


def test_train_page_without_data_says_how_to_fix_it_and_cannot_launch(
    empty_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S7_DATA_DIR", str(tmp_path / "nothing-here"))
    at = _page("train")
    assert any("CIFAR-10 not found" in e.value and "S7_DATA_DIR" in e.value for e in at.main.error)
    assert _launch_button(at).disabled


def test_a_bad_setting_is_refused_with_its_reason(empty_runs: Path, with_data: Path) -> None:
    at = _page("train")
    at.number_input(key="train_fast_momentum").set_value(0.0)
    _launch_button(at).click().run()
    assert not at.exception
    assert any("nesterov" in e.value and "momentum" in e.value for e in at.main.error)
    assert runs.list_runs() == []


def test_a_validation_split_larger_than_the_data_is_refused_before_launch(empty_runs: Path, with_data: Path) -> None:
    at = _page("train")
    at.selectbox(key="train_network").select("tiny").run()  # the default recipe holds out 5,000 images
    _launch_button(at).click().run()
    assert not at.exception
    assert any("val_split 5000 would hold out every training image" in e.value for e in at.main.error)
    assert runs.list_runs() == []


def test_a_launch_beyond_the_limit_is_queued(empty_runs: Path, with_data: Path) -> None:
    busy = runs.create_run(get_preset("tiny"), TrainConfig(epochs=1), name="busy", data_dir=with_data)
    playing_trainer(busy, os.getpid())  # this test process plays the running trainer
    at = _page("train")
    at.selectbox(key="train_network").select("tiny").run()
    at.number_input(key="train_default_val_split").set_value(0)  # the tiny data set has no images to spare
    at.text_input(key="train_run_name").input("second")
    _launch_button(at).click().run()
    assert any("queued" in i.value and "busy" in i.value for i in at.main.info)
    assert runs.run_info(empty_runs / "second").state == "queued"
    table = at.dataframe[-1].value
    assert dict(zip(table["run"], table["state"], strict=True)) == {"second": "queued", "busy": "running"}


def test_a_queued_launch_keeps_the_view_on_the_run_that_trains(empty_runs: Path, with_data: Path) -> None:
    busy = runs.create_run(get_preset("tiny"), TrainConfig(epochs=1), name="busy", data_dir=with_data)
    playing_trainer(busy, os.getpid())
    at = _page("train")
    assert at.selectbox(key="train_watch_run").value == "busy"
    assert at.main.subheader[0].value == "Runs"  # the live panel comes first while a run trains
    at.selectbox(key="train_network").select("tiny").run()
    at.number_input(key="train_default_val_split").set_value(0)
    at.text_input(key="train_run_name").input("second")
    _launch_button(at).click().run()
    assert at.selectbox(key="train_watch_run").value == "busy"
    queued = runs.run_info(empty_runs / "second")
    assert queued.state == "queued" and queued.message.startswith("queued:")
    at.selectbox(key="train_watch_run").set_value("second").run()
    (bar,) = at.get("progress")
    assert bar.proto.text == queued.message  # "queued: waiting for busy ...", not "queued: queued: ..."


def test_the_time_estimate_comes_from_a_measured_speed(empty_runs: Path, with_data: Path) -> None:
    at = _page("train")
    at.selectbox(key="train_network").select("tiny").run()
    at.button(key="train_measure").click().run()
    assert not at.exception
    (estimate,) = [m.value for m in at.main.markdown if m.value.startswith("**About ")]
    epochs = get_recipe("default").config.epochs
    assert f"for {epochs} epochs" in estimate
    assert any("training images/s at batch" in c.value for c in at.main.caption)


def test_with_a_time_budget_the_estimate_is_the_plan_the_trainer_will_make(
    empty_runs: Path, with_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s7core import speed

    rate = speed.Speed(100.0, 400.0, 128, "cpu", "fp32", 200.0)
    monkeypatch.setattr(speed, "measure_speed", lambda spec, config, remember=False: rate)
    at = _page("train")
    at.selectbox(key="train_network").select("tiny").run()
    at.selectbox(key="train_recipe_tiny").select("best").run()  # the recipe with a time budget
    at.button(key="train_measure").click().run()
    assert not at.exception
    (estimate,) = [m.value for m in at.main.markdown if m.value.startswith("**About ")]
    config = get_recipe("best").config
    from s7core.data import count_train_images

    plan = speed.plan_budget(config, rate, count_train_images(with_data), speed.TEST_IMAGES)
    budget = speed.format_duration(config.time_budget * 60)
    small = f" ({plan.small_epochs} at {config.small_size}x{config.small_size} pixels)"
    assert f"for {plan.epochs} epochs{small}, the most that fit in the {budget} time budget" in estimate


def test_the_stop_button_signals_the_training_process(empty_runs: Path, with_data: Path) -> None:
    run_dir = runs.create_run(get_preset("tiny"), TrainConfig(epochs=1), name="long", data_dir=with_data)
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # plays the trainer
    try:
        playing_trainer(run_dir, trainer.pid)
        at = _page("train")
        assert at.selectbox(key="train_watch_run").value == "long"
        at.button(key="stop_long").click().run()
        assert not at.exception
        assert trainer.wait(timeout=10) == -signal.SIGTERM
    finally:
        trainer.kill()
        trainer.wait()


# ---------------------------------------------------------------- a finished run


def test_train_page_shows_a_finished_run(with_run: runs.RunInfo) -> None:
    at = _page("train")
    assert at.selectbox(key="train_watch_run").value == "tiny-one"
    assert _metric(at, "Epoch") == ["1 / 1"]
    assert _metric(at, "Best test accuracy") == [f"{with_run.best_accuracy:.2%}"]
    table = at.dataframe[-1].value
    assert table["state"].tolist() == ["finished"]


def test_results_page_shows_the_runs_accuracy(with_run: runs.RunInfo) -> None:
    at = _page("results")
    assert at.multiselect(key="results_runs").value == ["tiny-one"]
    evaluation = runs.load_predictions(with_run.path)
    assert evaluation.accuracy == pytest.approx(with_run.best_accuracy, abs=1e-6)
    assert _metric(at, "Test accuracy") == [f"{evaluation.accuracy:.2%}"]  # one figure, the saved evaluation's
    assert not _metric(at, "Best test accuracy") and not _metric(at, "Final test accuracy")
    label = "best checkpoint (epoch 1 of 1, by test accuracy), no test-time augmentation"
    assert f"Test accuracy of the {label}." in [c.value for c in at.main.caption]
    chosen = runs.read_metrics(with_run.path, "precision")[0]["text"]  # what the trainer measured and chose
    assert f"Precision: {chosen}" in [c.value for c in at.main.caption]
    assert any(f"test accuracy {evaluation.accuracy:.2%} on 100 images" in m.value for m in at.markdown)
    table = next(df.value for df in at.dataframe if "precision" in df.value.columns)
    assert table["class"].tolist() == list(evaluation.classes)
    assert table["recall"].fillna(-1).tolist() == pytest.approx(
        [-1 if v != v else v for v in evaluation.recall.tolist()]
    )
    labels = [b.label for b in at.get("download_button")]
    assert labels[0] == "Metrics (CSV)" and labels[1].startswith("Weights (checkpoint_best.pt")


def test_results_page_compares_two_runs(
    with_run: runs.RunInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    shutil.copytree(Path(with_run.path), root / "tiny-one")
    shutil.copytree(Path(with_run.path), root / "tiny-two")
    monkeypatch.setenv("S7_RUNS_DIR", str(root))
    config = root / "tiny-two" / "config.json"
    data = json.loads(config.read_text())
    data["train"]["lr"] = 0.123  # the second run differs by its learning rate
    config.write_text(json.dumps(data))
    at = _page("results")
    at.multiselect(key="results_runs").set_value(["tiny-one", "tiny-two"]).run()
    assert not at.exception
    assert len(_metric(at, "Test accuracy")) == 2
    assert sorted(at.selectbox(key="results_detail").options) == ["tiny-one", "tiny-two"]
    differences = next(df.value for df in at.dataframe if "tiny-two" in df.value.columns)
    lr_title = next(s.title for s in settings() if s.path == "lr")
    assert differences.index.tolist() == [lr_title] and differences.loc[lr_title, "tiny-two"] == "0.123"
    accuracy = next(f for f in _figures(at) if f["layout"]["title"]["text"] == "Accuracy")
    colours = {t["line"]["color"] for t in accuracy["data"]}
    assert len(colours) == 2 and accuracy["layout"]["xaxis"]["dtick"] == 1  # a colour a run; whole epochs


def test_runs_that_differ_only_by_seed_are_drawn_as_a_band(
    with_run: runs.RunInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    for i, name in enumerate(("seed-a", "seed-b")):
        shutil.copytree(Path(with_run.path), root / name)
        config = root / name / "config.json"
        data = json.loads(config.read_text())
        data["train"]["seed"] = i
        config.write_text(json.dumps(data))
    monkeypatch.setenv("S7_RUNS_DIR", str(root))
    at = _page("results")
    at.multiselect(key="results_runs").set_value(["seed-a", "seed-b"]).run()
    assert not at.exception and at.toggle(key="results_group_seeds").value
    accuracy = next(f for f in _figures(at) if f["layout"]["title"]["text"] == "Accuracy")
    names = [t.get("name") for t in accuracy["data"] if t.get("showlegend") is not False]
    assert names and all("and 1 more seeds" in n for n in names)
    assert any(t.get("fill") == "toself" for t in accuracy["data"])


def test_misclassified_filter_narrows_the_gallery(with_run: runs.RunInfo) -> None:
    evaluation = runs.load_predictions(with_run.path)
    wrong = misclassified(evaluation)
    assert len(wrong) > 24  # a one-epoch tiny net gets most of the synthetic test set wrong
    at = _page("misclassified")
    assert len(at.image) == 24 and at.pagination[0].num_pages == -(-len(wrong) // 24)
    shown = _captions(at)
    assert len(shown) == 24
    true_class = evaluation.classes[evaluation.labels[wrong[0]]]
    at.selectbox(key="mis_true").select(true_class).run()
    expected = misclassified(evaluation, true_class=true_class)
    assert 0 < len(expected) < len(wrong)
    filtered = _captions(at)
    assert len(filtered) == min(24, len(expected))
    assert all(f": {true_class} →" in c for c in filtered)
    assert filtered[
        0
    ] == f"#{expected[0]}: {true_class} → {evaluation.classes[evaluation.predictions[expected[0]]]}" + (
        f" ({evaluation.confidence[expected[0]]:.0%})"
    )


def test_misclassified_pages_through_the_mistakes(with_run: runs.RunInfo) -> None:
    at = _page("misclassified")
    first = _captions(at)
    at.pagination[0].set_value(2).run()
    assert not at.exception
    second = _captions(at)
    assert len(second) > 0 and not set(first) & set(second)


def test_a_gradcam_layer_tints_the_gallery(with_run: runs.RunInfo) -> None:
    at = _page("misclassified")
    plain = [i.proto.imgs[0].url for i in at.image]
    picker = at.selectbox(key="mis_gradcam")
    assert picker.options[0] == "off" and picker.options[1].startswith("layer 0: conv 16 3x3")
    picker.select_index(len(picker.options) - 1).run()
    assert not at.exception
    legend, *tinted = [i.proto.imgs[0].url for i in at.image]
    assert at.image[0].proto.imgs[0].caption.startswith("Grad-CAM: none")  # the colours' legend comes first
    assert len(tinted) == 24 and not set(plain) & set(tinted)  # each image now beside its overlay


def test_a_diagonal_cell_shows_the_images_it_got_right(with_run: runs.RunInfo) -> None:
    evaluation = runs.load_predictions(with_run.path)
    right = int(np.argmax(np.diag(evaluation.confusion)))
    name = evaluation.classes[right]
    at = _page("misclassified")
    at.selectbox(key="mis_true").select(name).run()
    at.selectbox(key="mis_pred").select(name).run()
    assert not at.exception
    count = int(evaluation.confusion[right, right])
    assert any(m.value.startswith(f"**{count:,}** correctly classified images of class {name}") for m in at.markdown)
    assert len(at.image) == min(count, 24)
    assert all(f"{name} → {name}" in i.proto.imgs[0].caption for i in at.image)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    (outline,) = chart["layout"]["shapes"]  # the chosen cell is outlined
    assert (outline["x0"] + 0.5, outline["y0"] + 0.5) == (right, right)
