"""The lesson's views on the command line: reach, arithmetic, features, estimate.

python -m s7core reach --preset seed --layer 10.depthwise --row 0 --col 5 --png reach.png
python -m s7core reach --torchvision resnet18 --layer layer2.0.conv1 --input 3x64x64
python -m s7core arithmetic --preset seed --layer 7
python -m s7core features --preset tiny --layer 3 --image test:7 --png maps.png
python -m s7core features --run runs/fast-1 --layer 3 --png trained.png
python -m s7core estimate --preset fast --recipe fast

Each command computes through the same s7core functions as the Receptive-field, Architecture and Train pages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from s7core.cli_design import CommandLineError, load_spec, parse_input_shape, write_table
from s7core.rf.table import RFRecord, centre_unit, rf_table
from s7core.spec import PRESETS

REACH_COLOURS = {0: (40, 40, 40), 1: (255, 214, 10), 2: (230, 57, 70)}  # hole, reached, padding (the page's)
OUTSIDE_COLOUR = (243, 243, 243)  # image pixels outside the box
PNG_SIDE = 512  # a written picture is about this many pixels across: small maps are scaled up, pixel by pixel
MAX_MAPS = 256  # feature maps in one grid at most


# ---------------------------------------------------------------- sources


def _records(args: argparse.Namespace) -> tuple[list[RFRecord], list[RFRecord], str]:
    """(height records, width records, the network's name) of --preset, --spec or --torchvision."""
    if getattr(args, "torchvision", None) is not None:
        if args.preset is not None or args.spec is not None:
            raise CommandLineError("give exactly one of --preset NAME, --spec FILE.json or --torchvision NAME")
        from s7core.rf.zoo import default_input, torchvision_rf

        shape = parse_input_shape(args.input) if args.input else default_input(args.torchvision)
        table = torchvision_rf(args.torchvision, shape)
        return table.records, table.width_records, args.torchvision
    if getattr(args, "input", None) is not None:
        raise CommandLineError("--input goes with --torchvision; a spec carries its own input_shape")
    spec = load_spec(args)
    records = rf_table(spec)
    return records, records, spec.name


def _layer_index(records: list[RFRecord], name: str | None, allowed: set[str] | None = None) -> int:
    """The RF table row named `name` (the table's 'name' column); the last row when None."""
    names = [r.name for r in records]
    usable = [n for n in names[1:] if allowed is None or n in allowed]
    if name is None:
        return names.index(usable[-1])
    if name not in names[1:]:
        shown = ", ".join(usable[:12]) + (", ..." if len(usable) > 12 else "")
        raise CommandLineError(f"--layer {name!r} is not a row of the RF table: use one of {shown}")
    if allowed is not None and name not in allowed:
        raise CommandLineError(
            f"--layer {name} is a graph operation ({records[names.index(name)].layer}), not a module, so it cannot be "
            f"looked into: pick a module layer such as {', '.join(usable[:6])}"
        )
    return names.index(name)


def _unit(value: int | None, record: RFRecord, what: str) -> int:
    """A unit index along one axis of a layer's output: the centre unit by default, else checked."""
    if value is None:
        return centre_unit(record.size_out)
    if not 0 <= value < record.size_out:
        raise CommandLineError(f"--{what} {value} is outside the {record.size_out} units of {record.name}: "
                               f"use 0 to {record.size_out - 1}")  # fmt: skip
    return value


def _png_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise CommandLineError(f"--png {text}: give a file name ending in .png")
    if not path.parent.is_dir():
        raise CommandLineError(f"--png {text}: the folder {path.parent} does not exist")
    return path


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """An (H, W) or (H, W, 3) uint8 array as a PNG, scaled up by whole pixels to about PNG_SIDE, written atomically."""
    from PIL import Image

    from s7core.files import atomic_write

    scale = max(1, PNG_SIDE // max(pixels.shape[:2]))
    image = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.Resampling.NEAREST)
    try:
        with atomic_write(path) as out:
            image.save(out, format="PNG")
    except OSError as err:
        raise CommandLineError(f"cannot write {path}: {err.strerror or err}") from None


# ---------------------------------------------------------------- reach


def reach_picture(reach: Any, size: int) -> np.ndarray:
    """The input image's canvas with the unit's box drawn in: reached yellow, holes dark, padding red."""
    rows, cols = reach.codes.shape
    top, left = min(reach.top, 0), min(reach.left, 0)
    bottom, right = max(reach.top + rows, size), max(reach.left + cols, size)
    picture = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    picture[:] = 255  # outside the image and the box: white
    picture[-top : size - top, -left : size - left] = OUTSIDE_COLOUR
    box = picture[reach.top - top : reach.top - top + rows, reach.left - left : reach.left - left + cols]
    for code, colour in REACH_COLOURS.items():
        box[reach.codes == code] = colour
    return picture


def run_reach(args: argparse.Namespace) -> int:
    """python -m s7core reach: which input pixels have a path to one unit of a layer."""
    from s7core.rf.reach import measured_reach, reachable_pixels

    records, width_records, network = _records(args)
    png = _png_path(args.png) if args.png else None
    if args.torchvision is not None:
        from s7core.rf.zoo import meta_classifier, module_names

        index = _layer_index(records, args.layer, set(module_names(args.torchvision)))
        record, width_record = records[index], width_records[index]
        row, col = _unit(args.row, record, "row"), _unit(args.col, width_record, "col")
        shape = (3, records[0].size_out, width_records[0].size_out)
        reach = measured_reach(meta_classifier(args.torchvision), shape, record.name, (record, width_record), row, col)
        how = "measured by back-propagation through a copy whose every path adds a positive amount"
    else:
        index = _layer_index(records, args.layer)
        record = records[index]
        row, col = _unit(args.row, record, "row"), _unit(args.col, record, "col")
        reach = reachable_pixels(records, index, row, col)
        how = "exact, from the layers' kernels, dilations, strides and paddings"
    h, w = reach.codes.shape
    result = {
        "network": network, "layer": record.name, "type": record.layer, "row": row, "col": col, "rf": record.rf,
        "box": {"top": reach.top, "left": reach.left, "bottom": reach.top + h - 1, "right": reach.left + w - 1},
        "reached": reach.reached, "holes": reach.holes, "padding": reach.padding,
    }  # fmt: skip
    if png is not None:
        _write_png(png, reach_picture(reach, records[0].size_out))
        result["png"] = str(png)
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    box = result["box"]
    print(f"unit ({row}, {col}) of layer {record.name} ({record.layer}) of {network}: RF {record.rf}, "
          f"box rows {box['top']} to {box['bottom']}, columns {box['left']} to {box['right']} ({how})")  # fmt: skip
    rows = [
        {"pixels": "reached", "count": reach.reached, "meaning": "image pixels with a path to the unit"},
        {"pixels": "holes", "count": reach.holes, "meaning": "image pixels in the box that no path reaches"},
        {"pixels": "padding", "count": reach.padding, "meaning": "positions of the box on zero padding"},
    ]
    print(write_table(rows, ("pixels", "count", "meaning")), end="")
    if png is not None:
        print(f"picture: {png} (reached yellow, holes dark, padding red)")
    return 0


# ---------------------------------------------------------------- arithmetic


def run_arithmetic(args: argparse.Namespace) -> int:
    """python -m s7core arithmetic: the RF formulas of a layer (or of every layer) with their numbers put in."""
    from s7core.rf.arithmetic import layer_arithmetic

    records, _, network = _records(args)
    windows = [i for i in range(1, len(records)) if records[i].kernel is not None]  # a merge (add) has no formula
    if args.layer is not None:
        index = _layer_index(records, args.layer)
        if index not in windows:
            raise CommandLineError(f"--layer {args.layer} is where paths meet ({records[index].layer}): it has no "
                                   "window, so no RF arithmetic; pick a conv or pool layer")  # fmt: skip
        indices = [index]
    else:
        indices = windows
    layers = [layer_arithmetic(records, i) for i in indices]
    if args.format == "json":
        print(json.dumps({"network": network, "layers": [a.to_dict() for a in layers]}, indent=2))
        return 0
    for i, arithmetic in zip(indices, layers, strict=True):
        r = records[i]
        print(f"layer {r.name} ({r.layer}): k {r.kernel}, d {r.dilation}, s {r.stride}, p {r.padding}, "
              f"jump in {r.jump_in}, RF in {records[i - 1].rf}")  # fmt: skip
        for step in arithmetic.steps:
            print(f"  {step.what} = {step.formula}")
            print(f"  {' ' * len(step.what)} = {step.numbers} = {step.result}")
            print(f"  {' ' * len(step.what)}   {step.meaning}")
        print()
    return 0


# ---------------------------------------------------------------- features


def _image(text: str, data_dir: str | None, size: int) -> tuple[np.ndarray, str]:
    """An (H, W, 3) uint8 image from test:N (CIFAR-10's test set), synthetic:N or an image file, at `size`."""
    from PIL import Image

    match = re.fullmatch(r"(test|synthetic):(\d{1,6})", text)
    if match:
        kind, index = match.group(1), int(match.group(2))
        if kind == "test":
            from s7core.data import load_cifar10, resolve_data_dir

            data = load_cifar10(resolve_data_dir(data_dir))
            images, labels, classes = data.test_images.numpy(), data.test_labels.numpy(), data.classes
        else:
            from s7core.data import CIFAR10_CLASSES, synthetic_cifar10

            images, labels = synthetic_cifar10(0, 10, seed=0)[1]
            classes = CIFAR10_CLASSES
        if index >= len(images):
            raise CommandLineError(f"--image {text}: the {kind} set has images 0 to {len(images) - 1}")
        image, what = images[index].transpose(1, 2, 0), f"{kind} image {index} ({classes[labels[index]]})"
    else:
        from s7core.images import load_upload

        path = Path(text)
        try:
            data_bytes = path.read_bytes()
        except OSError as err:
            raise CommandLineError(f"cannot read --image {text}: {err.strerror or err} "
                                   "(give test:N, synthetic:N or an image file)") from None  # fmt: skip
        image, what = load_upload(data_bytes, path.name), path.name
    if image.shape[:2] != (size, size):
        resample = Image.Resampling.BICUBIC if size > image.shape[0] else Image.Resampling.LANCZOS
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), resample))
        what += f", resized to {size}x{size}"
    return np.ascontiguousarray(image), what


