"""The design commands: presets, export, summary, rf, check — output, exit codes and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from s7core.__main__ import main
from s7core.rf import trace
from s7core.spec import get_preset, sepconv, spec_from_json

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "golden"  # the reference solution's tables (reference_README.md)


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """Run `python -m s7core ARGV` in-process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def reference(name: str) -> str:
    return (REFERENCE / name).read_text()


def write_spec(tmp_path: Path, spec_or_text: object, name: str = "net.json") -> str:
    path = tmp_path / name
    path.write_text(spec_or_text if isinstance(spec_or_text, str) else spec_or_text.to_json())
    return str(path)


def undilated_seed():
    """The seed net with its dilated sepconvs made plain 3x3 (padding 1 keeps the sizes)."""
    spec = get_preset("seed")
    layers = [sepconv(lay.channels, 3, 1) if lay.type == "sepconv" else lay for lay in spec.layers]
    return spec.with_layers(layers)


# ---------------------------------------------------------------- what the issue asks for


def test_summary_of_seed_prints_the_reference_table(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "summary", "--preset", "seed")
    assert (code, err) == (0, "")
    assert out == reference("seed_layers.txt")
    assert "Total params: 925,706" in out


def test_rf_csv_of_seed_reproduces_the_reference_numbers(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "rf", "--preset", "seed", "--format", "csv")
    assert code == 0
    expected = list(csv.reader(io.StringIO(reference("seed_rf.csv"))))
    got = list(csv.reader(io.StringIO(out)))
    width = len(expected[0])
    assert [row[:width] for row in got] == expected
    assert got[0][width:] == ["name", "jump_in", "size_in", "start"]
    assert got[6][width:] == ["7.pointwise", "2", "14", "2.5"]


def test_check_seed_passes_all_four_rules(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "check", "--preset", "seed")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["PASS"] * 4
    assert "925,706 parameters, under the limit of 1,000,000 by 74,294" in lines[0]
    assert lines[-1] == "seed: 4/4 rules passed — meets every rule"


def test_check_fails_without_a_dilated_convolution(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = write_spec(tmp_path, undilated_seed())
    code, out, err = run(capsys, "check", "--spec", path)
    assert (code, err) == (1, "")
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and "Uses a dilated convolution: no dilated convolution — set dilation 2" in failed[0]
    code, _, _ = run(capsys, "check", "--spec", path, "--no-require-dilated")
    assert code == 0


def test_check_thresholds_are_settings(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "check", "--preset", "seed", "--max-params", "900000", "--min-rf", "64")
    assert code == 1
    assert "FAIL  Fewer than 900,000 parameters: 925,706 parameters, 25,707 too many" in out
    assert "FAIL  Global receptive field above 64: global receptive field 64, needs at least 65" in out
    code, out, _ = run(capsys, "check", "--preset", "tiny", "--format", "json", "--min-rf", "100")
    data = json.loads(out)
    assert code == 1 and data["passed"] is False
    assert [r["passed"] for r in data["rules"]] == [True, False, True, True]


# ---------------------------------------------------------------- bad input: exit 2, one line


BAD_SPECS = {
    "kernel too large": lambda doc: doc["layers"][0].update(kernel=40),
    "zero channels": lambda doc: doc["layers"][0].update(channels=0),
    "groups do not divide": lambda doc: doc["layers"][3].update(groups=3),
    "not 10 outputs": lambda doc: doc["layers"][-2].update(channels=9),
    "too many layers": lambda doc: doc.update(layers=doc["layers"] * 10),
    "too many channels": lambda doc: doc["layers"][0].update(channels=5000),
    "unknown type": lambda doc: doc["layers"][0].update(type="conv3d"),
    "unknown field": lambda doc: doc["layers"][0].update(size=3),
    "string for int": lambda doc: doc["layers"][0].update(kernel="3"),
    "bool for int": lambda doc: doc["layers"][0].update(kernel=True),
    "null": lambda doc: doc["layers"][0].update(kernel=None),
    "nested junk": lambda doc: doc["layers"].__setitem__(2, [[{"type": [1]}]]),
    "huge number": lambda doc: doc["layers"][0].update(channels=10**40),
}


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2 and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err


@pytest.mark.parametrize("kind", sorted(BAD_SPECS))
@pytest.mark.parametrize("command", ["summary", "rf", "check"])
def test_invalid_specs_exit_2_with_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, kind: str, command: str
) -> None:
    doc = json.loads(get_preset("tiny").to_json())
    BAD_SPECS[kind](doc)
    code, out, err = run(capsys, command, "--spec", write_spec(tmp_path, json.dumps(doc)))
    assert_one_line_error(code, out, err)


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["summary", "--preset", "nope"], ["unknown preset 'nope'", "seed"]),
        (["export", "--preset", "nope"], ["unknown preset 'nope'"]),
        (["rf", "--spec", "/no/such/file.json"], ["cannot read spec file /no/such/file.json"]),
        (["check"], ["give exactly one of --preset NAME, --spec FILE.json"]),
        (["check", "--preset", "seed", "--spec", "x.json"], ["give exactly one of"]),
        (["rf", "--module", "no_such_package_xyz.models:net"], ["cannot import no_such_package_xyz.models"]),
        (["rf", "--module", "json"], ["--module must look like package.module:callable"]),
        (["rf", "--module", "json:no_such_thing"], ["json has no attribute 'no_such_thing'"]),
        (["rf", "--module", "json:dumps", "--input", "3x224"], ["--input must be CxHxW", "'3x224'"]),
        (["rf", "--module", "json:dumps", "--input", "0x32x32"], ["--input must be CxHxW"]),
        (["summary", "--module", "json:dumps", "--input", "3x9999x9999"], ["--input 3x9999x9999 is too large"]),
        (["rf", "--module", "json:dumps", "--preset", "seed"], ["give exactly one of"]),
        (["rf", "--preset", "seed", "--input", "3x64x64"], ["--input goes with --module"]),
        (["check", "--preset", "seed", "--max-params", "-1"], ["max_params is -1"]),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture, argv: list[str], needles: list[str]) -> None:
    assert_one_line_error(*run(capsys, *argv), *needles)


