"""s7core.optim.SGD: torch.optim.SGD's arithmetic and state format, without its start-up cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from s7core.optim import SGD, OptimizerStateError

REPO = Path(__file__).resolve().parents[1]


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    net[1].weight.requires_grad_(False)  # a frozen parameter: no gradient, no buffer, never moved
    return net


def _steps(net: nn.Module, optimizer, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        gen = torch.Generator().manual_seed(i)
        x, y = torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 4, (16,), generator=gen)
        optimizer.param_groups[0]["lr"] = 0.1 / (1 + i)  # as a schedule sets it
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize(("momentum", "decay", "nesterov"), [(0.9, 5e-4, True), (0.9, 0.0, False), (0.0, 1e-3, False)])
def test_it_gives_the_same_weights_as_torch_sgd_to_the_last_bit(momentum, decay, nesterov) -> None:
    ours, theirs = _net(), _net()
    kw = {"momentum": momentum, "weight_decay": decay, "nesterov": nesterov}
    _steps(ours, SGD(ours.parameters(), 0.1, **kw), 6)
    _steps(theirs, torch.optim.SGD(theirs.parameters(), 0.1, **kw), 6)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(ours[1].weight, torch.ones(8))  # the frozen one stayed


def test_its_state_moves_to_torch_sgd_and_back_and_training_goes_on_the_same() -> None:
    kw = {"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}
    straight = _net()
    _steps(straight, SGD(straight.parameters(), 0.1, **kw), 8)

    first = _net()
    ours = SGD(first.parameters(), 0.1, **kw)
    _steps(first, ours, 3)
    torch_half = _net()
    torch_half.load_state_dict(first.state_dict())
    theirs = torch.optim.SGD(torch_half.parameters(), 0.1, **kw)
    theirs.load_state_dict(ours.state_dict())  # ours -> torch
    _steps(torch_half, theirs, 3, start=3)
    last = _net()
    last.load_state_dict(torch_half.state_dict())
    again = SGD(last.parameters(), 0.1, **kw)
    again.load_state_dict(theirs.state_dict())  # torch -> ours
    _steps(last, again, 2, start=6)

    for a, b in zip(straight.state_dict().values(), last.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert set(again.state_dict()["state"]) == set(theirs.state_dict()["state"])  # no buffer for the frozen one


def test_a_state_saved_for_another_network_is_refused_with_what_to_do() -> None:
    small = SGD(nn.Linear(2, 2).parameters(), 0.1, momentum=0.9)
    with pytest.raises(OptimizerStateError, match="another network"):
        small.load_state_dict(SGD(_net().parameters(), 0.1, momentum=0.9).state_dict())
    wrong = small.state_dict()
    wrong["state"] = {0: {"momentum_buffer": torch.zeros(5)}}
    with pytest.raises(OptimizerStateError, match="parameter 0 does not fit"):
        small.load_state_dict(wrong)
    with pytest.raises(OptimizerStateError, match="one parameter group"):
        small.load_state_dict({"state": {}, "param_groups": []})


def test_training_on_the_cpu_never_imports_torch_dynamo(tmp_path) -> None:
    """torch.optim would import it (about a second); the whole CPU training path stays clear of it."""
    script = f"""
import sys
from s7core.config import TrainConfig
from s7core.data import load_cifar10, make_tiny_cifar10
from s7core.spec import get_preset
from s7core.train import train
data = load_cifar10(make_tiny_cifar10({str(tmp_path)!r}, n_train=64, n_test=32))
train(get_preset("tiny"), TrainConfig(epochs=1, batch_size=32, optimizer="nesterov", device="cpu"), data)
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
