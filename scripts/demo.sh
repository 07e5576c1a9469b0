#!/usr/bin/env bash
# The main job on the embedded default: set up, build the demo set from bundled photos (no downloads),
# train a small GhostEDSR x2 through `basicsr train` on CPU (a few minutes), then compare it with
# bicubic on held-out images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python scripts/prepare_demo_data.py

# PyTorch's CPU threads: one per core idle now (at least 1; OMP_NUM_THREADS when set). A thread on a
# core that another process holds stalls every op for the others: with one competing process on this
# 2-core machine, 2 threads ran 9 times slower per iteration than 1 (README, "The demo").
idle_cores() {
  python - <<'PY'
import os
import time


def busy_and_total():
    with open('/proc/stat') as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


cores = len(os.sched_getaffinity(0))
try:
    (busy0, total0), _, (busy1, total1) = busy_and_total(), time.sleep(1), busy_and_total()
except OSError:  # no /proc/stat (not Linux): PyTorch's default
    print(cores)
else:
    print(max(1, min(cores, round(cores * (1 - (busy1 - busy0) / max(total1 - total0, 1))))))
PY
}
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(idle_cores)}"
echo "Training with $OMP_NUM_THREADS PyTorch thread(s) (the idle cores; set OMP_NUM_THREADS to choose)."
basicsr train -opt options/demo/ghost_edsr_x2_demo.yml
python scripts/demo_report.py -opt options/demo/ghost_edsr_x2_demo.yml
