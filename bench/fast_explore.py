"""Explore nets and recipes for fast CIFAR-10 training on a small CPU (self-contained).

Trains on 45,000 training images and scores on the 5,000 held-out ones (never the test
set), so every choice made with it is fair. Prints seconds and validation accuracy after
each epoch, with the multiply-adds of the net, so the cost of a design is known before
it is trained.

    PYTHONPATH=. python bench/fast_explore.py --arch s24 --epochs 5 --batch 256 --lr 0.2 --whiten 1

What it found on the 2-core development machine (AMD EPYC, AVX-512 BF16; shared and busy, so the
timings are CPU seconds of one thread, batch 512, bf16 autocast, channels-last, one training step):
a32 (3x3 stem at 32x32) 0.28 s, p32 (same convs, pools before BN/ReLU) 0.21 s, s24 (2x2 stride-2
stem) 0.17 s, s32 0.26 s, w48 0.64 s, w64 0.98 s. A 3-channel conv at full resolution runs at a
few GFLOP/s, so the stride-2 stem alone saves a third of a step. Validation accuracy (5,000 held
out, flip TTA), s24:
- batch 512, lr 0.4, 6 epochs: plain stem 50.6% after epoch 1, 74.2% after 4 (run cut there);
  whitened frozen stem 58.8% after 1, 77.7% after 4, 81.4% after 6;
- whitened, batch 256, lr 0.2: 82.0% after 6 epochs, 81.1% after a 5-epoch schedule (the `fast` recipe).
OMP_WAIT_POLICY=PASSIVE: on the busy machine a step took a median 0.65 s with it and 2.7 s without.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s7core.model import build_model
from s7core.spec import NetworkSpec, conv, infer_shapes, layer, sepconv, validate

DATA = Path(__file__).resolve().parents[2] / "shared/data/cifar-10-batches-bin"
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1) * 255


def read_batches(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from CIFAR-10 binary files."""
    raw = np.concatenate([np.fromfile(DATA / n, dtype=np.uint8).reshape(-1, 3073) for n in names])
    return torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))


def cbr(c: int, k: int = 3, p: int = 1, d: int = 1, s: int = 1, sep: bool = False) -> list:
    make = sepconv if sep else conv
    return [make(c, k, p, dilation=d, stride=s), layer("bn"), layer("relu")]


def head() -> list:
    return [layer("gap"), layer("flatten"), layer("linear", channels=10, bias=True)]


POOL = [layer("maxpool")]


def cpbr(c: int, k: int = 3, p: int = 1, d: int = 1, sep: bool = False) -> list:
    """Conv, then a 2x2 max pool before BN and ReLU, so those run on a quarter of the pixels."""
    make = sepconv if sep else conv
    return [make(c, k, p, dilation=d), layer("maxpool"), layer("bn"), layer("relu")]


ARCHS = {
    # widths 32/64/128, one conv a stage, sepconv dilated at 4x4
    "a32": lambda: [*cbr(32), *POOL, *cbr(64), *POOL, *cbr(128), *POOL, *cbr(256, p=2, d=2, sep=True), *head()],
    # two convs in the middle stages
    "b32": lambda: [
        *cbr(32), *POOL, *cbr(64), *cbr(64), *POOL, *cbr(128), *cbr(128), *POOL,
        *cbr(256, p=2, d=2, sep=True), *head(),
    ],
    # stem at 32, widths 48/96/192
    "a48": lambda: [*cbr(48), *POOL, *cbr(96), *POOL, *cbr(192), *POOL, *cbr(256, p=2, d=2, sep=True), *head()],
    "c64": lambda: [
        *cbr(32), *POOL, *cbr(64), *cbr(64), *POOL, *cbr(128), *cbr(128), *POOL,
        *cbr(256), *cbr(256, p=2, d=2, sep=True), *head(),
    ],
    # pool before BN/ReLU in every stage
    "p32": lambda: [*cpbr(32), *cpbr(64), *cpbr(128), *cbr(256, p=2, d=2, sep=True), *head()],
    "p48": lambda: [*cpbr(48), *cpbr(96), *cpbr(192), *cbr(256, p=2, d=2, sep=True), *head()],
    "q32": lambda: [*cpbr(32), *cpbr(64), *cbr(64), *cpbr(128), *cbr(128), *cbr(256, p=2, d=2, sep=True), *head()],
    "q48": lambda: [*cpbr(32), *cpbr(96), *cbr(96), *cpbr(192), *cbr(192), *cbr(256, p=2, d=2, sep=True), *head()],
    # 2x2 stride-2 stem: everything after it runs at 16x16 or less
    "s32": lambda: [
        conv(32, 2, stride=2), layer("bn"), layer("relu"),
        *cpbr(64), *cpbr(128), *cbr(256), *cbr(256, p=2, d=2, sep=True), *head(),
    ],
    "s24": lambda: [
        conv(24, 2, stride=2), layer("bn"), layer("relu"),
        *cpbr(64), *cpbr(128), *cbr(256, p=2, d=2, sep=True), *head(),
    ],
    "s48": lambda: [
        conv(48, 2, stride=2), layer("bn"), layer("relu"),
        *cbr(64), *cpbr(96), *cbr(128), *cpbr(192), *cbr(256, p=2, d=2, sep=True), *head(),
    ],
    # candidates for the 15-minute preset: a 32x32 stage, two convs a stage
    "w64": lambda: [
        *cbr(24), *cpbr(64), *cbr(64), *cpbr(128), *cbr(128), *cpbr(256), *cbr(256, p=2, d=2, sep=True), *head(),
    ],
    "w48": lambda: [
        *cbr(24), *cpbr(48), *cbr(48), *cpbr(96), *cbr(96), *cpbr(192), *cbr(256, p=2, d=2, sep=True), *head(),
    ],
}  # fmt: skip


