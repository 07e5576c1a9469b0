#!/usr/bin/env bash
# The main job on the embedded default: set up, build the demo set from bundled photos (no downloads),
# train a small GhostEDSR x2 through `basicsr train` on CPU (a few minutes), then compare it with
# bicubic on held-out images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ghostsr prepare-demo

# PyTorch's CPU threads wait for each other at the end of every op. By default a waiting thread spins,
# so on a busy machine (a core held by another process) each op waits out the scheduler: the demo's
# iterations took 6-13 times longer than with waiting threads that sleep (docs/demo.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
basicsr train -opt options/demo/ghost_edsr_x2_demo.yml
python scripts/demo_report.py -opt options/demo/ghost_edsr_x2_demo.yml
