"""The lesson's commands (reach, arithmetic, features, estimate): the numbers the pages show, PNGs, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s7core.__main__ import main
from s7core.cli_lesson import REACH_COLOURS
from s7core.config import with_settings
from s7core.data import make_tiny_cifar10
from s7core.features import feature_maps, untrained_model
from s7core.names import module_name
from s7core.recipes import get_recipe
from s7core.rf.arithmetic import layer_arithmetic
from s7core.rf.oracle import measured_support
from s7core.rf.reach import HOLE, PADDING, REACHED, gridding_example, reachable_pixels
from s7core.rf.table import rf_table
from s7core.rf.zoo import meta_classifier
from s7core.spec import get_preset


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- reach


def test_reach_counts_a_units_pixels_as_the_page_does(tmp_path: Path, capsys) -> None:
    records = rf_table(get_preset("seed"))
    index = [r.name for r in records].index("10.depthwise")
    exact = reachable_pixels(records, index, 0, 5)
    png = tmp_path / "reach.png"
    argv = ["reach", "--preset", "seed", "--layer", "10.depthwise", "--row", "0", "--col", "5", "--png", str(png)]
    code, out, _ = _run([*argv, "--format", "json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert (result["reached"], result["holes"], result["padding"]) == (exact.reached, exact.holes, exact.padding)
    assert result["box"]["top"] == exact.top < 0 and result["rf"] == records[index].rf
    picture = np.asarray(Image.open(png).convert("RGB"))
    rows, cols = exact.codes.shape  # the canvas holds the image and the box, scaled up by whole pixels
    height = max(exact.top + rows, 32) - min(exact.top, 0)
    width = max(exact.left + cols, 32) - min(exact.left, 0)
    scale = picture.shape[0] // height
    assert scale > 1 and picture.shape[:2] == (height * scale, width * scale)
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert REACH_COLOURS[REACHED] in colours and REACH_COLOURS[PADDING] in colours
    code, out, _ = _run(argv, capsys)
    assert code == 0 and f"reached  {exact.reached:>5}" in out.replace(",", "") and "picture:" in out


def test_reach_of_the_gridding_network_shows_its_holes(tmp_path: Path, capsys) -> None:
    spec_file = tmp_path / "gridding.json"
    spec_file.write_text(json.dumps(gridding_example().to_dict()))
    code, out, _ = _run(["reach", "--spec", str(spec_file), "--layer", "2", "--format", "json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert (result["reached"], result["holes"], result["padding"]) == (49, 120, 0)  # one pixel in four: gridding
    png = tmp_path / "holes.png"
    assert main(["reach", "--spec", str(spec_file), "--layer", "2", "--png", str(png)]) == 0
    assert REACH_COLOURS[HOLE] in {tuple(c) for c in np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)}


def test_reach_of_a_torchvision_classifier_matches_the_gradient(capsys) -> None:
    code, out, _ = _run(
        ["reach", "--torchvision", "resnet18", "--input", "3x64x64", "--layer", "layer2.0.conv1", "--row", "0",
         "--col", "3", "--format", "json"], capsys,
    )  # fmt: skip
    assert code == 0
    measured = measured_support(meta_classifier("resnet18"), (3, 64, 64), "layer2.0.conv1", (0, 3))
    assert json.loads(out)["reached"] == measured.sum() > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["reach", "--preset", "seed", "--layer", "99"],
            "--layer '99' is not a row of the RF table: use one of 0, 3, 6, 7.depthwise",
        ),
        (
            ["reach", "--preset", "seed", "--layer", "0", "--row", "40"],
            "--row 40 is outside the 30 units of 0: use 0 to 29",
        ),
        (["reach", "--preset", "seed", "--png", "out.jpg"], "--png out.jpg: give a file name ending in .png"),
        (["reach", "--preset", "seed", "--input", "3x64x64"], "--input goes with --torchvision"),
        (["reach", "--preset", "seed", "--torchvision", "resnet18"], "give exactly one of --preset NAME, --spec"),
        (["reach", "--torchvision", "resnet18", "--layer", "add_3"], "add_3 is a graph operation (add), not a module"),
        (["reach", "--torchvision", "resnet"], "torchvision has no classifier named 'resnet'"),
        (["reach"], "give exactly one of --preset NAME, --spec FILE.json"),
        (["arithmetic", "--torchvision", "resnet18", "--layer", "add"], "--layer add is where paths meet (add)"),
        (["features", "--preset", "tiny", "--png", "m.png", "--count", "0"], "--count 0: show from 1 to 256 maps"),
        (["features", "--preset", "tiny", "--png", "m.png", "--image", "test:1"], "CIFAR-10 not found"),
        (["features", "--preset", "tiny", "--png", "m.png", "--image", "nope.png"], "cannot read --image nope.png"),
        (["features", "--preset", "tiny", "--png", "m.png", "--weights", "pretrained"], "--weights pretrained is for"),
        (["features", "--preset", "tiny", "--png", "m.png", "--run", "r"], "--run carries its own network"),
        (["estimate", "--preset", "tiny", "--weight-decay", "5"], "weight decay must be between 0 and 1, got 5.0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S7_DATA_DIR", str(tmp_path / "nothing-here"))
    code, out, err = _run(argv, capsys)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_every_lesson_command_has_help(capsys) -> None:
    for command, words in [("reach", "--png"), ("arithmetic", "--layer"), ("features", "--image"),
                           ("estimate", "--weight-decay")]:  # fmt: skip
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0 and words in capsys.readouterr().out


# ---------------------------------------------------------------- arithmetic


def test_arithmetic_of_one_layer_has_its_numbers(capsys) -> None:
    records = rf_table(get_preset("seed"))
    index = next(i for i, r in enumerate(records) if r.dilation == 2)
    code, out, _ = _run(["arithmetic", "--preset", "seed", "--layer", records[index].name], capsys)
    assert code == 0
    for step in layer_arithmetic(records, index).steps:
        assert f"{step.what} = {step.formula}" in out and f"= {step.numbers} = {step.result}" in out
    assert f"d 2, s {records[index].stride}" in out


def test_arithmetic_of_every_layer_as_json(capsys) -> None:
    records = rf_table(get_preset("tiny"))
    code, out, _ = _run(["arithmetic", "--preset", "tiny", "--format", "json"], capsys)
    assert code == 0
    layers = json.loads(out)["layers"]
    assert [a["name"] for a in layers] == [r.name for r in records[1:]]
    assert [a["steps"][0]["result"] for a in layers] == [str(r.rf) for r in records[1:]]


def test_arithmetic_of_a_torchvision_classifier_skips_where_paths_meet(capsys) -> None:
    code, out, _ = _run(["arithmetic", "--torchvision", "resnet18", "--input", "3x64x64", "--format", "json"], capsys)
    names = [a["name"] for a in json.loads(out)["layers"]]
    assert code == 0 and names[0] == "conv1" and "layer4.1.conv2" in names and not any("add" in n for n in names)


# ---------------------------------------------------------------- features


def _grid_shape(maps: int, side: int, columns: int) -> tuple[int, int]:
    rows = -(-maps // columns)
    return rows * (side + 1) - 1, min(maps, columns) * (side + 1) - 1


def test_features_of_the_untrained_network_strongest_first(tmp_path: Path, capsys) -> None:
    import torch

    from s7core.data import normalize, synthetic_cifar10

    spec = get_preset("tiny")
    png = tmp_path / "maps.png"
    code, out, _ = _run(["features", "--preset", "tiny", "--layer", "3", "--count", "12", "--columns", "4",
                         "--png", str(png)], capsys)  # fmt: skip
    assert code == 0
    image = synthetic_cifar10(0, 10, seed=0)[1][0][0]
    expected = feature_maps(untrained_model(spec), normalize(torch.from_numpy(image)[None]), module_name(3))
    channels, side = expected.shape[0], expected.shape[1]
    assert f"{channels} channels of {side}x{side}" in out
    assert "channels " + ", ".join(str(c) for c in expected.channels[:12]) in out
    height, width = _grid_shape(12, side, 4)
    picture = Image.open(png)
    scale = picture.width // width
    assert scale >= 1 and picture.size == (width * scale, height * scale)


def test_features_of_a_runs_checkpoint(tmp_path: Path, capsys) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=20, n_test=10)
    run_dir = tmp_path / "runs" / "tiny-1"
    train = ["train", "--preset", "tiny", "--run-dir", str(run_dir), "--data-dir", str(data), "--epochs", "1",
             "--batch-size", "10", "--val-split", "0", "--precision", "fp32"]  # fmt: skip
    assert main(train) == 0
    capsys.readouterr()
    png = tmp_path / "trained.png"
    code, out, _ = _run(["features", "--run", str(run_dir), "--layer", "3", "--image", "test:2", "--data-dir",
                         str(data), "--png", str(png)], capsys)  # fmt: skip
    assert code == 0 and "trained (run tiny-1)" in out and "test image 2" in out and png.is_file()


# ---------------------------------------------------------------- estimate


def test_estimate_is_the_train_pages_figure(capsys) -> None:
    from s7core.speed import TRAIN_IMAGES, estimate_run, measure_speed

    code, out, _ = _run(["estimate", "--preset", "tiny", "--recipe", "fast", "--epochs", "3", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    config = with_settings(get_recipe("fast").config, {"epochs": 3})
    speed = measure_speed(get_preset("tiny"), config)  # kept from the command's measurement, in this process
    estimate = estimate_run(config, speed, TRAIN_IMAGES)
    assert result["total_s"] == pytest.approx(estimate.total_s) and result["epochs"] == 3
    assert result["speed"]["train_images_per_s"] == speed.train_images_per_s > 0
    code, out, _ = _run(["estimate", "--preset", "tiny", "--recipe", "fast", "--epochs", "3"], capsys)
    assert code == 0 and out.startswith("tiny with the fast recipe: about ") and "for 3 epochs" in out
    assert "Measured here:" in out


def test_estimate_picks_the_networks_own_recipe_as_the_train_page_does(capsys) -> None:
    code, out, _ = _run(["estimate", "--epochs", "1"], capsys)
    assert code == 0 and out.startswith("fast with the fast recipe:")
