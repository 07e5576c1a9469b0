#!/usr/bin/env bash
# docs/peers.md's table: each efficient model and its plain baseline timed at a 1280 x 720 output, one thread, in
# eager PyTorch and in onnxruntime, the models of an engine in turn (interleaved), on Set14's LR images tiled into
# one frame (so SMSR's masks see natural content); then the table, generated from the JSONs. Needs the trained
# SMSR and depthwise-ghost demo runs (scripts/leaderboard.sh trains them); the shift-Ghost, EDSR and AdderEDSR demo
# networks are timed with their runs' weights when trained, else random ones (their work does not depend on them).
# Writes benchmarks/results/peers/. About 20 minutes (AdderEDSR in onnxruntime alone about 12: its adder is standard
# ops there); run nothing else meanwhile. Usage: bash scripts/peers.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS=1
repeats="${1:-7}"
out=benchmarks/results/peers
models=(options/demo/edsr_x2_demo.yml options/demo/ghost_edsr_x2_demo.yml options/demo/ghost_edsr_dw_x2_demo.yml
        options/demo/adder_edsr_x2_demo.yml options/test/SMSR/test_SMSR_demo_x2.yml
        options/test/SMSR/test_SMSR_demo_x2_dense.yml)
for engine in eager onnxruntime; do
  ghostsr benchmark "${models[@]}" --latency_only --engine "$engine" --threads 1 \
    --latency_input Set14 --repeats "$repeats" --warmup 2 --out "$out" --overwrite
done
python scripts/peers_table.py --into docs/peers.md
