"""RF tables traced from nn.Modules against hand-worked numbers, the spec tables, and measured gradients."""

import csv
import random

import pytest
import torch
import torch.nn.functional as F
from rf_cases import (
    HAND_WORKED,
    REFERENCE,
    SPEC_A,
    SPEC_C,
    check_against_gradients,
    module_layers,
    numbers,
    random_spec,
)
from torch import nn

from s7core.errors import UserError
from s7core.model import build_model
from s7core.rf.oracle import measured_rf, measured_windows
from s7core.rf.table import global_rf, rf_table
from s7core.rf.trace import rf_table_from_module
from s7core.spec import PRESETS, SpecError, get_preset, validate

# ---------------------------------------------------------------- hand-worked tables


@pytest.mark.parametrize("spec, table", HAND_WORKED)
def test_hand_worked_tables_from_modules(spec, table):
    spec = validate(spec)
    module = rf_table_from_module(build_model(spec), spec.input_shape)
    assert [(r.size_out, r.jump_out, r.rf, r.start) for r in module.records] == table
    assert module.global_rf == global_rf(spec) == table[-1][2]
    assert module.warnings == []


def test_hand_worked_specs_against_gradients():
    for spec, _ in HAND_WORKED:
        model = build_model(validate(spec))
        table = rf_table_from_module(model, spec.input_shape)
        check_against_gradients(model, table, spec.input_shape, module_layers(model, table))
    assert measured_rf(build_model(SPEC_A), (3, 12, 12)) == 12


# ---------------------------------------------------------------- reference and presets


def test_seed_module_path_reproduces_reference_table():
    spec = get_preset("seed")
    records = rf_table_from_module(build_model(spec), spec.input_shape).records
    with REFERENCE.open() as f:
        rows = list(csv.DictReader(f))
    fields = ("kernel", "dilation", "padding", "stride", "jump_out", "size_out", "rf")
    want = [(row["layer"], *(int(row[k]) if row[k] else None for k in fields)) for row in rows]
    assert [(r.layer, *(getattr(r, k) for k in fields)) for r in records] == want


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_spec_module_and_gradients_agree(name):
    spec = get_preset(name)
    model = build_model(spec)
    table = rf_table_from_module(model, spec.input_shape)
    assert [numbers(r) for r in table.records] == [numbers(r) for r in rf_table(spec)]
    assert table.global_rf == global_rf(spec)
    check_against_gradients(model, table, spec.input_shape, module_layers(model, table))


def test_random_specs_spec_module_and_gradients_agree():
    rng, checked = random.Random(7), 0
    while checked < 8:
        spec = random_spec(rng)
        try:
            validate(spec)
        except SpecError:
            continue
        model = build_model(spec)
        table = rf_table_from_module(model, spec.input_shape)
        assert [numbers(r) for r in table.records] == [numbers(r) for r in rf_table(spec)], spec.to_json()
        check_against_gradients(model, table, spec.input_shape, module_layers(model, table))
        checked += 1


# ---------------------------------------------------------------- torchvision classifiers