def _features_network(args: argparse.Namespace) -> tuple[Any, list[RFRecord], Any, str, set[str] | None]:
    """(model, RF records, the batch maker, what the weights are, the layers a view can hook) of the source."""
    import torch

    from s7core.data import normalize

    def cifar_batch(image: np.ndarray) -> torch.Tensor:
        return normalize(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None])

    if args.run_path is not None:
        if args.preset is not None or args.spec is not None or args.torchvision is not None:
            raise CommandLineError("--run carries its own network: leave out --preset, --spec and --torchvision")
        from s7core.runs import find_run, load_run_model, read_run_config

        path = find_run(args.run_path)
        spec = read_run_config(path)[0]
        return load_run_model(path), rf_table(spec), cifar_batch, f"trained (run {path.name})", None
    if args.torchvision is not None:
        from s7core.rf.zoo import build_classifier, imagenet_batch, module_names

        records, _, _ = _records(args)
        weights = args.weights
        what = "untrained (random weights, seed 0)" if weights == "untrained" else "pretrained on ImageNet"
        model = build_classifier(args.torchvision, weights)
        return model, records, imagenet_batch, what, set(module_names(args.torchvision))
    if args.weights != "untrained":
        raise CommandLineError("--weights pretrained is for --torchvision; a spec's trained weights come from --run")
    from s7core.features import untrained_model

    spec = load_spec(args)
    return untrained_model(spec), rf_table(spec), cifar_batch, "untrained (seed 0)", None