@pytest.mark.parametrize("text", ["", "{not json", '{"layers": [', "\x00\x01", '{"layers": [], "x": }'])
def test_malformed_json_file_exits_2(capsys: pytest.CaptureFixture, tmp_path: Path, text: str) -> None:
    assert_one_line_error(*run(capsys, "check", "--spec", write_spec(tmp_path, text)), "not valid JSON")


def test_deeply_nested_json_exits_2(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = write_spec(tmp_path, "[" * 200_000 + "]" * 200_000)
    assert_one_line_error(*run(capsys, "summary", "--spec", path))


def test_a_folder_is_not_a_spec_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert_one_line_error(*run(capsys, "rf", "--spec", str(tmp_path)), "cannot read spec file")


# ---------------------------------------------------------------- the other commands and formats


def test_presets_table(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "presets")
    assert code == 0
    seed_line = next(line for line in out.splitlines() if line.startswith("seed "))
    assert seed_line.split()[:4] == ["seed", "925,706", "64", "4/4"]
    code, out, _ = run(capsys, "presets", "--format", "json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["tiny"]["params"] == 32_298 and rows["tiny"]["rules"] == "4/4"


def test_export_is_what_spec_reads(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "export", "--preset", "tiny")
    assert code == 0 and spec_from_json(out) == get_preset("tiny")
    path = write_spec(tmp_path, out)
    assert run(capsys, "summary", "--spec", path)[1] == run(capsys, "summary", "--preset", "tiny")[1]


def test_spec_from_stdin(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(get_preset("tiny").to_json()))
    code, out, _ = run(capsys, "check", "--spec", "-")
    assert code == 0 and out.splitlines()[-1].startswith("tiny: 4/4 rules passed")


def test_summary_csv_and_json(capsys: pytest.CaptureFixture) -> None:
    _, out, _ = run(capsys, "summary", "--preset", "seed", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 31
    assert rows[7] == {
        "index": "8",
        "name": "layers.7.depthwise",
        "position": "7",
        "type": "Conv2d",
        "output_shape": "128x14x14",
        "params": "1152",
        "trainable": "1152",
        "mult_adds": "225792",
    }
    _, out, _ = run(capsys, "summary", "--preset", "seed", "--format", "json")
    data = json.loads(out)
    assert data["total_params"] == 925_706 and len(data["rows"]) == 31
    _, out, _ = run(capsys, "summary", "--preset", "seed", "--extended")
    assert "Mult-adds (one image): 158,534,400" in out


def test_rf_table_and_json(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "rf", "--preset", "seed")
    lines = out.splitlines()
    assert code == 0 and lines[-1] == "global receptive field: 64"
    assert lines[0].split() == [
        *("layer", "kernel", "dilation", "padding", "stride", "jump_out", "size_out", "rf"),
        *("name", "jump_in", "size_in", "start"),
    ]
    assert lines[2].split() == ["input", "1", "32", "1", "input", "1", "32", "0"]
    _, out, _ = run(capsys, "rf", "--preset", "seed", "--format", "json")
    data = json.loads(out)
    assert data["global_rf"] == 64 and data["records"][13]["layer"] == "avgpool"


MODULE_SOURCE = textwrap.dedent(
    """
    from torch import nn

    def small_net():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
        )

    def broken():
        raise RuntimeError("no weights here")

    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # first unit centred on pixel 0
            self.b = nn.Conv2d(3, 4, 2, stride=2)  # first unit centred between pixels 0 and 1
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

        def forward(self, x):
            return self.head(self.a(x) + self.b(x))
    """
)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_nets.py").write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    return "my_nets"


def test_rf_of_any_module(capsys: pytest.CaptureFixture, user_module: str) -> None:
    if not hasattr(trace, "rf_table_from_module"):
        pytest.skip("rf_table_from_module is not available")
    code, out, _ = run(capsys, "rf", "--module", f"{user_module}:small_net", "--input", "3x16x16", "--format", "json")
    data = json.loads(out)
    assert code == 0
    layers = [r["layer"] for r in data["records"]]
    assert layers[0] == "input" and layers.count("conv") == 2
    conv_rfs = [r["rf"] for r in data["records"] if r["layer"] == "conv"]
    assert conv_rfs == [3, 3 + 1 + 4 * 2]  # 3x3; a 2x2 pool adds 1 (jump 2); a dilated 3x3 spans 5 at jump 2
    assert data["global_rf"] >= conv_rfs[-1]


def test_rf_of_a_module_prints_its_warnings_on_stderr(capsys: pytest.CaptureFixture, user_module: str) -> None:
    if not hasattr(trace, "rf_table_from_module"):
        pytest.skip("rf_table_from_module is not available")
    code, out, err = run(capsys, "rf", "--module", f"{user_module}:TwoPaths", "--input", "3x16x16", "--format", "csv")
    assert code == 0
    assert err and all(line.startswith("warning: ") for line in err.splitlines())  # paths that do not line up
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows[:3]] == ["input", "a", "b"]  # records name their modules
    assert "warning" not in out


def test_summary_of_any_module(capsys: pytest.CaptureFixture, user_module: str) -> None:
    code, out, _ = run(capsys, "summary", "--module", f"{user_module}:small_net", "--input", "3x16x16")
    assert code == 0
    assert "Conv2d-1" in out and "Linear-7" in out and "[-1, 10]" in out
    assert f"Total params: {3 * 8 * 9 + 8 + 8 * 8 * 9 + 8 + 8 * 10 + 10:,}" in out


def test_module_that_fails_to_build_exits_2(capsys: pytest.CaptureFixture, user_module: str) -> None:
    result = run(capsys, "summary", "--module", f"{user_module}:broken")
    assert_one_line_error(*result, "calling my_nets:broken() failed: RuntimeError: no weights here")


def test_module_that_does_not_run_on_the_input_exits_2(capsys: pytest.CaptureFixture, user_module: str) -> None:
    result = run(capsys, "summary", "--module", f"{user_module}:small_net", "--input", "1x16x16")
    assert_one_line_error(*result, "Sequential does not run on a 1x16x16 input (RuntimeError:", "channels first")


# ---------------------------------------------------------------- a real process


def run_process(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "s7core", *argv], cwd=REPO, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_exit_codes_from_a_real_process(tmp_path: Path) -> None:
    # Exit 0 takes the same path as exit 1 (in-process tests cover it); each process costs a torch import.
    failing = run_process("check", "--spec", write_spec(tmp_path, undilated_seed()))
    assert failing.returncode == 1 and "FAIL  Uses a dilated convolution" in failing.stdout
    bad = run_process("check", "--spec", "-", stdin='{"layers": [{"type": "conv", "channels": 0}]}')
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "error: layer 0 (conv): channels is 0; it must be at least 1\n"