def macs(spec: NetworkSpec) -> int:
    """Multiply-adds of one forward pass of one image (convs and linear layers)."""
    shapes, total = infer_shapes(spec), 0
    for lay, s_in, s_out in zip(spec.layers, shapes, shapes[1:], strict=False):
        if lay.type == "conv":
            total += s_in.channels // lay.groups * lay.kernel**2 * s_out.numel
        elif lay.type == "sepconv":
            total += lay.kernel**2 * s_in.channels * s_out.size**2 + s_in.channels * s_out.numel
        elif lay.type == "linear":
            total += s_in.channels * lay.channels
    return total


def augment(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random flips and random translations by up to `shift` pixels (zero fill), batched."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if shift == 0:
        return x
    padded = F.pad(x, (shift,) * 4)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(2 * shift + 1):
        for j in range(2 * shift + 1):
            idx = ((dy == i) & (dx == j)).nonzero().flatten()
            if idx.numel():
                out[idx] = padded[idx, :, i : i + 32, j : j + 32]
    return out


def to_input(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() - MEAN) / STD).contiguous(memory_format=torch.channels_last)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tta: bool, bf16: bool) -> float:
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(x), 1000):
            xb = to_input(x[i : i + 1000])
            logits = model(xb).float()
            if tta:
                logits = logits + model(xb.flip(3)).float()
            correct += (logits.argmax(1) == y[i : i + 1000]).sum().item()
    model.train()
    return correct / len(x)


@torch.no_grad()
def whiten_stem(stem: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4, freeze: bool = True) -> None:
    """Set a 3-channel stem conv to +/- the top principal directions of image patches, scaled to unit variance."""
    k, c = stem.kernel_size[0], stem.out_channels
    x = to_input(images).float().contiguous()
    patches = x.unfold(2, k, stem.stride[0]).unfold(3, k, stem.stride[0])  # (N, 3, H', W', k, k)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k)  # rows ordered like the weight
    cov = patches.T @ patches / patches.shape[0]
    values, vectors = torch.linalg.eigh(cov)  # ascending
    half = min(c // 2, 3 * k * k)
    top = vectors[:, -half:].flip(1) / (values[-half:].flip(0) + eps).sqrt()  # (3kk, half)
    weight = torch.cat([top, -top], dim=1).T  # (2*half, 3kk)
    stem.weight.zero_()
    stem.weight[: 2 * half] = weight.reshape(2 * half, 3, k, k).to(stem.weight.dtype)
    stem.weight.requires_grad_(not freeze)


def lr_at(step: int, total: int, peak: float, warm: float) -> float:
    """Linear warm-up over `warm` of the steps, then linear decay to zero."""
    w = max(1, int(total * warm))
    return peak * step / w if step < w else peak * (total - step) / max(1, total - w)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="a32", choices=ARCHS)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--smoothing", type=float, default=0.1)
    p.add_argument("--warm", type=float, default=0.2)
    p.add_argument("--shift", type=int, default=2)
    p.add_argument("--bf16", type=int, default=1)
    p.add_argument("--tta", type=int, default=1)
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay per step (0 = off)")
    p.add_argument("--whiten", type=int, default=0, help="1: whitened frozen stem, 2: whitened, trained")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--full", action="store_true", help="train on all 50k, score on the test set (final only)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    x, y = read_batches([f"data_batch_{i}.bin" for i in range(1, 6)])
    if args.full:
        xv, yv = read_batches(["test_batch.bin"])
    else:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
        x, y, xv, yv = x[perm[5000:]], y[perm[5000:]], x[perm[:5000]], y[perm[:5000]]
    from s7core.rf.table import global_rf  # imported late: a file others are editing

    spec = validate(NetworkSpec(tuple(ARCHS[args.arch]()), args.arch))
    model = build_model(spec).to(memory_format=torch.channels_last)
    if args.whiten:
        whiten_stem(model.layers[0], x[:5000], freeze=args.whiten == 1)
    nparams = sum(q.numel() for q in model.parameters())
    print(f"{args.arch}: {nparams:,} params, {macs(spec) / 1e6:.1f} MMAC/img, RF {global_rf(spec)}", flush=True)
    decay = [q for q in model.parameters() if q.ndim > 1 and q.requires_grad]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}],
        lr=args.lr, momentum=args.momentum, nesterov=True,
    )  # fmt: skip
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema), use_buffers=True
    ) if args.ema else None  # fmt: skip
    steps_per_epoch = len(x) // args.batch
    total, step = steps_per_epoch * args.epochs, 0
    gen = torch.Generator().manual_seed(args.seed)
    train_time = time.perf_counter() - t0
    log = []
    for epoch in range(args.epochs):
        t1 = time.perf_counter()
        order = torch.randperm(len(x), generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * args.batch : (b + 1) * args.batch]
            xb = to_input(augment(x[idx], args.shift, gen))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, args.lr, args.warm)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16)):
                loss = F.cross_entropy(model(xb).float(), y[idx], label_smoothing=args.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
        train_time += time.perf_counter() - t1
        scored = ema.module if ema is not None else model
        acc = evaluate(scored, xv, yv, bool(args.tta), bool(args.bf16))
        log.append({"epoch": epoch + 1, "train_s": round(train_time, 1), "acc": round(acc, 4)})
        print(f"epoch {epoch + 1}: {train_time:6.1f} s train, loss {loss.item():.3f}, acc {acc:.4f}", flush=True)
    print(json.dumps({"args": vars(args), "log": log}))


if __name__ == "__main__":
    main()