def maps_picture(grid: np.ndarray) -> np.ndarray:
    """A tiled grid of maps scaled 0..1 (NaN between them) as grey pixels, the gaps white."""
    pixels = np.where(np.isnan(grid), 255, np.nan_to_num(grid) * 230).astype(np.uint8)  # 230: a map's white ≠ a gap
    return pixels


def run_features(args: argparse.Namespace) -> int:
    """python -m s7core features: the feature maps of one image at one layer, strongest first, as a PNG grid."""
    from s7core.features import feature_maps, tile
    from s7core.names import module_name, position_of

    png = _png_path(args.png)
    if not 1 <= args.count <= MAX_MAPS:
        raise CommandLineError(f"--count {args.count}: show from 1 to {MAX_MAPS} maps")
    model, records, batch, weights, hookable = _features_network(args)
    if args.layer is None:  # the last layer that still gives maps
        maps_rows = [r.name for r in records[1:] if r.layer != "linear" and r.size_out > 1]
        hookable = hookable if hookable is None else hookable & set(maps_rows)
        args.layer = [n for n in maps_rows if hookable is None or n in hookable][-1]
    index = _layer_index(records, args.layer, hookable)
    record = records[index]
    if record.layer == "linear":
        raise CommandLineError(f"--layer {record.name} gives a vector, not maps: pick an earlier layer")
    module = record.name if hookable is not None else module_name(*position_of(record.name))
    image, what = _image(args.image, args.data_dir, records[0].size_out)
    maps = feature_maps(model, batch(image), module)
    shown = min(args.count, maps.shape[0])
    _write_png(png, maps_picture(tile(maps.maps[:shown], args.columns)))
    channels, height, width = maps.shape
    print(f"layer {record.name} ({record.layer}), {weights}, on {what}: {channels} channels of {height}x{width}")
    print(f"{png}: the {shown} strongest, {min(args.columns, shown)} a row, each scaled to its own range; "
          f"channels {', '.join(str(c) for c in maps.channels[:shown])}")  # fmt: skip
    return 0


# ---------------------------------------------------------------- estimate


