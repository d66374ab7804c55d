"""How long one roster sign-in spends checking its password (argon2-cffi's PasswordHasher defaults).

    python bench/sign_in_speed.py [--checks 15] [--parallel 1]

With --parallel N, N checks run at once (threads: argon2 releases the GIL), as when a class signs in together;
the figure is then the wall time of each batch of N. Uses a throwaway roster in a temp folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s7core.classroom import Roster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=15, help="how many sign-ins (batches with --parallel)")
    parser.add_argument("--parallel", type=int, default=1, help="sign-ins at the same time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roster = Roster(tmp)
        names = [f"student{i}" for i in range(args.parallel)]
        for name in names:
            roster.add(name, "student", "correct horse battery")
        times = []
        with ThreadPoolExecutor(args.parallel) as pool:
            for _ in range(args.checks):
                start = time.perf_counter()
                list(pool.map(lambda n: roster.verify(n, "correct horse battery"), names))
                times.append(time.perf_counter() - start)
    h = roster.hasher
    print(f"argon2id time_cost={h.time_cost} memory_cost={h.memory_cost} KiB parallelism={h.parallelism}")
    print(f"{args.parallel} sign-in(s) at once, {args.checks} times: median {statistics.median(times):.3f} s, "
          f"min {min(times):.3f} s, max {max(times):.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
