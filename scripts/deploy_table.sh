#!/usr/bin/env bash
# The deploy table: latency of EDSR-baseline (LR 180 x 320) and EDSR-L (LR 90 x 160) x2, plain vs Ghost,
# in eager PyTorch, torch.compile and onnxruntime, one thread, plain and Ghost timed in turn (interleaved).
# Latency only (random weights of the right shapes). Writes benchmarks/results/deploy/ (JSON + leaderboard.md).
# About 30 minutes on a quiet 2-core CPU; run nothing else meanwhile. Usage: bash scripts/deploy_table.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
repeats="${1:-7}"
out=benchmarks/results/deploy
export OMP_NUM_THREADS=1
for engine in eager compile onnxruntime; do
  ghostsr benchmark options/train/EDSR/train_EDSR_Mx2.yml options/train/GhostEDSR/train_GhostEDSR_Mx2.yml --latency_only \
    --engine "$engine" --threads 1 --latency_size 180 320 --repeats "$repeats" --warmup 1 \
    --baseline EDSR_Mx2_f64b16_DIV2K_300k_B16G1 --out "$out" --overwrite
  ghostsr benchmark options/train/EDSR/train_EDSR_Lx2.yml options/train/GhostEDSR/train_GhostEDSR_Lx2.yml --latency_only \
    --engine "$engine" --threads 1 --latency_size 90 160 --repeats "$repeats" --warmup 1 \
    --baseline EDSR_Lx2_f256b32_DIV2K_300k_B16G1 --out "$out" --overwrite
done
ghostsr leaderboard "$out" --out "$out" --overwrite
cat "$out/leaderboard.md"
