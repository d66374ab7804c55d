"""SGD with momentum (plain or Nesterov) and L2 weight decay, without torch.optim.

Every torch.optim optimizer imports torch._dynamo when it is built, which costs about a second of a
process's start-up on a 2-core CPU: a large share of a half-minute training run. This one does the same
arithmetic as torch.optim.SGD (dampening 0, not maximising), in the same order, so a run gives the same
weights with either, and it reads and writes torch.optim.SGD's state_dict format, so checkpoints move between
the two. Adam and AdamW still come from torch.optim (`s7core.train.make_optimizer`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from s7core.errors import UserError


class OptimizerStateError(UserError):
    """A saved optimizer state that does not fit the network being trained."""


class SGD:
    """Stochastic gradient descent with momentum, for one group of parameters.

    Per parameter with a gradient g: g += weight_decay * p; the momentum buffer b is g on the first step and
    momentum * b + g after it; then p -= lr * (g + momentum * b) with Nesterov momentum, else p -= lr * b.
    Parameters without a gradient (frozen layers) are left alone and get no buffer. `param_groups[0]["lr"]`
    is read at each step, so a schedule sets it there, as with torch's optimizers.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs a momentum above 0")
        group = {"params": list(params), "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.param_groups: list[dict[str, Any]] = [{**group, "nesterov": nesterov}]
        self.buffers: dict[int, torch.Tensor] = {}  # parameter index -> momentum buffer

    @property
    def params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum, decay, nesterov = group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad.add(p, alpha=decay) if decay else p.grad
            if momentum:
                buf = self.buffers.get(i)
                if buf is None:
                    buf = self.buffers[i] = grad.clone().detach()
                else:
                    buf.mul_(momentum).add_(grad)
                grad = grad.add(buf, alpha=momentum) if nesterov else buf
            p.add_(grad, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.SGD's format: the buffers by parameter index, and the one group's settings."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group.update(dampening=0, maximize=False, foreach=None, differentiable=False, fused=None)
        group["params"] = list(range(len(self.params)))
        return {"state": {i: {"momentum_buffer": b} for i, b in self.buffers.items()}, "param_groups": [group]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take the momentum buffers of a saved state (this class's or torch.optim.SGD's); the settings stay
        those this optimizer was built with, which come from the run's config."""
        groups, saved = state.get("param_groups"), state.get("state")
        if not isinstance(groups, list) or len(groups) != 1 or not isinstance(saved, dict):
            raise OptimizerStateError("the checkpoint's optimizer state is not that of SGD with one parameter group")
        if len(groups[0].get("params", ())) != len(self.params):
            raise OptimizerStateError(
                f"the checkpoint's optimizer holds {len(groups[0].get('params', ()))} parameters, the network "
                f"{len(self.params)}: it was saved for another network — resume it with the network it trained"
            )
        buffers = {}
        for key, entry in saved.items():
            i, buf = int(key), entry.get("momentum_buffer") if isinstance(entry, dict) else None
            if buf is None:
                continue
            if not 0 <= i < len(self.params) or buf.shape != self.params[i].shape:
                raise OptimizerStateError(f"the checkpoint's momentum for parameter {i} does not fit the network")
            buffers[i] = buf.to(self.params[i].device, self.params[i].dtype).clone()
        self.buffers = buffers
