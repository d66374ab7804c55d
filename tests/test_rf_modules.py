"""The torch layers s7core/rf/_modules.py lists: a norm, dropout or activation torch adds shows up here."""

import inspect

from torch import nn

from s7core.rf._modules import ACTIVATIONS, DROPOUTS, NORMS, is_activation

NOT_NEUTRAL = {"RMSNorm"}  # torch classes with Norm in their name that the RF code leaves out on purpose


def _torch_classes(where: str) -> set[str]:
    """Public nn classes defined in torch.nn.modules.<where>."""
    return {
        name
        for name, value in vars(nn).items()
        if inspect.isclass(value) and value.__module__ == f"torch.nn.modules.{where}" and not name.startswith("_")
    }


def test_every_torch_norm_and_dropout_is_listed():
    for word, listed, where in (("Norm", NORMS, "NORMS"), ("Dropout", DROPOUTS, "DROPOUTS")):
        found = {n for n in dir(nn) if word in n and inspect.isclass(getattr(nn, n))} - NOT_NEUTRAL
        missing = found - {c.__name__ for c in listed}
        assert not missing, f"torch has classes the RF code does not know: {sorted(missing)}; add them to {where}"


def test_every_torch_activation_is_listed():
    known = {c.__name__ for c in ACTIVATIONS} | {"MultiheadAttention"}  # attention mixes positions
    missing = _torch_classes("activation") - known
    assert not missing, f"torch has activations the RF code does not list: {sorted(missing)}; add them to ACTIVATIONS"
    assert is_activation(nn.ReLU()) and is_activation(nn.GELU()) and not is_activation(nn.MultiheadAttention(4, 1))
    assert not is_activation(type("MyReLU", (nn.ReLU,), {})())  # a subclass may redefine forward
