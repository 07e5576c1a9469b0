#!/usr/bin/env bash
# The GPU check on a fresh machine with a GPU and this repo: installs the wheels carried in .whl/
# (scripts/gpu_env.sh says which), then runs scripts/gpu_check.py (kernels, GPU tests, shift
# benchmark, end-to-end latency; JSON into benchmarks/results/gpu/). Arguments go to gpu_check.py:
# --dry-run, --out DIR, --overwrite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu_env.sh
. scripts/gpu_env.sh
exec "$PYTHON" scripts/gpu_check.py "$@"