# Known numbers for the last spatial layer, worked by hand from the layer lists (jump 32 at the end):
#   vgg11: 3, M 4, 8, M 10, 18, 26, M 30, 46, 62, M 70, 102, 134, M 150
#   resnet18 (layer4's last conv): 435, the figure usually quoted for it
TORCHVISION = {"resnet18": 435, "vgg11": 150, "squeezenet1_0": None, "mobilenet_v2": None}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_classifiers_against_gradients(name):
    torchvision = pytest.importorskip("torchvision")
    model = getattr(torchvision.models, name)(weights=None)
    shape = (3, 224, 224)
    table = rf_table_from_module(model, shape)
    assert table.warnings == []  # their residual adds and concatenations all line up
    spatial = [r for r in table.records if r.size_out > 1]
    if TORCHVISION[name]:
        assert spatial[-1].rf == TORCHVISION[name]
    merges = {r.layer for r in table.records} & {"add", "cat"}
    assert merges == {"resnet18": {"add"}, "mobilenet_v2": {"add"}, "squeezenet1_0": {"cat"}}.get(name, set())
    layers = module_layers(model, table)
    last = [r.name for r in spatial if r.name in layers][-1]
    probe = [layers[0], layers[len(layers) // 2], last]  # first, middle and last spatial layer, then the output
    check_against_gradients(model, table, shape, probe)


def test_torchvision_merge_points_are_recorded():
    torchvision = pytest.importorskip("torchvision")
    resnet = rf_table_from_module(torchvision.models.resnet18(weights=None), (3, 224, 224))
    adds = [r for r in resnet.records if r.layer == "add"]
    assert len(adds) == 8  # one per basic block
    block = {r.name: r for r in resnet.records}
    # conv1 7 (jump 2), maxpool 7 + 2 * 2 = 11 (jump 4), layer1's four 3x3 convs 11 + 4 * 8 = 43,
    # layer2.0.conv1 (stride 2) 43 + 8 = 51 (jump 8), layer2.0.conv2 51 + 16 = 67; its shortcut (1x1, stride 2)
    # keeps layer1's 43, and the add keeps the larger
    assert block["layer2.0.downsample.0"].rf == 43
    assert block["add_2"].rf == block["layer2.0.conv2"].rf == 67
    squeeze = rf_table_from_module(torchvision.models.squeezenet1_0(weights=None), (3, 224, 224))
    assert sum(r.layer == "cat" for r in squeeze.records) == 8  # one per fire module


def test_resnet18_shapes_come_from_a_meta_copy_without_running_its_layers():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None)
    real_runs = []  # the hook travels into the meta copy too; only calls on the model's own layers count
    for m in model.modules():
        m.register_forward_pre_hook(lambda mod, _args: real_runs.append(mod) if mod in own else None)
    own = set(model.modules())
    table = rf_table_from_module(model, (3, 224, 224))
    assert real_runs == []  # no arithmetic on 224x224 images: cheap enough to recompute on every edit
    assert table.global_rf == 435 + 6 * 32  # the global pool sees all 7x7 units of layer4


# ---------------------------------------------------------------- graphs the tracer must read


class Functional(nn.Module):
    """Functional pools and a view before the linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):  # 3x16x16
        x = F.relu(self.conv(x))  # 16, rf 3, jump 1, start 0
        x = F.avg_pool2d(x, 2)  # 8, rf 4, jump 2, start 0.5
        x = F.avg_pool2d(x, 3, stride=2, padding=1)  # 4, rf 4 + 2 * 2 = 8, jump 4, start 0.5
        x = x.view(x.size(0), -1)  # a flatten of the 4x4 map
        return self.fc(x)  # sees all of it: rf 8 + 3 * 4 = 20, jump 16, start 0.5 + 1.5 * 4 = 6.5


def test_functional_ops_and_view():
    model = Functional()
    table = rf_table_from_module(model, (3, 16, 16))
    assert [(r.layer, r.rf, r.jump_out, r.start) for r in table.records] == [
        ("input", 1, 1, 0.0), ("conv", 3, 1, 0.0), ("avgpool", 4, 2, 0.5), ("avgpool", 8, 4, 0.5),
        ("linear", 20, 16, 6.5),
    ]  # fmt: skip
    assert [r.name for r in table.records][1:] == ["conv", "avg_pool2d", "avg_pool2d_1", "fc"]
    assert table.global_rf == 20
    assert measured_windows(model, (3, 16, 16)) == [(0, 0, 15, 15)]  # window -3..16, clipped


def test_non_square_kernel_and_stride_tracked_per_axis():
    model = nn.Sequential(nn.Conv2d(1, 2, (3, 1), stride=(2, 1)), nn.Conv2d(2, 2, (1, 5), padding=(0, 2)))
    table = rf_table_from_module(model, (1, 9, 7))
    h, w = table.records[-1], table.width_records[-1]
    assert (h.rf, h.jump_out, h.size_out, h.start) == (3, 2, 4, 1.0)
    assert (w.rf, w.jump_out, w.size_out, w.start) == (5, 1, 7, 0.0)
    assert table.global_rf == 5  # the larger axis
    # centre unit (1, 3): rows 1 + 2 - 1 .. 1 + 2 + 1 = 2..4, cols 3 - 2 .. 3 + 2 = 1..5
    assert measured_windows(model, (1, 9, 7), ["1"]) == [(2, 1, 4, 5)]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own speed
def test_padding_same_and_dilation():
    model = nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"), nn.Conv2d(1, 1, 3, padding="same", dilation=3))
    table = rf_table_from_module(model, (1, 16, 16))
    first, second = table.records[1:]
    assert (first.padding, first.rf, first.start, first.size_out) == (1, 4, 0.5, 16)  # pads 1 before, 2 after
    assert (second.padding, second.rf, second.start) == (3, 10, 0.5)
    check_against_gradients(model, table, (1, 16, 16), ["0", "1"])


def test_adaptive_pool_and_maxpool_geometry():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(3, stride=2, padding=1, dilation=2), nn.AdaptiveMaxPool2d(4))
    table = rf_table_from_module(model, (1, 36, 36))
    conv3, pool, adaptive = table.records[1:]
    # maxpool: span 5, size (34 + 2 - 5) // 2 + 1 = 16, rf 3 + 4 = 7, start 1 + (2 - 1) * 1 = 2
    assert (pool.size_out, pool.rf, pool.jump_out, pool.start) == (16, 7, 2, 2.0)
    # adaptive 16 -> 4 is a 4x4 window, stride 4: rf 7 + 3 * 2 = 13, jump 8, start 2 + 1.5 * 2 = 5;
    # its centre unit 1 is centred on 5 + 8 = 13 and sees 7..19
    assert (adaptive.layer, adaptive.kernel, adaptive.stride, adaptive.rf, adaptive.start) == (
        "adaptive_maxpool", 4, 4, 13, 5.0,
    )  # fmt: skip
    assert table.warnings == []
    check_against_gradients(model, table, (1, 36, 36), ["0", "1", "2"])
    assert measured_windows(model, (1, 36, 36), ["2"]) == [(7, 7, 19, 19)]
    # 16 -> 3 is a regular 6-unit window with stride 5 (0..5, 5..10, 10..15): exact, no warning
    even = rf_table_from_module(nn.Sequential(model[:2], nn.AdaptiveAvgPool2d(3)), (1, 36, 36))
    assert (even.records[-1].kernel, even.records[-1].stride, even.records[-1].rf, even.warnings) == (6, 5, 17, [])
    # 16 -> 6 has windows of 3 and 4 units (0..2, 2..5, 5..7, ...): its RF is flagged as approximate
    uneven = rf_table_from_module(nn.Sequential(model[:2], nn.AdaptiveAvgPool2d(6)), (1, 36, 36))
    assert uneven.records[-1].kernel == 4 and "approximate" in uneven.warnings[0]


class Misaligned(nn.Module):
    """Two paths whose units are centred half a pixel apart, then a broadcast global mean."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, stride=2, padding=1)  # 8 -> 4, rf 3, jump 2, start 0
        self.b = nn.Conv2d(1, 1, 2, stride=2)  # 8 -> 4, rf 2, jump 2, start 0.5

    def forward(self, x):
        y = self.a(x) + self.b(x)
        return torch.cat([y, y.mean((2, 3), keepdim=True).expand_as(y)], 1)


def test_merges_keep_the_largest_rf_and_warn_when_units_do_not_line_up():
    table = rf_table_from_module(Misaligned(), (1, 8, 8))
    by_name = {r.name: r for r in table.records}
    assert (by_name["add"].layer, by_name["add"].rf, by_name["add"].start) == ("add", 3, 0.0)
    assert (by_name["mean"].rf, by_name["mean"].start) == (3 + 3 * 2, 3.0)  # whole 4x4 map
    assert (by_name["cat"].layer, by_name["cat"].rf) == ("cat", 9)
    assert len(table.warnings) == 2
    assert table.warnings[0].startswith("add: ") and "centres 0 vs 0.5" in table.warnings[0]
    # the expanded mean repeats one unit over the map (jump 0), centred on pixel 3
    assert table.warnings[1].startswith("cat: ") and "jumps 0 vs 2 and centres 0 vs 3" in table.warnings[1]


class Modern(nn.Module):
    """A channels-last block (permute, LayerNorm, Linear), a channel shuffle and a squeeze-and-excitation gate."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)  # rf 3
        self.norm, self.mix = nn.LayerNorm(4), nn.Linear(4, 4)  # over channels: no RF change
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)  # rf 5
        self.squeeze = nn.Conv2d(4, 4, 1)

    def forward(self, x):  # 3x8x8
        x = self.stem(x)
        y = self.mix(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)  # N, H, W, C and back
        x = self.dw(x + y)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        gate = torch.sigmoid(self.squeeze(x.mean((2, 3), keepdim=True)))  # 1x1, sees the whole map
        return x * gate


def test_channels_last_shuffle_and_squeeze_excitation():
    table = rf_table_from_module(Modern(), (3, 8, 8))
    assert [(r.name, r.layer, r.rf) for r in table.records] == [
        ("input", "input", 1), ("stem", "conv", 3), ("add", "add", 3), ("dw", "conv", 5),
        ("mean", "mean", 5 + 7), ("squeeze", "conv", 12), ("mul", "mul", 12),
    ]  # fmt: skip
    assert len(table.warnings) == 1  # the permutes, LayerNorm, Linear over channels and the shuffle are understood
    assert table.warnings[0].startswith("mul: a 1x1 branch (RF 12) is broadcast over the 8x8 map")


class SplitAndCount(nn.Module):
    """A split into a tuple of tensors, and an op with no meta-device kernel (nonzero: its size depends on data)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        a, b = torch.split(self.conv(x), 2, dim=1)
        return a * b + torch.nonzero(torch.ones(1)).sum()


def test_tuples_of_tensors_and_ops_without_a_meta_kernel():
    table = rf_table_from_module(SplitAndCount(), (3, 8, 8))
    assert [(r.name, r.rf) for r in table.records] == [("input", 1), ("conv", 3), ("mul", 3)]
    assert (table.global_rf, table.warnings) == (3, [])


def test_modules_the_tracer_does_not_know_are_warned_about():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PixelShuffle(1))
    table = rf_table_from_module(model, (3, 8, 8))
    assert table.warnings == ["1 (PixelShuffle): not a layer the RF tracer knows; counted as leaving the RF unchanged"]
    activations = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Hardswish(), nn.Dropout2d(), nn.InstanceNorm2d(4))
    assert rf_table_from_module(activations, (3, 8, 8)).warnings == []


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # depends on the values: torch.fx cannot trace it
            return x
        return -x


def test_untraceable_and_bad_shapes_are_user_errors(capsys):
    with pytest.raises(UserError, match="Branchy cannot be traced"):
        rf_table_from_module(Branchy(), (3, 8, 8))
    with pytest.raises(UserError, match="on a 1x32x32 input failed .*to have 3 channels, but got 1"):
        rf_table_from_module(build_model(get_preset("tiny")), (1, 32, 32))
    assert capsys.readouterr() == ("", "")  # one message, no traceback printed on the way
    with pytest.raises(UserError, match="three positive whole numbers"):
        rf_table_from_module(nn.Conv2d(3, 3, 3), (3, 32))


def test_model_is_left_as_it_was():
    model = build_model(get_preset("tiny")).train()
    model.layers[1].eval()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        rf_table_from_module(model, (3, 32, 32))
    assert model.training and not model.layers[1].training and model.layers[2].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_module_rf_serialises():
    table = rf_table_from_module(build_model(validate(SPEC_C)), (3, 4, 4))
    data = table.to_dict()
    assert data["global_rf"] == 4 and data["records"][-1]["layer"] == "linear" and data["warnings"] == []
