"""Training and evaluation throughput of presets (or spec files) on this machine, per precision and memory
layout, against the CPU's peak.

    python bench/throughput.py [--presets seed fast best] [--batch-sizes 32 128] [--steps 20] [--warmup 3]
                               [--eval-batch 500] [--compile] [--json FILE]
    python bench/throughput.py --presets best bench/specs/best-640k.json --batch-sizes 512

A name ending in .json is read as a spec file (what `python -m s7core export` writes), so a net of your own,
or an earlier version of a preset, can be timed beside the presets in the same run.

Times full training steps (augmentation, forward, backward, SGD update) on random uint8 images already in
memory, the way `s7core.train` runs them, and evaluation forward passes (no test-time augmentation), for
fp32, fp32 + channels_last, bf16 + channels_last and bf16-dw32 + channels_last (depthwise convs in fp32);
`--compile` adds bf16 + channels_last through
`torch.compile` (its compile time is reported apart, not counted in the rate). Prints, per preset:
- images per wall-clock second, and per CPU-second of this process (steadier on a shared machine; the
  "vs fp32" column compares those);
- the multiply-adds per second achieved, counting a training image as 3x the forward pass's multiply-adds
  (forward, gradient of the input, gradient of the weights) and an evaluation image as 1x;
- that rate as a share of the peak: the median rate of a large matrix multiply (2048^3) at the same
  precision on this CPU, with the same threads. That is the most this CPU's math library delivers to dense
  work; convolutions on small images, depthwise convs, batch norm and pooling stay well below it.
Run it before changing the CPU defaults of `precision` and `channels_last` in TrainConfig.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s7core.config import BF16_DEPTHWISE_FP32, AugmentConfig  # noqa: E402
from s7core.data import augment_batch, normalize  # noqa: E402
from s7core.device import AUTOCAST_DTYPES, autocast  # noqa: E402
from s7core.files import atomic_write  # noqa: E402
from s7core.model import build_model  # noqa: E402
from s7core.spec import NetworkSpec, preset_or_file  # noqa: E402
from s7core.summary import summarize  # noqa: E402

# precision, NHWC, compiled; bf16-dw32 is bf16 with the depthwise convs kept in fp32 (s7core.device)
VARIANTS = (("fp32", False, False), ("fp32", True, False), ("bf16", True, False), (BF16_DEPTHWISE_FP32, True, False))
COMPILED = ("bf16", True, True)
CPU = torch.device("cpu")


@dataclass
class Row:
    preset: str
    batch: int
    precision: str
    channels_last: bool
    compiled: bool
    train_images_s: float  # wall clock
    train_images_cpu_s: float  # per CPU-second of this process
    train_gmac_s: float
    eval_images_s: float
    eval_gmac_s: float
    peak_gmac_s: float  # large-GEMM rate at this precision
    compile_s: float | None = None  # first compiled training + evaluation steps, when compiled


def gemm_peak_gmac_s(precision: str, size: int = 2048, repeats: int = 5) -> float:
    """Median multiply-adds per second (in billions) of a size^3 matrix multiply at `precision`."""
    dtype = AUTOCAST_DTYPES.get(precision, torch.float32)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: the library picks its kernel
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return size**3 / statistics.median(times) / 1e9


def measure(
    spec: NetworkSpec, batch: int, precision: str, channels_last: bool, compiled: bool, steps: int, warmup: int,
    eval_batch: int,
) -> tuple[float, float, float, float | None]:  # fmt: skip
    """Training images per wall-clock second and per CPU-second over `steps` timed steps after `warmup`
    untimed ones; evaluation images per second over `steps` timed forward passes; the compile time."""
    torch.manual_seed(0)
    model = build_model(spec).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if compiled:
        torch._dynamo.reset()  # a fresh cache per measurement: each model compiles its own graphs
        forward = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randint(0, 256, (max(batch * 4, eval_batch), 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (images.shape[0],))
    gen = torch.Generator().manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def train_step(i: int) -> None:
        sl = slice((i % 4) * batch, (i % 4 + 1) * batch)
        x = augment_batch(images[sl], AugmentConfig(), gen).contiguous(memory_format=layout)
        with autocast(CPU, precision):
            loss = F.cross_entropy(forward(x).float(), labels[sl])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    eval_x = normalize(images[:eval_batch]).contiguous(memory_format=layout)

    def eval_step() -> None:
        with torch.inference_mode(), autocast(CPU, precision):
            forward(eval_x).float()

    start = time.perf_counter()
    for i in range(warmup):
        train_step(i)
    model.eval()
    for _ in range(max(warmup, 1)):
        eval_step()
    compile_s = time.perf_counter() - start if compiled else None
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(steps):
        train_step(i)
    train_wall, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    start = time.perf_counter()
    for _ in range(steps):
        eval_step()
    eval_wall = time.perf_counter() - start
    trained = steps * batch
    return trained / train_wall, trained / train_cpu, steps * eval_batch / eval_wall, compile_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--presets", nargs="+", default=["seed"], help="preset names or spec .json files")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--eval-batch", type=int, default=500, help="images per evaluation forward pass")
    parser.add_argument("--compile", action="store_true", help="also time bf16 + channels_last compiled")
    parser.add_argument("--json", default=None, help="write every figure to this file")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    peaks = {p: gemm_peak_gmac_s(p) for p in ("fp32", "bf16")}
    peaks[BF16_DEPTHWISE_FP32] = peaks["bf16"]  # its matrix multiplies and dense convs run in bf16
    print(f"torch {torch.__version__}, {threads} CPU threads")
    print(f"peak (2048^3 matrix multiply): fp32 {peaks['fp32']:.0f} GMAC/s, bf16 {peaks['bf16']:.0f} GMAC/s")
    variants = VARIANTS + ((COMPILED,) if args.compile else ())
    rows: list[Row] = []
    for preset in args.presets:
        spec = preset_or_file(preset)
        macs = summarize(spec).mult_adds  # forward multiply-adds per image
        print(f"\n{preset}: {macs / 1e6:.1f}M multiply-adds an image (forward)")
        print(
            f"{'batch':>5}  {'variant':<24}  {'train img/s':>11}  {'img/cpu-s':>9}  {'vs fp32':>7}  "
            f"{'GMAC/s':>6}  {'of peak':>7}  {'eval img/s':>10}  {'GMAC/s':>6}  {'of peak':>7}"
        )
        for batch in args.batch_sizes:
            base = None
            for precision, channels_last, compiled in variants:
                try:
                    wall, cpu, ev, compile_s = measure(
                        spec, batch, precision, channels_last, compiled, args.steps, args.warmup, args.eval_batch
                    )
                except Exception as exc:  # torch.compile needs a working C++ compiler
                    if not compiled:
                        raise
                    print(f"{batch:>5}  compiled: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
                    continue
                base = base or cpu
                row = Row(preset, batch, precision, channels_last, compiled, wall, cpu, 3 * macs * wall / 1e9,
                          ev, macs * ev / 1e9, peaks[precision], compile_s)  # fmt: skip
                rows.append(row)
                name = f"{precision} {'channels_last' if channels_last else 'contiguous'}"
                name += " compiled" if compiled else ""
                peak = row.peak_gmac_s
                print(
                    f"{batch:>5}  {name:<24}  {wall:>11.1f}  {cpu:>9.1f}  {cpu / base:>6.2f}x  "
                    f"{row.train_gmac_s:>6.1f}  {row.train_gmac_s / peak:>6.1%}  {ev:>10.1f}  "
                    f"{row.eval_gmac_s:>6.1f}  {row.eval_gmac_s / peak:>6.1%}"
                    + (f"  (compiling took {compile_s:.1f} s)" if compile_s is not None else ""),
                    flush=True,
                )
    if args.json:
        report = {"torch": torch.__version__, "threads": threads, "peak_gmac_s": peaks}
        report["rows"] = [asdict(row) for row in rows]
        with atomic_write(args.json, binary=False) as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
