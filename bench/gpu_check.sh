#!/usr/bin/env bash
# The CUDA paths and the recipes on a GPU, as one prepared check for a machine with one.
#
#   bench/gpu_check.sh pack [CIFAR_DIR]   # here: CIFAR-10 split into three parts under .gpu-data/ (ignored by git)
#   bench/gpu_check.sh run                # there: the CUDA tests, then `fast` (seeds 0-2) and `best` on the GPU
#
# CIFAR-10 (175 MiB) is more than one transfer to a lent GPU machine takes (64 MiB), and it barely compresses,
# so `pack` splits it into three folders of two files each. Send them one call at a time, each call carrying
# one part (the ignored folders a call leaves there stay for the next), the last call running `run`:
#   carry [".gpu-data/1"], command "true";  carry [".gpu-data/2"], command "true";
#   carry [".gpu-data/3"], command "bench/gpu_check.sh run"
# `run` puts the parts back together, checks them against SHA256SUMS, and writes a log per run under $OUT
# (or bench/out/gpu when $OUT is unset). The `best` run here has a 3-minute budget instead of its recipe's
# 11.5 minutes, so that the whole check fits in one 10-minute command; its log says what the budget bought.
set -uo pipefail
cd "$(dirname "$0")/.."
PARTS=${S7_GPU_DATA:-.gpu-data}  # where the parts are kept
PY=${PYTHON:-python3}

pack() {
    local src=${1:-../shared/data/cifar-10-batches-bin}
    [ -f "$src/test_batch.bin" ] || { echo "error: no CIFAR-10 binary folder at $src (give its path)" >&2; exit 2; }
    rm -rf "$PARTS" && mkdir -p "$PARTS"/1 "$PARTS"/2 "$PARTS"/3
    cp "$src"/data_batch_1.bin "$src"/data_batch_2.bin "$PARTS"/1/
    cp "$src"/data_batch_3.bin "$src"/data_batch_4.bin "$PARTS"/2/
    cp "$src"/data_batch_5.bin "$src"/test_batch.bin "$src"/batches.meta.txt "$PARTS"/3/
    [ -f "$src/SHA256SUMS" ] && cp "$src/SHA256SUMS" "$PARTS"/3/
    du -sh "$PARTS"/*
}

run() {
    local out=${OUT:-bench/out/gpu} data=${TMPDIR:-/tmp}/s7-cifar-10
    mkdir -p "$out" "$data"
    for part in 1 2 3; do
        [ -d "$PARTS/$part" ] || { echo "error: $PARTS/$part is missing: send it first (see the top of $0)" >&2; exit 2; }
        cp "$PARTS/$part"/* "$data"/
    done
    if [ -f "$data/SHA256SUMS" ]; then
        (cd "$data" && sha256sum --quiet -c SHA256SUMS) || { echo "error: the data parts do not match SHA256SUMS" >&2; exit 2; }
    fi
    "$PY" -c "import sys, torch; torch.cuda.is_available() or sys.exit('error: torch sees no CUDA GPU here');
print('torch', torch.__version__, '|', torch.cuda.get_device_name(0))" || exit 2
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

    echo "== the tests that touch CUDA"
    "$PY" -m pytest -q -p no:randomly -p no:cacheprovider -o addopts= tests/test_device.py tests/test_depthwise.py \
        tests/test_data_augment.py 2>&1 | tail -n 15 | tee "$out/tests.log"

    train() {  # NAME LOG ARGS...: one whole process, timed
        local name=$1 log=$2
        shift 2
        local start=$EPOCHREALTIME
        "$PY" -m s7core train --preset "$name" --recipe "$name" --device cuda --run-dir "${TMPDIR:-/tmp}/s7-gpu-$log" \
            --data-dir "$data" "$@" 2>&1 | grep -v '\[' | tee "$out/$log.log"
        awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "whole process: %.1f s\n", b - a }' | tee -a "$out/$log.log"
    }
    for seed in 0 1 2; do
        echo "== fast, seed $seed"
        train fast "fast-$seed" --seed "$seed"
    done
    echo "== best, seed 0, a 3-minute budget"
    train best best-0 --seed 0 --time-budget 3
}

case "${1:-}" in
    pack) shift; pack "$@" ;;
    run) run ;;
    *) echo "usage: $0 pack [CIFAR_DIR] | run" >&2; exit 2 ;;
esac