def run_estimate(args: argparse.Namespace) -> int:
    """python -m s7core estimate: how long a run of this network and recipe takes here, from a measured speed."""
    from s7core.cli_train import _overrides
    from s7core.config import with_settings
    from s7core.data import count_train_images
    from s7core.recipes import default_recipe, get_recipe
    from s7core.speed import TRAIN_IMAGES, describe_estimate, estimate_planned, measure_speed

    if args.preset is None and args.spec is None:
        args.preset = "fast"
    spec = load_spec(args)
    recipe = get_recipe(args.recipe or default_recipe(spec.name))
    config = with_settings(recipe.config, _overrides(args))
    images = count_train_images(args.data_dir) or TRAIN_IMAGES
    speed = measure_speed(spec, config, remember=config.time_budget > 0)  # the speed the trainer will plan from
    config, estimate, plan = estimate_planned(config, speed, images)
    headline, detail = describe_estimate(config, speed, estimate, plan)
    if args.json:
        out = {"network": spec.name, "recipe": recipe.name, "epochs": config.epochs, **dataclasses.asdict(estimate)}
        print(json.dumps({**out, "speed": dataclasses.asdict(speed)}, indent=2))
        return 0
    print(f"{spec.name} with the {recipe.name} recipe: {headline}")
    print(detail)
    return 0


# ---------------------------------------------------------------- the parser


def _add_source(parser: argparse.ArgumentParser, torchvision: bool = True) -> None:
    parser.add_argument("--preset", metavar="NAME", help=f"a built-in network: {', '.join(PRESETS)}")
    parser.add_argument("--spec", metavar="FILE.json", help="a spec file (see export); '-' reads stdin")
    if torchvision:
        parser.add_argument("--torchvision", metavar="NAME", help="a torchvision classifier by name (resnet18, ...)")
        parser.add_argument("--input", metavar="CxHxW", help="input for --torchvision (default: its training size)")


def _add_layer(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--layer", metavar="NAME", help=f"a row of the RF table, by its name: 7, 7.depthwise, "
                        f"layer2.0.conv1 (python -m s7core rf lists them; default: {default})")  # fmt: skip


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the lesson's commands (reach, arithmetic, features, estimate) to the main parser."""
    text = "which input pixels have a path to one unit: counts of reached, hole and padding pixels, and a picture"
    p = subparsers.add_parser("reach", help=text, description=text)
    _add_source(p)
    _add_layer(p, "the last row")
    p.add_argument("--row", type=int, help="the unit's row in the layer's output (default: the centre unit)")
    p.add_argument("--col", type=int, help="the unit's column in the layer's output (default: the centre unit)")
    p.add_argument("--png", metavar="FILE.png", help="also draw the box: reached yellow, holes dark, padding red")
    _add_format(p)
    p.set_defaults(run=run_reach, module=None)

    text = "the RF arithmetic of a layer with its own numbers (RF out, jump out, size out, start), or of every layer"
    p = subparsers.add_parser("arithmetic", help=text, description=text)
    _add_source(p)
    _add_layer(p, "every layer")
    _add_format(p)
    p.set_defaults(run=run_arithmetic, module=None)

    text = "the feature maps of one image at one layer, strongest channel first, as a PNG grid"
    p = subparsers.add_parser("features", help=text, description=text)
    _add_source(p)
    p.add_argument("--run", dest="run_path", metavar="RUN", help="a finished run (name or folder): its trained net")
    p.add_argument("--weights", choices=("untrained", "pretrained"), default="untrained",
                   help="--torchvision: seeded random weights, or torchvision's pretrained ones (downloaded once, "
                   "read with weights_only)")  # fmt: skip
    _add_layer(p, "the last layer with maps")
    p.add_argument("--image", default="synthetic:0", metavar="test:N|synthetic:N|FILE",
                   help="CIFAR-10 test image N, synthetic image N, or an image file (default synthetic:0)")  # fmt: skip
    p.add_argument("--data-dir", help="the CIFAR-10 folder for test:N (default: $S7_DATA_DIR or the data cache)")
    p.add_argument("--png", metavar="FILE.png", required=True, help="where to write the grid")
    p.add_argument(
        "--count", type=int, default=32, help=f"how many maps, strongest first (default 32, at most {MAX_MAPS})"
    )
    p.add_argument("--columns", type=int, default=8, help="maps a row (default 8)")
    p.set_defaults(run=run_features, module=None)

    from s7core.cli_train import _add_setting_flags
    from s7core.recipes import RECIPES

    text = "the time a run takes on this machine, from a few timed training steps (as the Train page shows it)"
    p = subparsers.add_parser("estimate", help=text, description=text)
    _add_source(p, torchvision=False)
    p.add_argument("--recipe", help=f"training recipe: {', '.join(RECIPES)} (default: the network's own, as on the "
                   "Train page)")  # fmt: skip
    p.add_argument("--data-dir", help="the CIFAR-10 folder, for its number of training images (default: 50,000)")
    p.add_argument("--json", action="store_true", help="the estimate and the measured speed as JSON")
    _add_setting_flags(p.add_argument_group("training settings (each one given replaces the recipe's value)"))
    p.set_defaults(run=run_estimate, module=None, input=None)
