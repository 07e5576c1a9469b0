#!/usr/bin/env bash
# Every row of benchmarks/results/leaderboard.md, from the repository alone: build the demo set and the
# test sets, train the models of options/demo (a run whose net_g_latest.pth exists is not trained again),
# benchmark each with `ghostsr benchmark` and merge the JSONs with `ghostsr leaderboard`.
# CPU: about 2 hours on one core (the EDSR-baseline teacher about 45 min, the AdderEDSR demo about 15 min).
# Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
out=benchmarks/results
sets=(../shared/data/benchmark/Set5/HR ../shared/data/benchmark/Set14/HR)

ghostsr prepare-demo
[ -d datasets/benchmark/Set5 ] || ghostsr prepare-benchmarks "${sets[@]}"

train() {  # option file, run name
  [ -f "experiments/$2/models/net_g_latest.pth" ] || basicsr train -opt "$1"
}
train options/demo/ghost_edsr_x2_demo.yml demo_GhostEDSR_x2_f32b4
train options/demo/edsr_x2_demo.yml demo_EDSR_x2_f32b4              # its plain twin (docs/peers.md)
train options/demo/adder_edsr_x2_demo.yml demo_AdderEDSR_x2_f32b4   # AdderSR's form of the same
train options/demo/edsr_baseline_x2_demo.yml demo_EDSR_x2_f64b16  # the teacher of the three below
for start in cluster order scratch; do
  train "options/demo/ghost_edsr_baseline_x2_${start}_demo.yml" "demo_GhostEDSR_x2_f64b16_${start}"
done
train options/demo/ghost_edsr_dw_x2_demo.yml demo_GhostEDSR_dw_x2_f32b4  # the paper's depthwise-ghost ablation
train options/demo/smsr_x2_demo.yml demo_SMSR_x2_f32b2                   # SMSR (docs/peers.md)

ghostsr benchmark bicubic --sets Set5 Set14 --scales 2 3 4 --out "$out" --overwrite
ghostsr benchmark options/demo/edsr_x2_demo.yml --name 'EDSR demo (32f/4b)' --sets Set5 Set14 --out "$out" --overwrite
for peer in ghost_edsr:GhostEDSR adder_edsr:AdderEDSR; do
  ghostsr benchmark "options/demo/${peer%%:*}_x2_demo.yml" --name "${peer##*:} demo (32f/4b)" \
    --baseline 'EDSR demo (32f/4b)' --sets Set5 Set14 --out "$out" --overwrite
done
ghostsr benchmark options/demo/edsr_baseline_x2_demo.yml --name 'EDSR-baseline teacher (600 it)' \
  --sets Set5 Set14 --out "$out" --overwrite
for start in cluster order scratch; do
  ghostsr benchmark "options/demo/ghost_edsr_baseline_x2_${start}_demo.yml" \
    --name "GhostEDSR-baseline, $start init (+1500 it)" --baseline 'EDSR-baseline teacher (600 it)' \
    --sets Set5 Set14 --out "$out" --overwrite
done
ghostsr benchmark options/demo/ghost_edsr_dw_x2_demo.yml --name 'GhostEDSR demo, depthwise ghosts (32f/4b)' \
  --baseline 'EDSR demo (32f/4b)' --sets Set5 Set14 --out "$out" --overwrite
# SMSR: the sparse and the dense form of one trained network, timed in turn on Set14's LR images tiled (natural masks)
ghostsr benchmark options/test/SMSR/test_SMSR_demo_x2.yml options/test/SMSR/test_SMSR_demo_x2_dense.yml \
  --baseline SMSR_demo_x2_f32b2_dense --latency_input Set14 --sets Set5 Set14 --out "$out" --overwrite
ghostsr leaderboard "$out" --out "$out" --overwrite
python scripts/peers_table.py --into docs/peers.md
